//! Binary cross-entropy, forward and backward, each one pass over the data.
//!
//! Two forms, as in Keras and PyTorch:
//! - on probabilities `p`, clamped to `[eps, 1 - eps]` (Keras uses eps = 1e-7), so log(0) never
//!   appears: `-(y ln p + (1 - y) ln(1 - p))`;
//! - on logits `x`, in the stable form `max(x, 0) - x y + ln(1 + e^-|x|)`, exact for any x.
//!
//! The forward returns the *sum* of the per-element losses (accumulated in f64 in a fixed order);
//! the caller divides for a mean. The backward writes `scale * dloss/dinput` per element.
//!
//! Speed: every kernel is chunked ([`crate::par`]) and compiled for AVX2 and the portable
//! baseline. Sums accumulate each chunk in 8 f64 lanes and combine lanes and chunk partials in
//! fixed pairwise trees, so the result does not depend on the thread count. The logits forward
//! and backward on f32 use the vectorised `vmath` softplus and sigmoid (≤ 3 ulp per element,
//! see [`crate::vmath`]); the probability forward keeps f64 logarithms, because Keras's clamp
//! at 1e-7 sits below f32 resolution near 1 and must be applied in f64 to mean what it says.

use crate::element::Float;
use crate::error::{LengthMismatch, check_len};
use crate::isa::{self, Isa};
use crate::par::{CHUNK, parallel};
use crate::vmath::{self, Fused, MulAdd, Unfused};
use rayon::prelude::*;

/// Sum over fixed chunks of per-element f64 terms: chunk partials (each in 8 lanes, combined
/// pairwise) combine pairwise. `term(i0, n)` sums elements `i0..i0+n`.
fn chunked_sum(n: usize, term: impl Fn(usize, usize) -> f64 + Sync) -> f64 {
    let chunks = n.div_ceil(CHUNK);
    let part = |c: usize| term(c * CHUNK, CHUNK.min(n - c * CHUNK));
    let partials: Vec<f64> = if parallel(n) {
        (0..chunks).into_par_iter().map(part).collect()
    } else {
        (0..chunks).map(part).collect()
    };
    pairwise(&partials)
}

/// The sum of chunk partials in a fixed pairwise tree (so it does not depend on thread count).
fn pairwise(v: &[f64]) -> f64 {
    match v.len() {
        0 => 0.0,
        1 => v[0],
        n => pairwise(&v[..n / 2]) + pairwise(&v[n / 2..]),
    }
}

/// Sums `f(i)` for i in 0..n in 8 lanes, combined (0+4, 1+5, ..), (0+2, 1+3), 0+1.
#[inline(always)]
fn lanes8(n: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(i + l);
        }
    }
    for i in full..n {
        acc[i - full] += f(i);
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

/// Runs `f(i0, chunk)` over fixed chunks of `out`, in parallel for large buffers.
fn chunked_map<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    if parallel(out.len()) {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, o)| f(c * CHUNK, o));
    } else {
        f(0, out);
    }
}

/// [`chunked_sum`] that also writes `out`: `f(i0, chunk)` fills one fixed chunk of `out` and
/// returns its partial sum, so a loss and its gradient come from one pass over the inputs, with
/// the same chunks (and so the same sum, bit for bit) as the sum alone.
fn chunked_sum_map<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) -> f64 + Sync) -> f64 {
    let part = |(c, o): (usize, &mut [T])| f(c * CHUNK, o);
    let partials: Vec<f64> = if parallel(out.len()) {
        out.par_chunks_mut(CHUNK).enumerate().map(part).collect()
    } else {
        out.chunks_mut(CHUNK).enumerate().map(part).collect()
    };
    pairwise(&partials)
}

/// One element's loss on a probability, in f64: -(y ln p + (1-y) ln(1-p)), p clamped.
#[inline(always)]
fn probs_loss(p: f64, y: f64, eps: f64) -> f64 {
    let p = clamp_prob(p, eps);
    -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
}

