//! Fused optimizer updates on parameter tensors, in place.
//!
//! An optimizer step must not build a graph or chain tensor ops: each function here takes the
//! parameter, its gradient and its state tensors, checks shapes and dtypes, takes write access
//! to their storages once, and runs one kernel over the whole buffer on the parameter's device
//! (through the dispatch seam, `StorageData::optimizer_step`). ember-nn reaches the kernels
//! only through these functions, so it stays device-agnostic.
//!
//! Parameters and states must be contiguous f32 or f64 tensors with their own storage (not views
//! of each other). The update rules (Keras 3 forms) are documented in `ember_cpu::optim`.

use crate::error::{Error, Result};
use crate::storage::StorageData;
use crate::tensor::Tensor;
pub use ember_ops::{AdagradConfig, AdamConfig, OptimStep, RmspropConfig, SgdConfig};

/// Validates the operands, locks their storages and runs `step` on the parameter's device.
///
/// `slots` are the rule's state tensors in the slots [`OptimStep`] documents. This runs once per
/// parameter per step, so it allocates nothing (beyond a gradient copy when one is needed),
/// reads each tensor's layout once, and keeps the error messages out of line.
fn fused_update(
    step: &OptimStep,
    param: &Tensor,
    grad: &Tensor,
    slots: [Option<&Tensor>; 3],
) -> Result<()> {
    let op = step.name();
    let [s0, s1, s2] = slots;
    let [u0, u1, u2] = step.used_slots();
    if (u0 && s0.is_none()) || (u1 && s1.is_none()) || (u2 && s2.is_none()) {
        return Err(Error::invalid(
            op,
            "a state tensor the rule needs is missing",
        ));
    }
    let dtype = param.dtype();
    if !matches!(dtype, crate::DType::F32 | crate::DType::F64) {
        return Err(Error::invalid(
            op,
            format!("parameters must be f32 or f64, got {dtype}"),
        ));
    }
    // Every operand has the parameter's dtype, device and shape.
    let (device, shape) = (param.device(), param.shape());
    for t in [Some(grad), s0, s1, s2].into_iter().flatten() {
        if t.dtype() != dtype || t.device() != device || t.shape() != shape {
            return Err(operand_error(op, param, t));
        }
    }
    // The parameter and its states are written: each must be one dense range (starting at the
    // offset found here) of a buffer that no other operand shares.
    let pstart = dense_start(op, param)?;
    let mut sstart = [0usize; 3];
    for (i, s) in slots.iter().enumerate() {
        let Some(s) = s else { continue };
        sstart[i] = dense_start(op, s)?;
        if param.shares_storage(s) || slots[..i].iter().flatten().any(|o| o.shares_storage(s)) {
            return Err(Error::invalid(
                op,
                "parameter and state tensors must not share storage",
            ));
        }
    }
    // The gradient is read through a dense buffer that no writer below shares: the gradient
    // itself when it is already dense and separate, else a fresh copy.
    let aliased =
        param.shares_storage(grad) || slots.iter().flatten().any(|s| s.shares_storage(grad));
    let dense = grad.layout().strided().contiguous_range();
    let grad_copy;
    let (grad, gstart) = match dense {
        Some(r) if !aliased => (grad, r.start),
        _ => {
            let data = grad.with_storage(StorageData::contiguous)?;
            grad_copy = Tensor::from_storage(data, shape, None);
            (&grad_copy, 0)
        }
    };
    let n = param.elem_count();
    let gguard = grad.storage();
    // Write guards for the parameter and its states (no allocation).
    let mut pguard = param.storage_mut();
    let mut g0 = s0.map(Tensor::storage_mut);
    let mut g1 = s1.map(Tensor::storage_mut);
    let mut g2 = s2.map(Tensor::storage_mut);
    StorageData::optimizer_step(
        step,
        (pguard.data_mut(), pstart),
        (gguard.data(), gstart),
        [
            g0.as_mut().map(|g| (g.data_mut(), sstart[0])),
            g1.as_mut().map(|g| (g.data_mut(), sstart[1])),
            g2.as_mut().map(|g| (g.data_mut(), sstart[2])),
        ],
        n,
    )
}

/// Where `t`'s elements start in its buffer, when they are one dense range.
#[inline(always)]
fn dense_start(op: &'static str, t: &Tensor) -> Result<usize> {
    match t.layout().strided().contiguous_range() {
        Some(r) => Ok(r.start),
        None => Err(not_contiguous(op, t)),
    }
}

/// The error for a written operand that is not dense (kept out of the hot path).
#[cold]
#[inline(never)]
fn not_contiguous(op: &'static str, t: &Tensor) -> Error {
    Error::invalid(
        op,
        format!(
            "parameter/state of shape {:?} must be contiguous",
            t.shape()
        ),
    )
}

/// The error for an operand whose dtype, device or shape differs from the parameter's.
#[cold]
#[inline(never)]
fn operand_error(op: &'static str, param: &Tensor, t: &Tensor) -> Error {
    if let Err(e) = crate::ops_check_same(op, param, t) {
        return e;
    }
    Error::shape(
        op,
        format!(
            "parameter {:?} and gradient/state {:?} differ in shape",
            param.shape(),
            t.shape()
        ),
    )
}

/// SGD with optional (Nesterov) momentum; `velocity` is required when momentum > 0.
pub fn sgd_step(
    param: &Tensor,
    grad: &Tensor,
    velocity: Option<&Tensor>,
    cfg: &SgdConfig,
) -> Result<()> {
    if velocity.is_none() && cfg.momentum != 0.0 {
        return Err(Error::invalid(
            "sgd_step",
            "momentum > 0 needs a velocity tensor",
        ));
    }
    fused_update(&OptimStep::Sgd(*cfg), param, grad, [velocity, None, None])
}

/// Adam / AdamW with first and second moment tensors `m` and `v`.
pub fn adam_step(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    cfg: &AdamConfig,
) -> Result<()> {
    fused_update(
        &OptimStep::Adam(*cfg),
        param,
        grad,
        [Some(m), Some(v), None],
    )
}

/// AdaGrad with its accumulator tensor.
pub fn adagrad_step(
    param: &Tensor,
    grad: &Tensor,
    acc: &Tensor,
    cfg: &AdagradConfig,
) -> Result<()> {
    fused_update(
        &OptimStep::Adagrad(*cfg),
        param,
        grad,
        [Some(acc), None, None],
    )
}

/// RMSProp; `mom` is required when momentum > 0 and `grad_avg` when centered.
pub fn rmsprop_step(
    param: &Tensor,
    grad: &Tensor,
    sq_avg: &Tensor,
    mom: Option<&Tensor>,
    grad_avg: Option<&Tensor>,
    cfg: &RmspropConfig,
) -> Result<()> {
    if cfg.momentum > 0.0 && mom.is_none() {
        return Err(Error::invalid(
            "rmsprop_step",
            "momentum > 0 needs a momentum tensor",
        ));
    }
    if cfg.centered && grad_avg.is_none() {
        return Err(Error::invalid(
            "rmsprop_step",
            "centered RMSProp needs a grad_avg tensor",
        ));
    }
    fused_update(
        &OptimStep::Rmsprop(*cfg),
        param,
        grad,
        [Some(sq_avg), mom, grad_avg],
    )
}
