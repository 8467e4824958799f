//! Mixed-precision training: a precision policy (PyTorch's autocast, Keras's
//! `mixed_bfloat16` / `mixed_float16`) and dynamic loss scaling (PyTorch's `GradScaler`,
//! Keras's `LossScaleOptimizer`).
//!
//! **The policy** is a property of the model, [`Model::precision`](crate::model::Model), used
//! by `fit`, `evaluate` and `predict` alike (Keras sets its policy on the model too; a model
//! trained in bf16 is evaluated the way it was trained). Those calls run their forward passes
//! inside [`autocast`], which sets the policy for the current thread; a layer reads it with
//! [`current`]. Code calling `network.forward` itself can wrap it in `autocast` the same way.
//!
//! What runs in 16 bits under a policy (the "autocast list"), and what does not:
//! - **Dense** (on `[N, F]` and `[N, T, F]`): its GEMMs — forward and both backward products —
//!   take operands rounded to bf16/f16 and sum in f32 (`Tensor::linear_mixed`; on
//!   AVX512-BF16 CPUs the `vdpbf16ps` kernel, rounding while it packs).
//! - **Conv1d / Conv2d / ConvTranspose2d**: the input and weight are rounded to bf16/f16
//!   before the convolution, which then computes in f32, and the gradient flows back through
//!   the rounding unchanged (straight-through, as autocast's casts). The forward therefore has
//!   the policy's numerics; the convolution kernels are f32 ones (ember has no 16-bit
//!   convolution kernel yet), so there is no speed-up, and the backward stays in f32 (more
//!   accurate than autocast's 16-bit backward).
//! - **Everything else stays f32**: bias adds, activations, normalisations, softmax,
//!   reductions, losses, metrics, the optimizer. So do the recurrent layers and attention
//!   (autocast puts their GEMMs on the 16-bit list; ember's fused recurrent and attention
//!   kernels are f32-only, and rounding only their inputs would add the error without the
//!   speed).
//! - Differences from autocast, on purpose: results of 16-bit products are kept in f32 rather
//!   than rounded to 16 bits (only GEMM operands are ever rounded), and the 16-bit copy of a
//!   weight is never materialised (rounded while packed). Layers whose parameters are not f32
//!   (an f64 model) ignore the policy.
//!
//! **Master weights and optimizer state stay f32**: parameters never change dtype, the rounding
//! happens inside each product, and the gradient reaching a weight is f32.
//!
//! **Loss scaling** ([`LossScaling`], [`LossScaler`]): f16 has 5 exponent bits, so gradients
//! below about 6·10⁻⁸ round to zero in the backward GEMMs, and above 65504 to infinity. As
//! PyTorch's `GradScaler` does, `fit` multiplies the loss by a scale (initially 2¹⁶) before the
//! backward pass, then divides every gradient by it in f32 ("unscale"). If any gradient is
//! infinite or NaN the optimizer step is skipped — no parameter, moment or step count changes
//! — and the scale is multiplied by 0.5; after 2000 consecutive good steps it is multiplied by
//! 2. bf16 keeps f32's exponent range, so scaling is off for it by default (it can be forced
//! on, and turned off for f16). Unscaling comes before anything that reads gradients:
//! clipping, pruning masks, weight decay and the L1/L2 penalties (which are part of the
//! scaled loss) all see true gradients.
//!
//! Two differences from `GradScaler`: a non-finite *loss* (an f16 forward that overflowed)
//! still stops `fit` with [`NnError::Diverged`](crate::NnError), as it does in f32 — only
//! overflowing *gradients* are a skipped step; and the scaler's state lives on the model but is
//! not written to checkpoints (a resumed run starts again at `init_scale`).
//!
//! Distributed `fit` sums the scaled gradients across ranks and unscales the sum: an overflow
//! on any rank makes the sum non-finite on every rank, so every rank skips the same step and
//! moves its scale alike, with no extra message. The scale is a power of two, so scaling and
//! unscaling are exact in f32 and the bit-identity across rank counts holds.

