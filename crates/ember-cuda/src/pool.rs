//! Pooling, nearest upsampling and 2-D padding on the device (kernels/pool.cu), f32 and f64,
//! forward and backward, over contiguous NCHW buffers.
//!
//! - [`max_pool2d_forward`] / [`max_pool2d_backward`] and [`avg_pool2d_forward`] /
//!   [`avg_pool2d_backward`] take an [`ember_ops::Pool2dSpec`], the value ember-cpu's pooling
//!   takes, so both devices agree on windows, padding, `ceil_mode` and output size. Max pooling
//!   writes the argmax of every window to an [`IndexBuffer`] (`iy·w + ix` within the input
//!   plane, PyTorch's convention; ties go to the first maximum in row-major window order; a NaN
//!   wins, and the index is then the window's last NaN, as in PyTorch's CPU kernel), which the
//!   backward routes the gradient through. A window with no tap inside the input (possible only
//!   with dilation) yields −∞ and index `u32::MAX`, which routes nothing.
//! - [`adaptive_avg_pool2d_forward`] / [`adaptive_avg_pool2d_backward`]: PyTorch's bins
//!   (`floor(i·in/out) .. ceil((i+1)·in/out)`); global average pooling is the 1×1 case.
//! - [`upsample_nearest2d_forward`] / [`upsample_nearest2d_backward`]: integer scales; the
//!   backward sums each block.
//! - [`pad2d_forward`] / [`pad2d_backward`]: [`PadMode::Constant`] or [`PadMode::Reflect`] on
//!   the last two dimensions ([`Pad2d`], PyTorch's `(left, right, top, bottom)`).
//!
//! Every backward is a gather (each dx element summed by one thread, in a fixed order): no
//! atomics, bit-identical results on every run. Gradients are overwritten, not accumulated into.
//! Every function validates its geometry and every buffer length first and returns a
//! [`CudaError`] naming the op and the shapes otherwise; empty outputs launch nothing.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DevicePtr, DeviceRepr, PushKernelArg};

use crate::device::{CudaDevice, DevSlice, DevSliceMut, FloatElem};
use crate::error::{CudaError, driver_err, invalid};
use crate::launch::{check_in, check_out, grid_1d, launch_err, same_device, to_i64};

pub use ember_ops::{Pool2dSpec, PoolKind};

/// A buffer of u32 element indices in device memory: max pooling's argmax per output.
///
/// Kept apart from [`crate::DeviceBuffer`], whose element types are the float dtypes of
/// tensors. An empty buffer holds no device memory.
pub struct IndexBuffer {
    data: Option<CudaSlice<u32>>,
    device: Arc<CudaDevice>,
}

impl std::fmt::Debug for IndexBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IndexBuffer[{}] on cuda:{}",
            self.len(),
            self.device.ordinal()
        )
    }
}

impl IndexBuffer {
    /// `len` zero indices on `dev` (`len == 0`: an empty buffer, no driver call).
    pub fn zeros(dev: &Arc<CudaDevice>, len: usize) -> Result<Self, CudaError> {
        let data = if len == 0 {
            None
        } else {
            Some(
                dev.stream()
                    .alloc_zeros::<u32>(len)
                    .map_err(|e| driver_err(format!("allocating {len} indices"), e))?,
            )
        };
        Ok(IndexBuffer {
            data,
            device: dev.clone(),
        })
    }

    /// Copies host indices to a new device buffer.
    pub fn upload(dev: &Arc<CudaDevice>, host: &[u32]) -> Result<Self, CudaError> {
        let data = if host.is_empty() {
            None
        } else {
            Some(
                dev.stream()
                    .clone_htod(host)
                    .map_err(|e| driver_err(format!("uploading {} indices", host.len()), e))?,
            )
        };
        Ok(IndexBuffer {
            data,
            device: dev.clone(),
        })
    }

