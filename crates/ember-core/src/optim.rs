//! Fused optimizer updates on parameter tensors, in place.
//!
//! An optimizer step must not build a graph or chain tensor ops: each function here takes the
//! parameter, its gradient and its state tensors, checks shapes and dtypes, takes write access
//! to their storages once, and runs one ember-cpu kernel over the whole buffer. ember-nn reaches
//! the kernels only through these functions, so it stays device-agnostic.
//!
//! Parameters and states must be contiguous f32 or f64 tensors with their own storage (not views
//! of each other). The update rules (Keras 3 forms) are documented in `ember_cpu::optim`.

use crate::backend::cuda as cuda_backend;
use crate::error::{Error, Result};
use crate::storage::{CpuStorage, CudaStorage, StorageData};
use crate::tensor::Tensor;
use ember_cuda::{DevSlice, DevSliceMut};
pub use ember_ops::{AdagradConfig, AdamConfig, RmspropConfig, SgdConfig};

/// The typed buffers of one update: the parameter's, the gradient's and each state's (the
/// states in a stack array owned by `fused_update`, so an update allocates nothing).
enum Buffers<'a, 'b> {
    F32(&'a mut [f32], &'a [f32], &'b mut [&'a mut [f32]]),
    F64(&'a mut [f64], &'a [f64], &'b mut [&'a mut [f64]]),
}

/// The device buffers of one update on a GPU, like [`Buffers`].
enum CudaBuffers<'a> {
    F32(
        DevSliceMut<'a, f32>,
        DevSlice<'a, f32>,
        Vec<DevSliceMut<'a, f32>>,
    ),
    F64(
        DevSliceMut<'a, f64>,
        DevSlice<'a, f64>,
        Vec<DevSliceMut<'a, f64>>,
    ),
}

