//! Fused optimizer updates: each function updates one parameter buffer and its state buffers in
//! a single pass, with no temporaries and no locks.
//!
//! The update rules follow Keras 3 (ember grew from a Keras program), including where they
//! differ from PyTorch: Adam adds epsilon to sqrt(v) *after* folding the bias corrections into the
//! step size; AdaGrad and RMSProp put epsilon inside the square root; weight decay is decoupled
//! (`p -= lr * wd * p`, applied before the gradient step) for every optimizer, as Keras does.
//!
//! Speed: each update is an elementwise loop over independent elements, written with the same
//! operations in the same order as the formulas above (Rust never fuses a multiply and an add
//! on its own, so the AVX2 build computes bit-for-bit what the scalar formula does). The loop is
//! compiled for AVX2 and for the portable baseline, chosen at run time, and large parameters are
//! split into the fixed chunks of [`crate::par`] across rayon threads.

use crate::element::Float;
use crate::error::{LengthMismatch, check_len};
use crate::isa;
use crate::par::{CHUNK, parallel};
use rayon::prelude::*;

/// `v` cut into [`CHUNK`]-sized pieces, or `chunks` empty slices when `v` is empty (an unused
/// state buffer), so optional buffers zip with the others.
fn pieces<T>(v: &mut [T], chunks: usize) -> Vec<&mut [T]> {
    if v.is_empty() {
        (0..chunks).map(|_| <&mut [T]>::default()).collect()
    } else {
        v.chunks_mut(CHUNK).collect()
    }
}

/// Runs `f(p, g, s1, s2, s3)` over matching chunks of a parameter, its gradient and up to three
/// state buffers (empty ones stay empty), in parallel for large parameters, on the AVX2 or
/// portable build of `f` as `isa` says.
fn for_chunks<T: Float>(
    p: &mut [T],
    g: &[T],
    s1: &mut [T],
    s2: &mut [T],
    s3: &mut [T],
    f: impl Fn(&mut [T], &[T], &mut [T], &mut [T], &mut [T]) + Sync,
) {
    let n = p.len();
    let chunks = n.div_ceil(CHUNK).max(1);
    if !parallel(n) {
        f(p, &g[..n], s1, s2, s3);
        return;
    }
    let gs: Vec<&[T]> = g[..n].chunks(CHUNK).collect();
    pieces(p, chunks)
        .into_par_iter()
        .zip(gs)
        .zip(pieces(s1, chunks))
        .zip(pieces(s2, chunks))
        .zip(pieces(s3, chunks))
        .for_each(|((((p, g), a), b), c)| f(p, g, a, b, c));
}

/// Calls `body` compiled with AVX2 when `isa` allows, else the portable build.
macro_rules! dispatch {
    ($isa:expr, $avx2:ident, $body:ident, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        if $isa.has_avx2() {
            // SAFETY: AVX2 and FMA are present (checked just above).
            unsafe { $avx2($($arg),*) };
            return;
        }
        let _ = $isa;
        $body($($arg),*)
    }};
}

pub use ember_ops::SgdConfig;