    /// Number of indices.
    pub fn len(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.len())
    }

    /// True when the buffer holds no index.
    pub fn is_empty(&self) -> bool {
        self.data.is_none()
    }

    /// The device holding the buffer.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.device
    }

    /// Copies the indices to the host (waits for queued work first).
    pub fn to_host(&self) -> Result<Vec<u32>, CudaError> {
        let v = match &self.data {
            Some(d) => self
                .device
                .stream()
                .clone_dtoh(d)
                .map_err(|e| driver_err("copy indices to host", e))?,
            None => Vec::new(),
        };
        self.device.synchronize()?;
        Ok(v)
    }

    fn ptr(&self) -> u64 {
        self.data.as_ref().map_or(0, |d| {
            let (p, _guard) = d.device_ptr(self.device.stream());
            p
        })
    }
}

/// The padding vocabulary (one definition, in ember-ops, shared with the CPU kernels).
pub use ember_ops::{Pad2d, PadMode};

/// Kernel-side geometry (`struct PoolGeom` in kernels/pool.cu): 16 i32, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct PoolGeom {
    h: i32,
    w: i32,
    oh: i32,
    ow: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    dh: i32,
    dw: i32,
    ph: i32,
    pw: i32,
    include_pad: i32,
    pad_end_h: i32,
    pad_end_w: i32,
    pad: i32,
}

// SAFETY: a plain #[repr(C)] struct of 16 i32, laid out exactly like `struct PoolGeom`.
unsafe impl DeviceRepr for PoolGeom {}

/// Checked sizes of one pass over `planes` input planes of h×w and output planes of oh×ow.
struct Planes {
    in_len: usize,
    out_len: usize,
}

