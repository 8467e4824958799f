//! Reductions over any set of axes, and softmax along the last axis.
//!
//! The output of [`reduce`] is contiguous with the input's shape where each reduced axis has
//! extent 1 (keepdim form; the caller drops those axes if it wants).
//!
//! Fast paths for contiguous inputs, the shapes training actually produces:
//! - everything reduced (a loss, a norm) and the last axis reduced (per-row sums, maxima,
//!   argmax over classes): [`sum_slice`] / [`max_slice`] per row, vectorised;
//! - leading axes reduced (a bias gradient: sum over the batch): rows are added into the output
//!   one after another, vectorised across the output.
//!
//! Sums of a contiguous run are *blocked pairwise*: 16 lanes accumulate blocks of 256
//! elements, blocks combine in a pairwise tree, and runs longer than [`crate::par::CHUNK`] are
//! cut into fixed chunks whose partial sums combine in a pairwise tree too. The error grows
//! like O(log n) instead of the O(n) of a left-to-right loop, and since chunk boundaries and the
//! tree are fixed, the result is bit-identical for any thread count. Everything else (the
//! general strided path) combines in row-major order of the input, also a fixed order.

use crate::element::Float;
use crate::error::{OperandError, check_len, check_view, checked_count};
use crate::isa::{self, Isa};
use crate::par::{CHUNK, parallel};
use crate::strided::{Strided, contiguous_strides, for_each_offset};
use rayon::prelude::*;

pub use ember_ops::ReduceOp;

/// Reduces `x` (viewed through `xv`) over `axes` into `out`.
///
/// `Mean` is the sum (in the same order) divided by the number of reduced elements.
///
/// `out.len()` is the product of the kept extents. For `ArgMax`/`ArgMin`, `axes` has exactly one
/// entry and the reduced extent is non-zero. `Err` (nothing written) when `xv` does not fit in
/// `x`, an axis is out of range or repeated, or `out` or `axes` break the rules above.
pub fn reduce<T: Float>(
    op: ReduceOp,
    x: &[T],
    xv: Strided<'_>,
    axes: &[usize],
    out: &mut [T],
) -> Result<(), OperandError> {
    check_reduce(op, x, xv, axes, out.len())?;
    if !reduce_fast(op, x, xv, axes, out) {
        reduce_general(op, x, xv, axes, out);
    }
    if op == ReduceOp::Mean {
        // The paths above sum for Mean; divide by the count (0/0 = NaN for an empty set).
        let count = T::from_f64(axes.iter().map(|&a| xv.shape[a]).product::<usize>() as f64);
        for o in out.iter_mut() {
            *o = *o / count;
        }
    }
    Ok(())
}

/// The operand checks of [`reduce`].
fn check_reduce<T>(
    op: ReduceOp,
    x: &[T],
    xv: Strided<'_>,
    axes: &[usize],
    out_len: usize,
) -> Result<(), OperandError> {
    check_view("reduce", "input", xv, x.len())?;
    checked_count("reduce", "input", xv.shape)?;
    let rank = xv.shape.len();
    let axes_err = |problem: String| OperandError::Axes {
        op: "reduce",
        problem,
    };
    for (i, &a) in axes.iter().enumerate() {
        if a >= rank {
            return Err(axes_err(format!(
                "axis {a} is out of range for an input of rank {rank}"
            )));
        }
        if axes[..i].contains(&a) {
            return Err(axes_err(format!("axis {a} is listed twice in {axes:?}")));
        }
    }
    if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) {
        match axes {
            [a] if xv.shape[*a] == 0 => {
                return Err(axes_err(format!(
                    "{op:?} over axis {a}, which is empty (shape {:?})",
                    xv.shape
                )));
            }
            [_] => {}
            _ => {
                return Err(axes_err(format!(
                    "{op:?} takes exactly one axis, got {axes:?}"
                )));
            }
        }
    }
    let kept: usize = (0..rank)
        .filter(|d| !axes.contains(d))
        .map(|d| xv.shape[d])
        .product();
    check_len("reduce", "output", kept, out_len)?;
    Ok(())
}

