//! Differential privacy accounting for DP-SGD: the Rényi-DP accountant of the sampled Gaussian
//! mechanism.
//!
//! DP-SGD clips each example's gradient to norm C, sums the batch, adds Gaussian noise of
//! standard deviation σ·C, and draws each batch by Poisson sampling with rate q. One step is
//! then the *sampled Gaussian mechanism* (SGM); its privacy loss is tracked in Rényi
//! differential privacy (RDP, Mironov 2017), where steps compose by adding, and converted to
//! an (ε, δ) guarantee at the end.
//!
//! **RDP of one SGM step at order α** (Mironov, Talwar and Zhang 2019, "Rényi Differential
//! Privacy of the Sampled Gaussian Mechanism"): with μ₀ = N(0, σ²), μ₁ = N(1, σ²) and
//! μ = (1 − q)μ₀ + qμ₁, ε(α) = log(A_α) / (α − 1) where A_α = E_{z∼μ₀}[(μ(z)/μ₀(z))^α].
//! - For integer α the binomial expansion is finite:
//!   A_α = Σ_{k=0}^{α} C(α, k) (1 − q)^{α−k} q^k exp((k² − k) / (2σ²)).
//! - For fractional α the integral is split at z₀ = σ² log(1/q − 1) + ½, where the two mixture
//!   terms are equal, and each side expanded in the binomial series that converges there:
//!   A₁ = Σ_i C(α, i) (1 − q)^{α−i} q^i exp((i² − i)/(2σ²)) · ½ erfc((i − z₀)/(√2 σ)),
//!   A₂ = Σ_i C(α, i) q^{α−i} (1 − q)^i exp(((α−i)² − (α−i))/(2σ²)) · ½ erfc((z₀ − (α−i))/(√2 σ)),
//!   with generalised binomial coefficients (whose sign alternates once i > α); the sums run
//!   until both terms fall below e⁻³⁰.
//!
//! All sums are kept in log space (with signs), so large orders and tiny q do not overflow.
//! q = 1 is the plain Gaussian mechanism, ε(α) = α / (2σ²).
//!
//! **Conversion to (ε, δ)** (Balle et al. 2020, "Hypothesis testing interpretations and Rényi
//! differential privacy", Theorem 21): ε = min over α of
//! `rdp(α) + log((α − 1)/α) − (log δ + log α)/(α − 1)`.
//!
//! **Orders**: α ∈ {1.1, 1.2, …, 10.9} ∪ {12, 13, …, 63}, the grid Opacus uses by default, so
//! the two accountants minimise over the same set; the tests compare ε with Opacus's on ten
//! settings (`tests/goldens/rdp_epsilon.txt`, made by `scripts/goldens/rdp_accountant.py`).

use crate::error::{Result, config_err};

/// The orders α at which RDP is tracked.
pub fn default_orders() -> Vec<f64> {
    let mut v: Vec<f64> = (1..100).map(|x| 1.0 + x as f64 / 10.0).collect();
    v.extend((12..64).map(|x| x as f64));
    v
}

/// One step's RDP at every order, for the (σ, q) it was computed for.
type StepRdp = ((f64, f64), Vec<f64>);

/// Tracks the privacy spent by DP-SGD steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RdpAccountant {
    /// (noise multiplier σ, sampling rate q, steps), one entry per change of settings.
    history: Vec<(f64, f64, u64)>,
    /// One step's RDP at every order for the (σ, q) last evaluated: the fractional orders'
    /// series are long, and training asks for ε after every epoch with the same settings.
    cache: std::cell::RefCell<Option<StepRdp>>,
}

impl RdpAccountant {
    /// An accountant with nothing spent.
    pub fn new() -> RdpAccountant {
        RdpAccountant::default()
    }

    /// Records `steps` steps of the sampled Gaussian mechanism with noise multiplier `sigma`
    /// (noise standard deviation over the clipping norm) and Poisson sampling rate `q`.
    pub fn record(&mut self, sigma: f64, q: f64, steps: u64) -> Result<()> {
        check_mechanism(sigma, q)?;
        match self.history.last_mut() {
            Some((s, r, n)) if *s == sigma && *r == q => *n += steps,
            _ => self.history.push((sigma, q, steps)),
        }
        Ok(())
    }

    /// The steps recorded so far.
    pub fn steps(&self) -> u64 {
        self.history.iter().map(|h| h.2).sum()
    }

