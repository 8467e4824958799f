//! Batch normalisation over `[N, C, L]` (L = H·W, or 1 for `[N, C]`): per-channel statistics,
//! the normalisation with its affine transform, and the closed-form backward.
//!
//! Forward, per channel c over its M = N·L elements: `mean = Σx / M`, the biased
//! `var = Σ(x − mean)² / M` (two passes, for accuracy), and
//! `y = (x − mean) / sqrt(var + eps) · γ + β`. The caller derives PyTorch's unbiased running
//! variance as `var · M / (M − 1)`.
//!
//! Backward (training mode, the statistics depending on x), with `x̂ = (x − mean)·invstd`:
//! `dβ = Σ dy`, `dγ = Σ dy·x̂`, `dx = γ·invstd / M · (M·dy − dβ − x̂·dγ)`.
//!
//! Sums are taken in f64 in eight lanes over each of the N segments of a channel, in one fixed
//! order; channels are independent, so the statistics run one channel per task and the
//! elementwise passes one (n, c) plane per task, and no result depends on the thread count.

use super::{check_planes, for_planes, geometry};
use crate::element::Float;
use crate::error::{OperandError, check_len};
use rayon::prelude::*;

/// Σ f(v) over `s` in eight f64 lanes, combined pairwise at the end.
#[inline]
fn sum8<T: Float>(s: &[T], f: impl Fn(f64) -> f64) -> [f64; 8] {
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
    acc
}

fn combine(mut acc: [f64; 8]) -> f64 {
    let mut w = 4;
    while w > 0 {
        for l in 0..w {
            acc[l] += acc[l + w];
        }
        w /= 2;
    }
    acc[0]
}

/// Runs `f(c)` for every channel, in parallel when the op is large; results in channel order.
fn per_channel<R: Send>(c: usize, total: usize, f: impl Fn(usize) -> R + Sync + Send) -> Vec<R> {
    if c > 1 && total >= crate::par::PAR_MIN && rayon::current_num_threads() > 1 {
        (0..c).into_par_iter().map(f).collect()
    } else {
        (0..c).map(f).collect()
    }
}

fn check(
    op: &'static str,
    (n, c, l): (usize, usize, usize),
    x_len: usize,
    affine: Option<&[impl Sized]>,
) -> Result<usize, OperandError> {
    check_planes(op, "input", n.saturating_mul(c), l, x_len)?;
    if n.checked_mul(c).is_none() {
        return Err(geometry(op, format!("{n} × {c} planes overflow")));
    }
    let m = n * l;
    if m <= 1 {
        return Err(geometry(
            op,
            format!(
                "batch statistics need more than one value per channel (input [{n}, {c}, {l}] \
                 has {m})"
            ),
        ));
    }
    if let Some(a) = affine {
        check_len(op, "weight", c, a.len())?;
    }
    Ok(m)
}

/// Normalises `x` (`[n, c, l]`) with its own per-channel statistics into `y`, scaled by
/// `gamma` and shifted by `beta` (each `[c]`; absent means 1 and 0), and writes the batch
/// `mean` and biased `var` (each `[c]`). Needs more than one value per channel (`n·l ≥ 2`), as
/// PyTorch in training mode.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward<T: Float>(
    x: &[T],
    (n, c, l): (usize, usize, usize),
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    eps: f64,
    y: &mut [T],
    mean: &mut [T],
    var: &mut [T],
) -> Result<(), OperandError> {
    const OP: &str = "batch_norm";
    let m = check(OP, (n, c, l), x.len(), gamma)?;
    if let Some(b) = beta {
        check_len(OP, "bias", c, b.len())?;
    }
    check_len(OP, "output", x.len(), y.len())?;
    check_len(OP, "mean", c, mean.len())?;
    check_len(OP, "var", c, var.len())?;
    let stats = per_channel(c, x.len(), |ch| {
        let seg = |i: usize| &x[(i * c + ch) * l..][..l];
        let s = (0..n).fold(0.0, |s, i| s + combine(sum8(seg(i), |v| v)));
        let mu = s / m as f64;
        let q = (0..n).fold(0.0, |q, i| {
            q + combine(sum8(seg(i), |v| (v - mu) * (v - mu)))
        });
        (mu, q / m as f64)
    });
    for (ch, &(mu, v)) in stats.iter().enumerate() {
        mean[ch] = T::from_f64(mu);
        var[ch] = T::from_f64(v);
    }
    for_planes(y, l, l, |p, yp| {
        let ch = p % c;
        let (mu, v) = stats[ch];
        let scale = gamma.map_or(1.0, |g| g[ch].to_f64()) / (v + eps).sqrt();
        let shift = beta.map_or(0.0, |b| b[ch].to_f64());
        for (o, &xv) in yp.iter_mut().zip(&x[p * l..(p + 1) * l]) {
            *o = T::from_f64((xv.to_f64() - mu) * scale + shift);
        }
    });
    Ok(())
}

/// The training-mode backward of [`batch_norm_forward`], given its input `x`, the batch `mean`
/// and biased `var` it wrote, and the output gradient `g`: `dgamma` and `dbeta` (each `[c]`)
/// always, `dx` (`[n, c, l]`) when given.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward<T: Float>(
    x: &[T],
    g: &[T],
    (n, c, l): (usize, usize, usize),
    mean: &[T],
    var: &[T],
    gamma: Option<&[T]>,
    eps: f64,
    dx: Option<&mut [T]>,
    dgamma: &mut [T],
    dbeta: &mut [T],
) -> Result<(), OperandError> {
    const OP: &str = "batch_norm_backward";
    let m = check(OP, (n, c, l), x.len(), gamma)?;
    check_len(OP, "gradient", x.len(), g.len())?;
    check_len(OP, "mean", c, mean.len())?;
    check_len(OP, "var", c, var.len())?;
    check_len(OP, "weight gradient", c, dgamma.len())?;
    check_len(OP, "bias gradient", c, dbeta.len())?;
    let sums = per_channel(c, x.len(), |ch| {
        let (mu, inv) = (mean[ch].to_f64(), 1.0 / (var[ch].to_f64() + eps).sqrt());
        let (mut sg, mut sgx) = (0.0, 0.0);
        for i in 0..n {
            let at = (i * c + ch) * l;
            let (xs, gs) = (&x[at..at + l], &g[at..at + l]);
            sg += combine(sum8(gs, |v| v));
            let mut acc = [0.0f64; 8];
            for (k, (&xv, &gv)) in xs.iter().zip(gs).enumerate() {
                acc[k % 8] += gv.to_f64() * (xv.to_f64() - mu) * inv;
            }
            sgx += combine(acc);
        }
        (sg, sgx, mu, inv)
    });
    for (ch, &(sg, sgx, _, _)) in sums.iter().enumerate() {
        dbeta[ch] = T::from_f64(sg);
        dgamma[ch] = T::from_f64(sgx);
    }
    if let Some(dx) = dx {
        check_len(OP, "input gradient", x.len(), dx.len())?;
        let mf = m as f64;
        for_planes(dx, l, l, |p, d| {
            let ch = p % c;
            let (sg, sgx, mu, inv) = sums[ch];
            let k = gamma.map_or(1.0, |gm| gm[ch].to_f64()) * inv / mf;
            let (xs, gs) = (&x[p * l..(p + 1) * l], &g[p * l..(p + 1) * l]);
            for ((o, &xv), &gv) in d.iter_mut().zip(xs).zip(gs) {
                let xhat = (xv.to_f64() - mu) * inv;
                *o = T::from_f64(k * (mf * gv.to_f64() - sg - xhat * sgx));
            }
        });
    }
    Ok(())
}
