//! Reductions and softmax on host buffers.

use super::{KERNEL_CHECKED, fill, operand, per_float};
use crate::dtype::DType;
use crate::layout::Layout;
use crate::storage::CpuStorage;
use ember_ops::ReduceOp;

/// Reduces over `axes` (keepdim layout: reduced extents become 1).
pub(crate) fn reduce(op: ReduceOp, s: &CpuStorage, l: &Layout, axes: &[usize]) -> CpuStorage {
    let n: usize = l
        .shape()
        .iter()
        .enumerate()
        .map(|(d, &e)| if axes.contains(&d) { 1 } else { e })
        .product();
    let out = per_float!((operand(s, l)) => |x| fill(n, |o| {
        ember_cpu::reduce::reduce(op, &x.data, x.layout.strided(), axes, o).expect(KERNEL_CHECKED)
    }));
    // Arg-reductions return indices: f32 unless the input is f64.
    let dtype = match (op.is_arg(), s.dtype()) {
        (true, DType::F64) => DType::F64,
        (true, _) => DType::F32,
        (false, d) => d,
    };
    out.into_storage(dtype)
}

/// Softmax or log-softmax along the last axis.
pub(crate) fn softmax_last(s: &CpuStorage, l: &Layout, log: bool) -> CpuStorage {
    let n = l.elem_count();
    let cols = l.shape().last().copied().unwrap_or(1);
    per_float!((operand(s, l)) => |x| {
        let x = x.dense();
        fill(n, |o| ember_cpu::reduce::softmax_rows(&x, cols, o, log).expect(KERNEL_CHECKED))
    })
    .into_storage(s.dtype())
}
