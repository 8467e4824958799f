//! Binary cross-entropy forward and backward (kernels/loss.cu).
//!
//! Mirrors ember-cpu's `bce_*_sum` / `bce_*_grad`, with one difference that keeps training on
//! the device: the forward writes `scale * sum` into a one-element device buffer instead of
//! returning it, so a training step never waits on the host (pass `scale = 1/n` for the mean,
//! or 1 for the sum). The reduction is deterministic: its split depends only on `n`.

use crate::device::{DevSlice, DevSliceMut, FloatElem};
use crate::error::CudaError;
use crate::launch::{BLOCK, check_in, check_out, grid_1d, launch_err, to_i64};
use cudarc::driver::{LaunchConfig, PushKernelArg};

/// Elements per thread targeted by pass 1 (the grid is n / (256 * this), at most 1024 blocks).
const ELEMS_PER_THREAD: usize = 16;
const MAX_PARTS: usize = 1024;

fn bce_sum<T: FloatElem>(
    op: &'static str,
    logits: bool,
    x: DevSlice<'_, T>,
    y: DevSlice<'_, T>,
    eps: f64,
    scale: f64,
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    let dev = out.dev;
    check_out(op, "out", &out, 1)?;
    let n = x.len;
    check_in(op, "x", dev, &x, n)?;
    check_in(op, "y", dev, &y, n)?;
    let n64 = to_i64(op, n)?;
    // The grid depends on n only, so the summation order is the same on every device and run.
    let nparts = n
        .div_ceil(BLOCK as usize * ELEMS_PER_THREAD)
        .clamp(1, MAX_PARTS);
    let part = dev.alloc::<f64>(nparts)?;
    let pp = part.raw_ptr();
    let sfx = T::DTYPE.name();
    let name = format!("bce_partial_{sfx}");
    let f = dev.function("loss", &name)?;
    let (epst, lg) = (T::from_f64(eps), logits as i32);
    let cfg = LaunchConfig {
        grid_dim: (nparts as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&x.ptr)
        .arg(&y.ptr)
        .arg(&n64)
        .arg(&epst)
        .arg(&lg)
        .arg(&pp);
    // SAFETY: x and y hold n elements; the grid has exactly nparts blocks, each writing its slot
    // of `part` (nparts elements).
    unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
    let name = format!("bce_finish_{sfx}");
    let f = dev.function("loss", &name)?;
    let np = nparts as i32;
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&pp).arg(&np).arg(&scale).arg(&out.ptr);
    // SAFETY: reads nparts partials, writes out[0] (out was checked to have one element).
    unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
    drop(part);
    Ok(())
}

/// out\[0\] = scale * Σ -(y ln p + (1-y) ln(1-p)), p clamped to \[eps, 1-eps\].
pub fn bce_probs_sum<T: FloatElem>(
    p: DevSlice<'_, T>,
    y: DevSlice<'_, T>,
    eps: f64,
    scale: f64,
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    bce_sum("bce_probs_sum", false, p, y, eps, scale, out)
}

/// out\[0\] = scale * Σ max(x,0) - x y + ln(1 + e^-|x|).
pub fn bce_logits_sum<T: FloatElem>(
    x: DevSlice<'_, T>,
    y: DevSlice<'_, T>,
    scale: f64,
    out: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    bce_sum("bce_logits_sum", true, x, y, 0.0, scale, out)
}

/// dp\[i\] = scale * (p - y) / (p (1 - p)) inside \[eps, 1-eps\], 0 outside (Keras's gradient).
pub fn bce_probs_grad<T: FloatElem>(
    p: DevSlice<'_, T>,
    y: DevSlice<'_, T>,
    eps: f64,
    scale: f64,
    dp: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "bce_probs_grad";
    let dev = dp.dev;
    let n = dp.len;
    check_in(OP, "p", dev, &p, n)?;
    check_in(OP, "y", dev, &y, n)?;
    if n == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, n)?;
    let name = format!("bce_probs_grad_{}", T::DTYPE.name());
    let f = dev.function("loss", &name)?;
    let (e, s) = (T::from_f64(eps), T::from_f64(scale));
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&p.ptr)
        .arg(&y.ptr)
        .arg(&n64)
        .arg(&e)
        .arg(&s)
        .arg(&dp.ptr);
    // SAFETY: p, y and dp were checked to hold n elements each on this device.
    unsafe { l.launch(grid_1d(dev, n, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// dx\[i\] = scale * (sigmoid(x) - y).
pub fn bce_logits_grad<T: FloatElem>(
    x: DevSlice<'_, T>,
    y: DevSlice<'_, T>,
    scale: f64,
    dx: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "bce_logits_grad";
    let dev = dx.dev;
    let n = dx.len;
    check_in(OP, "x", dev, &x, n)?;
    check_in(OP, "y", dev, &y, n)?;
    if n == 0 {
        return Ok(());
    }
    let n64 = to_i64(OP, n)?;
    let name = format!("bce_logits_grad_{}", T::DTYPE.name());
    let f = dev.function("loss", &name)?;
    let s = T::from_f64(scale);
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&x.ptr).arg(&y.ptr).arg(&n64).arg(&s).arg(&dx.ptr);
    // SAFETY: x, y and dx were checked to hold n elements each on this device.
    unsafe { l.launch(grid_1d(dev, n, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}
