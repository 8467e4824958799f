//! Magnitude pruning: zero the smallest weights, keep them zero while the rest fine-tune.
//!
//! The criterion is Zhu & Gupta's ("To prune, or not to prune", 2017) and TensorFlow Model
//! Optimization's: within the pruned set of weights, the entries of smallest absolute value are
//! set to zero. The set is one layer's weight ([`PruneScope::PerLayer`]: each weight matrix
//! reaches the target sparsity) or all of them at once ([`PruneScope::Global`]: one threshold,
//! so layers with many small weights lose more). Which tensors are pruned: every parameter whose
//! name ends in `weight` and has at least two dimensions (Dense, convolution, embedding and
//! recurrent matrices); biases and normalisation scales are left alone, as both references do.
//!
//! **Keeping pruned weights at zero.** A mask (1 kept, 0 pruned) per tensor is installed in the
//! [`Optimizer`](crate::optim::Optimizer) ([`Optimizer::set_mask`](crate::optim::Optimizer::set_mask)):
//! the gradient is masked before the update and the weight and its state (Adam's two moments,
//! momentum, AdaGrad's accumulator) are multiplied by the mask after it, so a pruned weight is
//! exactly 0 after every step and checkpoints store exact zeros.
//!
//! **Gradual pruning.** [`PolynomialDecay`] is Zhu & Gupta's schedule,
//! `s(t) = s_f + (s_i − s_f)·(1 − (t − t₀)/(t₁ − t₀))³` for optimizer steps `t₀ ≤ t ≤ t₁`, with
//! the masks recomputed every `frequency` steps and at `t₁`; give it to
//! [`FitConfig::pruning`](crate::model::FitConfig) and `fit` applies it before each step.
//! Because pruned weights are 0, they stay among the smallest and the mask only grows.
//!
//! Ties (equal magnitudes, pruned zeros) are broken by position (tensor order, then index), so
//! masks are deterministic. See [`crate::sparse`] for the compressed (CSR) inference format.

use crate::error::{Result, config_err};
use crate::model::Model;
use ember_core::{Device, Tensor};

/// Which weights share one magnitude threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PruneScope {
    /// Each weight tensor is pruned to the target sparsity on its own.
    #[default]
    PerLayer,
    /// One threshold over all pruned weights together.
    Global,
}

/// Zhu & Gupta's gradual sparsity schedule over optimizer steps (TF-MOT's `PolynomialDecay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolynomialDecay {
    /// Sparsity at `begin_step`, in `[0, 1)`.
    pub initial_sparsity: f64,
    /// Sparsity from `end_step` on, in `[0, 1)`.
    pub final_sparsity: f64,
    /// First step (optimizer iterations completed) at which masks are set.
    pub begin_step: u64,
    /// Step at which the final sparsity is reached.
    pub end_step: u64,
    /// Steps between mask updates.
    pub frequency: u64,
    /// Exponent of the decay (3 in the paper and TF-MOT).
    pub power: f64,
}

impl PolynomialDecay {
    /// A cubic schedule from `initial` to `final_` sparsity over steps `begin..=end`, updating
    /// masks every `frequency` steps.
    pub fn new(initial: f64, final_: f64, begin: u64, end: u64, frequency: u64) -> Result<Self> {
        let s = PolynomialDecay {
            initial_sparsity: initial,
            final_sparsity: final_,
            begin_step: begin,
            end_step: end,
            frequency,
            power: 3.0,
        };
        s.validate()?;
        Ok(s)
    }

    /// A schedule that prunes to `sparsity` at once, before the first step.
    pub fn constant(sparsity: f64) -> Result<Self> {
        PolynomialDecay::new(sparsity, sparsity, 0, 0, 1)
    }

    /// Checks the settings, naming the wrong one.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("initial_sparsity", self.initial_sparsity),
            ("final_sparsity", self.final_sparsity),
        ] {
            check_sparsity(name, v)?;
        }
        if self.end_step < self.begin_step {
            return config_err(format!(
                "pruning: end_step {} is before begin_step {}",
                self.end_step, self.begin_step
            ));
        }
        if self.frequency == 0 {
            return config_err("pruning: frequency must be at least 1 step");
        }
        if !(self.power.is_finite() && self.power > 0.0) {
            return config_err(format!("pruning: power {} must be > 0", self.power));
        }
        Ok(())
    }

    /// The target sparsity after `step` completed optimizer steps (0 before `begin_step`).
    pub fn sparsity_at(&self, step: u64) -> f64 {
        if step < self.begin_step {
            return 0.0;
        }
        if step >= self.end_step {
            return self.final_sparsity;
        }
        let span = (self.end_step - self.begin_step) as f64;
        let progress = (step - self.begin_step) as f64 / span;
        // s_i + (s_f − s_i)·(1 − (1 − p)³): the same curve, exact at both ends.
        self.initial_sparsity
            + (self.final_sparsity - self.initial_sparsity)
                * (1.0 - (1.0 - progress).powf(self.power))
    }

    /// Whether masks are recomputed before step `step + 1` (after `step` completed steps).
    pub fn is_update_step(&self, step: u64) -> bool {
        step >= self.begin_step
            && step <= self.end_step
            && ((step - self.begin_step).is_multiple_of(self.frequency) || step == self.end_step)
    }
}

