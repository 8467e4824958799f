//! Fused optimizer updates on parameter tensors, in place.
//!
//! An optimizer step must not build a graph or chain tensor ops: each function here takes the
//! parameter, its gradient and its state tensors, checks shapes and dtypes, takes write access
//! to their storages once, and runs one ember-cpu kernel over the whole buffer. ember-nn reaches
//! the kernels only through these functions, so it stays device-agnostic.
//!
//! Parameters and states must be contiguous f32 or f64 tensors with their own storage (not views
//! of each other). The update rules (Keras 3 forms) are documented in `ember_cpu::optim`.

use crate::error::{Error, Result};
use crate::storage::{CpuStorage, StorageData};
use crate::tensor::Tensor;
pub use ember_cpu::optim::{AdagradConfig, AdamConfig, RmspropConfig, SgdConfig};
use std::sync::Arc;

/// The typed buffers of one update: the parameter's, the gradient's and each state's.
enum Buffers<'a> {
    F32(&'a mut [f32], &'a [f32], Vec<&'a mut [f32]>),
    F64(&'a mut [f64], &'a [f64], Vec<&'a mut [f64]>),
}

/// Validates the operands, locks their storages and hands `f` the typed slices.
fn fused_update(
    op: &'static str,
    param: &Tensor,
    grad: &Tensor,
    states: &[&Tensor],
    f: impl FnOnce(Buffers<'_>),
) -> Result<()> {
    for t in std::iter::once(grad).chain(states.iter().copied()) {
        crate::ops_check_same(op, param, t)?;
        if t.shape() != param.shape() {
            return Err(Error::shape(
                op,
                format!(
                    "parameter {:?} and gradient/state {:?} differ in shape",
                    param.shape(),
                    t.shape()
                ),
            ));
        }
    }
    if !matches!(param.dtype(), crate::DType::F32 | crate::DType::F64) {
        return Err(Error::invalid(
            op,
            format!("parameters must be f32 or f64, got {}", param.dtype()),
        ));
    }
    for t in std::iter::once(param).chain(states.iter().copied()) {
        if !t.is_contiguous() {
            return Err(Error::invalid(
                op,
                format!(
                    "parameter/state of shape {:?} must be contiguous",
                    t.shape()
                ),
            ));
        }
    }
    let all: Vec<&Tensor> = std::iter::once(param)
        .chain(states.iter().copied())
        .collect();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if Arc::ptr_eq(&a.0.storage, &b.0.storage) {
                return Err(Error::invalid(
                    op,
                    "parameter and state tensors must not share storage",
                ));
            }
        }
    }
    // The gradient is read from its own contiguous copy, so it may be any view (even of the
    // parameter itself).
    let grad = grad.contiguous()?.detach();
    let grad_copy;
    let grad = if all
        .iter()
        .any(|t| Arc::ptr_eq(&t.0.storage, &grad.0.storage))
    {
        grad_copy = Tensor::from_storage(
            grad.with_cpu(op, crate::backend::contiguous)?,
            grad.shape(),
            None,
        );
        &grad_copy
    } else {
        &grad
    };
    let gguard = grad.storage();
    let mut guards: Vec<_> = all.iter().map(|t| t.storage_mut()).collect();
    let n = param.elem_count();
    let ranges: Vec<_> = all
        .iter()
        .map(|t| t.layout().offset()..t.layout().offset() + n)
        .collect();
    let grange = grad.layout().offset()..grad.layout().offset() + n;
    let StorageData::Cpu(gs) = gguard.data();
    let mut slices: Vec<&mut CpuStorage> = guards
        .iter_mut()
        .map(|g| match g.data_mut() {
            StorageData::Cpu(c) => c,
        })
        .collect();
    match gs {
        CpuStorage::F32(g) => {
            let mut typed: Vec<&mut [f32]> = Vec::with_capacity(slices.len());
            for (s, r) in slices.iter_mut().zip(&ranges) {
                let CpuStorage::F32(v) = &mut **s else {
                    unreachable!("dtypes checked")
                };
                typed.push(&mut v[r.clone()]);
            }
            let p = typed.remove(0);
            f(Buffers::F32(p, &g[grange], typed));
        }
        CpuStorage::F64(g) => {
            let mut typed: Vec<&mut [f64]> = Vec::with_capacity(slices.len());
            for (s, r) in slices.iter_mut().zip(&ranges) {
                let CpuStorage::F64(v) = &mut **s else {
                    unreachable!("dtypes checked")
                };
                typed.push(&mut v[r.clone()]);
            }
            let p = typed.remove(0);
            f(Buffers::F64(p, &g[grange], typed));
        }
        _ => unreachable!("dtype checked above"),
    }
    Ok(())
}

