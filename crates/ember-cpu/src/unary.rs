//! Elementwise unary maps: math functions and activations, forward and backward.
//!
//! [`unary`] applies a [`UnaryOp`] to a strided input and writes a contiguous output.
//! [`unary_backward`] computes the input gradient of an activation from the forward input `x`,
//! the forward output `y` and the output gradient `dy` (all contiguous, same length), in one pass:
//! this is the fused backward the autograd rules call instead of chaining tensor ops.

use crate::element::Float;
use crate::strided::{Strided, for_each_offset};

/// An elementwise function of one argument. Parameters are carried as f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// -x
    Neg,
    /// |x|
    Abs,
    /// e^x
    Exp,
    /// ln x
    Log,
    /// sqrt x
    Sqrt,
    /// x^2
    Sqr,
    /// 1/x
    Recip,
    /// sin x
    Sin,
    /// cos x
    Cos,
    /// tanh x
    Tanh,
    /// 1/(1+e^-x), exactly 0 or 1 at the extremes, never NaN for finite x
    Sigmoid,
    /// max(x, 0)
    Relu,
    /// x if x > 0 else alpha*x
    LeakyRelu(f64),
    /// x if x > 0 else alpha*(e^x - 1)
    Elu(f64),
    /// 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
    GeluTanh,
    /// x * Phi(x) = 0.5x(1 + erf(x/sqrt 2))
    GeluErf,
    /// ln(1 + e^x), computed stably
    Softplus,
    /// min(max(x, lo), hi)
    Clamp(f64, f64),
    /// x^p for a constant p
    Powf(f64),
    /// x + c
    AddScalar(f64),
    /// x * c
    MulScalar(f64),
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

/// Logistic sigmoid, stable for any input: uses e^-|x| so nothing overflows.
#[inline(always)]
pub fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

/// ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|), stable for any input.
#[inline(always)]
pub fn softplus<T: Float>(x: T) -> T {
    let pos = if x > T::ZERO { x } else { T::ZERO };
    if x.is_nan() {
        return x;
    }
    pos + (-x.abs()).exp().ln_1p()
}

/// Applies `op` to one value.
#[inline(always)]
pub fn apply<T: Float>(op: UnaryOp, x: T) -> T {
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Sqr => x * x,
        UnaryOp::Recip => T::ONE / x,
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Relu => {
            if x > T::ZERO || x.is_nan() {
                x
            } else {
                T::ZERO
            }
        }
        UnaryOp::LeakyRelu(a) => {
            if x > T::ZERO {
                x
            } else {
                x * T::from_f64(a)
            }
        }
        UnaryOp::Elu(a) => {
            if x > T::ZERO {
                x
            } else {
                T::from_f64(a) * (x.exp() - T::ONE)
            }
        }
        UnaryOp::GeluTanh => {
            let c = T::from_f64(SQRT_2_OVER_PI);
            let inner = c * (x + T::from_f64(GELU_C) * x * x * x);
            T::from_f64(0.5) * x * (T::ONE + inner.tanh())
        }
        UnaryOp::GeluErf => {
            T::from_f64(0.5)
                * x
                * (T::ONE + (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf())
        }
        UnaryOp::Softplus => softplus(x),
        UnaryOp::Clamp(lo, hi) => {
            let (lo, hi) = (T::from_f64(lo), T::from_f64(hi));
            if x < lo {
                lo
            } else if x > hi {
                hi
            } else {
                x
            }
        }
        UnaryOp::Powf(p) => x.powf(T::from_f64(p)),
        UnaryOp::AddScalar(c) => x + T::from_f64(c),
        UnaryOp::MulScalar(c) => x * T::from_f64(c),
    }
}