/// One element's loss on a logit, in f64, in the stable form max(x,0) - x y + ln(1 + e^-|x|).
#[inline(always)]
fn logits_loss(x: f64, y: f64) -> f64 {
    x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()
}

#[inline(always)]
fn clamp_prob(p: f64, eps: f64) -> f64 {
    if p.is_nan() {
        p
    } else {
        p.clamp(eps, 1.0 - eps)
    }
}

/// Σ -(y ln p + (1-y) ln(1-p)) with p clamped to [eps, 1-eps]. `y` must hold as many values
/// as `p` (else [`LengthMismatch`]).
pub fn bce_probs_sum<T: Float>(p: &[T], y: &[T], eps: f64) -> Result<f64, LengthMismatch> {
    check_len("bce_probs_sum", "target", p.len(), y.len())?;
    let n = p.len();
    Ok(chunked_sum(n, |i0, m| {
        lanes8(m, |i| {
            probs_loss(p[i0 + i].to_f64(), y[i0 + i].to_f64(), eps)
        })
    }))
}

/// [`bce_probs_sum`] and [`bce_probs_grad`] in one pass: each fixed chunk of `p` and `y` is
/// read for the sum and, while still in cache, for the gradient. Returns the same sum and
/// writes the same `dp` as the two functions, bit for bit. `y` and `dp` must hold as many
/// values as `p` (else [`LengthMismatch`], nothing written).
pub fn bce_probs_sum_grad<T: Float>(
    p: &[T],
    y: &[T],
    eps: f64,
    scale: f64,
    dp: &mut [T],
) -> Result<f64, LengthMismatch> {
    check_len("bce_probs_sum_grad", "target", p.len(), y.len())?;
    check_len("bce_probs_sum_grad", "gradient", p.len(), dp.len())?;
    let isa = isa::active();
    Ok(chunked_sum_map(dp, |i0, d| {
        let m = d.len();
        let (pc, yc) = (&p[i0..i0 + m], &y[i0..i0 + m]);
        let sum = lanes8(m, |i| probs_loss(pc[i].to_f64(), yc[i].to_f64(), eps));
        probs_grad(isa, pc, yc, eps, scale, d);
        sum
    }))
}

/// `dp[i]` = scale · d/dp of the clamped BCE: (p - y) / (p (1 - p)) inside the clamp range, 0
/// outside it (the clamp has zero slope there), as Keras's gradient does. `y` and `dp` must
/// hold as many values as `p` (else [`LengthMismatch`], nothing written).
pub fn bce_probs_grad<T: Float>(
    p: &[T],
    y: &[T],
    eps: f64,
    scale: f64,
    dp: &mut [T],
) -> Result<(), LengthMismatch> {
    check_len("bce_probs_grad", "target", p.len(), y.len())?;
    check_len("bce_probs_grad", "gradient", p.len(), dp.len())?;
    let isa = isa::active();
    chunked_map(dp, |i0, d| {
        let n = d.len();
        probs_grad(isa, &p[i0..i0 + n], &y[i0..i0 + n], eps, scale, d)
    });
    Ok(())
}

fn probs_grad<T: Float>(isa: Isa, p: &[T], y: &[T], eps: f64, scale: f64, dp: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        unsafe { probs_grad_avx2(p, y, eps, scale, dp) };
        return;
    }
    let _ = isa;
    probs_grad_body(p, y, eps, scale, dp);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn probs_grad_avx2<T: Float>(p: &[T], y: &[T], eps: f64, scale: f64, dp: &mut [T]) {
    probs_grad_body(p, y, eps, scale, dp);
}

#[inline(always)]
fn probs_grad_body<T: Float>(p: &[T], y: &[T], eps: f64, scale: f64, dp: &mut [T]) {
    for ((d, &p), &y) in dp.iter_mut().zip(p).zip(y) {
        let pv = p.to_f64();
        let yv = y.to_f64();
        let g = if pv.is_nan() {
            f64::NAN
        } else if pv < eps || pv > 1.0 - eps {
            0.0
        } else {
            (pv - yv) / (pv * (1.0 - pv))
        };
        *d = T::from_f64(scale * g);
    }
}

