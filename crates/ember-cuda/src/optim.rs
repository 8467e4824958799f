//! Fused optimizer steps on the device (kernels/optim.cu): SGD, Adam / AdamW, AdaGrad, RMSProp.
//!
//! One launch per parameter updates the parameter and its state in place. The rules and the
//! order of every rounding are ember-cpu's (Keras 3 forms; see ember-cpu/src/optim.rs): the
//! kernels use round-to-nearest intrinsics that forbid FMA contraction, and the host derives the
//! scalar coefficients exactly as the CPU does (in f64, then rounded to the element type), so a
//! GPU step is bit-identical to a CPU step on the same f32 or f64 data.

use crate::device::{DevSlice, DevSliceMut, FloatElem};
use crate::error::{CudaError, invalid};
use crate::launch::{check_in, check_out, grid_1d, launch_err, same_device, to_i64};
use cudarc::driver::PushKernelArg;

pub use ember_ops::{AdagradConfig, AdamConfig, RmspropConfig, SgdConfig};

/// SGD: `v = momentum v - lr g; p += v` (Nesterov: `p += momentum v - lr g`), after decoupled
/// weight decay `p -= lr wd p`. `velocity` is ignored (and may be empty) when momentum is 0.
pub fn sgd_step<T: FloatElem>(
    cfg: &SgdConfig,
    p: DevSliceMut<'_, T>,
    g: DevSlice<'_, T>,
    velocity: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "sgd_step";
    let dev = p.dev;
    let n = p.len;
    check_in(OP, "grad", dev, &g, n)?;
    let has_mom = cfg.momentum != 0.0;
    if has_mom {
        same_device(OP, "velocity", dev, velocity.dev)?;
        check_out(OP, "velocity", &velocity, n)?;
    }
    if n == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, n)?;
    let lr = T::from_f64(cfg.lr);
    let mom = T::from_f64(cfg.momentum);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    let (use_wd, hm, nest) = (
        (cfg.weight_decay != 0.0) as i32,
        has_mom as i32,
        cfg.nesterov as i32,
    );
    // Without momentum the kernel never touches `vel`; pass p's address as a harmless stand-in.
    let vel = if has_mom { velocity.ptr } else { p.ptr };
    let name = format!("sgd_step_{}", T::DTYPE.name());
    let f = dev.function("optim", &name)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&p.ptr)
        .arg(&g.ptr)
        .arg(&vel)
        .arg(&n64)
        .arg(&lr)
        .arg(&mom)
        .arg(&decay)
        .arg(&use_wd)
        .arg(&hm)
        .arg(&nest);
    // SAFETY: p, g (and velocity when used) hold n elements each on this device.
    unsafe { l.launch(grid_1d(dev, n, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// Adam (Keras form): `m += (1-b1)(g-m); v += (1-b2)(g²-v);
/// p -= lr·sqrt(1-b2^t)/(1-b1^t) · m / (sqrt v + eps)`, after decoupled weight decay.
pub fn adam_step<T: FloatElem>(
    cfg: &AdamConfig,
    p: DevSliceMut<'_, T>,
    g: DevSlice<'_, T>,
    m: DevSliceMut<'_, T>,
    v: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "adam_step";
    let dev = p.dev;
    let n = p.len;
    check_in(OP, "grad", dev, &g, n)?;
    same_device(OP, "m", dev, m.dev)?;
    same_device(OP, "v", dev, v.dev)?;
    check_out(OP, "m", &m, n)?;
    check_out(OP, "v", &v, n)?;
    if !(cfg.beta1 < 1.0 && cfg.beta2 < 1.0) {
        return Err(invalid(
            OP,
            format!(
                "beta1 {} and beta2 {} must be below 1",
                cfg.beta1, cfg.beta2
            ),
        ));
    }
    if n == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, n)?;
    let t = cfg.step.clamp(1, i32::MAX as u64) as i32;
    let lr_t = cfg.lr * (1.0 - cfg.beta2.powi(t)).sqrt() / (1.0 - cfg.beta1.powi(t));
    let lr_t = T::from_f64(lr_t);
    let one_b1 = T::from_f64(1.0 - cfg.beta1);
    let one_b2 = T::from_f64(1.0 - cfg.beta2);
    let eps = T::from_f64(cfg.eps);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    let use_wd = (cfg.weight_decay != 0.0) as i32;
    let name = format!("adam_step_{}", T::DTYPE.name());
    let f = dev.function("optim", &name)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&p.ptr)
        .arg(&g.ptr)
        .arg(&m.ptr)
        .arg(&v.ptr)
        .arg(&n64)
        .arg(&lr_t)
        .arg(&one_b1)
        .arg(&one_b2)
        .arg(&eps)
        .arg(&decay)
        .arg(&use_wd);
    // SAFETY: p, g, m and v hold n elements each on this device (checked above).
    unsafe { l.launch(grid_1d(dev, n, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// AdaGrad: `acc += g²; p -= lr g / sqrt(acc + eps)`, after decoupled weight decay.
pub fn adagrad_step<T: FloatElem>(
    cfg: &AdagradConfig,
    p: DevSliceMut<'_, T>,
    g: DevSlice<'_, T>,
    acc: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "adagrad_step";
    let dev = p.dev;
    let n = p.len;
    check_in(OP, "grad", dev, &g, n)?;
    same_device(OP, "accumulator", dev, acc.dev)?;
    check_out(OP, "accumulator", &acc, n)?;
    if n == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, n)?;
    let lr = T::from_f64(cfg.lr);
    let eps = T::from_f64(cfg.eps);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    let use_wd = (cfg.weight_decay != 0.0) as i32;
    let name = format!("adagrad_step_{}", T::DTYPE.name());
    let f = dev.function("optim", &name)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&p.ptr)
        .arg(&g.ptr)
        .arg(&acc.ptr)
        .arg(&n64)
        .arg(&lr)
        .arg(&eps)
        .arg(&decay)
        .arg(&use_wd);
    // SAFETY: p, g and acc hold n elements each on this device (checked above).
    unsafe { l.launch(grid_1d(dev, n, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// RMSProp (Keras form): `s = rho s + (1-rho) g²; [a = rho a + (1-rho) g; s' = s - a²];
/// inc = lr g / sqrt(s' + eps)`; with momentum `b = momentum b + inc; p -= b`, else `p -= inc`.
/// `mom_buf` is read only when momentum > 0 and `grad_avg` only when centered; an unused one may
/// be `None`.
pub fn rmsprop_step<T: FloatElem>(
    cfg: &RmspropConfig,
    p: DevSliceMut<'_, T>,
    g: DevSlice<'_, T>,
    sq_avg: DevSliceMut<'_, T>,
    mom_buf: Option<DevSliceMut<'_, T>>,
    grad_avg: Option<DevSliceMut<'_, T>>,
) -> Result<(), CudaError> {
    const OP: &str = "rmsprop_step";
    let dev = p.dev;
    let n = p.len;
    check_in(OP, "grad", dev, &g, n)?;
    same_device(OP, "sq_avg", dev, sq_avg.dev)?;
    check_out(OP, "sq_avg", &sq_avg, n)?;
    let has_mom = cfg.momentum > 0.0;
    // An unused state is never touched by the kernel; p's address stands in for it.
    let state = |what: &str, used: bool, s: Option<DevSliceMut<'_, T>>| match (used, s) {
        (false, _) => Ok(p.ptr),
        (true, Some(s)) => {
            same_device(OP, what, dev, s.dev)?;
            check_out(OP, what, &s, n)?;
            Ok(s.ptr)
        }
        (true, None) => Err(invalid(
            OP,
            format!("{what} buffer is required but missing"),
        )),
    };
    let mb = state("momentum", has_mom, mom_buf)?;
    let ga = state("grad_avg", cfg.centered, grad_avg)?;
    if n == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, n)?;
    let lr = T::from_f64(cfg.lr);
    let rho = T::from_f64(cfg.rho);
    let one_rho = T::from_f64(1.0 - cfg.rho);
    let eps = T::from_f64(cfg.eps);
    let mom = T::from_f64(cfg.momentum);
    let decay = T::from_f64(cfg.lr * cfg.weight_decay);
    let (use_wd, hm, centered) = (
        (cfg.weight_decay != 0.0) as i32,
        has_mom as i32,
        cfg.centered as i32,
    );
    let name = format!("rmsprop_step_{}", T::DTYPE.name());
    let f = dev.function("optim", &name)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&p.ptr)
        .arg(&g.ptr)
        .arg(&sq_avg.ptr)
        .arg(&mb)
        .arg(&ga)
        .arg(&n64)
        .arg(&lr)
        .arg(&rho)
        .arg(&one_rho)
        .arg(&eps)
        .arg(&mom)
        .arg(&decay)
        .arg(&use_wd)
        .arg(&hm)
        .arg(&centered);
    // SAFETY: p, g, sq_avg (and the momentum / grad_avg buffers when used) hold n elements each
    // on this device (checked above); unused buffers are never dereferenced.
    unsafe { l.launch(grid_1d(dev, n, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}