/// Gradual magnitude pruning during `fit` ([`FitConfig::pruning`](crate::model::FitConfig)).
#[derive(Debug, Clone, PartialEq)]
pub struct Pruning {
    /// Target sparsity over steps.
    pub schedule: PolynomialDecay,
    /// Per layer or global threshold.
    pub scope: PruneScope,
}

impl Pruning {
    /// Pruning with `schedule`, per layer.
    pub fn new(schedule: PolynomialDecay) -> Pruning {
        Pruning {
            schedule,
            scope: PruneScope::PerLayer,
        }
    }

    /// Sets the scope (builder style).
    pub fn with_scope(mut self, scope: PruneScope) -> Pruning {
        self.scope = scope;
        self
    }

    /// Called by `fit` before each optimizer step: recomputes and installs the masks when the
    /// schedule says so.
    pub(crate) fn before_step(&self, model: &mut Model) -> Result<()> {
        let step = model.optimizer.iterations();
        if self.schedule.is_update_step(step) {
            prune(model, self.schedule.sparsity_at(step), self.scope)?;
        }
        Ok(())
    }
}

fn check_sparsity(name: &str, v: f64) -> Result<()> {
    if !(0.0..1.0).contains(&v) {
        return config_err(format!(
            "pruning: {name} must be in [0, 1) (the fraction of weights set to zero), got {v}"
        ));
    }
    Ok(())
}

/// Whether a parameter is pruned: a name ending in `weight` and at least two dimensions.
pub fn is_prunable(name: &str, t: &Tensor) -> bool {
    name.ends_with("weight") && t.rank() >= 2
}

/// The prunable parameters of `params` (see [`is_prunable`]), in order.
pub fn prunable(params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    params
        .iter()
        .filter(|(n, t)| is_prunable(n, t))
        .cloned()
        .collect()
}

/// Masks (1 kept, 0 pruned, in each tensor's dtype and device) that zero a fraction
/// `sparsity` of the entries of smallest magnitude, per tensor or over all of them.
pub fn magnitude_masks(
    params: &[(String, Tensor)],
    sparsity: f64,
    scope: PruneScope,
) -> Result<Vec<(String, Tensor)>> {
    check_sparsity("sparsity", sparsity)?;
    let values: Vec<Vec<f64>> = params
        .iter()
        .map(|(_, t)| t.to_vec::<f64>())
        .collect::<std::result::Result<_, _>>()?;
    let mut keep: Vec<Vec<f64>> = values.iter().map(|v| vec![1.0; v.len()]).collect();
    match scope {
        PruneScope::PerLayer => {
            for (v, k) in values.iter().zip(keep.iter_mut()) {
                let mut order: Vec<usize> = (0..v.len()).collect();
                order.sort_by(|&a, &b| v[a].abs().total_cmp(&v[b].abs()).then(a.cmp(&b)));
                let cut = (sparsity * v.len() as f64).round() as usize;
                for &i in order.iter().take(cut) {
                    k[i] = 0.0;
                }
            }
        }
        PruneScope::Global => {
            let mut order: Vec<(usize, usize)> = values
                .iter()
                .enumerate()
                .flat_map(|(t, v)| (0..v.len()).map(move |i| (t, i)))
                .collect();
            order.sort_by(|&(ta, ia), &(tb, ib)| {
                values[ta][ia]
                    .abs()
                    .total_cmp(&values[tb][ib].abs())
                    .then((ta, ia).cmp(&(tb, ib)))
            });
            let cut = (sparsity * order.len() as f64).round() as usize;
            for &(t, i) in order.iter().take(cut) {
                keep[t][i] = 0.0;
            }
        }
    }
    params
        .iter()
        .zip(keep)
        .map(|((name, p), k)| {
            let m = Tensor::from_vec(k, p.shape().to_vec(), Device::Cpu)?
                .to_dtype(p.dtype())?
                .to_device(p.device())?;
            Ok((name.clone(), m))
        })
        .collect()
}

/// Prunes `model`'s prunable weights to `sparsity` now (one shot) and installs the masks in
/// its optimizer, so later training keeps the pruned weights at zero.
pub fn prune(model: &mut Model, sparsity: f64, scope: PruneScope) -> Result<()> {
    let params = prunable(model.network.parameters_ref());
    if params.is_empty() {
        return config_err("pruning: the model has no weight matrices to prune");
    }
    for (name, mask) in magnitude_masks(&params, sparsity, scope)? {
        if let Some((_, p)) = params.iter().find(|(n, _)| *n == name) {
            model.optimizer.set_mask(&name, p, &mask)?;
        }
    }
    Ok(())
}

/// Fraction of exact zeros in each prunable weight, by name, and over all of them.
pub fn sparsity_report(params: &[(String, Tensor)]) -> Result<(Vec<(String, f64)>, f64)> {
    let (mut zeros, mut total) = (0usize, 0usize);
    let mut per = Vec::new();
    for (name, t) in prunable(params) {
        let v = t.to_vec::<f64>()?;
        let z = v.iter().filter(|&&x| x == 0.0).count();
        zeros += z;
        total += v.len();
        per.push((name, z as f64 / v.len().max(1) as f64));
    }
    Ok((per, zeros as f64 / total.max(1) as f64))
}