    /// The ε of the recorded steps for `delta`, and the order α that gave it.
    pub fn epsilon(&self, delta: f64) -> Result<(f64, f64)> {
        if !(delta > 0.0 && delta < 1.0) {
            return config_err(format!("delta {delta} must lie in (0, 1)"));
        }
        if self.history.is_empty() {
            return Ok((0.0, f64::NAN));
        }
        let orders = default_orders();
        let mut rdp = vec![0.0; orders.len()];
        for &(sigma, q, steps) in &self.history {
            let mut cache = self.cache.borrow_mut();
            let per_step = match &*cache {
                Some((key, v)) if *key == (sigma, q) => v.clone(),
                _ => {
                    let v: Vec<f64> = orders.iter().map(|&a| sgm_rdp(q, sigma, a)).collect();
                    *cache = Some(((sigma, q), v.clone()));
                    v
                }
            };
            for (r, p) in rdp.iter_mut().zip(per_step) {
                *r += steps as f64 * p;
            }
        }
        Ok(epsilon_from_rdp(&orders, &rdp, delta))
    }
}

/// Checks σ > 0 and q in (0, 1].
fn check_mechanism(sigma: f64, q: f64) -> Result<()> {
    if !(sigma > 0.0 && sigma.is_finite()) {
        return config_err(format!(
            "noise multiplier {sigma} must be a positive number (σ = 0 gives no privacy)"
        ));
    }
    if !(q > 0.0 && q <= 1.0) {
        return config_err(format!("sampling rate {q} must lie in (0, 1]"));
    }
    Ok(())
}

/// ε = min over α of rdp(α) + log((α−1)/α) − (log δ + log α)/(α − 1), and its α.
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = r + ((a - 1.0) / a).ln() - (delta.ln() + a.ln()) / (a - 1.0);
        if eps.is_finite() && eps < best.0 {
            best = (eps, a);
        }
    }
    (best.0.max(0.0), best.1)
}

/// RDP at order `alpha` of one step of the sampled Gaussian mechanism.
pub fn sgm_rdp(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let log_a = if alpha.fract() == 0.0 {
        log_a_integer(q, sigma, alpha as u64)
    } else {
        log_a_fractional(q, sigma, alpha)
    };
    log_a / (alpha - 1.0)
}

/// A signed number kept as (sign, log |x|).
#[derive(Clone, Copy)]
struct Signed {
    neg: bool,
    log: f64,
}

impl Signed {
    const ZERO: Signed = Signed {
        neg: false,
        log: f64::NEG_INFINITY,
    };

    /// The sum of two signed log-space numbers.
    fn add(self, o: Signed) -> Signed {
        if self.log == f64::NEG_INFINITY {
            return o;
        }
        if o.log == f64::NEG_INFINITY {
            return self;
        }
        let (big, small) = if self.log >= o.log {
            (self, o)
        } else {
            (o, self)
        };
        let d = (small.log - big.log).exp();
        if big.neg == small.neg {
            Signed {
                neg: big.neg,
                log: big.log + d.ln_1p(),
            }
        } else if d >= 1.0 {
            Signed::ZERO
        } else {
            Signed {
                neg: big.neg,
                log: big.log + (-d).ln_1p(),
            }
        }
    }
}

/// log A_α for integer α (the finite binomial sum).
fn log_a_integer(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut acc = Signed::ZERO;
    let mut log_binom = 0.0; // log C(α, 0)
    for k in 0..=alpha {
        if k > 0 {
            log_binom += ((alpha - k + 1) as f64).ln() - (k as f64).ln();
        }
        let kf = k as f64;
        let term = log_binom
            + (alpha - k) as f64 * (-q).ln_1p()
            + kf * q.ln()
            + (kf * kf - kf) / (2.0 * sigma * sigma);
        acc = acc.add(Signed {
            neg: false,
            log: term,
        });
    }
    acc.log
}

/// log A_α for fractional α (the two series split at z₀; see the module doc).
fn log_a_fractional(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut a0, mut a1) = (Signed::ZERO, Signed::ZERO);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let s2 = sigma * std::f64::consts::SQRT_2;
    let (log_q, log_1q) = (q.ln(), (-q).ln_1p());
    // Generalised binomial C(α, i) as sign and log magnitude, updated by (α − i)/(i + 1).
    let (mut coef_neg, mut log_coef) = (false, 0.0f64);
    for i in 0..100_000u32 {
        let fi = f64::from(i);
        let j = alpha - fi;
        let log_e0 = (fi * fi - fi) / (2.0 * sigma * sigma) + log_half_erfc((fi - z0) / s2);
        let log_e1 = (j * j - j) / (2.0 * sigma * sigma) + log_half_erfc((z0 - j) / s2);
        let log_t0 = log_coef + fi * log_q + j * log_1q + log_e0;
        let log_t1 = log_coef + j * log_q + fi * log_1q + log_e1;
        a0 = a0.add(Signed {
            neg: coef_neg,
            log: log_t0,
        });
        a1 = a1.add(Signed {
            neg: coef_neg,
            log: log_t1,
        });
        if fi > alpha && log_t0.max(log_t1) < -30.0 {
            break;
        }
        // C(α, i + 1) = C(α, i) · (α − i)/(i + 1).
        let ratio = (alpha - fi) / (fi + 1.0);
        if ratio == 0.0 {
            break;
        }
        coef_neg ^= ratio < 0.0;
        log_coef += ratio.abs().ln();
    }
    a0.add(a1).log
}

