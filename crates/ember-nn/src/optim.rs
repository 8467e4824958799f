//! Optimizers with Keras's defaults, gradient clipping and learning-rate schedules.
//!
//! An [`Optimizer`] keeps, for each parameter (by its model-wide name), its state buffers as
//! tensors of the parameter's shape, and updates parameter and buffers in place with one fused
//! kernel call per parameter (`ember_core::optim::*_step`). Nothing here loops over elements.
//!
//! Defaults are Keras 3's; where PyTorch differs the difference is written next to the default.
//! The update rules are Keras's too (see `ember_cpu::optim`): in particular weight decay is
//! *decoupled* for every optimizer (`p -= lr·wd·p` before the gradient step), Adam adds epsilon
//! after the square root with the bias corrections folded into the step size, and AdaGrad and
//! RMSProp add epsilon inside the square root.

use crate::error::{NnError, Result, config_err};
use ember_core::optim::{self, AdagradConfig, AdamConfig, RmspropConfig, SgdConfig};
use ember_core::{GradStore, Tensor, no_grad};
use std::collections::BTreeMap;

/// The algorithm and its own hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Algorithm {
    /// SGD: `v = momentum·v − lr·g; p += v` (Nesterov: `p += momentum·v − lr·g`).
    /// Keras defaults: momentum 0, nesterov false (PyTorch: same; PyTorch writes the velocity
    /// without lr, `v = μv + g; p −= lr·v`, which is equal for a constant learning rate).
    Sgd {
        /// Momentum factor.
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Adam. Keras defaults: beta1 0.9, beta2 0.999, epsilon 1e-7 (PyTorch: 1e-8, and PyTorch
    /// adds it to the bias-corrected `sqrt(v̂)` instead).
    Adam {
        /// Decay of the first moment.
        beta1: f64,
        /// Decay of the second moment.
        beta2: f64,
        /// Added to `sqrt(v)`.
        eps: f64,
    },
    /// AdamW: Adam with decoupled weight decay, whose default is 0.004 in Keras (PyTorch: 0.01).
    AdamW {
        /// Decay of the first moment.
        beta1: f64,
        /// Decay of the second moment.
        beta2: f64,
        /// Added to `sqrt(v)`.
        eps: f64,
    },
    /// AdaGrad: `acc += g²; p −= lr·g / sqrt(acc + eps)`. Keras defaults: initial accumulator
    /// 0.1, epsilon 1e-7 (PyTorch: initial 0, eps 1e-10 added outside the square root).
    Adagrad {
        /// Starting value of the accumulator.
        initial_accumulator: f64,
        /// Added inside the square root.
        eps: f64,
    },
    /// RMSProp. Keras defaults: rho 0.9, momentum 0, epsilon 1e-7, not centered (PyTorch:
    /// alpha 0.99, eps 1e-8 added outside the square root).
    RmsProp {
        /// Decay of the squared-gradient average.
        rho: f64,
        /// Momentum factor.
        momentum: f64,
        /// Added inside the square root.
        eps: f64,
        /// Subtract the squared mean gradient.
        centered: bool,
    },
}

impl Algorithm {
    /// The optimizer's name (`sgd`, `adam`, `adamw`, `adagrad`, `rmsprop`).
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Sgd { .. } => "sgd",
            Algorithm::Adam { .. } => "adam",
            Algorithm::AdamW { .. } => "adamw",
            Algorithm::Adagrad { .. } => "adagrad",
            Algorithm::RmsProp { .. } => "rmsprop",
        }
    }

    /// The names of the state buffers kept per parameter, in a fixed order.
    pub fn buffer_names(&self) -> Vec<&'static str> {
        match *self {
            Algorithm::Sgd { momentum, .. } => {
                if momentum != 0.0 {
                    vec!["velocity"]
                } else {
                    vec![]
                }
            }
            Algorithm::Adam { .. } | Algorithm::AdamW { .. } => vec!["m", "v"],
            Algorithm::Adagrad { .. } => vec!["accumulator"],
            Algorithm::RmsProp {
                momentum, centered, ..
            } => {
                let mut names = vec!["sq_avg"];
                if momentum > 0.0 {
                    names.push("momentum");
                }
                if centered {
                    names.push("grad_avg");
                }
                names
            }
        }
    }
}