/// Σ max(x,0) - x y + ln(1 + e^-|x|). `y` must hold as many values as `x` (else
/// [`LengthMismatch`]).
pub fn bce_logits_sum<T: Float>(x: &[T], y: &[T]) -> Result<f64, LengthMismatch> {
    check_len("bce_logits_sum", "target", x.len(), y.len())?;
    Ok(logits_sum(x, y))
}

/// The body of [`bce_logits_sum`], lengths checked.
fn logits_sum<T: Float>(x: &[T], y: &[T]) -> f64 {
    let n = x.len();
    if let (Some(xf), Some(yf)) = (T::as_f32_slice(&x[..n]), T::as_f32_slice(&y[..n])) {
        let isa = isa::active();
        return chunked_sum(n, |i0, m| {
            logits_f32(isa, &xf[i0..i0 + m], &yf[i0..i0 + m], None)
        });
    }
    chunked_sum(n, |i0, m| {
        lanes8(m, |i| logits_loss(x[i0 + i].to_f64(), y[i0 + i].to_f64()))
    })
}

/// The f32 logits loss sum of one chunk, and (with `grad`) `dx = scale * (sigmoid(x) - y)`.
fn logits_f32(isa: Isa, x: &[f32], y: &[f32], grad: Option<(f32, &mut [f32])>) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        return unsafe { logits_avx2(x, y, grad) };
    }
    let _ = isa;
    logits_body::<Unfused>(x, y, grad)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn logits_avx2(x: &[f32], y: &[f32], grad: Option<(f32, &mut [f32])>) -> f64 {
    logits_body::<Fused>(x, y, grad)
}