/// SGD: `v = momentum v - lr g; p += v` (or `p += momentum v - lr g` with Nesterov).
/// `velocity` is ignored (and may be empty) when momentum is 0.
/// Every slice must hold as many values as `p` (else [`LengthMismatch`], nothing updated).
pub fn sgd_step<T: Float>(
    cfg: &SgdConfig,
    p: &mut [T],
    g: &[T],
    velocity: &mut [T],
) -> Result<(), LengthMismatch> {
    check_len("sgd_step", "gradient", p.len(), g.len())?;
    if cfg.momentum != 0.0 {
        check_len("sgd_step", "velocity", p.len(), velocity.len())?;
    }
    let isa = isa::active();
    let cfg = *cfg;
    let vel: &mut [T] = if cfg.momentum == 0.0 {
        &mut []
    } else {
        velocity
    };
    for_chunks(p, g, vel, &mut [], &mut [], |p, g, v, _, _| {
        dispatch!(isa, sgd_avx2, sgd_body, (&cfg, p, g, v))
    });
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn sgd_avx2<T: Float>(cfg: &SgdConfig, p: &mut [T], g: &[T], velocity: &mut [T]) {
    sgd_body(cfg, p, g, velocity)
}

#[inline(always)]
fn sgd_body<T: Float>(cfg: &SgdConfig, p: &mut [T], g: &[T], velocity: &mut [T]) {
    let lr = T::from_f64(cfg.lr);
    let mom = T::from_f64(cfg.momentum);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    let use_wd = cfg.weight_decay != 0.0;
    if cfg.momentum == 0.0 {
        for (p, &g) in p.iter_mut().zip(g) {
            if use_wd {
                *p -= decay * *p;
            }
            *p -= lr * g;
        }
        return;
    }
    for ((p, &g), v) in p.iter_mut().zip(g).zip(velocity.iter_mut()) {
        if use_wd {
            *p -= decay * *p;
        }
        *v = mom * *v - lr * g;
        if cfg.nesterov {
            *p += mom * *v - lr * g;
        } else {
            *p += *v;
        }
    }
}

pub use ember_ops::AdamConfig;

/// Adam (Keras form): `m += (1-b1)(g-m); v += (1-b2)(g²-v);
/// p -= lr·sqrt(1-b2^t)/(1-b1^t) · m / (sqrt v + eps)`.
///
/// Every slice must hold as many values as `p` (else [`LengthMismatch`], nothing updated).
pub fn adam_step<T: Float>(
    cfg: &AdamConfig,
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
) -> Result<(), LengthMismatch> {
    check_len("adam_step", "gradient", p.len(), g.len())?;
    check_len("adam_step", "first moment", p.len(), m.len())?;
    check_len("adam_step", "second moment", p.len(), v.len())?;
    let isa = isa::active();
    let cfg = *cfg;
    for_chunks(p, g, m, v, &mut [], |p, g, m, v, _| {
        dispatch!(isa, adam_avx2, adam_body, (&cfg, p, g, m, v))
    });
    Ok(())
}

/// Adam's bias-corrected step size lr·√(1−β₂ᵗ)/(1−β₁ᵗ).
///
/// `powi` by squaring is a chain of about 2·log₂(t) dependent multiplies (≈ 150 cycles at
/// t ≈ 10⁵), and every parameter tensor of a step asks for the same value, so the last result
/// is kept per thread and reused while (lr, β₁, β₂, t) stay the same. The value is identical
/// either way.
fn adam_lr_t(cfg: &AdamConfig) -> f64 {
    use std::cell::Cell;
    thread_local! {
        static LAST: Cell<Option<([u64; 3], u64, f64)>> = const { Cell::new(None) };
    }
    let key = [cfg.lr.to_bits(), cfg.beta1.to_bits(), cfg.beta2.to_bits()];
    let t = cfg.step.max(1);
    if let Some((k, kt, v)) = LAST.get()
        && k == key
        && kt == t
    {
        return v;
    }
    let ti = t.min(i32::MAX as u64) as i32;
    let v = cfg.lr * (1.0 - cfg.beta2.powi(ti)).sqrt() / (1.0 - cfg.beta1.powi(ti));
    LAST.set(Some((key, t, v)));
    v
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn adam_avx2<T: Float>(cfg: &AdamConfig, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    adam_body(cfg, p, g, m, v)
}

#[inline(always)]
fn adam_body<T: Float>(cfg: &AdamConfig, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    let lr_t = T::from_f64(adam_lr_t(cfg));
    let one_b1 = T::from_f64(1.0 - cfg.beta1);
    let one_b2 = T::from_f64(1.0 - cfg.beta2);
    let eps = T::from_f64(cfg.eps);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    let use_wd = cfg.weight_decay != 0.0;
    for (((p, &gi), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        if use_wd {
            *p -= decay * *p;
        }
        *m += one_b1 * (gi - *m);
        *v += one_b2 * (gi * gi - *v);
        *p -= lr_t * *m / (v.sqrt() + eps);
    }
}

pub use ember_ops::AdagradConfig;

/// AdaGrad: `acc += g²; p -= lr g / sqrt(acc + eps)`.
///
/// Every slice must hold as many values as `p` (else [`LengthMismatch`], nothing updated).
pub fn adagrad_step<T: Float>(
    cfg: &AdagradConfig,
    p: &mut [T],
    g: &[T],
    acc: &mut [T],
) -> Result<(), LengthMismatch> {
    check_len("adagrad_step", "gradient", p.len(), g.len())?;
    check_len("adagrad_step", "accumulator", p.len(), acc.len())?;
    let isa = isa::active();
    let cfg = *cfg;
    for_chunks(p, g, acc, &mut [], &mut [], |p, g, acc, _, _| {
        dispatch!(isa, adagrad_avx2, adagrad_body, (&cfg, p, g, acc))
    });
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn adagrad_avx2<T: Float>(cfg: &AdagradConfig, p: &mut [T], g: &[T], acc: &mut [T]) {
    adagrad_body(cfg, p, g, acc)
}

#[inline(always)]
fn adagrad_body<T: Float>(cfg: &AdagradConfig, p: &mut [T], g: &[T], acc: &mut [T]) {
    let lr = T::from_f64(cfg.lr);
    let eps = T::from_f64(cfg.eps);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    let use_wd = cfg.weight_decay != 0.0;
    for ((p, &gi), a) in p.iter_mut().zip(g).zip(acc.iter_mut()) {
        if use_wd {
            *p -= decay * *p;
        }
        *a += gi * gi;
        *p -= lr * gi / (*a + eps).sqrt();
    }
}

pub use ember_ops::RmspropConfig;

/// RMSProp (Keras form): `s = rho s + (1-rho) g²; [a = rho a + (1-rho) g; s' = s - a²];
/// inc = lr g / sqrt(s' + eps); with momentum: `b = momentum b + inc; p -= b`, else `p -= inc`.
/// `mom_buf` is ignored unless momentum > 0 and `grad_avg` unless centered; either may be empty.
/// Every other slice (and those two when used) must hold as many values as `p` (else
/// [`LengthMismatch`], nothing updated).
pub fn rmsprop_step<T: Float>(
    cfg: &RmspropConfig,
    p: &mut [T],
    g: &[T],
    sq_avg: &mut [T],
    mom_buf: &mut [T],
    grad_avg: &mut [T],
) -> Result<(), LengthMismatch> {
    check_len("rmsprop_step", "gradient", p.len(), g.len())?;
    check_len("rmsprop_step", "square average", p.len(), sq_avg.len())?;
    if cfg.momentum > 0.0 {
        check_len("rmsprop_step", "momentum buffer", p.len(), mom_buf.len())?;
    }
    if cfg.centered {
        check_len("rmsprop_step", "gradient average", p.len(), grad_avg.len())?;
    }
    let isa = isa::active();
    let cfg = *cfg;
    let mom_buf: &mut [T] = if cfg.momentum > 0.0 { mom_buf } else { &mut [] };
    let grad_avg: &mut [T] = if cfg.centered { grad_avg } else { &mut [] };
    for_chunks(p, g, sq_avg, mom_buf, grad_avg, |p, g, sq, mb, ga| {
        dispatch!(isa, rmsprop_avx2, rmsprop_body, (&cfg, p, g, sq, mb, ga))
    });
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rmsprop_avx2<T: Float>(
    cfg: &RmspropConfig,
    p: &mut [T],
    g: &[T],
    sq_avg: &mut [T],
    mom_buf: &mut [T],
    grad_avg: &mut [T],
) {
    rmsprop_body(cfg, p, g, sq_avg, mom_buf, grad_avg)
}

/// The RMSProp update; one loop per (momentum, centered) combination so each vectorises.
#[inline(always)]
fn rmsprop_body<T: Float>(
    cfg: &RmspropConfig,
    p: &mut [T],
    g: &[T],
    sq_avg: &mut [T],
    mom_buf: &mut [T],
    grad_avg: &mut [T],
) {
    let lr = T::from_f64(cfg.lr);
    let rho = T::from_f64(cfg.rho);
    let one_rho = T::from_f64(1.0 - cfg.rho);
    let eps = T::from_f64(cfg.eps);
    let mom = T::from_f64(cfg.momentum);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    let use_wd = cfg.weight_decay != 0.0;
    // inc for element i, updating sq_avg (and grad_avg when centered).
    let step = |p: &mut T, gi: T, sq: &mut T, ga: Option<&mut T>| -> T {
        if use_wd {
            *p -= decay * *p;
        }
        *sq = rho * *sq + one_rho * gi * gi;
        let mut denom = *sq;
        if let Some(ga) = ga {
            *ga = rho * *ga + one_rho * gi;
            denom -= *ga * *ga;
        }
        lr * gi / (denom + eps).sqrt()
    };
    match (cfg.momentum > 0.0, cfg.centered) {
        (false, false) => {
            for ((p, &gi), sq) in p.iter_mut().zip(g).zip(sq_avg.iter_mut()) {
                let inc = step(p, gi, sq, None);
                *p -= inc;
            }
        }
        (false, true) => {
            for (((p, &gi), sq), ga) in p
                .iter_mut()
                .zip(g)
                .zip(sq_avg.iter_mut())
                .zip(grad_avg.iter_mut())
            {
                let inc = step(p, gi, sq, Some(ga));
                *p -= inc;
            }
        }
        (true, false) => {
            for (((p, &gi), sq), mb) in p
                .iter_mut()
                .zip(g)
                .zip(sq_avg.iter_mut())
                .zip(mom_buf.iter_mut())
            {
                let inc = step(p, gi, sq, None);
                *mb = mom * *mb + inc;
                *p -= *mb;
            }
        }
        (true, true) => {
            for ((((p, &gi), sq), mb), ga) in p
                .iter_mut()
                .zip(g)
                .zip(sq_avg.iter_mut())
                .zip(mom_buf.iter_mut())
                .zip(grad_avg.iter_mut())
            {
                let inc = step(p, gi, sq, Some(ga));
                *mb = mom * *mb + inc;
                *p -= *mb;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr() {
        // With bias correction the first Adam step is lr * g/|g| (up to eps).
        let cfg = AdamConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-12,
            weight_decay: 0.0,
            step: 1,
        };
        let mut p = [1.0f64, -1.0];
        let (mut m, mut v) = ([0.0; 2], [0.0; 2]);
        adam_step(&cfg, &mut p, &[3.0, -0.5], &mut m, &mut v).unwrap();
        assert!(
            (p[0] - 0.9).abs() < 1e-9 && (p[1] + 0.9).abs() < 1e-9,
            "{p:?}"
        );
    }

    #[test]
    fn sgd_momentum_two_steps() {
        let cfg = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        };
        let mut p = [1.0f64];
        let mut v = [0.0];
        sgd_step(&cfg, &mut p, &[1.0], &mut v).unwrap();
        sgd_step(&cfg, &mut p, &[1.0], &mut v).unwrap();
        // v1 = -0.1, p1 = 0.9; v2 = -0.09 - 0.1 = -0.19, p2 = 0.71
        assert!((p[0] - 0.71).abs() < 1e-12);
    }

    use crate::gemm::tests_rng::Rng;

    /// The update rules exactly as documented, one element at a time, in f32.
    mod scalar {
        use super::super::*;

        pub fn adam(cfg: &AdamConfig, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
            let t = cfg.step.max(1) as i32;
            let lr_t =
                (cfg.lr * (1.0 - cfg.beta2.powi(t)).sqrt() / (1.0 - cfg.beta1.powi(t))) as f32;
            let (one_b1, one_b2) = ((1.0 - cfg.beta1) as f32, (1.0 - cfg.beta2) as f32);
            let decay = (cfg.lr * cfg.weight_decay) as f32;
            for i in 0..p.len() {
                if cfg.weight_decay != 0.0 {
                    p[i] -= decay * p[i];
                }
                m[i] += one_b1 * (g[i] - m[i]);
                v[i] += one_b2 * (g[i] * g[i] - v[i]);
                p[i] -= lr_t * m[i] / (v[i].sqrt() + cfg.eps as f32);
            }
        }

        pub fn sgd(cfg: &SgdConfig, p: &mut [f32], g: &[f32], vel: &mut [f32]) {
            let (lr, mom) = (cfg.lr as f32, cfg.momentum as f32);
            let decay = (cfg.lr * cfg.weight_decay) as f32;
            for i in 0..p.len() {
                if cfg.weight_decay != 0.0 {
                    p[i] -= decay * p[i];
                }
                if cfg.momentum == 0.0 {
                    p[i] -= lr * g[i];
                    continue;
                }
                vel[i] = mom * vel[i] - lr * g[i];
                if cfg.nesterov {
                    p[i] += mom * vel[i] - lr * g[i];
                } else {
                    p[i] += vel[i];
                }
            }
        }

        pub fn adagrad(cfg: &AdagradConfig, p: &mut [f32], g: &[f32], acc: &mut [f32]) {
            let decay = (cfg.lr * cfg.weight_decay) as f32;
            for i in 0..p.len() {
                if cfg.weight_decay != 0.0 {
                    p[i] -= decay * p[i];
                }
                acc[i] += g[i] * g[i];
                p[i] -= cfg.lr as f32 * g[i] / (acc[i] + cfg.eps as f32).sqrt();
            }
        }

        pub fn rmsprop(
            cfg: &RmspropConfig,
            p: &mut [f32],
            g: &[f32],
            sq: &mut [f32],
            mb: &mut [f32],
            ga: &mut [f32],
        ) {
            let (rho, one_rho) = (cfg.rho as f32, (1.0 - cfg.rho) as f32);
            let decay = (cfg.lr * cfg.weight_decay) as f32;
            for i in 0..p.len() {
                if cfg.weight_decay != 0.0 {
                    p[i] -= decay * p[i];
                }
                sq[i] = rho * sq[i] + one_rho * g[i] * g[i];
                let mut denom = sq[i];
                if cfg.centered {
                    ga[i] = rho * ga[i] + one_rho * g[i];
                    denom -= ga[i] * ga[i];
                }
                let inc = cfg.lr as f32 * g[i] / (denom + cfg.eps as f32).sqrt();
                if cfg.momentum > 0.0 {
                    mb[i] = cfg.momentum as f32 * mb[i] + inc;
                    p[i] -= mb[i];
                } else {
                    p[i] -= inc;
                }
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn data(n: usize, seed: u64, positive: bool) -> Vec<f32> {
        let mut r = Rng::new(seed);
        (0..n)
            .map(|_| {
                let v = r.uniform() as f32;
                if positive { v.abs() } else { v }
            })
            .collect()
    }

    /// Every optimizer and option, every ISA, small and chunked-parallel sizes: the kernels give
    /// exactly the bits of the scalar formula.
    #[test]
    fn kernels_equal_scalar_formulas_bit_for_bit() {
        for n in [37, crate::par::PAR_MIN + 1000] {
            for isa in crate::isa::supported() {
                for wd in [0.0, 0.01] {
                    let g = data(n, 1, false);
                    for step in [1, 7] {
                        let cfg = AdamConfig {
                            lr: 1e-3,
                            beta1: 0.9,
                            beta2: 0.999,
                            eps: 1e-7,
                            weight_decay: wd,
                            step,
                        };
                        let (mut p1, mut m1, mut v1) =
                            (data(n, 2, false), data(n, 3, false), data(n, 4, true));
                        let (mut p2, mut m2, mut v2) = (p1.clone(), m1.clone(), v1.clone());
                        crate::isa::with(isa, || adam_step(&cfg, &mut p1, &g, &mut m1, &mut v1))
                            .expect("isa")
                            .unwrap();
                        scalar::adam(&cfg, &mut p2, &g, &mut m2, &mut v2);
                        assert_eq!(
                            (bits(&p1), bits(&m1), bits(&v1)),
                            (bits(&p2), bits(&m2), bits(&v2)),
                            "adam {isa}"
                        );
                    }
                    for (momentum, nesterov) in [(0.0, false), (0.9, false), (0.9, true)] {
                        let cfg = SgdConfig {
                            lr: 0.01,
                            momentum,
                            nesterov,
                            weight_decay: wd,
                        };
                        let (mut p1, mut v1) = (data(n, 5, false), data(n, 6, false));
                        let (mut p2, mut v2) = (p1.clone(), v1.clone());
                        crate::isa::with(isa, || sgd_step(&cfg, &mut p1, &g, &mut v1))
                            .expect("isa")
                            .unwrap();
                        scalar::sgd(&cfg, &mut p2, &g, &mut v2);
                        assert_eq!(
                            (bits(&p1), bits(&v1)),
                            (bits(&p2), bits(&v2)),
                            "sgd {isa} {momentum} {nesterov}"
                        );
                    }
                    let cfg = AdagradConfig {
                        lr: 0.01,
                        eps: 1e-7,
                        weight_decay: wd,
                    };
                    let (mut p1, mut a1) = (data(n, 7, false), data(n, 8, true));
                    let (mut p2, mut a2) = (p1.clone(), a1.clone());
                    crate::isa::with(isa, || adagrad_step(&cfg, &mut p1, &g, &mut a1))
                        .expect("isa")
                        .unwrap();
                    scalar::adagrad(&cfg, &mut p2, &g, &mut a2);
                    assert_eq!(
                        (bits(&p1), bits(&a1)),
                        (bits(&p2), bits(&a2)),
                        "adagrad {isa}"
                    );
                    for (momentum, centered) in
                        [(0.0, false), (0.0, true), (0.5, false), (0.5, true)]
                    {
                        let cfg = RmspropConfig {
                            lr: 1e-3,
                            rho: 0.9,
                            momentum,
                            eps: 1e-7,
                            centered,
                            weight_decay: wd,
                        };
                        let (mut p1, mut s1, mut b1) =
                            (data(n, 9, false), data(n, 10, true), data(n, 11, false));
                        let mut c1 = vec![0.0f32; n];
                        let (mut p2, mut s2, mut b2, mut c2) =
                            (p1.clone(), s1.clone(), b1.clone(), c1.clone());
                        crate::isa::with(isa, || {
                            rmsprop_step(&cfg, &mut p1, &g, &mut s1, &mut b1, &mut c1)
                        })
                        .expect("isa")
                        .unwrap();
                        scalar::rmsprop(&cfg, &mut p2, &g, &mut s2, &mut b2, &mut c2);
                        assert_eq!(
                            (bits(&p1), bits(&s1), bits(&b1), bits(&c1)),
                            (bits(&p2), bits(&s2), bits(&b2), bits(&c2)),
                            "rmsprop {isa} {momentum} {centered}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn empty_optional_buffers_are_accepted() {
        let cfg = SgdConfig {
            lr: 0.5,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        };
        let mut p = vec![1.0f32; 100_000];
        sgd_step(&cfg, &mut p, &vec![1.0; 100_000], &mut []).unwrap();
        assert!(p.iter().all(|&v| v == 0.5));
        let cfg = RmspropConfig {
            lr: 0.1,
            rho: 0.9,
            momentum: 0.0,
            eps: 1e-7,
            centered: false,
            weight_decay: 0.0,
        };
        let mut sq = vec![0.0f32; 100_000];
        rmsprop_step(&cfg, &mut p, &vec![1.0; 100_000], &mut sq, &mut [], &mut []).unwrap();
        assert!(p.iter().all(|v| v.is_finite() && *v < 0.5));
    }

    #[test]
    fn mismatched_lengths_are_errors_and_change_nothing() {
        // Zipped slices of different lengths would update only a prefix; each step must
        // refuse instead, naming the operand, before writing anything.
        let mut p = vec![1.0f32; 4];
        let (g, short) = (vec![0.5f32; 4], vec![0.5f32; 3]);
        let mut s3 = vec![0.0f32; 3];
        let (mut a, mut b) = (vec![0.0f32; 4], vec![0.0f32; 4]);
        let sgd = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        };
        let e = sgd_step(&sgd, &mut p, &short, &mut a).unwrap_err();
        assert_eq!(
            (e.op, e.operand, e.expected, e.got),
            ("sgd_step", "gradient", 4, 3)
        );
        let e = sgd_step(&sgd, &mut p, &g, &mut s3).unwrap_err();
        assert_eq!(e.operand, "velocity");
        // Without momentum the velocity is not used, so an empty one is fine.
        let plain = SgdConfig {
            momentum: 0.0,
            ..sgd
        };
        sgd_step(&plain, &mut p.clone(), &g, &mut []).unwrap();
        let adam = AdamConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step: 1,
        };
        let e = adam_step(&adam, &mut p, &g, &mut a, &mut s3).unwrap_err();
        assert_eq!(e.operand, "second moment");
        assert!(
            e.to_string()
                .contains("adam_step: the second moment holds 3 values, expected 4")
        );
        let ada = AdagradConfig {
            lr: 0.1,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        assert_eq!(
            adagrad_step(&ada, &mut p, &g, &mut s3).unwrap_err().operand,
            "accumulator"
        );
        let rms = RmspropConfig {
            lr: 0.1,
            rho: 0.9,
            momentum: 0.9,
            eps: 1e-8,
            centered: true,
            weight_decay: 0.0,
        };
        let e = rmsprop_step(&rms, &mut p, &g, &mut a, &mut b, &mut s3).unwrap_err();
        assert_eq!(e.operand, "gradient average");
        let e = rmsprop_step(&rms, &mut p, &g, &mut a, &mut s3, &mut b).unwrap_err();
        assert_eq!(e.operand, "momentum buffer");
        assert_eq!(p, vec![1.0; 4], "a refused step wrote the parameter");
        assert!(
            a.iter().chain(&b).all(|&v| v == 0.0),
            "a refused step wrote a state"
        );
    }
}
