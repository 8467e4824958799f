//! Layer normalisation over the last axis (Ba et al. 2016; PyTorch's `F.layer_norm` with
//! `normalized_shape = [d]`): every row of `d` values is normalised by its own mean and biased
//! variance, then scaled by γ and shifted by β (each `[d]`, shared by all rows).
//!
//! Forward, per row: `mean = Σx / d`, `var = Σ(x − mean)² / d` — two passes over a row that is
//! in L1 by then, which is as stable as Welford's update and cheaper — `rstd = 1/√(var + eps)`,
//! `y = (x − mean)·rstd·γ + β`. Sums are taken in f64 (eight lanes, combined pairwise), so f32
//! rows of any length keep full accuracy. The forward writes `mean` and `rstd` per row for the
//! backward.
//!
//! Backward, per row, with `x̂ = (x − mean)·rstd` and `ĝ = g·γ`:
//! `dx = rstd · (ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))`; over all rows `dγ = Σ g·x̂`, `dβ = Σ g`.
//!
//! Parallelism and determinism: rows are cut into blocks of [`ROW_BLOCK`] rows, a constant.
//! Each block is one task: it writes its rows of y (or dx), and in the backward also its own
//! partial dγ and dβ (f64). The partials are then added in block order. Block boundaries never
//! depend on the thread count, so neither does any bit of the result.

use crate::element::Float;
use crate::error::{OperandError, check_len};
use rayon::prelude::*;

/// Rows per task (and per partial dγ/dβ in the backward).
pub const ROW_BLOCK: usize = 32;

fn check(
    op: &'static str,
    rows: usize,
    d: usize,
    x_len: usize,
    gamma: Option<&[impl Sized]>,
    beta: Option<&[impl Sized]>,
) -> Result<(), OperandError> {
    let n = rows.checked_mul(d).ok_or_else(|| OperandError::Geometry {
        op,
        problem: format!("{rows} rows of {d} overflow"),
    })?;
    check_len(op, "input", n, x_len)?;
    if d == 0 && rows > 0 {
        return Err(OperandError::Geometry {
            op,
            problem: "rows of width 0 have no statistics".into(),
        });
    }
    if let Some(g) = gamma {
        check_len(op, "weight", d, g.len())?;
    }
    if let Some(b) = beta {
        check_len(op, "bias", d, b.len())?;
    }
    Ok(())
}

/// Σ f(v) over `s` in eight f64 lanes, combined pairwise (a fixed order).
#[inline]
fn sum8<T: Float>(s: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut it = s.chunks_exact(8);
    for c in &mut it {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v.to_f64());
        }
    }
    for (a, &v) in acc.iter_mut().zip(it.remainder()) {
        *a += f(v.to_f64());
    }
    let mut w = 4;
    while w > 0 {
        for l in 0..w {
            acc[l] += acc[l + w];
        }
        w /= 2;
    }
    acc[0]
}

/// True when `rows` rows of `d` are worth splitting across threads.
fn parallel(rows: usize, d: usize) -> bool {
    rows > ROW_BLOCK && rows * d >= crate::par::PAR_MIN / 4 && rayon::current_num_threads() > 1
}

