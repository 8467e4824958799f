//! Index ops on host buffers: index_select, gather and their scatter-add adjoints.
//!
//! A source is read as `[outer, dim, inner]` around the indexed axis ([`split3`]). The forward
//! ops copy elements of any dtype as they are; the adjoints add, so they compute in f32/f64.

use super::view::contiguous;
use super::{KERNEL_CHECKED, fill, operand, per_float, zeroed};
use crate::layout::Layout;
use crate::storage::CpuStorage;

/// Runs `$go` with the typed source slice, a zero of its type, and its storage variant.
macro_rules! per_dtype {
    ($s:expr, |$v:ident, $zero:ident| $go:expr) => {
        match $s {
            CpuStorage::F32($v) => {
                let $zero = 0f32;
                CpuStorage::F32($go)
            }
            CpuStorage::F64($v) => {
                let $zero = 0f64;
                CpuStorage::F64($go)
            }
            CpuStorage::F16($v) => {
                let $zero = half::f16::ZERO;
                CpuStorage::F16($go)
            }
            CpuStorage::BF16($v) => {
                let $zero = half::bf16::ZERO;
                CpuStorage::BF16($go)
            }
        }
    };
}

/// index_select along `axis`, reading the source as `[outer, dim, inner]` (in place when dense).
pub(crate) fn index_select(s: &CpuStorage, l: &Layout, axis: usize, idx: &[usize]) -> CpuStorage {
    // Read a dense source in place; gather a strided one once.
    let dense;
    let (s, base) = match l.strided().contiguous_range() {
        Some(r) => (s, r.start),
        None => {
            dense = contiguous(s, l);
            (&dense, 0)
        }
    };
    let (outer, dim, inner) = split3(l.shape(), axis);
    let n = outer * idx.len() * inner;
    let len = outer * dim * inner;
    per_dtype!(s, |v, zero| {
        let mut o = zeroed(n, zero);
        ember_cpu::index::index_select(&v[base..base + len], outer, dim, inner, idx, &mut o)
            .expect(KERNEL_CHECKED);
        o
    })
}

/// The adjoint of index_select: scatters-adds `grad` (`[outer, idx.len(), inner]`) into zeros of
/// `shape`.
pub(crate) fn index_add(
    grad: &CpuStorage,
    gl: &Layout,
    shape: &[usize],
    axis: usize,
    idx: &[usize],
) -> CpuStorage {
    let (outer, dim, inner) = split3(shape, axis);
    let total = shape.iter().product();
    per_float!((operand(grad, gl)) => |g| {
        let g = g.dense();
        fill(total, |o| {
            ember_cpu::index::index_add(&g, outer, dim, inner, idx, o).expect(KERNEL_CHECKED)
        })
    })
    .into_storage(grad.dtype())
}

/// gather along `axis` with an index array shaped like the output.
pub(crate) fn gather(
    s: &CpuStorage,
    l: &Layout,
    axis: usize,
    idx: &[usize],
    out_shape: &[usize],
) -> CpuStorage {
    let s = contiguous(s, l);
    let (outer, dim, inner) = split3(l.shape(), axis);
    let n_ax = out_shape[axis];
    let total: usize = out_shape.iter().product();
    per_dtype!(&s, |v, zero| {
        let mut o = zeroed(total, zero);
        ember_cpu::index::gather(v, outer, dim, inner, idx, n_ax, &mut o).expect(KERNEL_CHECKED);
        o
    })
}

/// The adjoint of gather: scatter-adds `grad` into zeros of `shape`.
pub(crate) fn scatter_add(
    grad: &CpuStorage,
    gl: &Layout,
    shape: &[usize],
    axis: usize,
    idx: &[usize],
) -> CpuStorage {
    let (outer, dim, inner) = split3(shape, axis);
    let n_ax = gl.shape()[axis];
    let total = shape.iter().product();
    per_float!((operand(grad, gl)) => |g| {
        let g = g.dense();
        fill(total, |o| {
            ember_cpu::index::scatter_add(&g, outer, dim, inner, idx, n_ax, o)
                .expect(KERNEL_CHECKED)
        })
    })
    .into_storage(grad.dtype())
}

/// Splits a shape into (product before axis, extent of axis, product after axis).
pub(crate) fn split3(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}