/// The general strided path: combines elements in row-major order of the input.
fn reduce_general<T: Float>(op: ReduceOp, x: &[T], xv: Strided<'_>, axes: &[usize], out: &mut [T]) {
    let rank = xv.shape.len();
    let out_shape: Vec<usize> = (0..rank)
        .map(|d| if axes.contains(&d) { 1 } else { xv.shape[d] })
        .collect();
    let mut out_strides = contiguous_strides(&out_shape);
    for &a in axes {
        out_strides[a] = 0;
    }
    let init = match op {
        ReduceOp::Sum | ReduceOp::Mean => T::ZERO,
        ReduceOp::Max | ReduceOp::ArgMax => T::neg_infinity(),
        ReduceOp::Min | ReduceOp::ArgMin => T::infinity(),
    };
    out.fill(init);
    // Output offset of each input element (row-major walk of a broadcast view of `out`).
    let ov = Strided::new(xv.shape, &out_strides, 0);
    let mut ooffs = Vec::with_capacity(xv.elem_count());
    for_each_offset(ov, |_, off| ooffs.push(off));
    match op {
        ReduceOp::Sum | ReduceOp::Mean => for_each_offset(xv, |i, off| out[ooffs[i]] += x[off]),
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

/// The contiguous fast paths; false when the general path must run.
fn reduce_fast<T: Float>(
    op: ReduceOp,
    x: &[T],
    xv: Strided<'_>,
    axes: &[usize],
    out: &mut [T],
) -> bool {
    let rank = xv.shape.len();
    let Some(range) = xv.contiguous_range() else {
        return false;
    };
    if rank == 0 || xv.elem_count() == 0 {
        return false;
    }
    let x = &x[range];
    let mut sorted = axes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let isa = isa::active();
    // Trailing axes reduced: each output element reduces one contiguous run.
    let trailing = sorted
        .iter()
        .enumerate()
        .all(|(i, &a)| a == rank - sorted.len() + i);
    if !sorted.is_empty() && trailing {
        let arg = matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin);
        if arg && sorted.len() != 1 {
            return false;
        }
        let cols: usize = sorted.iter().map(|&a| xv.shape[a]).product();
        let rows = out.len();
        let per_row = |r: usize, o: &mut T| {
            let row = &x[r * cols..(r + 1) * cols];
            *o = match op {
                ReduceOp::Sum | ReduceOp::Mean => sum_slice_isa(isa, row),
                ReduceOp::Max => max_slice_isa(isa, row, true),
                ReduceOp::Min => max_slice_isa(isa, row, false),
                ReduceOp::ArgMax => T::from_f64(arg_slice(isa, row, true) as f64),
                ReduceOp::ArgMin => T::from_f64(arg_slice(isa, row, false) as f64),
            };
        };
        if rows > 1 && parallel(x.len()) {
            let group = CHUNK.div_ceil(cols).max(1);
            out.par_chunks_mut(group).enumerate().for_each(|(g, oc)| {
                for (i, o) in oc.iter_mut().enumerate() {
                    per_row(g * group + i, o);
                }
            });
        } else {
            for (r, o) in out.iter_mut().enumerate() {
                per_row(r, o);
            }
        }
        return true;
    }
    // Leading axes reduced (Sum/Max/Min): fold rows of `inner` elements into the output, in
    // row order, so each output element sees its inputs in the same order as the general path.
    let leading = sorted.iter().enumerate().all(|(i, &a)| a == i);
    if !sorted.is_empty() && leading && !matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) {
        let inner = out.len();
        let fold = |j0: usize, oc: &mut [T]| fold_rows(isa, op, x, inner, j0, oc);
        if parallel(x.len()) && inner >= 2 * 256 {
            out.par_chunks_mut(256)
                .enumerate()
                .for_each(|(c, oc)| fold(c * 256, oc));
        } else {
            fold(0, out);
        }
        return true;
    }
    false
}

