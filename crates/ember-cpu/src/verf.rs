//! Vectorisable f32 erf and exact (erf) GELU, forward and backward.
//!
//! Exact GELU, x·Φ(x) with Φ(x) = ½(1 + erf(x/√2)), is the default activation of PyTorch and
//! Keras, and the feed-forward half of every Transformer block runs it over its widest tensor.
//! The scalar path evaluates an f64 `erf` (a series or a continued fraction) per element, which
//! stops vectorisation and was 20 % of a profile of one encoder block. This module computes it
//! in f32 with no branches and no calls, in the style of [`crate::vmath`] (every `if` a select
//! on values already computed), so a loop over a slice vectorises; the slice functions run the
//! loop compiled three times and pick one by [`Isa`]: 16 lanes under
//! `#[target_feature(enable = "avx512f,…")]`, 8 under `avx2,fma`, 4 (SSE2) for the portable
//! baseline. The AVX-512 and AVX2 copies evaluate the same fused operations per element, so
//! their results are bit-identical (a test checks it); the portable copy rounds each
//! multiply-add twice and may differ in the last bits. Each element's result depends on that
//! element alone, so it is the same for any thread count.
//!
//! The algorithm, with a = |x| (for erf) or |x|/√2 (for GELU); both polynomials are minimax fits
//! of our own made by `scripts/fit/erf_fit.py`, which also prints their errors:
//! - a < 1: erf(a) = a·P(a²), P of degree 6 (relative error of the fit 1.2e-9). No
//!   cancellation: for subnormal a, a² is 0 and the result is a·2/√π rounded once.
//! - a ≥ ½: erfc(a) = e^{-a²}·R(u)·q with q = 1/(a + 2), u = 1 − 4q = (a − 2)/(a + 2), R of
//!   degree 10 in u (relative error of the fit 5.0e-9). The map a → u folds [½, ∞) onto
//!   [−⅗, 1), where a·e^{a²}·erfc(a) is smooth enough for a low degree (a polynomial in 1/a
//!   needs degree > 12 for 1e-8), and q is the only division. e^{-a²} is [`vmath::exp`]
//!   (≤ 2 ulp, subnormal results rounded once). a is clamped to 10, where erfc(a) = 2e-45 is
//!   the last value f32 can hold; beyond it erfc is 0.
//!
//! erf(x) = ±(a < 1 ? a·P(a²) : 1 − erfc(a)): ≤ 2 ulp over the whole f32 line (measured 2 by
//! the tests, against an f64 reference, for every 1021st bit pattern, every multiple of 2^-12
//! on [−16, 16] and the edge values); erf(±0) = ±0, erf(±inf) = ±1, erf(NaN) = NaN.
//!
//! Φ(x) takes the same two pieces without cancellation anywhere: ½ ± ½·erf(a) for a < ½ (where
//! at most one bit cancels), and for a ≥ ½ either ½·erfc(a) (x < 0, the left tail, relative
//! accuracy down to 1e-45) or 1 − ½·erfc(a). a² is formed as x·x·½ (one rounding) rather than
//! from the rounded a. In the left tail GELU's condition number is about x², and the rounding
//! of x² is amplified the same way, so the bound is 6 + x²/2 ulp (measured: 6 ulp on |x| ≤ 3,
//! 64 at worst over the whole line); results below 1e-37 in magnitude (x below about −13) are judged in
//! absolute terms. The backward rule is d/dx x·Φ(x) = Φ(x) + x·φ(x), φ(x) = e^{−x²/2}/√(2π),
//! which reuses the e^{−a²} of the forward pieces (one exp per element for both terms); for
//! x < 0 it is a difference (zero at x ≈ −0.75), so its bound is in units of its terms:
//! (6 + x²/2)·ε·(Φ + |x|φ) (measured 2.4 on |x| ≤ 3).
//!
//! Where ember differs from PyTorch on purpose: PyTorch's CPU kernels give NaN for GELU at ±inf
//! (they compute inf·0); ember returns the limits, gelu(+inf) = +inf, gelu(−inf) = −0, and
//! slope 1 and 0 there. NaN gives NaN everywhere.

use crate::isa::Isa;
use crate::vmath::{self, Fused, MulAdd, Unfused};

/// Where erf switches from a·P(a²) to 1 − erfc(a).
const SPLIT: f32 = 1.0;
/// Where Φ switches from ½ ± ½·erf(a) to the erfc forms (R's fit starts here).
const PHI_SPLIT: f32 = 0.5;
/// a beyond which erfc(a) is 0 in f32 (erfc(10) = 2.09e-45, the smallest subnormal 1.4e-45).
const TAIL_END: f32 = 10.0;
/// 1/√2, nearest f32.
const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π), nearest f32.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

