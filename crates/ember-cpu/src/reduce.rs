//! Reductions over any set of axes, and softmax along the last axis.
//!
//! The output of [`reduce`] is contiguous with the input's shape where each reduced axis has
//! extent 1 (keepdim form; the caller drops those axes if it wants). Elements are combined in
//! row-major order of the input, a fixed order, so results are the same on every run.

use crate::element::Float;
use crate::strided::{Strided, contiguous_strides, for_each_offset};

/// How values along the reduced axes are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum (0 for an empty set).
    Sum,
    /// Maximum (-inf for an empty set; NaN if any element is NaN).
    Max,
    /// Minimum (+inf for an empty set; NaN if any element is NaN).
    Min,
    /// Index of the first maximum along a single axis, stored as a float.
    ArgMax,
    /// Index of the first minimum along a single axis, stored as a float.
    ArgMin,
}

/// Reduces `x` (viewed through `xv`) over `axes` into `out`.
///
/// `out.len()` is the product of the kept extents. For `ArgMax`/`ArgMin`, `axes` has exactly one
/// entry and the reduced extent is non-zero (the caller checks both).
pub fn reduce<T: Float>(op: ReduceOp, x: &[T], xv: Strided<'_>, axes: &[usize], out: &mut [T]) {
    let rank = xv.shape.len();
    let out_shape: Vec<usize> = (0..rank)
        .map(|d| if axes.contains(&d) { 1 } else { xv.shape[d] })
        .collect();
    let mut out_strides = contiguous_strides(&out_shape);
    for &a in axes {
        out_strides[a] = 0;
    }
    let init = match op {
        ReduceOp::Sum => T::ZERO,
        ReduceOp::Max | ReduceOp::ArgMax => T::neg_infinity(),
        ReduceOp::Min | ReduceOp::ArgMin => T::infinity(),
    };
    out.fill(init);
    // Output offset of each input element (row-major walk of a broadcast view of `out`).
    let ov = Strided::new(xv.shape, &out_strides, 0);
    let mut ooffs = Vec::with_capacity(xv.elem_count());
    for_each_offset(ov, |_, off| ooffs.push(off));
    match op {
        ReduceOp::Sum => for_each_offset(xv, |i, off| out[ooffs[i]] += x[off]),
        ReduceOp::Max => for_each_offset(xv, |i, off| {
            let o = &mut out[ooffs[i]];
            let v = x[off];
            if (v.is_nan() || v > *o) && !o.is_nan() {
                *o = v;
            }
        }),
        ReduceOp::Min => for_each_offset(xv, |i, off| {
            let o = &mut out[ooffs[i]];
            let v = x[off];
            if (v.is_nan() || v < *o) && !o.is_nan() {
                *o = v;
            }
        }),
        ReduceOp::ArgMax | ReduceOp::ArgMin => {
            let axis = axes[0];
            let mut best = vec![init; out.len()];
            let mut seen = vec![false; out.len()];
            let mut idx = vec![0usize; rank];
            for_each_offset(xv, |i, off| {
                let pos = idx[axis];
                let o = ooffs[i];
                let v = x[off];
                // NaN wins (and the first NaN stays); otherwise strictly better wins, so ties keep
                // the first index.
                let better = !best[o].is_nan()
                    && (v.is_nan()
                        || if op == ReduceOp::ArgMax {
                            v > best[o]
                        } else {
                            v < best[o]
                        });
                if !seen[o] || better {
                    seen[o] = true;
                    best[o] = v;
                    out[o] = T::from_f64(pos as f64);
                }
                // Advance the multi-index.
                let mut d = rank;
                while d > 0 {
                    d -= 1;
                    idx[d] += 1;
                    if idx[d] < xv.shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            });
        }
    }
}

/// Softmax (or log-softmax) of each row of a contiguous `[rows, cols]` buffer.
///
/// Subtracts the row maximum before exponentiating, so large inputs never overflow.
pub fn softmax_rows<T: Float>(x: &[T], cols: usize, out: &mut [T], log: bool) {
    if cols == 0 {
        return;
    }
    for (xr, or) in x.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let mut m = T::neg_infinity();
        for &v in xr {
            if v > m || v.is_nan() {
                m = v;
            }
        }
        if m == T::neg_infinity() {
            m = T::ZERO;
        }
        let mut s = T::ZERO;
        for (o, &v) in or.iter_mut().zip(xr) {
            *o = (v - m).exp();
            s += *o;
        }
        if log {
            let ls = s.ln();
            for (o, &v) in or.iter_mut().zip(xr) {
                *o = v - m - ls;
            }
        } else {
            let inv = T::ONE / s;
            for o in or.iter_mut() {
                *o *= inv;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_over_each_axis() {
        let x = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let v = Strided::new(&[2, 3], &[3, 1], 0);
        let mut o = [0.0; 3];
        reduce(ReduceOp::Sum, &x, v, &[0], &mut o);
        assert_eq!(o, [5.0, 7.0, 9.0]);
        let mut o = [0.0; 2];
        reduce(ReduceOp::Sum, &x, v, &[1], &mut o);
        assert_eq!(o, [6.0, 15.0]);
        let mut o = [0.0; 1];
        reduce(ReduceOp::Sum, &x, v, &[0, 1], &mut o);
        assert_eq!(o, [21.0]);
    }

    #[test]
    fn argmax_first_occurrence() {
        let x = [1.0f32, 5.0, 5.0, 7.0, 0.0, 7.0];
        let v = Strided::new(&[2, 3], &[3, 1], 0);
        let mut o = [0.0; 2];
        reduce(ReduceOp::ArgMax, &x, v, &[1], &mut o);
        assert_eq!(o, [1.0, 0.0]);
        reduce(ReduceOp::ArgMin, &x, v, &[1], &mut o);
        assert_eq!(o, [0.0, 1.0]);
    }

    #[test]
    fn softmax_large_inputs() {
        let x = [1000.0f32, 1000.0];
        let mut o = [0.0; 2];
        softmax_rows(&x, 2, &mut o, false);
        assert_eq!(o, [0.5, 0.5]);
    }
}
