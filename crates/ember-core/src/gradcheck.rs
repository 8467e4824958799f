//! `gradcheck`: compares autograd's gradients with central finite differences, in f64.
//!
//! Users call it on their own functions to check a custom layer or loss. The function's output
//! is reduced to one number with fixed, uneven weights (`Σ w_i y_i`, so no direction cancels
//! out), the inputs are converted to f64 variables, and every input element is nudged by ±eps.
//! The report names the worst element: which input, its multi-index, and both derivatives.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::grad_mode::no_grad;
use crate::tensor::Tensor;
use std::fmt;

/// The outcome of a [`gradcheck`].
#[derive(Debug, Clone)]
pub struct GradcheckReport {
    /// True when every element's error is within tolerance.
    pub passed: bool,
    /// The largest error, |analytic − numeric| / max(1, |numeric|).
    pub max_error: f64,
    /// Which input holds the worst element.
    pub worst_input: usize,
    /// The worst element's multi-index in that input.
    pub worst_index: Vec<usize>,
    /// Autograd's derivative there.
    pub analytic: f64,
    /// The finite-difference derivative there.
    pub numeric: f64,
    /// Elements checked in all.
    pub checked: usize,
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gradcheck {}: max error {:.3e} at input {} index {:?} (analytic {:.9e}, numeric {:.9e}; {} elements)",
            if self.passed { "passed" } else { "FAILED" },
            self.max_error,
            self.worst_input,
            self.worst_index,
            self.analytic,
            self.numeric,
            self.checked
        )
    }
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d].max(1);
        i /= shape[d].max(1);
    }
    idx
}

/// Fixed uneven weights for reducing an output to a scalar.
fn weights(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 + ((i as f64 + 1.0) * 0.754_877_666).fract())
        .collect()
}

fn weighted_sum(y: &Tensor) -> Result<Tensor> {
    let w = Tensor::from_vec(weights(y.elem_count()), y.shape(), y.device())?;
    y.mul(&w)?.sum_all()
}

/// Checks `f`'s gradients with respect to every input at the inputs' values.
///
/// `eps` is the finite-difference step (1e-6 suits most smooth functions in f64) and `tol` the
/// largest acceptable error (1e-6 to 1e-4). Avoid points where `f` has a kink (relu at 0).
pub fn gradcheck(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    eps: f64,
    tol: f64,
) -> Result<GradcheckReport> {
    if eps.is_nan() || eps <= 0.0 {
        return Err(Error::invalid(
            "gradcheck",
            format!("eps must be positive, got {eps}"),
        ));
    }
    let vars: Vec<Tensor> = inputs
        .iter()
        .map(|t| Ok(t.to_dtype(DType::F64)?.contiguous()?.detach().as_variable()))
        .collect::<Result<_>>()?;
    let out = f(&vars)?;
    if out.dtype() != DType::F64 {
        return Err(Error::invalid(
            "gradcheck",
            format!("f must compute in f64 on f64 inputs, got {}", out.dtype()),
        ));
    }
    let grads = weighted_sum(&out)?.backward()?;
    let mut report = GradcheckReport {
        passed: true,
        max_error: 0.0,
        worst_input: 0,
        worst_index: vec![],
        analytic: 0.0,
        numeric: 0.0,
        checked: 0,
    };
    for (k, v) in vars.iter().enumerate() {
        let base = v.to_vec::<f64>()?;
        let analytic = match grads.get(v) {
            Some(g) => g.to_vec::<f64>()?,
            None => vec![0.0; base.len()],
        };
        for i in 0..base.len() {
            let eval = |delta: f64| -> Result<f64> {
                let mut x = base.clone();
                x[i] += delta;
                let mut args = vars.clone();
                args[k] = Tensor::from_vec(x, v.shape(), v.device())?;
                no_grad(|| weighted_sum(&f(&args)?)?.to_scalar::<f64>())
            };
            let numeric = (eval(eps)? - eval(-eps)?) / (2.0 * eps);
            let err = (analytic[i] - numeric).abs() / numeric.abs().max(1.0);
            report.checked += 1;
            if err > report.max_error || err.is_nan() {
                report.max_error = if err.is_nan() { f64::INFINITY } else { err };
                report.worst_input = k;
                report.worst_index = unravel(i, v.shape());
                report.analytic = analytic[i];
                report.numeric = numeric;
            }
        }
    }
    report.passed = report.max_error <= tol;
    Ok(report)
}
