//! Binary cross-entropy, forward and backward, each one pass over the data.
//!
//! Two forms, as in Keras and PyTorch:
//! - on probabilities `p`, clamped to `[eps, 1 - eps]` (Keras uses eps = 1e-7), so log(0) never
//!   appears: `-(y ln p + (1 - y) ln(1 - p))`;
//! - on logits `x`, in the stable form `max(x, 0) - x y + ln(1 + e^-|x|)`, exact for any x.
//!
//! The forward returns the *sum* of the per-element losses (accumulated in f64 in a fixed order);
//! the caller divides for a mean. The backward writes `scale * dloss/dinput` per element.

use crate::element::Float;

#[inline(always)]
fn clamp_prob(p: f64, eps: f64) -> f64 {
    if p.is_nan() {
        p
    } else {
        p.clamp(eps, 1.0 - eps)
    }
}

/// Σ -(y ln p + (1-y) ln(1-p)) with p clamped to [eps, 1-eps].
pub fn bce_probs_sum<T: Float>(p: &[T], y: &[T], eps: f64) -> f64 {
    let mut s = 0.0;
    for (&p, &y) in p.iter().zip(y) {
        let pc = clamp_prob(p.to_f64(), eps);
        let y = y.to_f64();
        s -= y * pc.ln() + (1.0 - y) * (1.0 - pc).ln();
    }
    s
}

/// dp[i] = scale * d/dp of the clamped BCE: (p - y) / (p (1 - p)) inside the clamp range, 0
/// outside it (the clamp has zero slope there), as Keras's gradient does.
pub fn bce_probs_grad<T: Float>(p: &[T], y: &[T], eps: f64, scale: f64, dp: &mut [T]) {
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

/// Σ max(x,0) - x y + ln(1 + e^-|x|).
pub fn bce_logits_sum<T: Float>(x: &[T], y: &[T]) -> f64 {
    let mut s = 0.0;
    for (&x, &y) in x.iter().zip(y) {
        let x = x.to_f64();
        s += x.max(0.0) - x * y.to_f64() + (-x.abs()).exp().ln_1p();
    }
    s
}

/// dx[i] = scale * (sigmoid(x) - y).
pub fn bce_logits_grad<T: Float>(x: &[T], y: &[T], scale: f64, dx: &mut [T]) {
    for ((d, &x), &y) in dx.iter_mut().zip(x).zip(y) {
        let s = crate::unary::sigmoid(x);
        *d = T::from_f64(scale) * (s - y);
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
        let a = bce_logits_sum(&x, &y);
        let b = bce_probs_sum(&p, &y, 1e-12);
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    #[test]
    fn extreme_logits_are_finite() {
        let s = bce_logits_sum(&[1000.0f32, -1000.0], &[1.0, 0.0]);
        assert_eq!(s, 0.0);
        let s = bce_logits_sum(&[1000.0f32], &[0.0]);
        assert_eq!(s, 1000.0);
    }
}