/// `out[j]` = op over rows r of `x[r * inner + j0 + j]`, rows in order.
fn fold_rows<T: Float>(isa: Isa, op: ReduceOp, x: &[T], inner: usize, j0: usize, out: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 is present (checked just above).
        unsafe { fold_rows_avx2(op, x, inner, j0, out) };
        return;
    }
    let _ = isa;
    fold_rows_body(op, x, inner, j0, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fold_rows_avx2<T: Float>(op: ReduceOp, x: &[T], inner: usize, j0: usize, out: &mut [T]) {
    fold_rows_body(op, x, inner, j0, out);
}

#[inline(always)]
fn fold_rows_body<T: Float>(op: ReduceOp, x: &[T], inner: usize, j0: usize, out: &mut [T]) {
    let w = out.len();
    let rows = x.len() / inner;
    match op {
        ReduceOp::Sum | ReduceOp::Mean => {
            out.fill(T::ZERO);
            for r in 0..rows {
                let row = &x[r * inner + j0..r * inner + j0 + w];
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
        }
        ReduceOp::Max | ReduceOp::Min => {
            let is_max = op == ReduceOp::Max;
            out.fill(if is_max {
                T::neg_infinity()
            } else {
                T::infinity()
            });
            for r in 0..rows {
                let row = &x[r * inner + j0..r * inner + j0 + w];
                for (o, &v) in out.iter_mut().zip(row) {
                    let better = if is_max { v > *o } else { v < *o };
                    // NaN sticks once seen (same rule as the general path).
                    *o = if (better || v.is_nan()) && !o.is_nan() {
                        v
                    } else {
                        *o
                    };
                }
            }
        }
        ReduceOp::ArgMax | ReduceOp::ArgMin => unreachable!("excluded by the caller"),
    }
}

/// Blocked pairwise sum of a contiguous run (see the module docs), on the active ISA.
pub fn sum_slice<T: Float>(x: &[T]) -> T {
    sum_slice_isa(isa::active(), x)
}

fn sum_slice_isa<T: Float>(isa: Isa, x: &[T]) -> T {
    if x.len() <= CHUNK {
        return sum_chunk(isa, x);
    }
    let partials: Vec<T> = if parallel(x.len()) {
        x.par_chunks(CHUNK).map(|c| sum_chunk(isa, c)).collect()
    } else {
        x.chunks(CHUNK).map(|c| sum_chunk(isa, c)).collect()
    };
    pairwise(&partials)
}

/// Pairwise tree over a short list of partial sums.
fn pairwise<T: Float>(v: &[T]) -> T {
    match v.len() {
        0 => T::ZERO,
        1 => v[0],
        n => pairwise(&v[..n / 2]) + pairwise(&v[n / 2..]),
    }
}

fn sum_chunk<T: Float>(isa: Isa, x: &[T]) -> T {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 is present (checked just above).
        return unsafe { sum_chunk_avx2(x) };
    }
    let _ = isa;
    sum_chunk_body(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sum_chunk_avx2<T: Float>(x: &[T]) -> T {
    sum_chunk_body(x)
}

/// Sums 256-element blocks in 16 lanes each, then combines the block sums pairwise.
/// `x.len()` is at most [`CHUNK`] (so at most 128 blocks). Not recursive, so it inlines whole
/// into the AVX2-compiled callers.
#[inline(always)]
fn sum_chunk_body<T: Float>(x: &[T]) -> T {
    const BLOCK: usize = 256;
    debug_assert!(x.len() <= CHUNK);
    let mut blocks = [T::ZERO; CHUNK / BLOCK];
    let mut nb = 0;
    for blk in x.chunks(BLOCK) {
        let mut acc = [T::ZERO; 16];
        let mut it = blk.chunks_exact(16);
        for c in &mut it {
            for l in 0..16 {
                acc[l] += c[l];
            }
        }
        for (l, &v) in it.remainder().iter().enumerate() {
            acc[l] += v;
        }
        blocks[nb] = crate::gemm::tree(acc);
        nb += 1;
    }
    pairwise(&blocks[..nb])
}

/// [`sum_chunk_body`] for runs of any length: fixed chunks, partials combined pairwise.
#[inline(always)]
fn sum_run_body<T: Float>(x: &[T]) -> T {
    if x.len() <= CHUNK {
        return sum_chunk_body(x);
    }
    let partials: Vec<T> = x.chunks(CHUNK).map(|c| sum_chunk_body(c)).collect();
    pairwise(&partials)
}

/// Maximum (or minimum) of a contiguous run; NaN if any element is NaN; -inf (+inf) if empty.
pub fn max_slice<T: Float>(x: &[T], is_max: bool) -> T {
    max_slice_isa(isa::active(), x, is_max)
}

fn max_slice_isa<T: Float>(isa: Isa, x: &[T], is_max: bool) -> T {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 is present (checked just above).
        return unsafe { max_avx2(x, is_max) };
    }
    let _ = isa;
    max_body(x, is_max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn max_avx2<T: Float>(x: &[T], is_max: bool) -> T {
    max_body(x, is_max)
}

#[inline(always)]
fn max_body<T: Float>(x: &[T], is_max: bool) -> T {
    let init = if is_max {
        T::neg_infinity()
    } else {
        T::infinity()
    };
    let mut acc = [init; 16];
    let mut nan = [false; 16];
    let mut it = x.chunks_exact(16);
    for c in &mut it {
        for l in 0..16 {
            let v = c[l];
            let better = if is_max { v > acc[l] } else { v < acc[l] };
            acc[l] = if better { v } else { acc[l] };
            nan[l] |= v.is_nan();
        }
    }
    for (l, &v) in it.remainder().iter().enumerate() {
        let better = if is_max { v > acc[l] } else { v < acc[l] };
        acc[l] = if better { v } else { acc[l] };
        nan[l] |= v.is_nan();
    }
    if nan.iter().any(|&b| b) {
        return T::from_f64(f64::NAN);
    }
    let mut m = acc[0];
    for &v in &acc[1..] {
        if if is_max { v > m } else { v < m } {
            m = v;
        }
    }
    m
}

/// Index of the first maximum (minimum) of a non-empty run; the first NaN wins if any.
fn arg_slice<T: Float>(isa: Isa, x: &[T], is_max: bool) -> usize {
    let m = max_slice_isa(isa, x, is_max);
    if m.is_nan() {
        x.iter().position(|v| v.is_nan()).unwrap_or(0)
    } else {
        x.iter().position(|&v| v == m).unwrap_or(0)
    }
}

/// Softmax (or log-softmax) of each row of a contiguous `[rows, cols]` buffer.
///
/// Subtracts the row maximum before exponentiating, so large inputs never overflow. f32 rows
/// use the vectorised exp and the blocked pairwise sum; rows run in parallel for large inputs
/// (each row is computed by one thread, so results do not depend on the thread count).
///
/// `Err` (nothing written) unless `out` is as long as `x` and `x` holds whole rows.
pub fn softmax_rows<T: Float>(
    x: &[T],
    cols: usize,
    out: &mut [T],
    log: bool,
) -> Result<(), OperandError> {
    check_len("softmax_rows", "output", x.len(), out.len())?;
    if (cols == 0 && !x.is_empty()) || (cols > 0 && !x.len().is_multiple_of(cols)) {
        return Err(OperandError::View {
            op: "softmax_rows",
            operand: "input",
            problem: format!(
                "of {} values is not a whole number of rows of {cols}",
                x.len()
            ),
        });
    }
    if cols == 0 {
        return Ok(());
    }
    let isa = isa::active();
    let run = |xr: &[T], or: &mut [T]| {
        for (xr, or) in xr.chunks_exact(cols).zip(or.chunks_exact_mut(cols)) {
            match (T::as_f32_slice(xr), T::as_f32_slice_mut(or)) {
                (Some(xf), Some(of)) => softmax_row_f32(isa, xf, of, log),
                (_, None) => softmax_row_scalar(xr, or, log),
                (None, Some(_)) => unreachable!("x and out have the same element type"),
            }
        }
    };
    if parallel(x.len()) && x.len() > cols {
        let group = CHUNK.div_ceil(cols).max(1) * cols;
        out.par_chunks_mut(group)
            .zip(x.par_chunks(group))
            .for_each(|(o, xr)| run(xr, o));
    } else {
        run(x, out);
    }
    Ok(())
}

fn softmax_row_scalar<T: Float>(xr: &[T], or: &mut [T], log: bool) {
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

fn softmax_row_f32(isa: Isa, xr: &[f32], or: &mut [f32], log: bool) {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        unsafe { softmax_row_avx2(xr, or, log) };
        return;
    }
    let _ = isa;
    softmax_row_body::<crate::vmath::Unfused>(xr, or, log);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_row_avx2(xr: &[f32], or: &mut [f32], log: bool) {
    softmax_row_body::<crate::vmath::Fused>(xr, or, log);
}

#[inline(always)]
fn softmax_row_body<F: crate::vmath::MulAdd>(xr: &[f32], or: &mut [f32], log: bool) {
    let mut m = max_body(xr, true);
    if m == f32::NEG_INFINITY {
        m = 0.0;
    }
    for (o, &v) in or.iter_mut().zip(xr) {
        *o = crate::vmath::exp::<F>(v - m);
    }
    let s = sum_run_body(or);
    if log {
        let ls = crate::vmath::ln::<F>(s);
        for (o, &v) in or.iter_mut().zip(xr) {
            *o = v - m - ls;
        }
    } else {
        let inv = 1.0 / s;
        for o in or.iter_mut() {
            *o *= inv;
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
        reduce(ReduceOp::Sum, &x, v, &[0], &mut o).unwrap();
        assert_eq!(o, [5.0, 7.0, 9.0]);
        let mut o = [0.0; 2];
        reduce(ReduceOp::Sum, &x, v, &[1], &mut o).unwrap();
        assert_eq!(o, [6.0, 15.0]);
        let mut o = [0.0; 1];
        reduce(ReduceOp::Sum, &x, v, &[0, 1], &mut o).unwrap();
        assert_eq!(o, [21.0]);
    }

    #[test]
    fn argmax_first_occurrence() {
        let x = [1.0f32, 5.0, 5.0, 7.0, 0.0, 7.0];
        let v = Strided::new(&[2, 3], &[3, 1], 0);
        let mut o = [0.0; 2];
        reduce(ReduceOp::ArgMax, &x, v, &[1], &mut o).unwrap();
        assert_eq!(o, [1.0, 0.0]);
        reduce(ReduceOp::ArgMin, &x, v, &[1], &mut o).unwrap();
        assert_eq!(o, [0.0, 1.0]);
    }

    #[test]
    fn softmax_large_inputs() {
        let x = [1000.0f32, 1000.0];
        let mut o = [0.0; 2];
        softmax_rows(&x, 2, &mut o, false).unwrap();
        assert_eq!(o, [0.5, 0.5]);
    }

    use crate::gemm::tests_rng::Rng;

    fn pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(f)
    }

    fn same(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b
    }

    #[test]
    fn fast_paths_agree_with_general_path() {
        let mut rng = Rng::new(5);
        let shapes: [&[usize]; 6] = [&[7], &[3, 5], &[4, 1, 6], &[2, 3, 40], &[1, 300], &[33, 17]];
        for isa in crate::isa::supported() {
            for shape in shapes {
                let n: usize = shape.iter().product();
                let strides = contiguous_strides(shape);
                let v = Strided::new(shape, &strides, 0);
                let mut x: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
                if n > 10 && rng.below(2) == 0 {
                    x[rng.below(n)] = f32::NAN;
                }
                let rank = shape.len();
                for mask in 1u32..(1 << rank) {
                    let axes: Vec<usize> = (0..rank).filter(|d| mask & (1 << d) != 0).collect();
                    let out_len: usize = (0..rank)
                        .map(|d| if axes.contains(&d) { 1 } else { shape[d] })
                        .product();
                    let mut ops = vec![ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min];
                    if axes.len() == 1 {
                        ops.extend([ReduceOp::ArgMax, ReduceOp::ArgMin]);
                    }
                    for op in ops {
                        let mut fast = vec![0.0f32; out_len];
                        let mut slow = vec![0.0f32; out_len];
                        crate::isa::with(isa, || reduce(op, &x, v, &axes, &mut fast))
                            .expect("isa")
                            .unwrap();
                        reduce_general(op, &x, v, &axes, &mut slow);
                        for (f, s) in fast.iter().zip(&slow) {
                            let ok = if op == ReduceOp::Sum {
                                same(*f as f64, *s as f64)
                                    || (f - s).abs() <= 1e-5 * (1.0 + s.abs())
                            } else {
                                same(*f as f64, *s as f64)
                            };
                            assert!(ok, "{isa} {op:?} {shape:?} axes {axes:?}: {f} vs {s}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pairwise_sum_is_accurate() {
        // 0.1 is inexact in f32; a left-to-right sum of 4M copies drifts by ~1e-2 relative.
        let n = 1 << 22;
        let x = vec![0.1f32; n];
        let exact = 0.1f32 as f64 * n as f64;
        let mut naive = 0.0f32;
        for &v in &x {
            naive += v;
        }
        for isa in crate::isa::supported() {
            let got = crate::isa::with(isa, || sum_slice(&x)).expect("isa") as f64;
            assert!(
                ((got - exact) / exact).abs() < 1e-6,
                "{isa}: {got} vs {exact}"
            );
        }
        assert!(
            ((naive as f64 - exact) / exact).abs() > 1e-4,
            "naive sum unexpectedly exact"
        );
    }

    #[test]
    fn reductions_are_identical_for_any_thread_count() {
        let mut rng = Rng::new(8);
        let (rows, cols) = (700, 300);
        let x: Vec<f32> = (0..rows * cols).map(|_| rng.uniform() as f32).collect();
        let shape = [rows, cols];
        let strides = [cols, 1];
        let v = Strided::new(&shape, &strides, 0);
        let run = || {
            let mut all = [0.0f32];
            reduce(ReduceOp::Sum, &x, v, &[0, 1], &mut all).unwrap();
            let mut rows_out = vec![0.0f32; rows];
            reduce(ReduceOp::Sum, &x, v, &[1], &mut rows_out).unwrap();
            let mut cols_out = vec![0.0f32; cols];
            reduce(ReduceOp::Sum, &x, v, &[0], &mut cols_out).unwrap();
            let mut arg = vec![0.0f32; rows];
            reduce(ReduceOp::ArgMax, &x, v, &[1], &mut arg).unwrap();
            let mut sm = vec![0.0f32; rows * cols];
            softmax_rows(&x, cols, &mut sm, false).unwrap();
            (all.to_vec(), rows_out, cols_out, arg, sm)
        };
        assert_eq!(pool(1, run), pool(2, run));
    }

    #[test]
    fn softmax_f32_matches_f64() {
        let mut rng = Rng::new(9);
        let cols = 37;
        let mut x: Vec<f32> = (0..cols * 20)
            .map(|_| (rng.uniform() * 30.0) as f32)
            .collect();
        x[cols] = f32::NEG_INFINITY;
        for v in &mut x[2 * cols..3 * cols] {
            *v = f32::NEG_INFINITY;
        }
        x[3 * cols + 4] = f32::NAN;
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for log in [false, true] {
            let mut want = vec![0.0f64; x.len()];
            softmax_rows(&x64, cols, &mut want, log).unwrap();
            for isa in crate::isa::supported() {
                let mut got = vec![0.0f32; x.len()];
                crate::isa::with(isa, || softmax_rows(&x, cols, &mut got, log))
                    .expect("isa")
                    .unwrap();
                for (g, w) in got.iter().zip(&want) {
                    let ok = same(*g as f64, *w) || (*g as f64 - w).abs() <= 4e-7 * (1.0 + w.abs());
                    assert!(ok, "{isa} log={log}: {g} vs {w}");
                }
            }
        }
    }
}
