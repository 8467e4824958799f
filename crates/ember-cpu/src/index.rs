//! Index-driven copies: `index_select` and `gather`, and the scatter-adds that are their
//! adjoints (used by the autograd rules).
//!
//! Operands are contiguous and described as `[outer, dim, inner]`: the axis being indexed is the
//! middle one, everything before it folds into `outer` and everything after into `inner`. Each
//! function checks its slices' lengths and every index first and returns an [`OperandError`]
//! (writing nothing) when one is wrong: an index scan costs a pass over the indices, small next
//! to the copies they drive.

use crate::element::Float;
use crate::error::{OperandError, check_indices, check_len, checked_len3};

/// `out[o, j, i] = src[o, idx[j], i]`; `src` is `[outer, dim, inner]`, `out` is
/// `[outer, idx.len(), inner]`.
pub fn index_select<T: Copy>(
    src: &[T],
    outer: usize,
    dim: usize,
    inner: usize,
    idx: &[usize],
    out: &mut [T],
) -> Result<(), OperandError> {
    let n = idx.len();
    check_len(
        "index_select",
        "source",
        checked_len3("index_select", "source", outer, dim, inner)?,
        src.len(),
    )?;
    check_len(
        "index_select",
        "output",
        checked_len3("index_select", "output", outer, n, inner)?,
        out.len(),
    )?;
    check_indices("index_select", idx, dim)?;
    for o in 0..outer {
        for (j, &ix) in idx.iter().enumerate() {
            let s = (o * dim + ix) * inner;
            let d = (o * n + j) * inner;
            out[d..d + inner].copy_from_slice(&src[s..s + inner]);
        }
    }
    Ok(())
}

/// The adjoint of [`index_select`]: `dst[o, idx[j], i] += grad[o, j, i]`.
pub fn index_add<T: Float>(
    grad: &[T],
    outer: usize,
    dim: usize,
    inner: usize,
    idx: &[usize],
    dst: &mut [T],
) -> Result<(), OperandError> {
    let n = idx.len();
    check_len(
        "index_add",
        "gradient",
        checked_len3("index_add", "gradient", outer, n, inner)?,
        grad.len(),
    )?;
    check_len(
        "index_add",
        "destination",
        checked_len3("index_add", "destination", outer, dim, inner)?,
        dst.len(),
    )?;
    check_indices("index_add", idx, dim)?;
    for o in 0..outer {
        for (j, &ix) in idx.iter().enumerate() {
            let s = (o * n + j) * inner;
            let d = (o * dim + ix) * inner;
            for i in 0..inner {
                dst[d + i] += grad[s + i];
            }
        }
    }
    Ok(())
}

/// out[o, j, i] = src[o, idx[o, j, i], i]; `src` is `[outer, dim, inner]`, `idx` and `out` are
/// `[outer, n, inner]`.
pub fn gather<T: Copy>(
    src: &[T],
    outer: usize,
    dim: usize,
    inner: usize,
    idx: &[usize],
    n: usize,
    out: &mut [T],
) -> Result<(), OperandError> {
    check_len(
        "gather",
        "source",
        checked_len3("gather", "source", outer, dim, inner)?,
        src.len(),
    )?;
    let picks = checked_len3("gather", "index", outer, n, inner)?;
    check_len("gather", "index", picks, idx.len())?;
    check_len("gather", "output", picks, out.len())?;
    check_indices("gather", idx, dim)?;
    for o in 0..outer {
        for j in 0..n {
            for i in 0..inner {
                let k = (o * n + j) * inner + i;
                out[k] = src[(o * dim + idx[k]) * inner + i];
            }
        }
    }
    Ok(())
}

/// The adjoint of [`gather`]: dst[o, idx[o, j, i], i] += grad[o, j, i].
pub fn scatter_add<T: Float>(
    grad: &[T],
    outer: usize,
    dim: usize,
    inner: usize,
    idx: &[usize],
    n: usize,
    dst: &mut [T],
) -> Result<(), OperandError> {
    let picks = checked_len3("scatter_add", "index", outer, n, inner)?;
    check_len("scatter_add", "index", picks, idx.len())?;
    check_len("scatter_add", "gradient", picks, grad.len())?;
    check_len(
        "scatter_add",
        "destination",
        checked_len3("scatter_add", "destination", outer, dim, inner)?,
        dst.len(),
    )?;
    check_indices("scatter_add", idx, dim)?;
    for o in 0..outer {
        for j in 0..n {
            for i in 0..inner {
                let k = (o * n + j) * inner + i;
                dst[(o * dim + idx[k]) * inner + i] += grad[k];
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_and_add_are_adjoint() {
        let src = [0.0f64, 1.0, 2.0, 3.0, 4.0, 5.0]; // [1, 3, 2]
        let idx = [2, 0, 2];
        let mut out = [0.0; 6];
        index_select(&src, 1, 3, 2, &idx, &mut out).unwrap();
        assert_eq!(out, [4.0, 5.0, 0.0, 1.0, 4.0, 5.0]);
        let mut back = [0.0; 6];
        index_add(&[1.0; 6], 1, 3, 2, &idx, &mut back).unwrap();
        assert_eq!(back, [1.0, 1.0, 0.0, 0.0, 2.0, 2.0]);
    }

    #[test]
    fn gather_rows() {
        let src = [1.0f32, 2.0, 3.0, 4.0]; // [2, 2] gathered along dim 1
        let idx = [1, 1, 0, 1];
        let mut out = [0.0; 4];
        gather(&src, 2, 2, 1, &idx, 2, &mut out).unwrap();
        assert_eq!(out, [2.0, 2.0, 3.0, 4.0]);
    }
}