/// Gradient clipping, applied before the update (Keras's `clipvalue`, `clipnorm`,
/// `global_clipnorm`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Clip {
    /// No clipping.
    None,
    /// Clamp each gradient element to `[-c, c]`.
    Value(f64),
    /// Rescale each parameter's gradient whose L2 norm exceeds `c` to norm `c`.
    Norm(f64),
    /// Rescale all gradients together when their joint L2 norm exceeds `c`.
    GlobalNorm(f64),
}

/// A learning-rate schedule, a function of the optimizer's step count (number of batches seen,
/// as Keras's schedules count them).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Schedule {
    /// The base learning rate throughout.
    Constant,
    /// `lr · gamma^floor(step / step_size)` (Keras `ExponentialDecay(staircase=True)`, PyTorch
    /// `StepLR` counted in batches).
    Step {
        /// Steps between decays.
        step_size: u64,
        /// Factor applied at each decay.
        gamma: f64,
    },
    /// `lr · rate^(step / decay_steps)` (Keras `ExponentialDecay`).
    Exponential {
        /// Steps over which the rate is applied once.
        decay_steps: u64,
        /// Decay factor per `decay_steps`.
        rate: f64,
    },
    /// `lr · (alpha + (1 − alpha) · ½(1 + cos(π · min(step, decay_steps) / decay_steps)))`
    /// (Keras `CosineDecay`).
    Cosine {
        /// Steps to reach the final rate.
        decay_steps: u64,
        /// Final rate as a fraction of the base rate.
        alpha: f64,
    },
}

impl Schedule {
    /// The learning rate at `step` (0-based) for base rate `lr`.
    pub fn lr_at(&self, lr: f64, step: u64) -> f64 {
        match *self {
            Schedule::Constant => lr,
            Schedule::Step { step_size, gamma } => {
                lr * gamma.powi((step / step_size.max(1)) as i32)
            }
            Schedule::Exponential { decay_steps, rate } => {
                lr * rate.powf(step as f64 / decay_steps.max(1) as f64)
            }
            Schedule::Cosine { decay_steps, alpha } => {
                let done = step.min(decay_steps) as f64 / decay_steps.max(1) as f64;
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * done).cos());
                lr * ((1.0 - alpha) * cosine + alpha)
            }
        }
    }
}

/// An optimizer: algorithm, learning rate (and schedule), weight decay, clipping, and the state
/// buffers of every parameter it has updated.
#[derive(Debug, Clone)]
pub struct Optimizer {
    /// The algorithm and its hyperparameters.
    pub algorithm: Algorithm,
    /// Base learning rate.
    pub lr: f64,
    /// Decoupled weight decay (0 = none).
    pub weight_decay: f64,
    /// Gradient clipping.
    pub clip: Clip,
    /// Learning-rate schedule over steps.
    pub schedule: Schedule,
    iterations: u64,
    state: BTreeMap<String, Vec<Tensor>>,
    /// Pruning masks by parameter name (see [`Optimizer::set_mask`]).
    masks: BTreeMap<String, Tensor>,
}

impl Optimizer {
    fn with(algorithm: Algorithm, lr: f64, weight_decay: f64) -> Optimizer {
        Optimizer {
            algorithm,
            lr,
            weight_decay,
            clip: Clip::None,
            schedule: Schedule::Constant,
            iterations: 0,
            state: BTreeMap::new(),
            masks: BTreeMap::new(),
        }
    }

    /// SGD with Keras's defaults: lr 0.01, no momentum (PyTorch 2.x: lr 0.001).
    pub fn sgd() -> Optimizer {
        Optimizer::with(
            Algorithm::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            0.01,
            0.0,
        )
    }