/// The derivative dy/dx of `op` at `x`, given `y = op(x)` (some rules are cheaper from `y`).
#[inline(always)]
pub fn derivative<T: Float>(op: UnaryOp, x: T, y: T) -> T {
    match op {
        UnaryOp::Neg => -T::ONE,
        UnaryOp::Abs => {
            if x > T::ZERO {
                T::ONE
            } else if x < T::ZERO {
                -T::ONE
            } else {
                T::ZERO
            }
        }
        UnaryOp::Exp => y,
        UnaryOp::Log => T::ONE / x,
        UnaryOp::Sqrt => T::from_f64(0.5) / y,
        UnaryOp::Sqr => T::from_f64(2.0) * x,
        UnaryOp::Recip => -y * y,
        UnaryOp::Sin => x.cos(),
        UnaryOp::Cos => -x.sin(),
        UnaryOp::Tanh => T::ONE - y * y,
        UnaryOp::Sigmoid => y * (T::ONE - y),
        UnaryOp::Relu => {
            if x > T::ZERO {
                T::ONE
            } else {
                T::ZERO
            }
        }
        UnaryOp::LeakyRelu(a) => {
            if x > T::ZERO {
                T::ONE
            } else {
                T::from_f64(a)
            }
        }
        UnaryOp::Elu(a) => {
            if x > T::ZERO {
                T::ONE
            } else {
                y + T::from_f64(a)
            }
        }
        UnaryOp::GeluTanh => {
            let c = T::from_f64(SQRT_2_OVER_PI);
            let k = T::from_f64(GELU_C);
            let inner = c * (x + k * x * x * x);
            let t = inner.tanh();
            let dinner = c * (T::ONE + T::from_f64(3.0) * k * x * x);
            T::from_f64(0.5) * (T::ONE + t) + T::from_f64(0.5) * x * (T::ONE - t * t) * dinner
        }
        UnaryOp::GeluErf => {
            let cdf = T::from_f64(0.5)
                * (T::ONE + (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erf());
            let pdf = (-(x * x) * T::from_f64(0.5)).exp() * T::from_f64(0.398_942_280_401_432_7);
            cdf + x * pdf
        }
        UnaryOp::Softplus => sigmoid(x),
        UnaryOp::Clamp(lo, hi) => {
            if x >= T::from_f64(lo) && x <= T::from_f64(hi) {
                T::ONE
            } else {
                T::ZERO
            }
        }
        UnaryOp::Powf(p) => T::from_f64(p) * x.powf(T::from_f64(p - 1.0)),
        UnaryOp::AddScalar(_) => T::ONE,
        UnaryOp::MulScalar(c) => T::from_f64(c),
    }
}

/// out[i] = op(x[view element i]) for every element of `xv`, in row-major order.
///
/// `out.len()` must equal `xv.elem_count()`; the caller (ember-core) guarantees it.
pub fn unary<T: Float>(op: UnaryOp, x: &[T], xv: Strided<'_>, out: &mut [T]) {
    debug_assert_eq!(out.len(), xv.elem_count());
    if let Some(r) = xv.contiguous_range() {
        for (o, &v) in out.iter_mut().zip(&x[r]) {
            *o = apply(op, v);
        }
        return;
    }
    for_each_offset(xv, |i, off| out[i] = apply(op, x[off]));
}

/// v = op(v) for every element of a contiguous buffer (the GEMM epilogue uses this).
pub fn map_in_place<T: Float>(op: UnaryOp, v: &mut [T]) {
    for x in v.iter_mut() {
        *x = apply(op, *x);
    }
}

/// dx[i] = dy[i] * op'(x[i]) using the forward output `y` where the rule needs it.
/// All four slices are contiguous and of equal length.
pub fn unary_backward<T: Float>(op: UnaryOp, x: &[T], y: &[T], dy: &[T], dx: &mut [T]) {
    debug_assert!(x.len() == dx.len() && y.len() == dx.len() && dy.len() == dx.len());
    for i in 0..dx.len() {
        dx[i] = dy[i] * derivative(op, x[i], y[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_extremes_are_exact() {
        assert_eq!(sigmoid(1000.0f32), 1.0);
        assert_eq!(sigmoid(-1000.0f32), 0.0);
        assert_eq!(sigmoid(0.0f64), 0.5);
    }

    #[test]
    fn softplus_is_stable() {
        assert_eq!(softplus(1000.0f64), 1000.0);
        assert!((softplus(-1000.0f64)).abs() < 1e-300);
        assert!((softplus(0.0f64) - 2f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let ops = [
            UnaryOp::Exp,
            UnaryOp::Sqrt,
            UnaryOp::Tanh,
            UnaryOp::Sigmoid,
            UnaryOp::GeluTanh,
            UnaryOp::GeluErf,
            UnaryOp::Softplus,
            UnaryOp::Elu(0.7),
            UnaryOp::Powf(2.5),
            UnaryOp::Sin,
            UnaryOp::Cos,
            UnaryOp::Recip,
            UnaryOp::Log,
        ];
        for op in ops {
            for &x in &[0.3f64, 1.7, -0.4, 2.9] {
                if matches!(op, UnaryOp::Sqrt | UnaryOp::Log | UnaryOp::Powf(_)) && x < 0.0 {
                    continue;
                }
                let h = 1e-6;
                let fd = (apply(op, x + h) - apply(op, x - h)) / (2.0 * h);
                let d = derivative(op, x, apply(op, x));
                assert!(
                    (fd - d).abs() < 1e-6 * (1.0 + d.abs()),
                    "{op:?} at {x}: {fd} vs {d}"
                );
            }
        }
    }
}