/// log(½ erfc(x)), accurate far into both tails.
fn log_half_erfc(x: f64) -> f64 {
    if x >= 2.0 {
        // erfc(x) = exp(−x²)/√π · F(x), F the continued fraction below (no underflow).
        -x * x - 0.5 * std::f64::consts::PI.ln() + erfc_cf(x).ln() - std::f64::consts::LN_2
    } else {
        (0.5 * erfc(x)).ln()
    }
}

/// erfc(x) for any x.
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        2.0 - erfc(-x)
    } else if x < 2.0 {
        1.0 - erf_series(x)
    } else {
        (-x * x).exp() / std::f64::consts::PI.sqrt() * erfc_cf(x)
    }
}

/// erf(x) by its Taylor series, 2/√π Σ (−1)ⁿ x²ⁿ⁺¹ / (n! (2n + 1)), for |x| < 2 (where the
/// terms stay below 2⁴ and the sum loses no significant digits).
fn erf_series(x: f64) -> f64 {
    let (mut term, mut sum, x2) = (x, x, x * x);
    for n in 1..200 {
        term *= -x2 / n as f64;
        let t = term / (2 * n + 1) as f64;
        sum += t;
        if t.abs() < 1e-18 * sum.abs() {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// The continued fraction 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))) with erfc(x) =
/// exp(−x²)/√π times it, evaluated backwards from a fixed depth (converged to double
/// precision for x ≥ 2).
fn erfc_cf(x: f64) -> f64 {
    let mut f = x;
    for k in (1..=300).rev() {
        f = x + (k as f64 / 2.0) / f;
    }
    1.0 / f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        // erfc(0) = 1, erfc(1) = 0.157299207050285..., erfc(3) = 2.20904969985854e-5,
        // erfc(−1) = 1.842700792949715, erfc(10) = 2.08848758376254e-45.
        let cases = [
            (0.0, 1.0),
            (1.0, 0.157_299_207_050_285_1),
            (3.0, 2.209_049_699_858_544e-5),
            (-1.0, 1.842_700_792_949_715),
            (10.0, 2.088_487_583_762_545e-45),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(
                ((got - want) / want).abs() < 1e-13,
                "erfc({x}) = {got}, want {want}"
            );
        }
        // The log form keeps going where erfc underflows: log ½erfc(40) ≈ −1600 − …
        let l = log_half_erfc(40.0);
        assert!((l - (-1600.0 - 0.5 * std::f64::consts::PI.ln() - (80.0f64).ln())).abs() < 1e-3);
    }

    #[test]
    fn integer_and_fractional_forms_agree() {
        // At an integer order the fractional series must give the finite sum's value.
        for (q, sigma) in [(0.01, 1.0), (0.1, 2.0), (0.004, 0.8)] {
            for alpha in [2u64, 5, 12] {
                let a = log_a_integer(q, sigma, alpha);
                let b = log_a_fractional(q, sigma, alpha as f64 + 1e-9);
                assert!(
                    (a - b).abs() < 1e-6 * a.abs().max(1e-3),
                    "{q} {sigma} {alpha}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn bad_settings_are_errors() {
        let mut acc = RdpAccountant::new();
        assert!(
            acc.record(0.0, 0.01, 1)
                .unwrap_err()
                .to_string()
                .contains("noise multiplier")
        );
        assert!(acc.record(-1.0, 0.01, 1).is_err());
        assert!(
            acc.record(1.0, 0.0, 1)
                .unwrap_err()
                .to_string()
                .contains("sampling rate")
        );
        assert!(acc.record(1.0, 1.5, 1).is_err());
        acc.record(1.0, 0.01, 10).unwrap();
        acc.record(1.0, 0.01, 5).unwrap();
        assert_eq!(acc.steps(), 15);
        assert!(acc.epsilon(1.0).is_err() && acc.epsilon(0.0).is_err());
        // No steps: no privacy spent.
        assert_eq!(RdpAccountant::new().epsilon(1e-5).unwrap().0, 0.0);
    }
}
