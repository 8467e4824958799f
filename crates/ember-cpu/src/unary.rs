//! Elementwise unary maps: math functions and activations, forward and backward.
//!
//! [`unary`] applies a [`UnaryOp`] to a strided input and writes a contiguous output.
//! [`unary_backward`] computes the input gradient of an activation from the forward input `x`,
//! the forward output `y` and the output gradient `dy` (all contiguous, same length), in one pass:
//! this is the fused backward the autograd rules call instead of chaining tensor ops.
//!
//! Speed: contiguous f32 buffers take a vectorised path (the [`crate::vmath`] functions for
//! exp, log, tanh, sigmoid, tanh-form GELU, softplus and ELU, [`crate::verf`] for exact GELU,
//! plain selects for the rest), compiled twice (exact GELU three times: see that module):
//! inside `#[target_feature(enable = "avx2,fma")]` functions and for the portable baseline, the
//! copy chosen by [`crate::isa::active`]. Large buffers are split into the fixed chunks of
//! [`crate::par`]. f64 and strided views keep the scalar `std` math (they are the reference
//! and the gradient-check path, where accuracy matters more than speed), chunked the same way.

use crate::element::Float;
use crate::error::{LengthMismatch, OperandError, check_len, check_view, checked_count};
use crate::isa::{self, Isa};
use crate::par::{CHUNK, parallel};
use crate::strided::{Strided, for_each_offset};
use crate::verf;
use crate::vmath::{self, Fused, MulAdd, Unfused};
use rayon::prelude::*;

pub use ember_ops::UnaryOp;

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
        // At −inf the limit −0 (x·Φ(x) would be −inf·0 = NaN), as the f32 path (crate::verf).
        UnaryOp::GeluErf if x == T::neg_infinity() => -T::ZERO,
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
        UnaryOp::Silu => x * sigmoid(x),
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
            // At ±inf the limits 1 and 0 (x·φ(x) would be ±inf·0 = NaN).
            if x.abs() == T::infinity() {
                cdf
            } else {
                cdf + x * pdf
            }
        }
        UnaryOp::Softplus => sigmoid(x),
        UnaryOp::Clamp(lo, hi) => {
            if x >= T::from_f64(lo) && x <= T::from_f64(hi) {
                T::ONE
            } else {
                T::ZERO
            }
        }
        // p = 0: the slope is 0 everywhere, also at x = 0 where p·x^(p−1) would be 0·∞
        // (PyTorch masks it the same way).
        UnaryOp::Powf(0.0) => T::ZERO,
        UnaryOp::Powf(p) => T::from_f64(p) * x.powf(T::from_f64(p - 1.0)),
        UnaryOp::AddScalar(_) => T::ONE,
        UnaryOp::MulScalar(c) => T::from_f64(c),
        // d(x s) = s + x s (1 - s), s = sigmoid(x)
        UnaryOp::Silu => {
            let s = sigmoid(x);
            s + x * s * (T::ONE - s)
        }
    }
}

/// `out[i] = op(x[view element i])` for every element of `xv`, in row-major order.
///
/// `Err` (nothing written) unless `xv` fits in `x` and `out.len()` equals its element count.
pub fn unary<T: Float>(
    op: UnaryOp,
    x: &[T],
    xv: Strided<'_>,
    out: &mut [T],
) -> Result<(), OperandError> {
    check_view("unary", "input", xv, x.len())?;
    let n = checked_count("unary", "input", xv.shape)?;
    check_len("unary", "output", n, out.len())?;
    if let Some(r) = xv.contiguous_range() {
        let x = &x[r];
        let isa = isa::active();
        if let (Some(xf), Some(of)) = (T::as_f32_slice(x), T::as_f32_slice_mut(out)) {
            chunked2(xf, of, |xc, oc| map_f32(isa, op, xc, oc));
        } else {
            chunked2(x, out, |xc, oc| {
                for (o, &v) in oc.iter_mut().zip(xc) {
                    *o = apply(op, v);
                }
            });
        }
        return Ok(());
    }
    for_each_offset(xv, |i, off| out[i] = apply(op, x[off]));
    Ok(())
}

/// v = op(v) for every element of a contiguous buffer (the GEMM epilogue uses this).
pub fn map_in_place<T: Float>(op: UnaryOp, v: &mut [T]) {
    map_in_place_isa(isa::active(), op, v)
}

/// [`map_in_place`] on a given path (kernels that already chose one pass it down, because
/// rayon workers do not see a caller's scoped [`crate::isa::with`] override).
pub(crate) fn map_in_place_isa<T: Float>(isa: Isa, op: UnaryOp, v: &mut [T]) {
    if let Some(vf) = T::as_f32_slice_mut(v) {
        let run = |c: &mut [f32]| map_f32_in_place(isa, op, c);
        if parallel(vf.len()) {
            vf.par_chunks_mut(CHUNK).for_each(run);
        } else {
            run(vf);
        }
        return;
    }
    for x in v.iter_mut() {
        *x = apply(op, *x);
    }
}