/// SGD with optional (Nesterov) momentum; `velocity` is required when momentum > 0.
pub fn sgd_step(
    param: &Tensor,
    grad: &Tensor,
    velocity: Option<&Tensor>,
    cfg: &SgdConfig,
) -> Result<()> {
    match velocity {
        Some(v) => fused_update("sgd_step", param, grad, &[v], |b| match b {
            Buffers::F32(p, g, mut s) => ember_cpu::optim::sgd_step(cfg, p, g, &mut *s[0]),
            Buffers::F64(p, g, mut s) => ember_cpu::optim::sgd_step(cfg, p, g, &mut *s[0]),
        }),
        None if cfg.momentum != 0.0 => Err(Error::invalid(
            "sgd_step",
            "momentum > 0 needs a velocity tensor",
        )),
        None => fused_update("sgd_step", param, grad, &[], |b| match b {
            Buffers::F32(p, g, _) => ember_cpu::optim::sgd_step(cfg, p, g, &mut []),
            Buffers::F64(p, g, _) => ember_cpu::optim::sgd_step(cfg, p, g, &mut []),
        }),
    }
}

/// Adam / AdamW with first and second moment tensors `m` and `v`.
pub fn adam_step(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    cfg: &AdamConfig,
) -> Result<()> {
    fused_update("adam_step", param, grad, &[m, v], |b| match b {
        Buffers::F32(p, g, mut s) => {
            let (m, v) = s.split_at_mut(1);
            ember_cpu::optim::adam_step(cfg, p, g, &mut *m[0], &mut *v[0])
        }
        Buffers::F64(p, g, mut s) => {
            let (m, v) = s.split_at_mut(1);
            ember_cpu::optim::adam_step(cfg, p, g, &mut *m[0], &mut *v[0])
        }
    })
}

/// AdaGrad with its accumulator tensor.
pub fn adagrad_step(
    param: &Tensor,
    grad: &Tensor,
    acc: &Tensor,
    cfg: &AdagradConfig,
) -> Result<()> {
    fused_update("adagrad_step", param, grad, &[acc], |b| match b {
        Buffers::F32(p, g, mut s) => ember_cpu::optim::adagrad_step(cfg, p, g, &mut *s[0]),
        Buffers::F64(p, g, mut s) => ember_cpu::optim::adagrad_step(cfg, p, g, &mut *s[0]),
    })
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
    let mut states = vec![sq_avg];
    let has_mom = mom.is_some();
    states.extend(mom);
    states.extend(grad_avg);
    fn run<T: ember_cpu::Float>(
        cfg: &RmspropConfig,
        p: &mut [T],
        g: &[T],
        mut s: Vec<&mut [T]>,
        has_mom: bool,
    ) {
        let mut it = s.iter_mut();
        let sq = it.next().map(|x| &mut **x);
        let mut empty_a: [T; 0] = [];
        let mut empty_b: [T; 0] = [];
        let mom = if has_mom {
            it.next().map(|x| &mut **x)
        } else {
            None
        };
        let ga = it.next().map(|x| &mut **x);
        if let Some(sq) = sq {
            ember_cpu::optim::rmsprop_step(
                cfg,
                p,
                g,
                sq,
                mom.unwrap_or(&mut empty_a),
                ga.unwrap_or(&mut empty_b),
            );
        }
    }
    fused_update("rmsprop_step", param, grad, &states, |b| match b {
        Buffers::F32(p, g, s) => run(cfg, p, g, s, has_mom),
        Buffers::F64(p, g, s) => run(cfg, p, g, s, has_mom),
    })
}