/// Normalises each of the `rows` rows of `x` (`[rows, d]`, dense) into `y`, scaled by `gamma`
/// and shifted by `beta` (absent: 1 and 0), and writes each row's `mean` and `rstd`
/// (`1/√(var + eps)`, var biased).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward<T: Float>(
    x: &[T],
    (rows, d): (usize, usize),
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    eps: f64,
    y: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
) -> Result<(), OperandError> {
    const OP: &str = "layer_norm";
    check(OP, rows, d, x.len(), gamma, beta)?;
    check_len(OP, "output", x.len(), y.len())?;
    check_len(OP, "mean", rows, mean.len())?;
    check_len(OP, "rstd", rows, rstd.len())?;
    if rows == 0 {
        return Ok(());
    }
    type Rows<'a, T> = (usize, ((&'a mut [T], &'a mut [T]), &'a mut [T]));
    let block = |(bi, ((yb, mb), rb)): Rows<'_, T>| {
        for (r, ((yr, m), s)) in yb
            .chunks_mut(d)
            .zip(mb.iter_mut())
            .zip(rb.iter_mut())
            .enumerate()
        {
            let row = bi * ROW_BLOCK + r;
            let xr = &x[row * d..(row + 1) * d];
            let mu = sum8(xr, |v| v) / d as f64;
            let var = sum8(xr, |v| (v - mu) * (v - mu)) / d as f64;
            let inv = 1.0 / (var + eps).sqrt();
            *m = T::from_f64(mu);
            *s = T::from_f64(inv);
            // The affine part in T: (x − mean)·rstd·γ + β, one rounding order for every row.
            let (mu_t, inv_t) = (T::from_f64(mu), T::from_f64(inv));
            for (j, (o, &v)) in yr.iter_mut().zip(xr).enumerate() {
                let mut h = (v - mu_t) * inv_t;
                if let Some(g) = gamma {
                    h *= g[j];
                }
                if let Some(b) = beta {
                    h += b[j];
                }
                *o = h;
            }
        }
    };
    if parallel(rows, d) {
        y.par_chunks_mut(ROW_BLOCK * d)
            .zip(mean.par_chunks_mut(ROW_BLOCK))
            .zip(rstd.par_chunks_mut(ROW_BLOCK))
            .enumerate()
            .for_each(block);
    } else {
        y.chunks_mut(ROW_BLOCK * d)
            .zip(mean.chunks_mut(ROW_BLOCK))
            .zip(rstd.chunks_mut(ROW_BLOCK))
            .enumerate()
            .for_each(block);
    }
    Ok(())
}