use crate::error::{Result, config_err};
use crate::model::Model;
use ember_core::{DType, Device, GradStore, Tensor};
use std::cell::Cell;

/// The precision policy of a model's matrix products; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Everything in f32 (the default).
    #[default]
    F32,
    /// Dense and convolution operands rounded to bf16, f32 accumulation (Keras's
    /// `mixed_bfloat16`).
    BF16,
    /// Dense and convolution operands rounded to f16, f32 accumulation, with loss scaling
    /// (Keras's `mixed_float16`).
    F16,
}

impl Precision {
    /// Parses `f32`, `bf16` or `f16` (also `float32`, `bfloat16`, `float16`, `mixed_bfloat16`,
    /// `mixed_float16`).
    pub fn parse(name: &str) -> Result<Precision> {
        match name.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(Precision::F32),
            "bf16" | "bfloat16" | "mixed_bfloat16" => Ok(Precision::BF16),
            "f16" | "fp16" | "float16" | "mixed_float16" => Ok(Precision::F16),
            other => config_err(format!(
                "unknown precision '{other}' (expected f32, bf16 or f16)"
            )),
        }
    }

    /// `f32`, `bf16` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::BF16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// The 16-bit type products round to, or `None` for f32.
    pub fn half(self) -> Option<DType> {
        match self {
            Precision::F32 => None,
            Precision::BF16 => Some(DType::BF16),
            Precision::F16 => Some(DType::F16),
        }
    }
}

thread_local! {
    /// The policy of the forward passes running on this thread.
    static POLICY: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// Runs `f` with `precision` as this thread's policy (PyTorch's `with torch.autocast(...)`),
/// restoring the previous one afterwards, also if `f` panics.
pub fn autocast<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            POLICY.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(POLICY.with(|p| p.replace(precision)));
    f()
}

/// `f` under [`autocast`]`(precision)` and `no_grad` (`evaluate` and `predict`).
pub(crate) fn no_grad_under<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    autocast(precision, || ember_core::no_grad(f))
}

/// This thread's policy (f32 outside [`autocast`]).
pub fn current() -> Precision {
    POLICY.with(|p| p.get())
}

/// The 16-bit type a layer with parameter `param` rounds its products to under the current
/// policy: `None` under f32, and for parameters that are not f32.
pub fn half_for(param: &Tensor) -> Option<DType> {
    current().half().filter(|_| param.dtype() == DType::F32)
}

/// `t` rounded to `half` (values exactly those of the 16-bit type, stored in f32), with the
/// gradient passed through unchanged and in f32 (the convolution layers' operands under a
/// 16-bit policy).
///
/// Written as the straight-through form `t + (round(t) − t).detach()`: a plain
/// `t.to_dtype(half).to_dtype(F32)` would also pass the gradient through, but rounded to the
/// 16-bit type on its way back (the cast's backward converts it), and the weight's gradient
/// is meant to reach it in full f32. The sum is exact: `round(t) − t` is representable in
/// f32, and adding it back gives `round(t)` itself (±inf where f16 overflows).
pub fn round_through(t: &Tensor, half: DType) -> Result<Tensor> {
    let r = t.to_dtype(half)?.to_dtype(DType::F32)?;
    Ok(t.add(&r.sub(t)?.detach())?)
}

/// Settings of dynamic loss scaling; `Default` gives PyTorch's `GradScaler` defaults, enabled
/// for f16 only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScaling {
    /// `Some(true)`/`Some(false)` forces scaling on or off; `None` (default) turns it on for
    /// [`Precision::F16`] and off otherwise.
    pub enabled: Option<bool>,
    /// The first scale (default 2¹⁶ = 65536).
    pub init_scale: f64,
    /// Factor applied after `growth_interval` good steps in a row (default 2).
    pub growth_factor: f64,
    /// Factor applied on an overflow (default 0.5).
    pub backoff_factor: f64,
    /// Good steps in a row before the scale grows (default 2000).
    pub growth_interval: u64,
}

