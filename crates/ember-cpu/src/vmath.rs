//! Vectorisable f32 math: exp, ln, tanh, sigmoid, GELU, softplus.
//!
//! `std`'s `f32::exp` and friends are calls into libm, one element at a time, which stops the
//! compiler from vectorising any loop that uses them. The functions here are written without
//! branches (every `if` is a select on values already computed) and without calls, so a loop
//! over a slice compiles to 8-lane AVX2 code inside a `#[target_feature(enable = "avx2,fma")]`
//! function and to 4-lane SSE2 code elsewhere. They are generic over [`MulAdd`]: the AVX2 build
//! fuses multiply-adds, the portable build rounds twice, so the two paths can differ in the last
//! bit but each stays within the bounds below.
//!
//! Algorithms and measured maximum errors against f64 (checked by the tests in this module over
//! a dense sweep of each function's whole range, including ±0, subnormals, ±inf, NaN and the
//! overflow edges; "ulp" is relative to the correctly rounded f32 result):
//! - `exp`: x = n·ln2 + r with |r| ≤ ln2/2 (n by magic-number rounding, ln2 split in two),
//!   e^r by its degree-7 Taylor polynomial (truncation 5e-9), scaled by 2^n in two exact steps so
//!   subnormal results round once. ≤ 2 ulp (measured 1); overflows to +inf above ln(f32::MAX), 0 below -104.
//! - `ln`: x = m·2^e with m in [√½, √2); ln m = 2 atanh(s), s = (m-1)/(m+1), odd series to s¹¹.
//!   Subnormal inputs are rescaled by 2^23 first. ≤ 2 ulp (measured 2); ln 0 = -inf, ln(x<0) = NaN.
//! - `tanh`: |x| < 0.625: x + x³·P(x²), P a degree-4 least-squares fit of our own (relative
//!   error 1e-8); above: 1 - 2/(e^{2|x|} + 1); sign restored last (so tanh(-0) = -0).
//!   ≤ 3 ulp (measured 1).
//! - `sigmoid`: with e = exp(-|x|): 1/(1+e) for x ≥ 0, e/(1+e) below, so nothing overflows;
//!   sigmoid(1000) = 1 and sigmoid(-1000) = 0 exactly. ≤ 3 ulp (measured 2) (absolute ≤ 1e-45 where the
//!   result is subnormal).
//! - `gelu` (tanh form): 0.5x(1 + tanh u) rewritten as x·sigmoid(2u), u = √(2/π)(x + 0.044715x³),
//!   which keeps relative accuracy in the negative tail where 1 + tanh u cancels. ≤ 4 + 6|u|
//!   ulp against the same formula in f64: where GELU is e^{2u}-small its condition number is
//!   |2u|, so the few-ulp rounding of u is amplified (measured worst: 126 ulp, 8e-6 relative,
//!   near x = -8).
//! - `softplus`: max(x, 0) + log1p(e^-|x|), log1p by the compensated ln(1+u) trick. ≤ 3 ulp
//!   (measured 3).

/// How `a·b + c` is evaluated: fused on FMA hardware, two roundings elsewhere.
pub trait MulAdd {
    /// a·b + c.
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

/// Fused multiply-add; use only inside functions compiled with the `fma` target feature
/// (elsewhere it becomes a slow libm call).
pub struct Fused;
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// Separate multiply and add (the portable path).
pub struct Unfused;
impl MulAdd for Unfused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

#[inline(always)]
fn select(c: bool, a: f32, b: f32) -> f32 {
    if c { a } else { b }
}

/// e^x.
#[inline(always)]
pub fn exp<F: MulAdd>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 = LN2_HI + LN2_LO, LN2_HI with few mantissa bits so n·LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
    // Clamp so n stays in [-150, 128]; NaN fails both tests and flows through.
    let xc = select(x < -104.0, -104.0, x);
    let xc = select(xc > 89.0, 89.0, xc);
    let t = F::mul_add(xc, LOG2E, MAGIC);
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = F::mul_add(n, -LN2_HI, xc);
    let r = F::mul_add(n, -LN2_LO, r);
    // Taylor polynomial of e^r to degree 7, Horner form.
    let mut p = 1.0 / 5040.0;
    p = F::mul_add(p, r, 1.0 / 720.0);
    p = F::mul_add(p, r, 1.0 / 120.0);
    p = F::mul_add(p, r, 1.0 / 24.0);
    p = F::mul_add(p, r, 1.0 / 6.0);
    p = F::mul_add(p, r, 0.5);
    p = F::mul_add(p, r, 1.0);
    p = F::mul_add(p, r, 1.0);
    // 2^n = 2^n1 · 2^n2 with both halves normal numbers, so the first product is exact and the
    // second rounds once (subnormal results) or overflows to +inf (n = 128).
    let n1 = ni >> 1;
    let n2 = ni.wrapping_sub(n1);
    let s1 = f32::from_bits((n1.wrapping_add(127) as u32) << 23);
    let s2 = f32::from_bits((n2.wrapping_add(127) as u32) << 23);
    p * s1 * s2
}