/// Checks that h·w and oh·ow fit the kernels' 32-bit in-plane arithmetic (and the u32 argmax),
/// and that the whole buffers fit i64.
fn planes(
    op: &'static str,
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Result<Planes, CudaError> {
    let in_plane = h.checked_mul(w);
    let out_plane = oh.checked_mul(ow);
    let fits = |p: Option<usize>| p.is_some_and(|p| p <= i32::MAX as usize);
    if !fits(in_plane) || !fits(out_plane) {
        return Err(invalid(
            op,
            format!(
                "planes of {h}×{w} (input) and {oh}×{ow} (output) exceed the kernels' 32-bit \
                 in-plane index"
            ),
        ));
    }
    let total = |p: usize| {
        planes
            .checked_mul(p)
            .filter(|&t| to_i64(op, t).is_ok())
            .ok_or_else(|| invalid(op, format!("{planes} planes of {p} elements overflow")))
    };
    Ok(Planes {
        in_len: total(h * w)?,
        out_len: total(oh * ow)?,
    })
}

fn geom_of(spec: &Pool2dSpec) -> PoolGeom {
    let include_pad = matches!(
        spec.kind,
        PoolKind::Avg {
            count_include_pad: true
        }
    );
    // Every value below was bounded by `planes` (extents) or is at most an extent plus padding
    // that Pool2dSpec::validate limited to half a window; saturate rather than wrap regardless.
    let c = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    PoolGeom {
        h: c(spec.h.input),
        w: c(spec.w.input),
        oh: c(spec.out_h()),
        ow: c(spec.out_w()),
        kh: c(spec.h.kernel),
        kw: c(spec.w.kernel),
        sh: c(spec.h.stride),
        sw: c(spec.w.stride),
        dh: c(spec.h.dilation),
        dw: c(spec.w.dilation),
        ph: c(spec.h.pad_begin),
        pw: c(spec.w.pad_begin),
        include_pad: include_pad as i32,
        pad_end_h: c(spec.h.pad_end),
        pad_end_w: c(spec.w.pad_end),
        pad: 0,
    }
}

fn describe(spec: &Pool2dSpec) -> String {
    format!(
        "input [{}, {}, {}, {}], window {}×{}, stride ({}, {}), dilation ({}, {}), padding \
         ({}, {}, {}, {}), ceil_mode {}",
        spec.batch,
        spec.channels,
        spec.h.input,
        spec.w.input,
        spec.h.kernel,
        spec.w.kernel,
        spec.h.stride,
        spec.w.stride,
        spec.h.dilation,
        spec.w.dilation,
        spec.h.pad_begin,
        spec.h.pad_end,
        spec.w.pad_begin,
        spec.w.pad_end,
        spec.ceil_mode
    )
}

/// Validates a pooling spec for `op` and checks its window parameters fit i32.
fn pool_sizes(op: &'static str, spec: &Pool2dSpec, max: bool) -> Result<Planes, CudaError> {
    spec.validate()
        .map_err(|e| invalid(op, format!("{}: {e}", describe(spec))))?;
    match (max, spec.kind) {
        (true, PoolKind::Max) => {}
        (false, PoolKind::Avg { .. }) => {
            if spec.h.dilation != 1 || spec.w.dilation != 1 {
                return Err(invalid(
                    op,
                    format!(
                        "{}: average pooling has no dilation (as PyTorch's avg_pool2d)",
                        describe(spec)
                    ),
                ));
            }
        }
        (_, kind) => {
            return Err(invalid(
                op,
                format!(
                    "{}: spec kind {kind:?} does not match the op",
                    describe(spec)
                ),
            ));
        }
    }
    let small = [
        spec.h.kernel,
        spec.w.kernel,
        spec.h.stride,
        spec.w.stride,
        spec.h.dilation,
        spec.w.dilation,
        spec.h
            .pad_begin
            .saturating_add(spec.h.pad_end)
            .saturating_add(spec.h.input),
        spec.w
            .pad_begin
            .saturating_add(spec.w.pad_end)
            .saturating_add(spec.w.input),
        spec.h.span().saturating_add(spec.h.input),
        spec.w.span().saturating_add(spec.w.input),
    ];
    if small.iter().any(|&v| v > i32::MAX as usize) {
        return Err(invalid(
            op,
            format!(
                "{}: exceeds the kernels' 32-bit index range",
                describe(spec)
            ),
        ));
    }
    let np = spec
        .batch
        .checked_mul(spec.channels)
        .ok_or_else(|| invalid(op, format!("{}: too many planes", describe(spec))))?;
    planes(
        op,
        np,
        (spec.h.input, spec.w.input),
        (spec.out_h(), spec.out_w()),
    )
}

/// Launches `{kernel}_{dtype}` of the pool module with arguments (geom, src, dst, total) over
/// `total` items.
///
/// # Safety
/// `src` and `dst` must be device buffers of the sizes the kernel addresses for `g` (checked by
/// the caller), and `total` the number of items of the pass.
unsafe fn launch_simple<T: FloatElem>(
    op: &'static str,
    kernel: &str,
    dev: &Arc<CudaDevice>,
    g: PoolGeom,
    src: u64,
    dst: u64,
    total: usize,
) -> Result<(), CudaError> {
    if total == 0 {
        return Ok(());
    }
    let name = format!("{kernel}_{}", T::DTYPE.name());
    let f = dev.function("pool", &name)?;
    let t64 = to_i64(op, total)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&g).arg(&src).arg(&dst).arg(&t64);
    // SAFETY: forwarded to the caller.
    unsafe { l.launch(grid_1d(dev, total, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// Max pooling: `y` gets each window's maximum and `indices` its position (`iy·w + ix` in the
/// input plane). `x` is `[n, c, h, w]`, `y` and `indices` hold `spec.output_shape()`.
pub fn max_pool2d_forward<T: FloatElem>(
    spec: &Pool2dSpec,
    x: DevSlice<'_, T>,
    y: DevSliceMut<'_, T>,
    indices: &mut IndexBuffer,
) -> Result<(), CudaError> {
    const OP: &str = "max_pool2d_forward";
    let p = pool_sizes(OP, spec, true)?;
    let dev = y.dev;
    check_in(OP, "x", dev, &x, p.in_len)?;
    check_out(OP, "y", &y, p.out_len)?;
    same_device(OP, "indices", dev, &indices.device)?;
    if indices.len() != p.out_len {
        return Err(invalid(
            OP,
            format!(
                "indices has {} elements, expected {} for output {:?}",
                indices.len(),
                p.out_len,
                spec.output_shape()
            ),
        ));
    }
    if p.out_len == 0 {
        return Ok(());
    }
    let name = format!("max_pool2d_fwd_{}", T::DTYPE.name());
    let f = dev.function("pool", &name)?;
    let g = geom_of(spec);
    let t64 = to_i64(OP, p.out_len)?;
    let ip = indices.ptr();
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&g).arg(&x.ptr).arg(&y.ptr).arg(&ip).arg(&t64);
    // SAFETY: x holds n·c input planes, y and indices n·c output planes (checked above); the
    // kernel reads only taps inside the input plane.
    unsafe { l.launch(grid_1d(dev, p.out_len, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// The backward of max pooling: dx\[i\] = Σ dy over the windows whose argmax is i. `dy` and
/// `indices` hold `spec.output_shape()`, `dx` the input shape.
pub fn max_pool2d_backward<T: FloatElem>(
    spec: &Pool2dSpec,
    dy: DevSlice<'_, T>,
    indices: &IndexBuffer,
    dx: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "max_pool2d_backward";
    let p = pool_sizes(OP, spec, true)?;
    let dev = dx.dev;
    check_in(OP, "dy", dev, &dy, p.out_len)?;
    check_out(OP, "dx", &dx, p.in_len)?;
    same_device(OP, "indices", dev, &indices.device)?;
    if indices.len() != p.out_len {
        return Err(invalid(
            OP,
            format!(
                "indices has {} elements, expected {}",
                indices.len(),
                p.out_len
            ),
        ));
    }
    if p.in_len == 0 {
        return Ok(());
    }
    let name = format!("max_pool2d_bwd_{}", T::DTYPE.name());
    let f = dev.function("pool", &name)?;
    let g = geom_of(spec);
    let t64 = to_i64(OP, p.in_len)?;
    let ip = indices.ptr();
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&g).arg(&dy.ptr).arg(&ip).arg(&dx.ptr).arg(&t64);
    // SAFETY: dy and indices hold n·c output planes, dx n·c input planes; the kernel reads
    // only outputs whose window position it checked to be in range, and compares (never
    // dereferences) the stored indices.
    unsafe { l.launch(grid_1d(dev, p.in_len, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// Average pooling (PyTorch's `count_include_pad` and `ceil_mode` rules, from `spec.kind` and
/// `spec.ceil_mode`).
pub fn avg_pool2d_forward<T: FloatElem>(
    spec: &Pool2dSpec,
    x: DevSlice<'_, T>,
    y: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "avg_pool2d_forward";
    let p = pool_sizes(OP, spec, false)?;
    let dev = y.dev;
    check_in(OP, "x", dev, &x, p.in_len)?;
    check_out(OP, "y", &y, p.out_len)?;
    // SAFETY: x and y hold the spec's planes (checked above); the kernel reads the clipped
    // window only.
    unsafe {
        launch_simple::<T>(
            OP,
            "avg_pool2d_fwd",
            dev,
            geom_of(spec),
            x.ptr,
            y.ptr,
            p.out_len,
        )
    }
}

/// The backward of average pooling: dx\[i\] = Σ dy / divisor over the windows containing i.
pub fn avg_pool2d_backward<T: FloatElem>(
    spec: &Pool2dSpec,
    dy: DevSlice<'_, T>,
    dx: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "avg_pool2d_backward";
    let p = pool_sizes(OP, spec, false)?;
    let dev = dx.dev;
    check_in(OP, "dy", dev, &dy, p.out_len)?;
    check_out(OP, "dx", &dx, p.in_len)?;
    // SAFETY: dy holds the output planes, dx the input planes; the kernel reads only windows
    // whose position it checked to be in range.
    unsafe {
        launch_simple::<T>(
            OP,
            "avg_pool2d_bwd",
            dev,
            geom_of(spec),
            dy.ptr,
            dx.ptr,
            p.in_len,
        )
    }
}

/// Geometry of the plane-to-plane ops (adaptive pooling, upsampling, padding): extents only.
fn plane_geom(
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    (sh, sw): (usize, usize),
    pads: Pad2d,
) -> PoolGeom {
    let c = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    PoolGeom {
        h: c(h),
        w: c(w),
        oh: c(oh),
        ow: c(ow),
        sh: c(sh),
        sw: c(sw),
        ph: c(pads.top),
        pw: c(pads.left),
        pad_end_h: c(pads.bottom),
        pad_end_w: c(pads.right),
        ..PoolGeom::default()
    }
}

fn check_adaptive(
    op: &'static str,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Result<(), CudaError> {
    if h == 0 || w == 0 || oh == 0 || ow == 0 {
        return Err(invalid(
            op,
            format!("input plane {h}×{w} and output plane {oh}×{ow} must be non-empty"),
        ));
    }
    Ok(())
}

/// Adaptive average pooling of `[batch, channels, h, w]` to `[batch, channels, oh, ow]`:
/// output (i, j) averages rows `floor(i·h/oh) .. ceil((i+1)·h/oh)` and the same for columns
/// (PyTorch's bins; global average pooling is `out_hw = (1, 1)`).
pub fn adaptive_avg_pool2d_forward<T: FloatElem>(
    batch: usize,
    channels: usize,
    in_hw: (usize, usize),
    out_hw: (usize, usize),
    x: DevSlice<'_, T>,
    y: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "adaptive_avg_pool2d_forward";
    check_adaptive(OP, in_hw, out_hw)?;
    let np = plane_count(OP, batch, channels)?;
    let p = planes(OP, np, in_hw, out_hw)?;
    let dev = y.dev;
    check_in(OP, "x", dev, &x, p.in_len)?;
    check_out(OP, "y", &y, p.out_len)?;
    let g = plane_geom(in_hw, out_hw, (1, 1), Pad2d::default());
    // SAFETY: x and y hold np planes of the checked extents; bins lie inside the input plane.
    unsafe {
        launch_simple::<T>(
            OP,
            "adaptive_avg_pool2d_fwd",
            dev,
            g,
            x.ptr,
            y.ptr,
            p.out_len,
        )
    }
}

/// The backward of [`adaptive_avg_pool2d_forward`]: dx\[i\] = Σ dy / bin size over the bins
/// containing i.
pub fn adaptive_avg_pool2d_backward<T: FloatElem>(
    batch: usize,
    channels: usize,
    in_hw: (usize, usize),
    out_hw: (usize, usize),
    dy: DevSlice<'_, T>,
    dx: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "adaptive_avg_pool2d_backward";
    check_adaptive(OP, in_hw, out_hw)?;
    let np = plane_count(OP, batch, channels)?;
    let p = planes(OP, np, in_hw, out_hw)?;
    let dev = dx.dev;
    check_in(OP, "dy", dev, &dy, p.out_len)?;
    check_out(OP, "dx", &dx, p.in_len)?;
    let g = plane_geom(in_hw, out_hw, (1, 1), Pad2d::default());
    // SAFETY: dy and dx hold np planes of the checked extents; bins lie inside the planes.
    unsafe {
        launch_simple::<T>(
            OP,
            "adaptive_avg_pool2d_bwd",
            dev,
            g,
            dy.ptr,
            dx.ptr,
            p.in_len,
        )
    }
}

fn plane_count(op: &'static str, batch: usize, channels: usize) -> Result<usize, CudaError> {
    batch
        .checked_mul(channels)
        .ok_or_else(|| invalid(op, format!("{batch} × {channels} planes overflow")))
}

/// The output extents of an upsampling, after checking the scales.
fn upsample_out(
    op: &'static str,
    (h, w): (usize, usize),
    (sh, sw): (usize, usize),
) -> Result<(usize, usize), CudaError> {
    if sh == 0 || sw == 0 {
        return Err(invalid(
            op,
            format!("scale factors ({sh}, {sw}) must be ≥ 1"),
        ));
    }
    match (h.checked_mul(sh), w.checked_mul(sw)) {
        (Some(oh), Some(ow)) => Ok((oh, ow)),
        _ => Err(invalid(
            op,
            format!("{h}×{w} scaled by ({sh}, {sw}) overflows"),
        )),
    }
}

/// Nearest upsampling of `[batch, channels, h, w]` by integer scales to
/// `[batch, channels, h·sh, w·sw]`: y\[i, j\] = x\[i / sh, j / sw\].
pub fn upsample_nearest2d_forward<T: FloatElem>(
    batch: usize,
    channels: usize,
    in_hw: (usize, usize),
    scale: (usize, usize),
    x: DevSlice<'_, T>,
    y: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "upsample_nearest2d_forward";
    let out_hw = upsample_out(OP, in_hw, scale)?;
    let np = plane_count(OP, batch, channels)?;
    let p = planes(OP, np, in_hw, out_hw)?;
    let dev = y.dev;
    check_in(OP, "x", dev, &x, p.in_len)?;
    check_out(OP, "y", &y, p.out_len)?;
    let g = plane_geom(in_hw, out_hw, scale, Pad2d::default());
    // SAFETY: x and y hold np planes of the checked extents; i / sh < h for i < h·sh.
    unsafe {
        launch_simple::<T>(
            OP,
            "upsample_nearest2d_fwd",
            dev,
            g,
            x.ptr,
            y.ptr,
            p.out_len,
        )
    }
}

/// The backward of [`upsample_nearest2d_forward`]: dx\[i, j\] sums its sh×sw block of dy.
pub fn upsample_nearest2d_backward<T: FloatElem>(
    batch: usize,
    channels: usize,
    in_hw: (usize, usize),
    scale: (usize, usize),
    dy: DevSlice<'_, T>,
    dx: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "upsample_nearest2d_backward";
    let out_hw = upsample_out(OP, in_hw, scale)?;
    let np = plane_count(OP, batch, channels)?;
    let p = planes(OP, np, in_hw, out_hw)?;
    let dev = dx.dev;
    check_in(OP, "dy", dev, &dy, p.out_len)?;
    check_out(OP, "dx", &dx, p.in_len)?;
    let g = plane_geom(in_hw, out_hw, scale, Pad2d::default());
    // SAFETY: dy and dx hold np planes of the checked extents; each block lies inside dy's.
    unsafe {
        launch_simple::<T>(
            OP,
            "upsample_nearest2d_bwd",
            dev,
            g,
            dy.ptr,
            dx.ptr,
            p.in_len,
        )
    }
}

/// The padded extents, after checking the pads against the mode.
fn padded(
    op: &'static str,
    (h, w): (usize, usize),
    pads: Pad2d,
    mode: PadMode,
) -> Result<(usize, usize), CudaError> {
    if mode == PadMode::Reflect
        && (pads.top >= h || pads.bottom >= h || pads.left >= w || pads.right >= w)
    {
        return Err(invalid(
            op,
            format!(
                "reflect padding {pads:?} must be smaller than the padded dimensions {h}×{w} \
                 (as PyTorch requires)"
            ),
        ));
    }
    let oh = h
        .checked_add(pads.top)
        .and_then(|v| v.checked_add(pads.bottom));
    let ow = w
        .checked_add(pads.left)
        .and_then(|v| v.checked_add(pads.right));
    match (oh, ow) {
        (Some(oh), Some(ow)) => Ok((oh, ow)),
        _ => Err(invalid(op, format!("{h}×{w} padded by {pads:?} overflows"))),
    }
}

/// Pads the last two dimensions of `[batch, channels, h, w]` to
/// `[batch, channels, top + h + bottom, left + w + right]`.
pub fn pad2d_forward<T: FloatElem>(
    batch: usize,
    channels: usize,
    in_hw: (usize, usize),
    pads: Pad2d,
    mode: PadMode,
    x: DevSlice<'_, T>,
    y: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "pad2d_forward";
    let out_hw = padded(OP, in_hw, pads, mode)?;
    let np = plane_count(OP, batch, channels)?;
    let p = planes(OP, np, in_hw, out_hw)?;
    let dev = y.dev;
    check_in(OP, "x", dev, &x, p.in_len)?;
    check_out(OP, "y", &y, p.out_len)?;
    if p.out_len == 0 {
        return Ok(());
    }
    let g = plane_geom(in_hw, out_hw, (1, 1), pads);
    let (reflect, value) = match mode {
        PadMode::Constant(v) => (0i32, T::from_f64(v)),
        PadMode::Reflect => (1i32, T::from_f64(0.0)),
        other => {
            return Err(invalid(
                OP,
                format!("pad mode {other:?} has no CUDA kernel"),
            ));
        }
    };
    let name = format!("pad2d_fwd_{}", T::DTYPE.name());
    let f = dev.function("pool", &name)?;
    let t64 = to_i64(OP, p.out_len)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&g)
        .arg(&reflect)
        .arg(&value)
        .arg(&x.ptr)
        .arg(&y.ptr)
        .arg(&t64);
    // SAFETY: x and y hold np planes of the checked extents; the kernel reads x only at
    // positions inside the input plane (constant mode tests, reflect mode maps pads < extent).
    unsafe { l.launch(grid_1d(dev, p.out_len, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// The backward of [`pad2d_forward`]: dx\[i, j\] sums the padded positions that read (i, j)
/// (one for constant padding; up to three per axis for reflect).
pub fn pad2d_backward<T: FloatElem>(
    batch: usize,
    channels: usize,
    in_hw: (usize, usize),
    pads: Pad2d,
    mode: PadMode,
    dy: DevSlice<'_, T>,
    dx: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "pad2d_backward";
    let out_hw = padded(OP, in_hw, pads, mode)?;
    let np = plane_count(OP, batch, channels)?;
    let p = planes(OP, np, in_hw, out_hw)?;
    let dev = dx.dev;
    check_in(OP, "dy", dev, &dy, p.out_len)?;
    check_out(OP, "dx", &dx, p.in_len)?;
    if p.in_len == 0 {
        return Ok(());
    }
    let g = plane_geom(in_hw, out_hw, (1, 1), pads);
    let reflect = i32::from(mode == PadMode::Reflect);
    let name = format!("pad2d_bwd_{}", T::DTYPE.name());
    let f = dev.function("pool", &name)?;
    let t64 = to_i64(OP, p.in_len)?;
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&g).arg(&reflect).arg(&dy.ptr).arg(&dx.ptr).arg(&t64);
    // SAFETY: dy and dx hold np planes of the checked extents; every mirrored position the
    // kernel reads lies inside the padded plane (pads < extent for reflect).
    unsafe { l.launch(grid_1d(dev, p.in_len, 1)) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_ops::Axis;

    fn spec(kind: PoolKind) -> Pool2dSpec {
        Pool2dSpec {
            batch: 2,
            channels: 3,
            kind,
            ceil_mode: false,
            h: Axis::new(6, 2),
            w: Axis::new(5, 2),
        }
    }

    #[test]
    fn kinds_must_match_the_op() {
        let e = pool_sizes("avg_pool2d_forward", &spec(PoolKind::Max), false)
            .err()
            .expect("max spec to avg op");
        assert!(e.to_string().contains("does not match"), "{e}");
        assert!(pool_sizes("max_pool2d_forward", &spec(PoolKind::Max), true).is_ok());
        let mut s = spec(PoolKind::Avg {
            count_include_pad: true,
        });
        s.h.dilation = 2;
        let e = pool_sizes("avg_pool2d_forward", &s, false)
            .err()
            .expect("dilated avg");
        assert!(e.to_string().contains("dilation"), "{e}");
    }

    #[test]
    fn sizes_follow_the_spec() {
        let p = pool_sizes("max_pool2d_forward", &spec(PoolKind::Max), true).unwrap();
        assert_eq!((p.in_len, p.out_len), (2 * 3 * 30, 2 * 3 * 5 * 4));
    }

    #[test]
    fn reflect_pads_must_be_smaller_than_the_input() {
        let pads = Pad2d {
            left: 1,
            right: 3,
            top: 0,
            bottom: 0,
        };
        assert_eq!(
            padded("pad2d_forward", (2, 4), pads, PadMode::Reflect),
            Ok((2, 8))
        );
        let bad = Pad2d { right: 4, ..pads };
        assert!(padded("pad2d_forward", (2, 4), bad, PadMode::Reflect).is_err());
        assert_eq!(
            padded("pad2d_forward", (2, 4), bad, PadMode::Constant(0.0)),
            Ok((2, 9))
        );
    }

    #[test]
    fn bad_scales_and_empty_adaptive_planes_are_errors() {
        assert!(upsample_out("upsample_nearest2d_forward", (3, 3), (0, 2)).is_err());
        assert_eq!(
            upsample_out("upsample_nearest2d_forward", (3, 4), (2, 3)),
            Ok((6, 12))
        );
        assert!(check_adaptive("adaptive_avg_pool2d_forward", (4, 4), (0, 1)).is_err());
    }
}