impl Default for LossScaling {
    fn default() -> Self {
        LossScaling {
            enabled: None,
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

impl LossScaling {
    /// Whether scaling is on for `precision`.
    pub fn active(&self, precision: Precision) -> bool {
        self.enabled.unwrap_or(precision == Precision::F16)
    }

    /// Checks the factors (PyTorch's constraints: scale > 0, growth > 1, 0 < backoff < 1,
    /// interval ≥ 1).
    pub fn validate(&self) -> Result<()> {
        let ok = self.init_scale.is_finite()
            && self.init_scale > 0.0
            && self.growth_factor.is_finite()
            && self.growth_factor > 1.0
            && self.backoff_factor > 0.0
            && self.backoff_factor < 1.0
            && self.growth_interval >= 1;
        if !ok {
            return config_err(format!(
                "loss scaling: need init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1 and \
                 growth_interval >= 1, got {self:?}"
            ));
        }
        Ok(())
    }
}

/// The state of dynamic loss scaling (PyTorch's `GradScaler`), kept on the model between
/// `fit` calls.
#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    /// The settings.
    pub config: LossScaling,
    scale: f64,
    good_steps: u64,
    skipped: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler::new(LossScaling::default())
    }
}

impl LossScaler {
    /// A scaler at `config.init_scale`.
    pub fn new(config: LossScaling) -> LossScaler {
        LossScaler {
            config,
            scale: config.init_scale,
            good_steps: 0,
            skipped: 0,
        }
    }

    /// The current scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Steps skipped so far because a gradient overflowed.
    pub fn skipped_steps(&self) -> u64 {
        self.skipped
    }

    /// Good steps since the last change of scale.
    pub fn good_steps(&self) -> u64 {
        self.good_steps
    }

    /// Records a step's outcome (PyTorch's `GradScaler.update`): an overflow halves the scale
    /// (by `backoff_factor`), counts a skipped step and restarts the count of good steps; a
    /// good step counts, and the `growth_interval`-th in a row doubles the scale (by
    /// `growth_factor`).
    pub fn update(&mut self, found_inf: bool) {
        if found_inf {
            self.scale *= self.config.backoff_factor;
            self.good_steps = 0;
            self.skipped += 1;
        } else {
            self.good_steps += 1;
            if self.good_steps >= self.config.growth_interval {
                self.scale *= self.config.growth_factor;
                self.good_steps = 0;
            }
        }
    }

    /// The gradients of `params` in `grads` divided by the scale (in the gradients' own dtype,
    /// f32 for f32 parameters), and whether any of them holds an infinity or a NaN (PyTorch's
    /// `unscale_` with its `found_inf`).
    pub fn unscale(
        &self,
        params: &[(String, Tensor)],
        grads: &GradStore,
    ) -> Result<(GradStore, bool)> {
        let inv = 1.0 / self.scale;
        let mut out = GradStore::new();
        let mut found_inf = false;
        for (_, p) in params {
            if let Some(g) = grads.get(p) {
                let u = g.mul_scalar(inv)?;
                // A sum is finite exactly when no element is infinite or NaN (barring a sum
                // of finite values beyond f32's range, which is treated as an overflow too).
                if !found_inf {
                    let all: Vec<usize> = (0..u.rank()).collect();
                    found_inf = !u.sum(&all, false)?.to_scalar::<f64>()?.is_finite();
                }
                out.insert(p, u);
            }
        }
        Ok((out, found_inf))
    }
}

impl Model {
    /// Whether this model's training scales its loss (see [`LossScaling::active`]).
    pub fn loss_scaling_active(&self) -> bool {
        self.loss_scaler.config.active(self.precision)
    }

