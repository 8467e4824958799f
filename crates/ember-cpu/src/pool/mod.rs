//! Pooling, nearest upsampling, 2-D padding and batch-norm statistics over NCHW planes.
//!
//! Every kernel here reads a dense NCHW buffer (ember-core makes strided views dense first:
//! these ops read each input element a few times at most, so a copy costs about as much as the
//! op and the dense inner loops pay it back) and writes a fresh dense result:
//! - [`window`]: `max_pool2d` (with the argmax of every window, for the backward) and
//!   `avg_pool2d`, forward and backward, over [`ember_ops::Pool2dSpec`] (PyTorch's semantics:
//!   padding is −∞ for max, `count_include_pad` and `ceil_mode` for average);
//! - [`adaptive`]: adaptive average pooling with PyTorch's bins, global pooling as its 1×1 case;
//! - [`resize`]: nearest upsampling by integer factors and constant/reflect padding of the last
//!   two dimensions, forward and backward;
//! - [`norm`]: batch-norm statistics per channel over (N, H, W), the normalisation with its
//!   affine transform, and the closed-form backward.
//!
//! Parallelism and determinism: pooling, upsampling and padding work plane by plane (one plane
//! is one (n, c) pair); each output element is computed by one task, in one fixed order of
//! operations, and the backward kernels scatter within a plane in row-major output order, so
//! results do not depend on the thread count. Batch norm works channel by channel, each
//! channel's sums in one fixed order. rayon splits the planes (channels) once the whole op
//! touches at least [`crate::par::PAR_MIN`] elements, in groups of planes sized from the plane,
//! never from the thread count.

pub mod adaptive;
pub mod norm;
pub mod resize;
pub mod window;

pub use adaptive::{adaptive_avg_pool2d, adaptive_avg_pool2d_backward};
pub use norm::{batch_norm_backward, batch_norm_forward};
pub use resize::{pad2d, pad2d_backward, upsample_nearest2d, upsample_nearest2d_backward};
pub use window::{avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward};

use crate::error::{OperandError, check_len};
use crate::par::PAR_MIN;
use rayon::prelude::*;

/// Elements of work one rayon task should cover at least (about 10 µs of pooling).
const TASK_MIN: usize = 1 << 14;

/// Runs `f(plane, out_plane)` for every plane of `out` (`plane_len` elements each), in
/// parallel when the op's total work (`work_per_plane` elements per plane) is large. Planes are
/// grouped into tasks by size alone, and each plane is computed the same way in any task.
pub(crate) fn for_planes<T: Send>(
    out: &mut [T],
    plane_len: usize,
    work_per_plane: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    if plane_len == 0 || out.is_empty() {
        return;
    }
    let planes = out.len() / plane_len;
    let work = work_per_plane.max(plane_len).max(1);
    if planes > 1 && planes.saturating_mul(work) >= PAR_MIN && rayon::current_num_threads() > 1 {
        let group = (TASK_MIN / work).max(1);
        out.par_chunks_mut(plane_len * group)
            .enumerate()
            .for_each(|(t, chunk)| {
                for (i, o) in chunk.chunks_mut(plane_len).enumerate() {
                    f(t * group + i, o);
                }
            });
    } else {
        for (p, o) in out.chunks_mut(plane_len).enumerate() {
            f(p, o);
        }
    }
}

/// [`for_planes`] over two outputs split into planes of the same length (max pooling's values
/// and argmax offsets): `f(plane, out_plane, other_plane)`.
pub(crate) fn for_plane_pairs<T: Send, U: Send>(
    out: &mut [T],
    other: &mut [U],
    plane_len: usize,
    work_per_plane: usize,
    f: impl Fn(usize, &mut [T], &mut [U]) + Sync,
) {
    if plane_len == 0 || out.is_empty() {
        return;
    }
    let planes = out.len() / plane_len;
    let work = work_per_plane.max(plane_len).max(1);
    if planes > 1 && planes.saturating_mul(work) >= PAR_MIN && rayon::current_num_threads() > 1 {
        let group = (TASK_MIN / work).max(1);
        out.par_chunks_mut(plane_len * group)
            .zip(other.par_chunks_mut(plane_len * group))
            .enumerate()
            .for_each(|(t, (oc, ac))| {
                for (i, (o, a)) in oc
                    .chunks_mut(plane_len)
                    .zip(ac.chunks_mut(plane_len))
                    .enumerate()
                {
                    f(t * group + i, o, a);
                }
            });
    } else {
        for (p, (o, a)) in out
            .chunks_mut(plane_len)
            .zip(other.chunks_mut(plane_len))
            .enumerate()
        {
            f(p, o, a);
        }
    }
}

/// `planes · plane` as a length, or an error naming `operand` when it overflows.
pub(crate) fn plane_count(
    op: &'static str,
    operand: &'static str,
    planes: usize,
    plane: usize,
) -> Result<usize, OperandError> {
    planes
        .checked_mul(plane)
        .ok_or_else(|| OperandError::Geometry {
            op,
            problem: format!("the {operand} of {planes} planes of {plane} elements overflows"),
        })
}

/// Checks that `buf` holds `planes · plane` values.
pub(crate) fn check_planes(
    op: &'static str,
    operand: &'static str,
    planes: usize,
    plane: usize,
    len: usize,
) -> Result<(), OperandError> {
    let n = plane_count(op, operand, planes, plane)?;
    check_len(op, operand, n, len)?;
    Ok(())
}

/// A geometry error.
pub(crate) fn geometry(op: &'static str, problem: String) -> OperandError {
    OperandError::Geometry { op, problem }
}

#[cfg(test)]
mod tests;