/// Natural logarithm.
#[inline(always)]
pub fn ln<F: MulAdd>(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let sub = x < f32::MIN_POSITIVE;
    let xs = select(sub, x * 8_388_608.0, x); // 2^23 lifts subnormals into the normal range
    let bits = xs.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127 - if sub { 23 } else { 0 };
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // in [1, 2)
    let big = m > std::f32::consts::SQRT_2;
    let m = select(big, m * 0.5, m);
    let e = (e + big as i32) as f32;
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    // 2 atanh(s) = 2s (1 + z/3 + z²/5 + z³/7 + z⁴/9 + z⁵/11)
    let mut p = 1.0 / 11.0;
    p = F::mul_add(p, z, 1.0 / 9.0);
    p = F::mul_add(p, z, 1.0 / 7.0);
    p = F::mul_add(p, z, 1.0 / 5.0);
    p = F::mul_add(p, z, 1.0 / 3.0);
    let s2 = s + s;
    let lnm = F::mul_add(s2 * z, p, s2);
    let r = F::mul_add(e, LN2_HI, F::mul_add(e, LN2_LO, lnm));
    let r = select(x == f32::INFINITY, f32::INFINITY, r);
    let r = select(x == 0.0, f32::NEG_INFINITY, r);
    select(x < 0.0 || x.is_nan(), f32::NAN, r)
}

/// Hyperbolic tangent.
#[inline(always)]
pub fn tanh<F: MulAdd>(x: f32) -> f32 {
    let ax = x.abs();
    // Small |x|: x + x³ P(x²).
    let z = ax * ax;
    let mut p = -5.718_962_8e-3;
    p = F::mul_add(p, z, 2.065_312_5e-2);
    p = F::mul_add(p, z, -5.374_466e-2);
    p = F::mul_add(p, z, 1.333_151_3e-1);
    p = F::mul_add(p, z, -3.333_328_7e-1);
    let small = F::mul_add(p * z, ax, ax);
    // Larger |x|: 1 - 2/(e^{2|x|} + 1); e^{2|x|} = inf gives exactly 1.
    let large = 1.0 - 2.0 / (exp::<F>(ax + ax) + 1.0);
    let r = select(ax < 0.625, small, large);
    // Restore the sign (also makes tanh(-0) = -0); NaN stays NaN.
    f32::from_bits(r.to_bits() | (x.to_bits() & 0x8000_0000))
}

/// Logistic sigmoid 1/(1 + e^-x).
#[inline(always)]
pub fn sigmoid<F: MulAdd>(x: f32) -> f32 {
    let e = exp::<F>(-x.abs());
    let r = 1.0 / (1.0 + e);
    select(x >= 0.0, r, e * r)
}

/// GELU, tanh approximation: 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))).
#[inline(always)]
pub fn gelu<F: MulAdd>(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    const K: f32 = 0.044_715;
    let u = C * x * F::mul_add(K * x, x, 1.0);
    x * sigmoid::<F>(u + u)
}

/// ln(1 + u) for u ≥ 0, accurate near 0 (the error of forming 1 + u is corrected).
#[inline(always)]
pub fn log1p<F: MulAdd>(u: f32) -> f32 {
    let w = 1.0 + u;
    let corr = ((w - 1.0) - u) / w;
    select(w == 1.0, u, ln::<F>(w) - corr)
}