/// softplus(x) - x y, with softplus(x) = max(x,0) + log1p(e^-|x|) computed in f32 (vectorised,
/// into a block buffer) and the subtraction and the sum done in f64 (x y is exact there, and a
/// confident correct logit's loss is the small difference of two large numbers). Each block
/// first computes e^-|x| (a pass of its own: see `vmath::two_pass_slice` for why), then the
/// gradient from it when asked, then the softplus.
#[inline(always)]
fn logits_body<F: MulAdd>(x: &[f32], y: &[f32], mut grad: Option<(f32, &mut [f32])>) -> f64 {
    const BLOCK: usize = 256;
    let mut sp = [0.0f32; BLOCK];
    let mut acc = [0.0f64; 8];
    for (b, (xc, yc)) in x.chunks(BLOCK).zip(y.chunks(BLOCK)).enumerate() {
        let sp = &mut sp[..xc.len()];
        for (e, &xi) in sp.iter_mut().zip(xc) {
            *e = vmath::exp_neg_abs::<F>(xi);
        }
        if let Some((scale, dx)) = grad.as_mut() {
            let dc = &mut dx[b * BLOCK..][..xc.len()];
            for (((d, &e), &xi), &yi) in dc.iter_mut().zip(sp.iter()).zip(xc).zip(yc) {
                *d = *scale * (vmath::sigmoid_from_exp(xi, e) - yi);
            }
        }
        for (s, &xi) in sp.iter_mut().zip(xc) {
            *s = vmath::softplus_finish::<F>(xi, *s);
        }
        let mut it = sp
            .chunks_exact(8)
            .zip(xc.chunks_exact(8))
            .zip(yc.chunks_exact(8));
        for ((s8, x8), y8) in &mut it {
            for l in 0..8 {
                acc[l] += s8[l] as f64 - x8[l] as f64 * y8[l] as f64;
            }
        }
        let done = sp.len() / 8 * 8;
        for (l, ((&s, &xi), &yi)) in sp[done..]
            .iter()
            .zip(&xc[done..])
            .zip(&yc[done..])
            .enumerate()
        {
            acc[l] += s as f64 - xi as f64 * yi as f64;
        }
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

/// [`bce_logits_sum`] and [`bce_logits_grad`] in one pass: each block of `x` and `y` is read
/// once and, on f32, e^-|x| is computed once for both the softplus of the loss and the sigmoid
/// of the gradient. Returns the same sum and writes the same `dx` as the two functions, bit
/// for bit. `y` and `dx` must hold as many values as `x` (else [`LengthMismatch`], nothing
/// written).
pub fn bce_logits_sum_grad<T: Float>(
    x: &[T],
    y: &[T],
    scale: f64,
    dx: &mut [T],
) -> Result<f64, LengthMismatch> {
    check_len("bce_logits_sum_grad", "target", x.len(), y.len())?;
    check_len("bce_logits_sum_grad", "gradient", x.len(), dx.len())?;
    let isa = isa::active();
    Ok(chunked_sum_map(dx, |i0, d| {
        let m = d.len();
        let (xc, yc) = (&x[i0..i0 + m], &y[i0..i0 + m]);
        if let (Some(xf), Some(yf)) = (T::as_f32_slice(xc), T::as_f32_slice(yc))
            && let Some(df) = T::as_f32_slice_mut(d)
        {
            return logits_f32(isa, xf, yf, Some((scale as f32, df)));
        }
        let s = T::from_f64(scale);
        for ((d, &x), &y) in d.iter_mut().zip(xc).zip(yc) {
            *d = s * (crate::unary::sigmoid(x) - y);
        }
        lanes8(m, |i| logits_loss(xc[i].to_f64(), yc[i].to_f64()))
    }))
}

/// `dx[i] = scale * (sigmoid(x) - y)`. `y` and `dx` must hold as many values as `x` (else
/// [`LengthMismatch`], nothing written).
pub fn bce_logits_grad<T: Float>(
    x: &[T],
    y: &[T],
    scale: f64,
    dx: &mut [T],
) -> Result<(), LengthMismatch> {
    check_len("bce_logits_grad", "target", x.len(), y.len())?;
    check_len("bce_logits_grad", "gradient", x.len(), dx.len())?;
    let isa = isa::active();
    chunked_map(dx, |i0, d| {
        let n = d.len();
        let (xc, yc) = (&x[i0..i0 + n], &y[i0..i0 + n]);
        if let (Some(xf), Some(yf)) = (T::as_f32_slice(xc), T::as_f32_slice(yc))
            && let Some(df) = T::as_f32_slice_mut(d)
        {
            logits_grad_f32(isa, xf, yf, scale as f32, df);
            return;
        }
        let s = T::from_f64(scale);
        for ((d, &x), &y) in d.iter_mut().zip(xc).zip(yc) {
            *d = s * (crate::unary::sigmoid(x) - y);
        }
    });
    Ok(())
}

fn logits_grad_f32(isa: Isa, x: &[f32], y: &[f32], scale: f32, dx: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        unsafe { logits_grad_avx2(x, y, scale, dx) };
        return;
    }
    let _ = isa;
    logits_grad_body::<Unfused>(x, y, scale, dx);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn logits_grad_avx2(x: &[f32], y: &[f32], scale: f32, dx: &mut [f32]) {
    logits_grad_body::<Fused>(x, y, scale, dx);
}

#[inline(always)]
fn logits_grad_body<F: MulAdd>(x: &[f32], y: &[f32], scale: f32, dx: &mut [f32]) {
    for ((d, &x), &y) in dx.iter_mut().zip(x).zip(y) {
        *d = scale * (vmath::sigmoid::<F>(x) - y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_form_matches_probability_form() {
        let x = [-3.0f64, -0.5, 0.0, 0.7, 4.0];
        let y = [0.0, 1.0, 1.0, 0.0, 1.0];
        let p: Vec<f64> = x.iter().map(|&v| crate::unary::sigmoid(v)).collect();
        let a = bce_logits_sum(&x, &y).unwrap();
        let b = bce_probs_sum(&p, &y, 1e-12).unwrap();
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    #[test]
    fn fused_sum_and_grad_equal_the_separate_kernels() {
        // Several chunks (threaded), a length that is not a multiple of the blocks, NaN and
        // extreme logits, probabilities outside the clamp; f32 and f64; 1 and 2 threads.
        let n = crate::par::PAR_MIN * 2 + 77;
        let xs: Vec<f64> = (0..n)
            .map(|i| match i % 997 {
                0 => f64::NAN,
                1 => 1000.0,
                2 => -1000.0,
                _ => ((i * 37) % 2001) as f64 * 0.01 - 10.0,
            })
            .collect();
        let ys: Vec<f64> = (0..n).map(|i| ((i * 11) % 3) as f64 * 0.5).collect();
        let ps: Vec<f64> = xs.iter().map(|&v| crate::unary::sigmoid(v)).collect();
        fn same<T: Float>(a: &[T], b: &[T]) -> bool {
            a.iter().zip(b).all(|(u, v)| {
                u.to_f64().to_bits() == v.to_f64().to_bits()
                    || (u.to_f64().is_nan() && v.to_f64().is_nan())
            })
        }
        fn check<T: Float>(x: &[T], p: &[T], y: &[T]) {
            let scale = 1.0 / 3.0;
            let mut d1 = vec![T::ZERO; x.len()];
            let mut d2 = vec![T::ZERO; x.len()];
            let s1 = bce_logits_sum(x, y).unwrap();
            bce_logits_grad(x, y, scale, &mut d1).unwrap();
            let s2 = bce_logits_sum_grad(x, y, scale, &mut d2).unwrap();
            assert!(
                s1.to_bits() == s2.to_bits() || (s1.is_nan() && s2.is_nan()),
                "{s1} {s2}"
            );
            assert!(same(&d1, &d2), "logits gradients differ");
            let s1 = bce_probs_sum(p, y, 1e-7).unwrap();
            bce_probs_grad(p, y, 1e-7, scale, &mut d1).unwrap();
            let s2 = bce_probs_sum_grad(p, y, 1e-7, scale, &mut d2).unwrap();
            assert!(
                s1.to_bits() == s2.to_bits() || (s1.is_nan() && s2.is_nan()),
                "{s1} {s2}"
            );
            assert!(same(&d1, &d2), "probability gradients differ");
        }
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                for isa in crate::isa::supported() {
                    crate::isa::with(isa, || {
                        check(&xs, &ps, &ys);
                        let f = |v: &[f64]| v.iter().map(|&u| u as f32).collect::<Vec<f32>>();
                        check(&f(&xs), &f(&ps), &f(&ys));
                        // Without NaN too, so the sums compared are finite numbers.
                        let clean: Vec<f32> = f(&xs)
                            .into_iter()
                            .map(|v| if v.is_nan() { 0.5 } else { v })
                            .collect();
                        let cp: Vec<f32> =
                            clean.iter().map(|&v| crate::unary::sigmoid(v)).collect();
                        check(&clean, &cp, &f(&ys));
                    })
                    .expect("supported isa");
                }
            });
        }
    }

    #[test]
    fn extreme_logits_are_finite() {
        let s = bce_logits_sum(&[1000.0f32, -1000.0], &[1.0, 0.0]).unwrap();
        assert_eq!(s, 0.0);
        let s = bce_logits_sum(&[1000.0f32], &[0.0]).unwrap();
        assert_eq!(s, 1000.0);
    }

    fn reference_logits(x: &[f32], y: &[f32]) -> f64 {
        x.iter()
            .zip(y)
            .map(|(&x, &y)| {
                let x = x as f64;
                x.max(0.0) - x * y as f64 + (-x.abs()).exp().ln_1p()
            })
            .sum()
    }

    #[test]
    fn f32_paths_match_f64_and_threads_agree() {
        let n = crate::par::PAR_MIN * 2 + 3;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37) % 2001) as f32 * 0.01 - 10.0)
            .collect();
        let y: Vec<f32> = (0..n).map(|i| ((i * 11) % 3) as f32 * 0.5).collect();
        let p: Vec<f32> = x.iter().map(|&v| crate::unary::sigmoid(v)).collect();
        let want = reference_logits(&x, &y);
        for isa in crate::isa::supported() {
            let go = |threads: usize| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool")
                    .install(|| {
                        crate::isa::with(isa, || {
                            let s = bce_logits_sum(&x, &y).unwrap();
                            let mut g = vec![0.0f32; n];
                            bce_logits_grad(&x, &y, 0.5, &mut g).unwrap();
                            let sp = bce_probs_sum(&p, &y, 1e-7).unwrap();
                            let mut gp = vec![0.0f32; n];
                            bce_probs_grad(&p, &y, 1e-7, 0.5, &mut gp).unwrap();
                            (s, g, sp, gp)
                        })
                        .expect("isa")
                    })
            };
            let one = go(1);
            assert_eq!(one, go(2), "{isa}: thread counts disagree");
            let (s, g, _, gp) = one;
            assert!(
                (s - want).abs() <= 1e-6 * want.abs(),
                "{isa}: {s} vs {want}"
            );
            for i in (0..n).step_by(97) {
                let sg = 1.0 / (1.0 + (-(x[i] as f64)).exp());
                let wg = 0.5 * (sg - y[i] as f64);
                assert!(
                    (g[i] as f64 - wg).abs() <= 1e-6,
                    "{isa}: grad {} vs {wg}",
                    g[i]
                );
                let pv = p[i] as f64;
                let wp = if !(1e-7..=1.0 - 1e-7).contains(&pv) {
                    0.0
                } else {
                    0.5 * (pv - y[i] as f64) / (pv * (1.0 - pv))
                };
                assert!(
                    (gp[i] as f64 - wp).abs() <= 1e-5 * (1.0 + wp.abs()),
                    "{isa}: {} vs {wp}",
                    gp[i]
                );
            }
        }
    }

    #[test]
    fn mismatched_lengths_are_errors_and_write_nothing() {
        // A target or gradient buffer of another length than the input would have been summed
        // over the shorter prefix, or half written; every BCE kernel refuses it instead.
        let x = [0.5f32, -1.0, 2.0];
        let (y, short) = ([1.0f32, 0.0, 1.0], [1.0f32, 0.0]);
        let mut d = [7.0f32; 3];
        let mut d2 = [7.0f32; 2];
        assert_eq!(bce_logits_sum(&x, &short).unwrap_err().operand, "target");
        assert_eq!(
            bce_probs_sum(&x, &short, 1e-7).unwrap_err().operand,
            "target"
        );
        let e = bce_logits_grad(&x, &y, 1.0, &mut d2).unwrap_err();
        assert_eq!(
            (e.op, e.operand, e.expected, e.got),
            ("bce_logits_grad", "gradient", 3, 2)
        );
        assert_eq!(
            bce_probs_grad(&x, &short, 1e-7, 1.0, &mut d)
                .unwrap_err()
                .operand,
            "target"
        );
        assert_eq!(
            bce_logits_sum_grad(&x, &y, 1.0, &mut d2)
                .unwrap_err()
                .operand,
            "gradient"
        );
        let e = bce_probs_sum_grad(&x, &short, 1e-7, 1.0, &mut d).unwrap_err();
        assert!(
            e.to_string()
                .contains("bce_probs_sum_grad: the target holds 2 values, expected 3")
        );
        assert_eq!(
            (d, d2),
            ([7.0; 3], [7.0; 2]),
            "a refused kernel wrote its output"
        );
        // Equal lengths (including empty) are fine.
        assert_eq!(bce_logits_sum::<f32>(&[], &[]).unwrap(), 0.0);
        bce_logits_sum_grad(&x, &y, 1.0, &mut d).unwrap();
    }
}