/// Validates the operands, locks their storages and hands `f` the typed slices.
///
/// This runs once per parameter per step, so it avoids allocating beyond one small vector.
fn fused_update(
    op: &'static str,
    param: &Tensor,
    grad: &Tensor,
    states: &[&Tensor],
    cpu: impl FnOnce(Buffers<'_, '_>) -> std::result::Result<(), ember_cpu::LengthMismatch>,
    cuda: impl FnOnce(CudaBuffers<'_>) -> std::result::Result<(), ember_cuda::CudaError>,
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
    let mut owners: [Option<&Tensor>; 4] = [Some(param), None, None, None];
    if states.len() > 3 {
        return Err(Error::invalid(
            op,
            "at most three state tensors per parameter",
        ));
    }
    for (slot, s) in owners[1..].iter_mut().zip(states) {
        *slot = Some(s);
    }
    // The filled slots, without a heap allocation (this runs per parameter per step).
    let owners = &owners[..1 + states.len()];
    let owners = owners
        .iter()
        .map(|o| o.expect("slots 0..=states.len() are filled"));
    for (i, t) in owners.clone().enumerate() {
        if !t.is_contiguous() {
            return Err(Error::invalid(
                op,
                format!(
                    "parameter/state of shape {:?} must be contiguous",
                    t.shape()
                ),
            ));
        }
        if owners.clone().take(i).any(|o| o.shares_storage(t)) {
            return Err(Error::invalid(
                op,
                "parameter and state tensors must not share storage",
            ));
        }
    }
    // The gradient is read through a contiguous buffer that no writer below shares: the
    // gradient itself when it is already dense and separate, else a fresh copy.
    let aliased = owners.clone().any(|o| o.shares_storage(grad));
    let grad_copy;
    let grad = if grad.is_contiguous() && !aliased {
        grad
    } else {
        let dense = grad.with_storage(StorageData::contiguous)?;
        grad_copy = Tensor::from_storage(dense, grad.shape(), None);
        &grad_copy
    };
    let n = param.elem_count();
    let gguard = grad.storage();
    // Write guards for the parameter and its states, in a fixed-size array (no allocation).
    let mut guard_slots: [Option<_>; 4] = [None, None, None, None];
    for (slot, t) in guard_slots.iter_mut().zip(owners) {
        *slot = Some((t.storage_mut(), t.layout().offset()));
    }
    let guards = &mut guard_slots[..1 + states.len()];
    let mut guards = guards.iter_mut().flatten();
    match gguard.data() {
        StorageData::Cpu(CpuStorage::F32(g)) => {
            let goff = grad.layout().offset();
            let mut typed = guards.by_ref().map(|(guard, off)| match guard.data_mut() {
                StorageData::Cpu(CpuStorage::F32(v)) => &mut v[*off..*off + n],
                _ => unreachable!("dtypes and devices checked above"),
            });
            let p = typed.next().expect("the parameter is always first");
            let mut slots: [&mut [f32]; 3] = [&mut [], &mut [], &mut []];
            let count = fill_slots(&mut slots, typed);
            cpu(Buffers::F32(p, &g[goff..goff + n], &mut slots[..count]))
                .map_err(|e| Error::invalid(op, e.to_string()))?;
        }
        StorageData::Cpu(CpuStorage::F64(g)) => {
            let goff = grad.layout().offset();
            let mut typed = guards.by_ref().map(|(guard, off)| match guard.data_mut() {
                StorageData::Cpu(CpuStorage::F64(v)) => &mut v[*off..*off + n],
                _ => unreachable!("dtypes and devices checked above"),
            });
            let p = typed.next().expect("the parameter is always first");
            let mut slots: [&mut [f64]; 3] = [&mut [], &mut [], &mut []];
            let count = fill_slots(&mut slots, typed);
            cpu(Buffers::F64(p, &g[goff..goff + n], &mut slots[..count]))
                .map_err(|e| Error::invalid(op, e.to_string()))?;
        }
        StorageData::Cpu(_) => unreachable!("dtype checked above"),
        StorageData::Cuda(gs) => {
            let (goff, ord) = (grad.layout().offset(), gs.ordinal());
            let e = || cuda_backend::err(op, ord);
            match gs {
                CudaStorage::F32(g) => {
                    let gv = g.slice(goff..goff + n).map_err(e())?;
                    let mut typed = Vec::with_capacity(1 + states.len());
                    for (guard, off) in guards.by_ref() {
                        match guard.data_mut() {
                            StorageData::Cuda(CudaStorage::F32(v)) => {
                                typed.push(v.slice_mut(*off..*off + n).map_err(e())?)
                            }
                            _ => unreachable!("dtypes and devices checked above"),
                        }
                    }
                    let p = typed.remove(0);
                    cuda(CudaBuffers::F32(p, gv, typed)).map_err(e())?;
                }
                CudaStorage::F64(g) => {
                    let gv = g.slice(goff..goff + n).map_err(e())?;
                    let mut typed = Vec::with_capacity(1 + states.len());
                    for (guard, off) in guards.by_ref() {
                        match guard.data_mut() {
                            StorageData::Cuda(CudaStorage::F64(v)) => {
                                typed.push(v.slice_mut(*off..*off + n).map_err(e())?)
                            }
                            _ => unreachable!("dtypes and devices checked above"),
                        }
                    }
                    let p = typed.remove(0);
                    cuda(CudaBuffers::F64(p, gv, typed)).map_err(e())?;
                }
            }
        }
    }
    Ok(())
}

/// Moves the state slices into the stack array `slots`; returns how many there were.
fn fill_slots<'a, T>(
    slots: &mut [&'a mut [T]; 3],
    states: impl Iterator<Item = &'a mut [T]>,
) -> usize {
    let mut count = 0;
    for (slot, s) in slots.iter_mut().zip(states) {
        *slot = s;
        count += 1;
    }
    count
}

/// SGD with optional (Nesterov) momentum; `velocity` is required when momentum > 0.
pub fn sgd_step(
    param: &Tensor,
    grad: &Tensor,
    velocity: Option<&Tensor>,
    cfg: &SgdConfig,
) -> Result<()> {
    let ccfg = SgdConfig {
        lr: cfg.lr,
        momentum: cfg.momentum,
        nesterov: cfg.nesterov,
        weight_decay: cfg.weight_decay,
    };
    // Without momentum the CUDA kernel never reads the velocity; a one-element stand-in fills
    // the argument.
    fn gpu_sgd<T: ember_cuda::FloatElem>(
        cfg: &SgdConfig,
        p: DevSliceMut<'_, T>,
        g: DevSlice<'_, T>,
        mut s: Vec<DevSliceMut<'_, T>>,
    ) -> std::result::Result<(), ember_cuda::CudaError> {
        match s.pop() {
            Some(v) => ember_cuda::optim::sgd_step(cfg, p, g, v),
            None => {
                let mut stand_in = p.device().alloc::<T>(1)?;
                ember_cuda::optim::sgd_step(cfg, p, g, stand_in.view_mut())
            }
        }
    }
    if velocity.is_none() && cfg.momentum != 0.0 {
        return Err(Error::invalid(
            "sgd_step",
            "momentum > 0 needs a velocity tensor",
        ));
    }
    let states: Vec<&Tensor> = velocity.into_iter().collect();
    fused_update(
        "sgd_step",
        param,
        grad,
        &states,
        |b| match b {
            Buffers::F32(p, g, s) => {
                ember_cpu::optim::sgd_step(cfg, p, g, s.first_mut().map_or(&mut [], |v| &mut **v))
            }
            Buffers::F64(p, g, s) => {
                ember_cpu::optim::sgd_step(cfg, p, g, s.first_mut().map_or(&mut [], |v| &mut **v))
            }
        },
        |b| match b {
            CudaBuffers::F32(p, g, s) => gpu_sgd(&ccfg, p, g, s),
            CudaBuffers::F64(p, g, s) => gpu_sgd(&ccfg, p, g, s),
        },
    )
}

/// Adam / AdamW with first and second moment tensors `m` and `v`.
pub fn adam_step(
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    cfg: &AdamConfig,
) -> Result<()> {
    let ccfg = ember_cuda::optim::AdamConfig {
        lr: cfg.lr,
        beta1: cfg.beta1,
        beta2: cfg.beta2,
        eps: cfg.eps,
        weight_decay: cfg.weight_decay,
        step: cfg.step,
    };
    fused_update(
        "adam_step",
        param,
        grad,
        &[m, v],
        |b| match b {
            Buffers::F32(p, g, s) => {
                let (m, v) = s.split_at_mut(1);
                ember_cpu::optim::adam_step(cfg, p, g, &mut *m[0], &mut *v[0])
            }
            Buffers::F64(p, g, s) => {
                let (m, v) = s.split_at_mut(1);
                ember_cpu::optim::adam_step(cfg, p, g, &mut *m[0], &mut *v[0])
            }
        },
        |b| match b {
            CudaBuffers::F32(p, g, mut s) => {
                let (v, m) = (s.pop().expect("two states"), s.pop().expect("two states"));
                ember_cuda::optim::adam_step(&ccfg, p, g, m, v)
            }
            CudaBuffers::F64(p, g, mut s) => {
                let (v, m) = (s.pop().expect("two states"), s.pop().expect("two states"));
                ember_cuda::optim::adam_step(&ccfg, p, g, m, v)
            }
        },
    )
}

/// AdaGrad with its accumulator tensor.
pub fn adagrad_step(
    param: &Tensor,
    grad: &Tensor,
    acc: &Tensor,
    cfg: &AdagradConfig,
) -> Result<()> {
    let ccfg = ember_cuda::optim::AdagradConfig {
        lr: cfg.lr,
        eps: cfg.eps,
        weight_decay: cfg.weight_decay,
    };
    fused_update(
        "adagrad_step",
        param,
        grad,
        &[acc],
        |b| match b {
            Buffers::F32(p, g, s) => ember_cpu::optim::adagrad_step(cfg, p, g, &mut *s[0]),
            Buffers::F64(p, g, s) => ember_cpu::optim::adagrad_step(cfg, p, g, &mut *s[0]),
        },
        |b| match b {
            CudaBuffers::F32(p, g, mut s) => {
                ember_cuda::optim::adagrad_step(&ccfg, p, g, s.remove(0))
            }
            CudaBuffers::F64(p, g, mut s) => {
                ember_cuda::optim::adagrad_step(&ccfg, p, g, s.remove(0))
            }
        },
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
    let mut states = vec![sq_avg];
    let has_mom = mom.is_some();
    states.extend(mom);
    states.extend(grad_avg);
    fn run<T: ember_cpu::Float>(
        cfg: &RmspropConfig,
        p: &mut [T],
        g: &[T],
        s: &mut [&mut [T]],
        has_mom: bool,
    ) -> std::result::Result<(), ember_cpu::LengthMismatch> {
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
        match sq {
            Some(sq) => ember_cpu::optim::rmsprop_step(
                cfg,
                p,
                g,
                sq,
                mom.unwrap_or(&mut empty_a),
                ga.unwrap_or(&mut empty_b),
            ),
            // `states` always starts with sq_avg (pushed above), so there is nothing to run.
            None => Ok(()),
        }
    }
    let ccfg = RmspropConfig {
        lr: cfg.lr,
        rho: cfg.rho,
        momentum: cfg.momentum,
        eps: cfg.eps,
        centered: cfg.centered,
        weight_decay: cfg.weight_decay,
    };
    // The states arrive in the order sq_avg, [mom], [grad_avg], as pushed above.
    fn gpu<T: ember_cuda::FloatElem>(
        cfg: &RmspropConfig,
        p: DevSliceMut<'_, T>,
        g: DevSlice<'_, T>,
        s: Vec<DevSliceMut<'_, T>>,
        has_mom: bool,
    ) -> std::result::Result<(), ember_cuda::CudaError> {
        let mut it = s.into_iter();
        let Some(sq) = it.next() else {
            return Err(ember_cuda::CudaError::InvalidArgument {
                op: "rmsprop_step",
                msg: "the sq_avg state is missing".into(),
            });
        };
        let mom = if has_mom { it.next() } else { None };
        let ga = it.next();
        ember_cuda::optim::rmsprop_step(cfg, p, g, sq, mom, ga)
    }
    fused_update(
        "rmsprop_step",
        param,
        grad,
        &states,
        |b| match b {
            Buffers::F32(p, g, s) => run(cfg, p, g, s, has_mom),
            Buffers::F64(p, g, s) => run(cfg, p, g, s, has_mom),
        },
        |b| match b {
            CudaBuffers::F32(p, g, s) => gpu(&ccfg, p, g, s, has_mom),
            CudaBuffers::F64(p, g, s) => gpu(&ccfg, p, g, s, has_mom),
        },
    )
}