/// Softplus ln(1 + e^x) = max(x, 0) + log1p(e^-|x|).
#[inline(always)]
pub fn softplus<F: MulAdd>(x: f32) -> f32 {
    let pos = select(x > 0.0, x, 0.0);
    pos + log1p::<F>(exp::<F>(-x.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Isa;

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

    /// Inputs covering the whole f32 line: every 4099th bit pattern (all signs, exponents,
    /// subnormals), plus the edge values.
    fn sweep() -> Vec<f32> {
        let mut v: Vec<f32> = (0..=u32::MAX).step_by(4099).map(f32::from_bits).collect();
        v.extend([
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
            f32::MAX,
            f32::MIN,
            88.72283,
            88.72284,
            -87.33654,
            -103.97,
            -104.0,
            0.625,
            -0.625,
            0.6249999,
            1000.0,
            -1000.0,
            1.0,
            -1.0,
        ]);
        v
    }

    /// Checks `f` against `reference` over the sweep; `abs_floor` is an absolute tolerance for
    /// results below it (subnormal or cancelling regions).
    fn check(
        name: &str,
        f: impl Fn(f32) -> f32,
        reference: impl Fn(f64) -> f64,
        max_ulps: impl Fn(f64) -> f64,
        abs_floor: f64,
    ) -> f64 {
        let mut worst: f64 = 0.0;
        for x in sweep() {
            let got = f(x);
            let want = reference(x as f64);
            let e = ulps(got, want);
            let ok = e == 0.0
                || e <= max_ulps(x as f64)
                || (want.abs() <= abs_floor && (got as f64 - want).abs() <= abs_floor);
            assert!(ok, "{name}({x:e}) = {got:e}, want {want:e} ({e} ulp)");
            if want.abs() > abs_floor {
                worst = worst.max(e);
            }
        }
        worst
    }

    fn sigmoid64(x: f64) -> f64 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }

    fn gelu_u(x: f64) -> f64 {
        0.797_884_560_802_865_4 * (x + 0.044_715 * x * x * x)
    }

    fn gelu64(x: f64) -> f64 {
        x * sigmoid64(2.0 * gelu_u(x))
    }

    fn softplus64(x: f64) -> f64 {
        if x.is_nan() {
            return x;
        }
        x.max(0.0) + (-x.abs()).exp().ln_1p()
    }

    fn all<F: MulAdd>(label: &str) {
        let e = check("exp", exp::<F>, f64::exp, |_| 2.0, 1.5e-45);
        let l = check("ln", ln::<F>, f64::ln, |_| 2.0, 0.0);
        let t = check("tanh", tanh::<F>, f64::tanh, |_| 3.0, 0.0);
        let s = check("sigmoid", sigmoid::<F>, sigmoid64, |_| 3.0, 1.5e-45);
        // In the negative tail GELU is e^{2u}-small and inherits the rounding of u amplified by
        // |2u| (its condition number there), so the bound grows with |u|.
        let g = check(
            "gelu",
            gelu::<F>,
            gelu64,
            |x| 4.0 + 6.0 * gelu_u(x).abs(),
            1e-37,
        );
        let p = check("softplus", softplus::<F>, softplus64, |_| 3.0, 1.5e-45);
        println!("{label}: max ulp exp {e} ln {l} tanh {t} sigmoid {s} gelu {g} softplus {p}");
    }

    #[test]
    fn accuracy_portable() {
        all::<Unfused>("portable");
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn accuracy_fused_inner() {
        all::<Fused>("avx2+fma");
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
    fn exact_edges() {
        for (x, want) in [
            (1000.0f32, 1.0f32),
            (-1000.0, 0.0),
            (f32::INFINITY, 1.0),
            (f32::NEG_INFINITY, 0.0),
        ] {
            assert_eq!(
                sigmoid::<Unfused>(x).to_bits(),
                want.to_bits(),
                "sigmoid({x})"
            );
        }
        assert!(sigmoid::<Unfused>(f32::NAN).is_nan());
        assert_eq!(exp::<Unfused>(0.0), 1.0);
        assert_eq!(exp::<Unfused>(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp::<Unfused>(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp::<Unfused>(89.0), f32::INFINITY);
        assert_eq!(ln::<Unfused>(1.0), 0.0);
        assert_eq!(ln::<Unfused>(0.0), f32::NEG_INFINITY);
        assert_eq!(ln::<Unfused>(-0.0), f32::NEG_INFINITY);
        assert!(ln::<Unfused>(-1.0).is_nan());
        assert_eq!(tanh::<Unfused>(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh::<Unfused>(20.0), 1.0);
        assert_eq!(tanh::<Unfused>(f32::NEG_INFINITY), -1.0);
        assert_eq!(softplus::<Unfused>(f32::INFINITY), f32::INFINITY);
        assert_eq!(softplus::<Unfused>(f32::NEG_INFINITY), 0.0);
        assert_eq!(gelu::<Unfused>(f32::INFINITY), f32::INFINITY);
    }
}