/// The backward of [`layer_norm_forward`] from its input `x`, the `mean` and `rstd` it wrote
/// and the output gradient `g`: `dgamma` and `dbeta` (each `[d]`) always, `dx` when given.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward<T: Float>(
    x: &[T],
    g: &[T],
    (rows, d): (usize, usize),
    mean: &[T],
    rstd: &[T],
    gamma: Option<&[T]>,
    dx: Option<&mut [T]>,
    dgamma: &mut [T],
    dbeta: &mut [T],
) -> Result<(), OperandError> {
    const OP: &str = "layer_norm_backward";
    check(OP, rows, d, x.len(), gamma, None::<&[T]>)?;
    check_len(OP, "gradient", x.len(), g.len())?;
    check_len(OP, "mean", rows, mean.len())?;
    check_len(OP, "rstd", rows, rstd.len())?;
    check_len(OP, "dweight", d, dgamma.len())?;
    check_len(OP, "dbias", d, dbeta.len())?;
    if let Some(dx) = &dx {
        check_len(OP, "dx", x.len(), dx.len())?;
    }
    let blocks = rows.div_ceil(ROW_BLOCK);
    // One task per row block: its rows of dx and its partial (dγ, dβ) in f64.
    let block = |bi: usize, dxb: Option<&mut [T]>| -> Vec<f64> {
        let mut part = vec![0.0f64; 2 * d];
        let (pg, pb) = part.split_at_mut(d);
        let r0 = bi * ROW_BLOCK;
        let r1 = (r0 + ROW_BLOCK).min(rows);
        let mut dxb = dxb;
        let mut xhat = vec![0.0f64; d];
        for row in r0..r1 {
            let xr = &x[row * d..(row + 1) * d];
            let gr = &g[row * d..(row + 1) * d];
            let (mu, inv) = (mean[row].to_f64(), rstd[row].to_f64());
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for j in 0..d {
                let xh = (xr[j].to_f64() - mu) * inv;
                xhat[j] = xh;
                let gv = gr[j].to_f64();
                pg[j] += gv * xh;
                pb[j] += gv;
                let gh = gv * gamma.map_or(1.0, |w| w[j].to_f64());
                s1 += gh;
                s2 += gh * xh;
            }
            if let Some(dxb) = dxb.as_deref_mut() {
                let (m1, m2) = (s1 / d as f64, s2 / d as f64);
                let out = &mut dxb[(row - r0) * d..(row - r0 + 1) * d];
                for j in 0..d {
                    let gh = gr[j].to_f64() * gamma.map_or(1.0, |w| w[j].to_f64());
                    out[j] = T::from_f64(inv * (gh - m1 - xhat[j] * m2));
                }
            }
        }
        part
    };
    if rows == 0 {
        dgamma.fill(T::ZERO);
        dbeta.fill(T::ZERO);
        return Ok(());
    }
    let parts: Vec<Vec<f64>> = match (dx, parallel(rows, d)) {
        (Some(dx), true) => dx
            .par_chunks_mut(ROW_BLOCK * d)
            .enumerate()
            .map(|(bi, c)| block(bi, Some(c)))
            .collect(),
        (Some(dx), false) => dx
            .chunks_mut(ROW_BLOCK * d)
            .enumerate()
            .map(|(bi, c)| block(bi, Some(c)))
            .collect(),
        (None, true) => (0..blocks)
            .into_par_iter()
            .map(|bi| block(bi, None))
            .collect(),
        (None, false) => (0..blocks).map(|bi| block(bi, None)).collect(),
    };
    // The partials in block order: the same additions whatever ran them.
    for j in 0..d {
        let (mut sg, mut sb) = (0.0f64, 0.0f64);
        for p in &parts {
            sg += p[j];
            sb += p[d + j];
        }
        dgamma[j] = T::from_f64(sg);
        dbeta[j] = T::from_f64(sb);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 reference of the forward for one row.
    fn reference(x: &[f64], gm: &[f64], bt: &[f64], eps: f64) -> Vec<f64> {
        let d = x.len() as f64;
        let mu = x.iter().sum::<f64>() / d;
        let var = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d;
        x.iter()
            .enumerate()
            .map(|(j, v)| (v - mu) / (var + eps).sqrt() * gm[j] + bt[j])
            .collect()
    }

    #[test]
    fn forward_matches_reference_and_threads_agree() {
        let (rows, d) = (77, 13);
        let x: Vec<f32> = (0..rows * d)
            .map(|i| ((i * 37 % 101) as f32 * 0.13).sin() * 3.0 + 100.0)
            .collect();
        let gm: Vec<f32> = (0..d).map(|j| 0.5 + j as f32 * 0.1).collect();
        let bt: Vec<f32> = (0..d).map(|j| j as f32 * -0.2).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let (mut y, mut m, mut s) =
                    (vec![0f32; rows * d], vec![0f32; rows], vec![0f32; rows]);
                layer_norm_forward(
                    &x,
                    (rows, d),
                    Some(&gm),
                    Some(&bt),
                    1e-5,
                    &mut y,
                    &mut m,
                    &mut s,
                )
                .unwrap();
                let g: Vec<f32> = (0..rows * d)
                    .map(|i| ((i % 7) as f32 - 3.0) * 0.1)
                    .collect();
                let (mut dx, mut dg, mut db) = (vec![0f32; rows * d], vec![0f32; d], vec![0f32; d]);
                layer_norm_backward(
                    &x,
                    &g,
                    (rows, d),
                    &m,
                    &s,
                    Some(&gm),
                    Some(&mut dx),
                    &mut dg,
                    &mut db,
                )
                .unwrap();
                (y, dx, dg, db)
            })
        };
        let a = run(1);
        let b = run(3);
        assert_eq!(a, b);
        let g64: Vec<f64> = gm.iter().map(|&v| v as f64).collect();
        let b64: Vec<f64> = bt.iter().map(|&v| v as f64).collect();
        for r in 0..rows {
            let xr: Vec<f64> = x[r * d..(r + 1) * d].iter().map(|&v| v as f64).collect();
            let want = reference(&xr, &g64, &b64, 1e-5);
            for (j, w) in want.iter().enumerate() {
                assert!((a.0[r * d + j] as f64 - w).abs() < 1e-4, "row {r} col {j}");
            }
        }
    }

    #[test]
    fn bad_lengths_are_errors() {
        let x = [0f32; 6];
        let (mut y, mut m, mut s) = ([0f32; 6], [0f32; 2], [0f32; 2]);
        assert!(layer_norm_forward(&x, (2, 4), None, None, 1e-5, &mut y, &mut m, &mut s).is_err());
        assert!(
            layer_norm_forward(
                &x,
                (2, 3),
                Some(&[1.0; 2]),
                None,
                1e-5,
                &mut y,
                &mut m,
                &mut s
            )
            .is_err()
        );
    }
}