    /// The checks `fit` makes of the policy: scaling settings valid, no 16-bit policy on a
    /// GPU (ember's CUDA kernels are f32/f64 only: an error rather than a silent f32 run) or
    /// with DP-SGD (its per-example gradients are f32 code of their own).
    pub(crate) fn check_precision(&self, x: &Tensor, dp: bool) -> Result<()> {
        self.loss_scaler.config.validate()?;
        if self.precision == Precision::F32 {
            return Ok(());
        }
        let on_gpu = x.device() != Device::Cpu
            || self
                .network
                .parameters_ref()
                .iter()
                .any(|(_, p)| p.device() != Device::Cpu);
        if on_gpu {
            return config_err(format!(
                "precision {}: mixed precision runs on the CPU only for now (ember's CUDA \
                 kernels are f32/f64); use precision f32 on a GPU",
                self.precision.name()
            ));
        }
        if dp {
            return config_err(format!(
                "precision {}: DP-SGD trains in f32 only (its per-example gradients do not \
                 follow the policy); use precision f32",
                self.precision.name()
            ));
        }
        Ok(())
    }

    /// The tensor to call `backward` on: the loss times the current scale when loss scaling is
    /// active, the loss itself otherwise.
    pub(crate) fn loss_for_backward(&self, loss: &Tensor) -> Result<Tensor> {
        if self.loss_scaling_active() {
            Ok(loss.mul_scalar(self.loss_scaler.scale())?)
        } else {
            Ok(loss.clone())
        }
    }

    /// The optimizer step for gradients of [`Model::loss_for_backward`]: with loss scaling,
    /// unscales them, skips the step on an infinity or NaN (nothing changes: parameters,
    /// optimizer state, step count) and updates the scale; returns whether the step was taken.
    pub(crate) fn apply_gradients(&mut self, grads: &GradStore) -> Result<bool> {
        if !self.loss_scaling_active() {
            self.optimizer.step(self.network.parameters_ref(), grads)?;
            return Ok(true);
        }
        let (unscaled, found_inf) = self
            .loss_scaler
            .unscale(self.network.parameters_ref(), grads)?;
        if !found_inf {
            self.optimizer
                .step(self.network.parameters_ref(), &unscaled)?;
        }
        self.loss_scaler.update(found_inf);
        Ok(!found_inf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_name() {
        for p in [Precision::F32, Precision::BF16, Precision::F16] {
            assert_eq!(Precision::parse(p.name()).unwrap(), p);
        }
        assert_eq!(Precision::parse("mixed_float16").unwrap(), Precision::F16);
        assert!(Precision::parse("f8").is_err());
    }

    #[test]
    fn autocast_sets_and_restores_the_policy() {
        assert_eq!(current(), Precision::F32);
        autocast(Precision::BF16, || {
            assert_eq!(current(), Precision::BF16);
            autocast(Precision::F16, || assert_eq!(current(), Precision::F16));
            assert_eq!(current(), Precision::BF16);
        });
        assert_eq!(current(), Precision::F32);
    }

    /// PyTorch's GradScaler schedule: backoff on overflow, growth after the interval.
    #[test]
    fn scaler_backs_off_and_grows() {
        let mut s = LossScaler::new(LossScaling {
            growth_interval: 3,
            ..LossScaling::default()
        });
        assert_eq!(s.scale(), 65536.0);
        s.update(true);
        assert_eq!((s.scale(), s.skipped_steps()), (32768.0, 1));
        s.update(false);
        s.update(false);
        assert_eq!(s.scale(), 32768.0);
        s.update(true);
        assert_eq!(s.scale(), 16384.0);
        for _ in 0..3 {
            s.update(false);
        }
        assert_eq!(
            (s.scale(), s.good_steps(), s.skipped_steps()),
            (32768.0, 0, 2)
        );
        assert!(LossScaling::default().active(Precision::F16));
        assert!(!LossScaling::default().active(Precision::BF16));
        assert!(
            LossScaling {
                growth_factor: 1.0,
                ..LossScaling::default()
            }
            .validate()
            .is_err()
        );
    }
}