#[inline(always)]
fn select(c: bool, a: f32, b: f32) -> f32 {
    if c { a } else { b }
}

/// `v` with the sign bit of `s`.
#[inline(always)]
fn copysign(v: f32, s: f32) -> f32 {
    f32::from_bits((v.to_bits() & 0x7fff_ffff) | (s.to_bits() & 0x8000_0000))
}

/// erf(a) = a·P(a²) for |a| ≤ 1 (any finite a gives a finite value). P(0) is the fit's value,
/// one f32 ulp from 2/√π (the minimax error is spread over the interval).
#[allow(clippy::approx_constant)]
#[inline(always)]
fn erf_small<F: MulAdd>(a: f32) -> f32 {
    let z = a * a;
    let mut p = 7.853_861_5e-5;
    p = F::mul_add(p, z, -8.010_194e-4);
    p = F::mul_add(p, z, 5.188_327_7e-3);
    p = F::mul_add(p, z, -2.685_381_3e-2);
    p = F::mul_add(p, z, 1.128_358_5e-1);
    p = F::mul_add(p, z, -3.761_262_6e-1);
    p = F::mul_add(p, z, 1.128_379_1);
    a * p
}

/// (erfc(a), e^{-a²}) for a ≥ 0, given `a2` = a² (the caller forms it, to the accuracy it
/// needs): both are for a clamped to [`TAIL_END`], and erfc is 0 beyond it. NaN flows through.
#[inline(always)]
fn erfc_tail<F: MulAdd>(a: f32, a2: f32) -> (f32, f32) {
    let beyond = a > TAIL_END;
    let ac = select(beyond, TAIL_END, a);
    let a2c = select(beyond, TAIL_END * TAIL_END, a2);
    let q = 1.0 / (ac + 2.0);
    let u = F::mul_add(-4.0, q, 1.0);
    let mut r = 4.904_35e-5;
    r = F::mul_add(r, u, 1.506_198e-4);
    r = F::mul_add(r, u, -6.169_57e-4);
    r = F::mul_add(r, u, -9.206_643e-4);
    r = F::mul_add(r, u, 3.088_718_3e-3);
    r = F::mul_add(r, u, 6.501_37e-3);
    r = F::mul_add(r, u, -2.151_240_4e-2);
    r = F::mul_add(r, u, -3.644_450_8e-2);
    r = F::mul_add(r, u, 2.794_723e-1);
    r = F::mul_add(r, u, -6.871_606e-1);
    r = F::mul_add(r, u, 1.021_582_7);
    let e = vmath::exp::<F>(-a2c);
    (select(beyond, 0.0, e * r * q), e)
}

/// The error function, ≤ 2 ulp over the whole f32 line (module docs: how).
#[inline(always)]
pub fn erf<F: MulAdd>(x: f32) -> f32 {
    let a = x.abs();
    let small = erf_small::<F>(a);
    let (t, _) = erfc_tail::<F>(a, a * a);
    // NaN fails `a < SPLIT` and takes 1 − NaN.
    copysign(select(a < SPLIT, small, 1.0 - t), x)
}

/// Φ(x), the standard normal CDF, without cancellation in either tail, and e^{−x²/2}.
#[inline(always)]
fn phi<F: MulAdd>(x: f32) -> (f32, f32) {
    let a = x.abs() * FRAC_1_SQRT_2;
    let small = erf_small::<F>(a);
    let (t, e) = erfc_tail::<F>(a, (x * x) * 0.5);
    let neg = x < 0.0;
    let near = F::mul_add(select(neg, -small, small), 0.5, 0.5);
    let half_t = 0.5 * t;
    let far = select(neg, half_t, 1.0 - half_t);
    (select(a < PHI_SPLIT, near, far), e)
}

/// Exact GELU, x·Φ(x) (module docs: accuracy, and the values at ±inf).
#[inline(always)]
pub fn gelu_erf<F: MulAdd>(x: f32) -> f32 {
    let (p, _) = phi::<F>(x);
    // −inf·0 would be NaN; the limit is −0.
    select(x < -14.5, -0.0, x * p)
}

/// d/dx of exact GELU: Φ(x) + x·φ(x).
#[inline(always)]
pub fn gelu_erf_grad<F: MulAdd>(x: f32) -> f32 {
    let (p, e) = phi::<F>(x);
    let d = F::mul_add(x, e * FRAC_1_SQRT_2PI, p);
    // Beyond the tail x·φ(x) is below f32's range (and ±inf·0 would be NaN): the slope is Φ.
    select(x.abs() > 14.5, p, d)
}

