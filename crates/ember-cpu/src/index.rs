//! Index-driven copies: `index_select` and `gather`, and the scatter-adds that are their
//! adjoints (used by the autograd rules).
//!
//! Operands are contiguous and described as `[outer, dim, inner]`: the axis being indexed is the
//! middle one, everything before it folds into `outer` and everything after into `inner`. The
//! caller validates every index, so these functions never see an out-of-range one.

use crate::element::Float;

/// `out[o, j, i] = src[o, idx[j], i]`; `src` is `[outer, dim, inner]`, `out` is
/// `[outer, idx.len(), inner]`.
pub fn index_select<T: Copy>(
    src: &[T],
    outer: usize,
    dim: usize,
    inner: usize,
    idx: &[usize],
    out: &mut [T],
) {
    let n = idx.len();
    for o in 0..outer {
        for (j, &ix) in idx.iter().enumerate() {
            let s = (o * dim + ix) * inner;
            let d = (o * n + j) * inner;
            out[d..d + inner].copy_from_slice(&src[s..s + inner]);
        }
    }
}

/// The adjoint of [`index_select`]: `dst[o, idx[j], i] += grad[o, j, i]`.
pub fn index_add<T: Float>(
    grad: &[T],
    outer: usize,
    dim: usize,
    inner: usize,
    idx: &[usize],
    dst: &mut [T],
) {
    let n = idx.len();
    for o in 0..outer {
        for (j, &ix) in idx.iter().enumerate() {
            let s = (o * n + j) * inner;
            let d = (o * dim + ix) * inner;
            for i in 0..inner {
                dst[d + i] += grad[s + i];
            }
        }
    }
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
) {
    for o in 0..outer {
        for j in 0..n {
            for i in 0..inner {
                let k = (o * n + j) * inner + i;
                out[k] = src[(o * dim + idx[k]) * inner + i];
            }
        }
    }
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
) {
    for o in 0..outer {
        for j in 0..n {
            for i in 0..inner {
                let k = (o * n + j) * inner + i;
                dst[(o * dim + idx[k]) * inner + i] += grad[k];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_and_add_are_adjoint() {
        let src = [0.0f64, 1.0, 2.0, 3.0, 4.0, 5.0]; // [1, 3, 2]
        let idx = [2, 0, 2];
        let mut out = [0.0; 6];
        index_select(&src, 1, 3, 2, &idx, &mut out);
        assert_eq!(out, [4.0, 5.0, 0.0, 1.0, 4.0, 5.0]);
        let mut back = [0.0; 6];
        index_add(&[1.0; 6], 1, 3, 2, &idx, &mut back);
        assert_eq!(back, [1.0, 1.0, 0.0, 0.0, 2.0, 2.0]);
    }

    #[test]
    fn gather_rows() {
        let src = [1.0f32, 2.0, 3.0, 4.0]; // [2, 2] gathered along dim 1
        let idx = [1, 1, 0, 1];
        let mut out = [0.0; 4];
        gather(&src, 2, 2, 1, &idx, 2, &mut out);
        assert_eq!(out, [2.0, 2.0, 3.0, 4.0]);
    }
}
