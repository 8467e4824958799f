//! Elementwise maps on host buffers: unary forward and backward, binary, `where_cond`.

use super::{KERNEL_CHECKED, fill, operand, per_float};
use crate::layout::Layout;
use crate::storage::CpuStorage;
use ember_ops::{BinaryOp, UnaryOp};

/// y = op(x), contiguous.
pub(crate) fn unary(s: &CpuStorage, l: &Layout, op: UnaryOp) -> CpuStorage {
    let n = l.elem_count();
    per_float!((operand(s, l)) => |x| fill(n, |o| {
        ember_cpu::unary::unary(op, &x.data, x.layout.strided(), o).expect(KERNEL_CHECKED)
    }))
    .into_storage(s.dtype())
}

/// dx = dy * op'(x) from x, y = op(x) and dy, three views of one shape and dtype.
pub(crate) fn unary_backward(
    op: UnaryOp,
    (x, xl): (&CpuStorage, &Layout),
    (y, yl): (&CpuStorage, &Layout),
    (dy, dyl): (&CpuStorage, &Layout),
) -> CpuStorage {
    let n = xl.elem_count();
    per_float!((operand(x, xl), operand(y, yl), operand(dy, dyl)) => |x, y, dy| {
        let (x, y, dy) = (x.dense(), y.dense(), dy.dense());
        fill(n, |o| {
            ember_cpu::unary::unary_backward(op, &x, &y, &dy, o).expect(KERNEL_CHECKED)
        })
    })
    .into_storage(x.dtype())
}

/// out = op(a, b) where both layouts already have the output's shape.
pub(crate) fn binary(
    op: BinaryOp,
    (a, al): (&CpuStorage, &Layout),
    (b, bl): (&CpuStorage, &Layout),
) -> CpuStorage {
    let n = al.elem_count();
    per_float!((operand(a, al), operand(b, bl)) => |x, y| fill(n, |o| {
        ember_cpu::binary::binary(op, &x.data, x.layout.strided(), &y.data, y.layout.strided(), o)
            .expect(KERNEL_CHECKED)
    }))
    .into_storage(a.dtype())
}

/// out = cond ? a : b, all three layouts with the output's shape.
pub(crate) fn where_cond(
    (c, cl): (&CpuStorage, &Layout),
    (a, al): (&CpuStorage, &Layout),
    (b, bl): (&CpuStorage, &Layout),
) -> CpuStorage {
    let n = al.elem_count();
    per_float!((operand(c, cl), operand(a, al), operand(b, bl)) => |c, x, y| fill(n, |o| {
        ember_cpu::binary::where_cond(
            &c.data,
            c.layout.strided(),
            &x.data,
            x.layout.strided(),
            &y.data,
            y.layout.strided(),
            o,
        )
        .expect(KERNEL_CHECKED)
    }))
    .into_storage(a.dtype())
}
