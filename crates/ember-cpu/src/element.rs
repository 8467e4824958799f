//! The element trait that kernels are generic over.
//!
//! Kernels compute in f32 or f64. 16-bit storage (f16, bf16) is widened to f32 by the caller
//! (ember-core) before a kernel runs and narrowed after, so only these two types implement
//! [`Float`]. The trait carries exactly the scalar math the kernels need, no more.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// A floating-point element type a kernel can compute in: implemented for `f32` and `f64`.
pub trait Float:
    Copy
    + Send
    + Sync
    + Debug
    + PartialOrd
    + Default
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Converts from f64 (rounding for f32).
    fn from_f64(v: f64) -> Self;
    /// Widens to f64.
    fn to_f64(self) -> f64;
    /// e^self.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// ln(1 + self), accurate near 0.
    fn ln_1p(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// self^e for a real exponent.
    fn powf(self, e: Self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// True for NaN.
    fn is_nan(self) -> bool;
    /// Error function.
    fn erf(self) -> Self;
    /// +infinity.
    fn infinity() -> Self;
    /// -infinity.
    fn neg_infinity() -> Self;
    /// The GEMM kernel (microkernel and block sizes) for this type on `isa`.
    fn gemm_kernel(isa: crate::isa::Isa) -> crate::gemm::Kernel<Self>;
    /// The microkernel that reads A's rows in place, where this type has one, for a kernel
    /// of instruction set `isa` and an `mr`×`nr` tile (see [`crate::gemm::kernel::RowsKernel`]).
    fn gemm_rows_kernel(
        isa: crate::isa::Isa,
        mr: usize,
        nr: usize,
    ) -> Option<crate::gemm::kernel::RowsKernel<Self>>;
    /// `Some(s)` when `Self` is f32: lets generic kernels take an f32 SIMD fast path.
    fn as_f32_slice(s: &[Self]) -> Option<&[f32]>;
    /// Mutable form of [`Float::as_f32_slice`].
    fn as_f32_slice_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

macro_rules! impl_float {
    ($t:ty, $kern:ident, $rows:expr, $as_f32:expr) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                erf_f64(self as f64) as $t
            }
            #[inline(always)]
            fn infinity() -> Self {
                <$t>::INFINITY
            }
            #[inline(always)]
            fn neg_infinity() -> Self {
                <$t>::NEG_INFINITY
            }
            #[inline(always)]
            fn gemm_kernel(isa: crate::isa::Isa) -> crate::gemm::Kernel<Self> {
                crate::gemm::kernel::$kern(isa)
            }
            #[inline(always)]
            fn gemm_rows_kernel(
                isa: crate::isa::Isa,
                mr: usize,
                nr: usize,
            ) -> Option<crate::gemm::kernel::RowsKernel<Self>> {
                $rows(isa, mr, nr)
            }
            #[inline(always)]
            fn as_f32_slice(s: &[Self]) -> Option<&[f32]> {
                $as_f32(s)
            }
            #[inline(always)]
            fn as_f32_slice_mut(s: &mut [Self]) -> Option<&mut [f32]> {
                $as_f32(s)
            }
        }
    };
}
impl_float!(f32, kernel_f32, crate::gemm::kernel::rows_kernel_f32, Some);
impl_float!(f64, kernel_f64, |_, _, _| None, |_| None);

/// The error function, to about 1e-15 absolute error.
///
/// Uses the Taylor series near 0 and a continued fraction for erfc in the tails (the standard
/// split at |x| = 2.5); both converge quickly in their regions.
pub fn erf_f64(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let ax = x.abs();
    if ax < 2.5 {
        // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() || n > 200.0 {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if ax > 6.0 {
        x.signum()
    } else {
        // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) (Lentz-free,
        // evaluated bottom-up with a fixed depth that suffices for x >= 2.5).
        let mut f = ax;
        for k in (1..60).rev() {
            f = ax + (k as f64 / 2.0) / f;
        }
        let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / f;
        x.signum() * (1.0 - erfc)
    }
}

#[cfg(test)]
mod tests {
    use super::erf_f64;

    #[test]
    fn erf_matches_known_values() {
        // Reference values from the definition (tables, 15 digits).
        let cases = [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.0, -0.842_700_792_949_714_9),
        ];
        for (x, want) in cases {
            assert!(
                (erf_f64(x) - want).abs() < 1e-13,
                "erf({x}) = {}",
                erf_f64(x)
            );
        }
    }
}