    /// Adam with Keras's defaults: lr 0.001, betas (0.9, 0.999), epsilon 1e-7.
    pub fn adam() -> Optimizer {
        Optimizer::with(
            Algorithm::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-7,
            },
            0.001,
            0.0,
        )
    }

    /// AdamW with Keras's defaults: lr 0.001, betas (0.9, 0.999), epsilon 1e-7, weight decay
    /// 0.004 (PyTorch: 0.01).
    pub fn adamw() -> Optimizer {
        Optimizer::with(
            Algorithm::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-7,
            },
            0.001,
            0.004,
        )
    }

    /// AdaGrad with Keras's defaults: lr 0.001 (PyTorch: 0.01), initial accumulator 0.1,
    /// epsilon 1e-7.
    pub fn adagrad() -> Optimizer {
        Optimizer::with(
            Algorithm::Adagrad {
                initial_accumulator: 0.1,
                eps: 1e-7,
            },
            0.001,
            0.0,
        )
    }

    /// RMSProp with Keras's defaults: lr 0.001 (PyTorch: 0.01), rho 0.9, no momentum, epsilon
    /// 1e-7, not centered.
    pub fn rmsprop() -> Optimizer {
        Optimizer::with(
            Algorithm::RmsProp {
                rho: 0.9,
                momentum: 0.0,
                eps: 1e-7,
                centered: false,
            },
            0.001,
            0.0,
        )
    }

    /// The optimizer named `sgd`, `adam`, `adamw`, `adagrad` or `rmsprop` with its defaults.
    pub fn by_name(name: &str) -> Result<Optimizer> {
        match name.to_ascii_lowercase().as_str() {
            "sgd" => Ok(Optimizer::sgd()),
            "adam" => Ok(Optimizer::adam()),
            "adamw" => Ok(Optimizer::adamw()),
            "adagrad" => Ok(Optimizer::adagrad()),
            "rmsprop" => Ok(Optimizer::rmsprop()),
            other => config_err(format!(
                "unknown optimizer '{other}' (expected sgd, adam, adamw, adagrad or rmsprop)"
            )),
        }
    }

    /// Sets the base learning rate.
    pub fn with_lr(mut self, lr: f64) -> Optimizer {
        self.lr = lr;
        self
    }

    /// Sets the decoupled weight decay.
    pub fn with_weight_decay(mut self, weight_decay: f64) -> Optimizer {
        self.weight_decay = weight_decay;
        self
    }

    /// Sets the gradient clipping.
    pub fn with_clip(mut self, clip: Clip) -> Optimizer {
        self.clip = clip;
        self
    }

    /// Sets the learning-rate schedule.
    pub fn with_schedule(mut self, schedule: Schedule) -> Optimizer {
        self.schedule = schedule;
        self
    }

    /// Sets SGD's or RMSProp's momentum (an error for the others).
    pub fn with_momentum(mut self, value: f64) -> Result<Optimizer> {
        match &mut self.algorithm {
            Algorithm::Sgd { momentum, .. } | Algorithm::RmsProp { momentum, .. } => {
                *momentum = value
            }
            other => return config_err(format!("{} has no momentum setting", other.name())),
        }
        Ok(self)
    }

    /// Sets Adam's or AdamW's first-moment decay β₁ (Keras's `beta_1`; the DCGAN recipe uses
    /// 0.5). It must lie in [0, 1); other optimizers have no such setting.
    pub fn with_beta1(mut self, value: f64) -> Result<Optimizer> {
        if !(0.0..1.0).contains(&value) {
            return config_err(format!("beta_1 {value} must lie in [0, 1)"));
        }
        match &mut self.algorithm {
            Algorithm::Adam { beta1, .. } | Algorithm::AdamW { beta1, .. } => *beta1 = value,
            other => return config_err(format!("{} has no beta_1 setting", other.name())),
        }
        Ok(self)
    }

    /// The number of updates applied so far (Keras's `optimizer.iterations`).
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// The learning rate the next step will use.
    pub fn current_lr(&self) -> f64 {
        self.schedule.lr_at(self.lr, self.iterations)
    }

    /// Applies one update to every parameter that has a gradient in `grads`. Parameters
    /// without a gradient (unused in this step) are left alone.
    pub fn step(&mut self, params: &[(String, Tensor)], grads: &GradStore) -> Result<()> {
        no_grad(|| self.step_inner(params, grads))
    }

    fn step_inner(&mut self, params: &[(String, Tensor)], grads: &GradStore) -> Result<()> {
        let mut pairs: Vec<(&String, &Tensor, Tensor)> = Vec::with_capacity(params.len());
        for (name, p) in params {
            if let Some(g) = grads.get(p) {
                if g.shape() != p.shape() {
                    return config_err(format!(
                        "optimizer: gradient of {name} has shape {:?}, parameter has {:?}",
                        g.shape(),
                        p.shape()
                    ));
                }
                let g = match self.masks.get(name.as_str()) {
                    Some(m) => g.mul(m)?,
                    None => g.clone(),
                };
                pairs.push((name, p, g));
            }
        }
        self.clip_gradients(&mut pairs)?;
        let lr = self.current_lr();
        let step = self.iterations + 1;
        let (algorithm, wd) = (self.algorithm, self.weight_decay);
        for (name, p, g) in &pairs {
            let state = self.state_for(name, p)?;
            match algorithm {
                Algorithm::Sgd { momentum, nesterov } => {
                    let cfg = SgdConfig {
                        lr,
                        momentum,
                        nesterov,
                        weight_decay: wd,
                    };
                    optim::sgd_step(p, g, state.first(), &cfg)?;
                }
                Algorithm::Adam { beta1, beta2, eps } | Algorithm::AdamW { beta1, beta2, eps } => {
                    let cfg = AdamConfig {
                        lr,
                        beta1,
                        beta2,
                        eps,
                        weight_decay: wd,
                        step,
                    };
                    optim::adam_step(p, g, &state[0], &state[1], &cfg)?;
                }
                Algorithm::Adagrad { eps, .. } => {
                    let cfg = AdagradConfig {
                        lr,
                        eps,
                        weight_decay: wd,
                    };
                    optim::adagrad_step(p, g, &state[0], &cfg)?;
                }
                Algorithm::RmsProp {
                    rho,
                    momentum,
                    eps,
                    centered,
                } => {
                    let cfg = RmspropConfig {
                        lr,
                        rho,
                        momentum,
                        eps,
                        centered,
                        weight_decay: wd,
                    };
                    let mut rest = state[1..].iter();
                    let mom = if momentum > 0.0 { rest.next() } else { None };
                    let avg = if centered { rest.next() } else { None };
                    optim::rmsprop_step(p, g, &state[0], mom, avg, &cfg)?;
                }
            }
            if self.masks.contains_key(name.as_str()) {
                self.apply_mask(name, p)?;
            }
        }
        self.iterations += 1;
        Ok(())
    }

    /// Installs a pruning mask for parameter `name` (`param` is the parameter itself): a
    /// tensor of its shape holding 1 (kept) and 0 (pruned). The pruned entries are zeroed now
    /// in the parameter and in every state buffer (Adam's moments, momentum, ...), and after
    /// each later step, whose gradient is masked too, so a pruned weight stays exactly zero
    /// and restarts from a clean state if a later mask revives it. Replaces an earlier mask.
    pub fn set_mask(&mut self, name: &str, param: &Tensor, mask: &Tensor) -> Result<()> {
        if mask.shape() != param.shape() {
            return config_err(format!(
                "optimizer: mask of {name} has shape {:?}, parameter has {:?}",
                mask.shape(),
                param.shape()
            ));
        }
        let mask = mask.to_dtype(param.dtype())?.to_device(param.device())?;
        self.masks.insert(name.to_string(), mask);
        no_grad(|| self.apply_mask(name, param))
    }

    /// Removes every pruning mask (pruned weights stay zero until trained again).
    pub fn clear_masks(&mut self) {
        self.masks.clear();
    }

    /// The pruning mask of parameter `name`, if one is installed.
    pub fn mask(&self, name: &str) -> Option<&Tensor> {
        self.masks.get(name)
    }

    /// Multiplies parameter `name` and its state buffers by its mask.
    fn apply_mask(&mut self, name: &str, p: &Tensor) -> Result<()> {
        let Some(m) = self.masks.get(name) else {
            return Ok(());
        };
        p.assign(&p.mul(m)?)?;
        if let Some(bufs) = self.state.get(name) {
            for b in bufs {
                b.assign(&b.mul(m)?)?;
            }
        }
        Ok(())
    }

    /// The state buffers of parameter `name`, created (zeros, or AdaGrad's initial
    /// accumulator) on first use.
    fn state_for(&mut self, name: &str, p: &Tensor) -> Result<&[Tensor]> {
        // Borrowed, not cloned: a clone per parameter per step was a Vec allocation and two
        // reference-count updates each, a tenth of a small model's optimizer step.
        if !self.state.contains_key(name) {
            self.create_state(name, p)?;
        }
        self.state
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| NnError::Config(format!("optimizer: no state was created for {name}")))
    }

    /// Creates the state buffers of parameter `name` (see [`Optimizer::state_for`]).
    fn create_state(&mut self, name: &str, p: &Tensor) -> Result<()> {
        let init = match self.algorithm {
            Algorithm::Adagrad {
                initial_accumulator,
                ..
            } => initial_accumulator,
            _ => 0.0,
        };
        let mut bufs = Vec::new();
        for _ in self.algorithm.buffer_names() {
            bufs.push(Tensor::full(
                init,
                p.shape().to_vec(),
                p.dtype(),
                p.device(),
            )?);
        }
        self.state.insert(name.to_string(), bufs);
        Ok(())
    }

    fn clip_gradients(&self, pairs: &mut [(&String, &Tensor, Tensor)]) -> Result<()> {
        match self.clip {
            Clip::None => {}
            Clip::Value(c) => {
                for (_, _, g) in pairs.iter_mut() {
                    *g = g.clamp(-c, c)?;
                }
            }
            Clip::Norm(c) => {
                for (_, _, g) in pairs.iter_mut() {
                    let norm = sum_of_squares(g)?.sqrt();
                    if norm > c {
                        *g = g.mul_scalar(c / norm)?;
                    }
                }
            }
            Clip::GlobalNorm(c) => {
                let mut total = 0.0;
                for (_, _, g) in pairs.iter() {
                    total += sum_of_squares(g)?;
                }
                let norm = total.sqrt();
                if norm > c {
                    for (_, _, g) in pairs.iter_mut() {
                        *g = g.mul_scalar(c / norm)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The state buffers as `(name, tensor)` pairs named `optimizer.{param}.{buffer}`, in name
    /// order, for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let names = self.algorithm.buffer_names();
        let mut out = Vec::new();
        for (param, bufs) in &self.state {
            for (buf_name, t) in names.iter().zip(bufs) {
                out.push((format!("optimizer.{param}.{buf_name}"), t.clone()));
            }
        }
        out
    }

    /// Replaces the state with buffers read from a checkpoint: `buffers` maps each parameter
    /// name to its buffers in [`Algorithm::buffer_names`] order.
    pub fn set_state(
        &mut self,
        iterations: u64,
        buffers: BTreeMap<String, Vec<Tensor>>,
    ) -> Result<()> {
        let expected = self.algorithm.buffer_names().len();
        for (name, bufs) in &buffers {
            if bufs.len() != expected {
                return Err(NnError::Config(format!(
                    "optimizer state of {name}: {} buffers, {} expects {expected}",
                    bufs.len(),
                    self.algorithm.name()
                )));
            }
        }
        self.iterations = iterations;
        self.state = buffers;
        Ok(())
    }
}

/// Σg² of a tensor, read back as one number.
fn sum_of_squares(g: &Tensor) -> Result<f64> {
    let s = g.sqr()?.sum_all()?.to_vec::<f64>()?;
    Ok(s.first().copied().unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let s = Schedule::Step {
            step_size: 10,
            gamma: 0.5,
        };
        assert_eq!(s.lr_at(1.0, 9), 1.0);
        assert_eq!(s.lr_at(1.0, 10), 0.5);
        assert_eq!(s.lr_at(1.0, 25), 0.25);
        let e = Schedule::Exponential {
            decay_steps: 10,
            rate: 0.5,
        };
        assert!((e.lr_at(1.0, 5) - 0.5f64.sqrt()).abs() < 1e-15);
        let c = Schedule::Cosine {
            decay_steps: 100,
            alpha: 0.1,
        };
        assert!((c.lr_at(2.0, 0) - 2.0).abs() < 1e-15);
        assert!((c.lr_at(2.0, 50) - 2.0 * (0.9 * 0.5 + 0.1)).abs() < 1e-12);
        assert!((c.lr_at(2.0, 1000) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn buffer_names_follow_the_settings() {
        assert!(Optimizer::sgd().algorithm.buffer_names().is_empty());
        let m = Optimizer::sgd().with_momentum(0.9).unwrap();
        assert_eq!(m.algorithm.buffer_names(), vec!["velocity"]);
        assert_eq!(Optimizer::adam().algorithm.buffer_names(), vec!["m", "v"]);
        assert!(Optimizer::adam().with_momentum(0.9).is_err());
        assert!(Optimizer::by_name("lbfgs").is_err());
    }
}