/// Runs `f` over matching fixed-size chunks of `x` and `out`, in parallel for large buffers.
fn chunked2<A: Sync, B: Send>(x: &[A], out: &mut [B], f: impl Fn(&[A], &mut [B]) + Sync) {
    if parallel(out.len()) {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, c)| f(c, o));
    } else {
        f(x, out);
    }
}

/// Expands `$body` once per op with `$g` bound to that op's f32 function, generic over the
/// multiply-add flavour `$F`; ops without a vectorisable form fall back to [`apply`].
macro_rules! per_op_f32 {
    ($op:expr, $F:ty, $g:ident => $body:expr) => {
        match $op {
            UnaryOp::Neg => {
                let $g = |v: f32| -v;
                $body
            }
            UnaryOp::Abs => {
                let $g = |v: f32| v.abs();
                $body
            }
            UnaryOp::Sqr => {
                let $g = |v: f32| v * v;
                $body
            }
            UnaryOp::Sqrt => {
                let $g = |v: f32| v.sqrt();
                $body
            }
            UnaryOp::Recip => {
                let $g = |v: f32| 1.0 / v;
                $body
            }
            UnaryOp::Relu => {
                let $g = |v: f32| if v > 0.0 || v.is_nan() { v } else { 0.0 };
                $body
            }
            UnaryOp::LeakyRelu(a) => {
                let a = a as f32;
                let $g = move |v: f32| if v > 0.0 { v } else { v * a };
                $body
            }
            UnaryOp::Elu(a) => {
                let a = a as f32;
                let $g = move |v: f32| {
                    if v > 0.0 {
                        v
                    } else {
                        a * (vmath::exp::<$F>(v) - 1.0)
                    }
                };
                $body
            }
            UnaryOp::Exp => {
                let $g = vmath::exp::<$F>;
                $body
            }
            UnaryOp::Log => {
                let $g = vmath::ln::<$F>;
                $body
            }
            UnaryOp::Tanh => {
                let $g = vmath::tanh::<$F>;
                $body
            }
            UnaryOp::Sigmoid => {
                let $g = vmath::sigmoid::<$F>;
                $body
            }
            UnaryOp::GeluTanh => {
                let $g = vmath::gelu::<$F>;
                $body
            }
            UnaryOp::Softplus => {
                let $g = vmath::softplus::<$F>;
                $body
            }
            UnaryOp::Clamp(lo, hi) => {
                let (lo, hi) = (lo as f32, hi as f32);
                let $g = move |v: f32| {
                    if v < lo {
                        lo
                    } else if v > hi {
                        hi
                    } else {
                        v
                    }
                };
                $body
            }
            UnaryOp::AddScalar(c) => {
                let c = c as f32;
                let $g = move |v: f32| v + c;
                $body
            }
            UnaryOp::MulScalar(c) => {
                let c = c as f32;
                let $g = move |v: f32| v * c;
                $body
            }
            other => {
                let $g = move |v: f32| apply(other, v);
                $body
            }
        }
    };
}

/// The ops whose slice loops run in two passes per block (`vmath::two_pass`: their
/// per-element dependency chains are long enough to fill the out-of-order window).
#[inline(always)]
fn two_pass(op: UnaryOp) -> Option<vmath::TwoPass> {
    match op {
        UnaryOp::Softplus => Some(vmath::TwoPass::Softplus),
        UnaryOp::Sigmoid => Some(vmath::TwoPass::Sigmoid),
        UnaryOp::Tanh => Some(vmath::TwoPass::Tanh),
        _ => None,
    }
}

#[inline(always)]
fn map_body<F: MulAdd>(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    if let Some(which) = two_pass(op) {
        return vmath::two_pass_slice::<F>(which, x, out);
    }
    if op == UnaryOp::Log {
        return vmath::ln_slice::<F>(x, out);
    }
    per_op_f32!(op, F, g => {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = g(v);
        }
    })
}