macro_rules! slice_fns {
    ($erf:ident, $gelu:ident, $gelu_ip:ident, $grad:ident, $F:ty, $($feat:tt)*) => {
        $($feat)*
        fn $erf(x: &[f32], out: &mut [f32]) {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = erf::<$F>(v);
            }
        }
        $($feat)*
        fn $gelu(x: &[f32], out: &mut [f32]) {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = gelu_erf::<$F>(v);
            }
        }
        $($feat)*
        fn $gelu_ip(v: &mut [f32]) {
            for o in v.iter_mut() {
                *o = gelu_erf::<$F>(*o);
            }
        }
        $($feat)*
        fn $grad(x: &[f32], dy: &[f32], dx: &mut [f32]) {
            for ((d, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
                *d = g * gelu_erf_grad::<$F>(v);
            }
        }
    };
}

slice_fns!(
    erf_portable,
    gelu_portable,
    gelu_ip_portable,
    grad_portable,
    Unfused,
);
#[cfg(target_arch = "x86_64")]
slice_fns!(erf_avx2, gelu_avx2, gelu_ip_avx2, grad_avx2, Fused, #[target_feature(enable = "avx2,fma")]);
#[cfg(target_arch = "x86_64")]
slice_fns!(erf_avx512, gelu_avx512, gelu_ip_avx512, grad_avx512, Fused,
    #[target_feature(enable = "avx512f,avx2,fma")]);

/// Runs the copy of a slice loop compiled for `isa` (the portable one where the CPU lacks it).
macro_rules! dispatch {
    ($isa:expr, $avx512:ident, $avx2:ident, $portable:ident, ($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if $isa == Isa::Avx512 && $isa.is_supported() {
                // SAFETY: AVX-512F, AVX2 and FMA are present: `Avx512` is supported only
                // where `avx512f` and AVX2+FMA are detected.
                return unsafe { $avx512($($arg),*) };
            }
            if $isa.has_avx2() {
                // SAFETY: AVX2 and FMA are present (checked just above).
                return unsafe { $avx2($($arg),*) };
            }
        }
        let _ = $isa;
        $portable($($arg),*)
    }};
}

/// `out[i] = erf(x[i])` on the path `isa` names; pairs up to the shorter length.
pub fn erf_slice(isa: Isa, x: &[f32], out: &mut [f32]) {
    dispatch!(isa, erf_avx512, erf_avx2, erf_portable, (x, out))
}

/// `out[i] = gelu(x[i])` (exact GELU) on the path `isa` names; pairs up to the shorter length.
pub fn gelu_erf_slice(isa: Isa, x: &[f32], out: &mut [f32]) {
    dispatch!(isa, gelu_avx512, gelu_avx2, gelu_portable, (x, out))
}

/// [`gelu_erf_slice`] in place.
pub fn gelu_erf_slice_in_place(isa: Isa, v: &mut [f32]) {
    dispatch!(isa, gelu_ip_avx512, gelu_ip_avx2, gelu_ip_portable, (v))
}

/// `dx[i] = dy[i]·gelu'(x[i])` (exact GELU) on the path `isa` names; pairs up to the shortest.
pub fn gelu_erf_backward_slice(isa: Isa, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    dispatch!(isa, grad_avx512, grad_avx2, grad_portable, (x, dy, dx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::erf_f64;

    /// erfc for a ≥ 0 in f64, accurate in relative terms far into the tail: 1 − erf below 2
    /// (erfc ≥ 0.0047 there, so at most 2.5 digits of erf's 13 cancel), else the continued
    /// fraction erfc(a) = e^{−a²}/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + …)))), evaluated
    /// from the back over 400 terms.
    fn erfc64(a: f64) -> f64 {
        if a < 2.0 {
            return 1.0 - erf_f64(a);
        }
        let mut f = a;
        for k in (1..=400).rev() {
            f = a + (k as f64 * 0.5) / f;
        }
        (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    }

    fn gelu64(x: f64) -> f64 {
        let a = x.abs() / std::f64::consts::SQRT_2;
        let phi = if x < 0.0 {
            0.5 * erfc64(a)
        } else {
            1.0 - 0.5 * erfc64(a)
        };
        x * phi
    }

    fn gelu_grad64(x: f64) -> f64 {
        let a = x.abs() / std::f64::consts::SQRT_2;
        let phi = if x < 0.0 {
            0.5 * erfc64(a)
        } else {
            1.0 - 0.5 * erfc64(a)
        };
        phi + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
    }

    /// Distance in representable f32 values between `got` and the f32 rounding of `want`.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        if got.is_nan() || w.is_nan() {
            return if got.is_nan() && w.is_nan() {
                0.0
            } else {
                f64::INFINITY
            };
        }
        if got == w {
            return 0.0;
        }
        if got.is_infinite() || w.is_infinite() {
            return f64::INFINITY;
        }
        let key = |v: f32| {
            let b = v.to_bits() as i64;
            if b < 0x8000_0000 { b } else { 0x8000_0000 - b }
        };
        (key(got) - key(w)).abs() as f64
    }

    /// Every 1021st bit pattern (all signs, exponents, subnormals), a dense grid on [−16, 16]
    /// (step 2^-12, every representable multiple), and the edge values.
    fn sweep() -> Vec<f32> {
        let mut v: Vec<f32> = (0..=u32::MAX).step_by(1021).map(f32::from_bits).collect();
        v.extend((-65536..=65536).map(|i| i as f32 / 4096.0));
        v.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
            1e-40,
            -1e-40,
            f32::MAX,
            f32::MIN,
            1.0,
            -1.0,
            0.999_999_94,
            1.000_000_1,
            3.832_506,
            3.9,
            9.999_999,
            10.0,
            10.000_001,
            14.142_135,
            -14.142_135,
            -14.5,
            -14.500_001,
            -13.0,
            1e10,
            -1e10,
            1.9e19,
            -1.9e19,
        ]);
        v
    }

    #[test]
    fn reference_erfc_matches_known_values() {
        // scipy.special.erfc.
        for (a, want) in [
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_16),
            (2.0, 0.004_677_734_981_047_266),
            (3.0, 2.209_049_699_858_544_5e-5),
            (5.0, 1.537_459_794_428_034_7e-12),
            (7.0, 4.183_825_607_779_414e-23),
            (10.0, 2.088_487_583_762_544_6e-45),
        ] {
            let got = erfc64(a);
            assert!(((got - want) / want).abs() < 1e-11, "erfc({a}) = {got:e}");
        }
    }

    /// Checks erf, GELU and its slope on the path compiled for `F` over the sweep; returns the
    /// worst errors seen (erf anywhere in ulp, GELU on |x| ≤ 3 in ulp, its slope on |x| ≤ 3 in
    /// units of ε·(Φ + |x|φ)).
    fn check<F: MulAdd>(label: &str) -> (f64, f64, f64) {
        let (mut we, mut wg, mut wd) = (0f64, 0f64, 0f64);
        for x in sweep() {
            let xd = x as f64;
            // erf: ≤ 2 ulp everywhere (subnormal results included: they round once).
            let got = erf::<F>(x);
            let want = if xd.is_nan() {
                f64::NAN
            } else if xd.is_infinite() {
                xd.signum()
            } else {
                erf_f64(xd)
            };
            let e = ulps(got, want);
            assert!(
                e <= 2.0,
                "{label}: erf({x:e}) = {got:e}, want {want:e} ({e} ulp)"
            );
            assert!(
                x.is_nan() || got.is_sign_negative() == x.is_sign_negative(),
                "{label}: erf({x:e}) sign"
            );
            we = we.max(e);
            // GELU: 6 + x²/2 ulp, absolute 1e-37 for results below it.
            let got = gelu_erf::<F>(x);
            let want = if xd.is_nan() {
                f64::NAN
            } else if xd == f64::INFINITY {
                f64::INFINITY
            } else if xd < -40.0 {
                -0.0
            } else {
                gelu64(xd)
            };
            let e = ulps(got, want);
            let small = want.abs() < 1e-37 && (got as f64 - want).abs() <= 1e-37;
            assert!(
                small || e == 0.0 || e <= 6.0 + xd * xd / 2.0,
                "{label}: gelu({x:e}) = {got:e}, want {want:e} ({e} ulp)"
            );
            if !small && xd.abs() <= 3.0 {
                wg = wg.max(e);
            }
            // Slope Φ + xφ: for x < 0 a difference (zero at x ≈ −0.75), so it is judged
            // against the size of its terms: (6 + x²/2)·ε·(Φ + |x|φ), and absolute 1e-37 in
            // the far tail.
            let got = gelu_erf_grad::<F>(x);
            let (want, scale) = if xd.is_nan() {
                (f64::NAN, 0.0)
            } else if xd > 40.0 {
                (1.0, 1.0)
            } else if xd < -40.0 {
                (0.0, 0.0)
            } else {
                let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
                let want = gelu_grad64(xd);
                (want, (want - xd * pdf) + (xd * pdf).abs())
            };
            let e = ulps(got, want);
            let err = (got as f64 - want).abs();
            let tol = (6.0 + xd * xd / 2.0) * f32::EPSILON as f64 * scale;
            let near_zero = err <= 1e-37 && want.abs() < 1e-37;
            assert!(
                e == 0.0 || near_zero || err <= tol,
                "{label}: gelu'({x:e}) = {got:e}, want {want:e} ({e} ulp)"
            );
            if scale > 0.0 && xd.abs() <= 3.0 {
                wd = wd.max(err / (f32::EPSILON as f64 * scale));
            }
        }
        println!(
            "{label}: max ulp erf {we}; on |x| <= 3: gelu {wg} ulp, gelu' {wd:.2} ε·(Φ + |x|φ)"
        );
        (we, wg, wd)
    }

    #[test]
    fn accuracy_portable() {
        check::<Unfused>("portable");
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn accuracy_fused_inner() {
        check::<Fused>("fused");
    }

    #[test]
    fn accuracy_fused() {
        #[cfg(target_arch = "x86_64")]
        if Isa::Avx2.is_supported() {
            // SAFETY: AVX2 and FMA are present (checked just above).
            unsafe { accuracy_fused_inner() };
        }
    }

    #[test]
    fn edge_values_are_exact() {
        for isa in crate::isa::supported() {
            let x = [
                0.0f32,
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                20.0,
                -20.0,
                1e-45,
            ];
            let mut e = [0f32; 8];
            erf_slice(isa, &x, &mut e);
            let mut g = [0f32; 8];
            gelu_erf_slice(isa, &x, &mut g);
            let mut d = [0f32; 8];
            gelu_erf_backward_slice(isa, &x, &[1.0; 8], &mut d);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&e[..4]),
                bits(&[0.0, -0.0, 1.0, -1.0]),
                "{isa} erf edges"
            );
            assert!(e[4].is_nan() && g[4].is_nan() && d[4].is_nan(), "{isa} NaN");
            assert_eq!((e[5], e[6]), (1.0, -1.0), "{isa} erf(±20)");
            // erf of the smallest subnormal is 2/√π of it, rounded: the same subnormal.
            assert_eq!(e[7], 1e-45, "{isa}");
            assert_eq!(
                bits(&g[..4]),
                bits(&[0.0, -0.0, f32::INFINITY, -0.0]),
                "{isa} gelu edges"
            );
            assert_eq!((g[5], g[6].to_bits()), (20.0, (-0.0f32).to_bits()), "{isa}");
            assert_eq!(d[..4], [0.5, 0.5, 1.0, 0.0], "{isa} gelu' edges");
            assert_eq!((d[5], d[6]), (1.0, 0.0), "{isa} gelu'(±20)");
        }
    }

    #[test]
    fn slices_match_per_element_and_paths_agree() {
        let xs = sweep();
        let dy: Vec<f32> = (0..xs.len())
            .map(|i| (i % 13) as f32 * 0.25 - 1.5)
            .collect();
        let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        let mut fused: Option<(Vec<f32>, Vec<f32>, Vec<f32>)> = None;
        for isa in crate::isa::supported() {
            let mut e = vec![0f32; xs.len()];
            erf_slice(isa, &xs, &mut e);
            let mut g = vec![0f32; xs.len()];
            gelu_erf_slice(isa, &xs, &mut g);
            let mut gi = xs.clone();
            gelu_erf_slice_in_place(isa, &mut gi);
            let mut d = vec![0f32; xs.len()];
            gelu_erf_backward_slice(isa, &xs, &dy, &mut d);
            for i in 0..xs.len() {
                assert!(same(g[i], gi[i]), "{isa} in place at {:e}", xs[i]);
            }
            if isa == Isa::Portable {
                for i in 0..xs.len() {
                    let x = xs[i];
                    assert!(same(e[i], erf::<Unfused>(x)), "{isa} erf({x:e})");
                    assert!(same(g[i], gelu_erf::<Unfused>(x)), "{isa} gelu({x:e})");
                    let want = dy[i] * gelu_erf_grad::<Unfused>(x);
                    assert!(same(d[i], want), "{isa} gelu'({x:e})");
                }
            } else if let Some((fe, fg, fd)) = &fused {
                // AVX-512 and AVX2 evaluate the same fused operations: the same bits.
                for i in 0..xs.len() {
                    assert!(
                        same(e[i], fe[i]) && same(g[i], fg[i]) && same(d[i], fd[i]),
                        "{isa} differs from the other fused path at {:e}",
                        xs[i]
                    );
                }
            } else {
                fused = Some((e, g, d));
            }
        }
    }
}