#[inline(always)]
fn map_in_place_body<F: MulAdd>(op: UnaryOp, v: &mut [f32]) {
    if let Some(which) = two_pass(op) {
        return vmath::two_pass_slice_in_place::<F>(which, v);
    }
    if op == UnaryOp::Log {
        return vmath::ln_slice_in_place::<F>(v);
    }
    per_op_f32!(op, F, g => {
        for x in v.iter_mut() {
            *x = g(*x);
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn map_avx2(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    map_body::<Fused>(op, x, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn map_in_place_avx2(op: UnaryOp, v: &mut [f32]) {
    map_in_place_body::<Fused>(op, v)
}

/// The vectorised f32 map on one chunk, on the path `isa` names.
pub fn map_f32(isa: Isa, op: UnaryOp, x: &[f32], out: &mut [f32]) {
    if op == UnaryOp::GeluErf {
        // Its own module, with a 16-lane AVX-512 copy (crate::verf).
        return verf::gelu_erf_slice(isa, x, out);
    }
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        unsafe { map_avx2(op, x, out) };
        return;
    }
    let _ = isa;
    map_body::<Unfused>(op, x, out)
}

fn map_f32_in_place(isa: Isa, op: UnaryOp, v: &mut [f32]) {
    if op == UnaryOp::GeluErf {
        return verf::gelu_erf_slice_in_place(isa, v);
    }
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        unsafe { map_in_place_avx2(op, v) };
        return;
    }
    let _ = isa;
    map_in_place_body::<Unfused>(op, v)
}

/// `dx[i] = dy[i] * op'(x[i])` using the forward output `y` where the rule needs it.
/// All four slices are contiguous; `Err` (nothing written) unless their lengths are equal.
pub fn unary_backward<T: Float>(
    op: UnaryOp,
    x: &[T],
    y: &[T],
    dy: &[T],
    dx: &mut [T],
) -> Result<(), LengthMismatch> {
    check_len("unary_backward", "output", x.len(), y.len())?;
    check_len("unary_backward", "upstream gradient", x.len(), dy.len())?;
    check_len("unary_backward", "input gradient", x.len(), dx.len())?;
    let isa = isa::active();
    let body = |i0: usize, dxc: &mut [T]| {
        let m = dxc.len();
        let (xc, yc, dyc) = (&x[i0..i0 + m], &y[i0..i0 + m], &dy[i0..i0 + m]);
        if let (Some(xf), Some(yf), Some(dyf)) = (
            T::as_f32_slice(xc),
            T::as_f32_slice(yc),
            T::as_f32_slice(dyc),
        ) && let Some(dxf) = T::as_f32_slice_mut(dxc)
        {
            backward_f32(isa, op, xf, yf, dyf, dxf);
            return;
        }
        for i in 0..m {
            dxc[i] = dyc[i] * derivative(op, xc[i], yc[i]);
        }
    };
    if parallel(dx.len()) {
        dx.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, d)| body(c * CHUNK, d));
    } else {
        body(0, dx);
    }
    Ok(())
}

/// d/dx of the tanh-form GELU with the vectorisable tanh.
#[inline(always)]
fn gelu_derivative<F: MulAdd>(x: f32) -> f32 {
    const C: f32 = SQRT_2_OVER_PI as f32;
    const K: f32 = GELU_C as f32;
    let inner = C * (x + K * x * x * x);
    let t = vmath::tanh::<F>(inner);
    let dinner = C * (1.0 + 3.0 * K * x * x);
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner
}

#[inline(always)]
fn backward_body<F: MulAdd>(op: UnaryOp, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    macro_rules! each {
        ($d:expr) => {
            for i in 0..dx.len() {
                let (xi, yi) = (x[i], y[i]);
                let _ = (xi, yi);
                dx[i] = dy[i] * $d(xi, yi);
            }
        };
    }
    // One loop per op, so the op is a constant inside each loop and the loop vectorises.
    match op {
        UnaryOp::GeluTanh => each!(|x, _| gelu_derivative::<F>(x)),
        UnaryOp::Softplus => each!(|x, _| vmath::sigmoid::<F>(x)),
        UnaryOp::Relu => each!(|x, y| derivative(UnaryOp::Relu, x, y)),
        UnaryOp::Sigmoid => each!(|x, y| derivative(UnaryOp::Sigmoid, x, y)),
        UnaryOp::Tanh => each!(|x, y| derivative(UnaryOp::Tanh, x, y)),
        UnaryOp::Exp => each!(|x, y| derivative(UnaryOp::Exp, x, y)),
        UnaryOp::Log => each!(|x, y| derivative(UnaryOp::Log, x, y)),
        UnaryOp::Sqrt => each!(|x, y| derivative(UnaryOp::Sqrt, x, y)),
        UnaryOp::Sqr => each!(|x, y| derivative(UnaryOp::Sqr, x, y)),
        UnaryOp::Neg => each!(|x, y| derivative(UnaryOp::Neg, x, y)),
        UnaryOp::Abs => each!(|x, y| derivative(UnaryOp::Abs, x, y)),
        UnaryOp::Recip => each!(|x, y| derivative(UnaryOp::Recip, x, y)),
        UnaryOp::LeakyRelu(a) => each!(|x, y| derivative(UnaryOp::LeakyRelu(a), x, y)),
        UnaryOp::Elu(a) => each!(|x, y| derivative(UnaryOp::Elu(a), x, y)),
        UnaryOp::MulScalar(c) => each!(|x, y| derivative(UnaryOp::MulScalar(c), x, y)),
        other => each!(|x, y| derivative(other, x, y)),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_avx2(op: UnaryOp, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    backward_body::<Fused>(op, x, y, dy, dx)
}

fn backward_f32(isa: Isa, op: UnaryOp, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32]) {
    if op == UnaryOp::GeluErf {
        return verf::gelu_erf_backward_slice(isa, x, dy, dx);
    }
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        unsafe { backward_avx2(op, x, y, dy, dx) };
        return;
    }
    let _ = isa;
    backward_body::<Unfused>(op, x, y, dy, dx)
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

    fn inputs() -> Vec<f32> {
        let mut v: Vec<f32> = (0..4000).map(|i| (i as f32 - 2000.0) * 0.013).collect();
        v.extend([
            0.0,
            -0.0,
            1e-40,
            -1e-40,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            100.0,
            -100.0,
        ]);
        v
    }

    /// |got - want| within `ulps` f32 ulps of want, or both NaN, or equal infinities.
    fn close(got: f32, want: f64, ulps: f64, abs: f64) -> bool {
        if want.is_nan() {
            return got.is_nan();
        }
        if want.is_infinite() || (want as f32).is_infinite() {
            return got as f64 == want
                || (got.is_infinite() && got.signum() as f64 == want.signum());
        }
        let tol = (want.abs() * ulps * f32::EPSILON as f64).max(abs);
        (got as f64 - want).abs() <= tol
    }

    #[test]
    fn vectorised_paths_match_f64_reference() {
        let x = inputs();
        for isa in crate::isa::supported() {
            for op in UnaryOp::ALL {
                let mut out = vec![0.0f32; x.len()];
                crate::isa::with(isa, || {
                    unary(op, &x, Strided::new(&[x.len()], &[1], 0), &mut out)
                })
                .expect("supported")
                .unwrap();
                for (&xi, &got) in x.iter().zip(&out) {
                    let want = apply(op, xi as f64);
                    // Cancellation in GELU's tail and ELU near 0 is judged in absolute terms.
                    assert!(
                        close(got, want, 8.0, 1e-6 * (1.0 + xi.abs() as f64)),
                        "{isa} {op:?}({xi:e}) = {got:e}, want {want:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn backward_paths_match_f64_reference() {
        let x: Vec<f32> = (0..3000)
            .map(|i| (i as f32 - 1500.0) * 0.011 + 0.003)
            .collect();
        let dy: Vec<f32> = (0..3000)
            .map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6)
            .collect();
        for isa in crate::isa::supported() {
            for op in UnaryOp::ALL {
                let xs: Vec<f32> = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Powf(_))
                {
                    x.iter().map(|v| v.abs() + 0.01).collect()
                } else {
                    x.clone()
                };
                let y: Vec<f32> = xs.iter().map(|&v| apply(op, v)).collect();
                let mut dx = vec![0.0f32; x.len()];
                crate::isa::with(isa, || unary_backward(op, &xs, &y, &dy, &mut dx))
                    .expect("supported")
                    .unwrap();
                for i in 0..x.len() {
                    let want = dy[i] as f64 * derivative(op, xs[i] as f64, y[i] as f64);
                    assert!(
                        close(dx[i], want, 64.0, 1e-5),
                        "{isa} {op:?}'({}) = {}, want {want}",
                        xs[i],
                        dx[i]
                    );
                }
            }
        }
    }

    #[test]
    fn strided_view_and_f64_use_scalar_path() {
        // A 3x2 transpose of a 2x3 buffer.
        let x = [1.0f64, -2.0, 3.0, -4.0, 5.0, -6.0];
        let mut out = [0.0; 6];
        unary(
            UnaryOp::Relu,
            &x,
            Strided::new(&[3, 2], &[1, 3], 0),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [1.0, 0.0, 0.0, 5.0, 3.0, 0.0]);
    }

    #[test]
    fn large_maps_are_identical_for_any_thread_count() {
        let n = crate::par::PAR_MIN * 3 + 17;
        let x: Vec<f32> = (0..n).map(|i| ((i % 1999) as f32 - 999.0) * 0.01).collect();
        let go = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| {
                    let mut out = vec![0.0f32; n];
                    unary(UnaryOp::GeluTanh, &x, Strided::new(&[n], &[1], 0), &mut out).unwrap();
                    let mut dx = vec![0.0f32; n];
                    unary_backward(UnaryOp::GeluTanh, &x, &out, &x, &mut dx).unwrap();
                    (out, dx)
                })
        };
        assert_eq!(go(1), go(2));
    }
}
