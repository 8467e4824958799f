//! 2-D convolution on the device (kernels/conv.cu): forward, backward-data and backward-weight
//! (with the bias gradient), f32 and f64, NCHW input and OIHW weights.
//!
//! The geometry is an [`ember_ops::Conv2dSpec`] — the same value ember-cpu's convolution takes,
//! so the two devices cannot disagree on padding, stride, dilation, groups or output size. Every
//! operand is a contiguous buffer of exactly the spec's shape:
//!
//! | operand | shape |
//! |---|---|
//! | `x`, `dx` | [`Conv2dSpec::input_shape`] `[n, c, h, w]` |
//! | `w`, `dw` | [`Conv2dSpec::weight_shape`] `[o, c / groups, kh, kw]` |
//! | `y`, `dy` | [`Conv2dSpec::output_shape`] `[n, o, oh, ow]` |
//! | `bias`, `db` | `[o]` |
//!
//! `conv_transpose2d` ([`conv_transpose2d_forward`], [`conv_transpose2d_backward_data`],
//! [`conv_transpose2d_backward_weight`]) is described by the spec of the convolution it is the
//! adjoint of, as in ember-ops, and runs on the same kernels with the passes exchanged.
//!
//! Two algorithms ([`ConvAlgo`]): an implicit GEMM (tiles of the GEMM view gathered from the
//! image into shared memory, no im2col buffer) and direct kernels (one thread per output element;
//! one block per weight element for backward-weight). [`ConvAlgo::Auto`] takes the direct kernels
//! for depthwise-like convolutions (one input channel per group), where a 64-row GEMM tile would
//! be mostly empty, and the GEMM otherwise. The kernel file's header gives the GEMM mapping of
//! each pass and the blocking.
//!
//! Determinism: no atomics. Backward-data is a gather (each dx element is one thread's sum);
//! backward-weight splits its long reduction (n·oh·ow) into a number of K ranges chosen from the
//! shape alone ([`splitk_plan`]), writes each split's partial product to a workspace and adds the
//! splits in order in a second kernel. The same call therefore gives bit-identical results on
//! every run (and on every GPU of the same architecture).
//!
//! Every function checks the spec ([`Conv2dSpec::validate`]), the device of every operand and
//! every length before launching, and returns a [`CudaError`] naming the op and the shapes
//! otherwise. Empty outputs launch nothing; an empty batch still writes zero gradients for the
//! weights and bias (the sum over no images).

use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};

use crate::device::{CudaDevice, DevSlice, DevSliceMut, FloatElem};
use crate::error::{CudaError, invalid};
use crate::launch::{check_in, check_out, grid_1d, launch_err, same_device, to_i64};

pub use ember_ops::Conv2dSpec;

/// Which kernels compute a convolution pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConvAlgo {
    /// Direct kernels when each group has one input channel (depthwise), the implicit GEMM
    /// otherwise.
    #[default]
    Auto,
    /// The implicit GEMM (64×64×16 shared-memory tiles, 4×4 register tile per thread).
    ImplicitGemm,
    /// One thread per output element (forward, backward-data), one block per weight element
    /// (backward-weight).
    Direct,
}

impl ConvAlgo {
    /// Every algorithm, for tests and benchmarks.
    pub const ALL: [ConvAlgo; 3] = [ConvAlgo::Auto, ConvAlgo::ImplicitGemm, ConvAlgo::Direct];

    /// The algorithm `Auto` resolves to for `spec` (a forced one is returned as is).
    pub fn resolve(self, spec: &Conv2dSpec) -> ConvAlgo {
        match self {
            ConvAlgo::Auto if spec.in_channels / spec.groups.max(1) == 1 => ConvAlgo::Direct,
            ConvAlgo::Auto => ConvAlgo::ImplicitGemm,
            forced => forced,
        }
    }
}

/// Kernel-side geometry (`struct ConvGeom` in kernels/conv.cu): 20 i32, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct ConvGeom {
    n: i32,
    c: i32,
    h: i32,
    w: i32,
    o: i32,
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
    groups: i32,
    cg: i32,
    og: i32,
    kchunk: i32,
    pad: i32,
}

// SAFETY: a plain #[repr(C)] struct of 20 i32, laid out exactly like `struct ConvGeom`.
unsafe impl DeviceRepr for ConvGeom {}

/// Block tile of the implicit GEMM (kernels/conv.cu: CBM, CBN, CBK).
const TILE_M: usize = 64;
const TILE_N: usize = 64;
const TILE_K: usize = 16;
/// Threads per block of the GEMM and one-block-per-item kernels (kernels/conv.cu: CTHREADS).
const CONV_THREADS: u32 = 256;

/// The spec's sizes as checked numbers: every extent and every GEMM dimension fits the kernels'
/// 32-bit index arithmetic (buffer offsets are 64-bit).
struct Sizes {
    geom: ConvGeom,
    x_len: usize,
    w_len: usize,
    y_len: usize,
}

fn sizes(op: &'static str, spec: &Conv2dSpec) -> Result<Sizes, CudaError> {
    spec.validate()
        .map_err(|e| invalid(op, format!("spec {}: {e}", describe(spec))))?;
    let too_big = |what: &str, v: usize| {
        invalid(
            op,
            format!(
                "spec {}: {what} = {v} exceeds the kernels' 32-bit index range",
                describe(spec)
            ),
        )
    };
    let i32_of = |what: &str, v: usize| i32::try_from(v).map_err(|_| too_big(what, v));
    let prod = |what: &str, parts: &[usize]| -> Result<usize, CudaError> {
        parts
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .ok_or_else(|| too_big(what, usize::MAX))
    };
    let [n, c, h, w] = spec.input_shape();
    let [o, cg, kh, kw] = spec.weight_shape();
    let (oh, ow) = (spec.out_h(), spec.out_w());
    let og = o / spec.groups;
    // The GEMM dimensions and per-image plane products the kernels form in 32 bits.
    for (what, parts) in [
        ("n·oh·ow", &[n, oh, ow][..]),
        ("n·h·w", &[n, h, w][..]),
        ("c·kh·kw", &[c, kh, kw][..]),
        ("o·kh·kw", &[o, kh, kw][..]),
    ] {
        i32_of(what, prod(what, parts)?)?;
    }
    // Window origins and taps (y·stride − pad + k·dilation) stay inside the padded extent.
    for (what, a) in [("height", &spec.h), ("width", &spec.w)] {
        let padded = a
            .input
            .checked_add(a.pad_begin)
            .and_then(|v| v.checked_add(a.pad_end))
            .and_then(|v| v.checked_add(a.span()))
            .ok_or_else(|| too_big(what, usize::MAX))?;
        i32_of(what, padded)?;
    }
    let x_len = prod("input elements", &[n, c, h, w])?;
    let w_len = prod("weight elements", &[o, cg, kh, kw])?;
    let y_len = prod("output elements", &[n, o, oh, ow])?;
    for (what, v) in [("input", x_len), ("weight", w_len), ("output", y_len)] {
        to_i64(op, v).map_err(|_| too_big(what, v))?;
    }
    let geom = ConvGeom {
        n: i32_of("batch", n)?,
        c: i32_of("in_channels", c)?,
        h: i32_of("height", h)?,
        w: i32_of("width", w)?,
        o: i32_of("out_channels", o)?,
        oh: i32_of("output height", oh)?,
        ow: i32_of("output width", ow)?,
        kh: i32_of("kernel height", kh)?,
        kw: i32_of("kernel width", kw)?,
        sh: i32_of("stride", spec.h.stride)?,
        sw: i32_of("stride", spec.w.stride)?,
        dh: i32_of("dilation", spec.h.dilation)?,
        dw: i32_of("dilation", spec.w.dilation)?,
        ph: i32_of("padding", spec.h.pad_begin)?,
        pw: i32_of("padding", spec.w.pad_begin)?,
        groups: i32_of("groups", spec.groups)?,
        cg: i32_of("in_channels / groups", cg)?,
        og: i32_of("out_channels / groups", og)?,
        kchunk: 0,
        pad: 0,
    };
    Ok(Sizes {
        geom,
        x_len,
        w_len,
        y_len,
    })
}

/// `x [n, c, h, w] * w [o, c/g, kh, kw]` with stride, dilation, padding and groups, for messages.
fn describe(s: &Conv2dSpec) -> String {
    format!(
        "x {:?} * w {:?} (stride ({}, {}), dilation ({}, {}), padding ({}, {}, {}, {}), groups {})",
        s.input_shape(),
        s.weight_shape(),
        s.h.stride,
        s.w.stride,
        s.h.dilation,
        s.w.dilation,
        s.h.pad_begin,
        s.h.pad_end,
        s.w.pad_begin,
        s.w.pad_end,
        s.groups
    )
}

/// Checks a buffer's length against the spec, naming the operand and its expected shape.
fn check_len(
    op: &'static str,
    what: &str,
    len: usize,
    shape: &[usize],
    want: usize,
) -> Result<(), CudaError> {
    if len != want {
        return Err(invalid(
            op,
            format!("{what} has {len} elements, expected {want} for shape {shape:?}"),
        ));
    }
    Ok(())
}

/// The implicit GEMM's grid for an M×N product per group (`z` slices: groups × splits),
/// refused when it exceeds CUDA's limits.
fn gemm_grid(op: &'static str, m: usize, n: usize, z: usize) -> Result<LaunchConfig, CudaError> {
    let (gx, gy) = (n.div_ceil(TILE_N), m.div_ceil(TILE_M));
    if gx > i32::MAX as usize || gy > 65535 || z > 65535 {
        return Err(invalid(
            op,
            format!(
                "a {m}×{n} GEMM over {z} slices needs a {gx}×{gy}×{z} grid, beyond CUDA's limits"
            ),
        ));
    }
    Ok(LaunchConfig {
        grid_dim: (gx as u32, gy as u32, z as u32),
        block_dim: (CONV_THREADS, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// The split-K plan of the backward-weight GEMM for a reduction of length `k` over `tiles`
/// output tiles (all groups): `(splits, chunk)` with `chunk` a multiple of the K tile and
/// `splits · chunk ≥ k`. It aims at about 256 blocks in all, with at least 256 reduction steps
/// per split, and depends on the shape only (never on the device), so the summation order —
/// and the result — is the same on every run and every GPU.
pub fn splitk_plan(k: usize, tiles: usize) -> (usize, usize) {
    const TARGET_BLOCKS: usize = 256;
    const MIN_CHUNK: usize = 256;
    let want = (TARGET_BLOCKS / tiles.max(1)).max(1);
    let most = k.div_ceil(MIN_CHUNK).max(1);
    let splits = want.min(most).min(64);
    let chunk = k.div_ceil(splits).div_ceil(TILE_K).max(1) * TILE_K;
    (k.div_ceil(chunk).max(1), chunk)
}

/// y = conv2d(x, w) + bias, with [`ConvAlgo::Auto`].
pub fn conv2d_forward<T: FloatElem>(
    spec: &Conv2dSpec,
    x: DevSlice<'_, T>,
    w: DevSlice<'_, T>,
    bias: Option<DevSlice<'_, T>>,
    y: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    conv2d_forward_with(ConvAlgo::Auto, spec, x, w, bias, y)
}

/// [`conv2d_forward`] with the algorithm chosen by the caller.
pub fn conv2d_forward_with<T: FloatElem>(
    algo: ConvAlgo,
    spec: &Conv2dSpec,
    x: DevSlice<'_, T>,
    w: DevSlice<'_, T>,
    bias: Option<DevSlice<'_, T>>,
    y: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    const OP: &str = "conv2d_forward";
    let s = sizes(OP, spec)?;
    let dev = y.dev;
    same_device(OP, "x", dev, x.dev)?;
    same_device(OP, "weight", dev, w.dev)?;
    check_len(OP, "x", x.len, &spec.input_shape(), s.x_len)?;
    check_len(OP, "weight", w.len, &spec.weight_shape(), s.w_len)?;
    check_len(OP, "y", y.len, &spec.output_shape(), s.y_len)?;
    let bias_ptr = match &bias {
        Some(b) => {
            check_in(OP, "bias", dev, b, spec.out_channels)?;
            b.ptr
        }
        None => 0u64,
    };
    if s.y_len == 0 {
        return Ok(());
    }
    let sfx = T::DTYPE.name();
    let g = s.geom;
    match algo.resolve(spec) {
        ConvAlgo::Direct => {
            let name = format!("conv_direct_fwd_{sfx}");
            let f = dev.function("conv", &name)?;
            let mut l = dev.stream().launch_builder(&f);
            l.arg(&g).arg(&x.ptr).arg(&w.ptr).arg(&y.ptr).arg(&bias_ptr);
            // SAFETY: x, w, y and bias were checked to hold exactly the spec's shapes on this
            // device; the kernel addresses only elements inside those shapes (taps outside the
            // image are skipped).
            unsafe { l.launch(grid_1d(dev, s.y_len, 1)) }.map_err(|e| launch_err(&name, e))?;
        }
        _ => {
            let m = spec.out_channels / spec.groups;
            let n = spec.batch * spec.out_h() * spec.out_w();
            let cfg = gemm_grid(OP, m, n, spec.groups)?;
            let name = format!("conv_igemm_fwd_{sfx}");
            let f = dev.function("conv", &name)?;
            let mut l = dev.stream().launch_builder(&f);
            l.arg(&g).arg(&w.ptr).arg(&x.ptr).arg(&y.ptr).arg(&bias_ptr);
            // SAFETY: as above; the GEMM loaders bound every row, column and K index by the
            // spec's sizes and read zero outside them.
            unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
        }
    }
    Ok(())
}

/// dx = the gradient of conv2d with respect to its input, from dy and w, with
/// [`ConvAlgo::Auto`]. `dx` is overwritten (not accumulated into).
pub fn conv2d_backward_data<T: FloatElem>(
    spec: &Conv2dSpec,
    dy: DevSlice<'_, T>,
    w: DevSlice<'_, T>,
    dx: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    conv2d_backward_data_with(ConvAlgo::Auto, spec, dy, w, dx)
}

/// [`conv2d_backward_data`] with the algorithm chosen by the caller.
pub fn conv2d_backward_data_with<T: FloatElem>(
    algo: ConvAlgo,
    spec: &Conv2dSpec,
    dy: DevSlice<'_, T>,
    w: DevSlice<'_, T>,
    dx: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    backward_data("conv2d_backward_data", algo, spec, dy, w, None, dx)
}

/// Backward-data plus an optional bias per input channel (conv_transpose2d's forward); `op`
/// names the public operation in errors.
fn backward_data<T: FloatElem>(
    op: &'static str,
    algo: ConvAlgo,
    spec: &Conv2dSpec,
    dy: DevSlice<'_, T>,
    w: DevSlice<'_, T>,
    bias: Option<DevSlice<'_, T>>,
    dx: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    let s = sizes(op, spec)?;
    let dev = dx.dev;
    let (dy_name, dx_name) = if op == "conv2d_backward_data" {
        ("dy", "dx")
    } else {
        ("x", "y")
    };
    same_device(op, dy_name, dev, dy.dev)?;
    same_device(op, "weight", dev, w.dev)?;
    check_len(op, dy_name, dy.len, &spec.output_shape(), s.y_len)?;
    check_len(op, "weight", w.len, &spec.weight_shape(), s.w_len)?;
    check_len(op, dx_name, dx.len, &spec.input_shape(), s.x_len)?;
    let bias_ptr = match &bias {
        Some(b) => {
            check_in(op, "bias", dev, b, spec.in_channels)?;
            b.ptr
        }
        None => 0u64,
    };
    if s.x_len == 0 {
        return Ok(());
    }
    let sfx = T::DTYPE.name();
    let g = s.geom;
    match algo.resolve(spec) {
        ConvAlgo::Direct => {
            let name = format!("conv_direct_bwd_data_{sfx}");
            let f = dev.function("conv", &name)?;
            let mut l = dev.stream().launch_builder(&f);
            l.arg(&g)
                .arg(&dy.ptr)
                .arg(&w.ptr)
                .arg(&dx.ptr)
                .arg(&bias_ptr);
            // SAFETY: dy, w, dx (and bias, in_channels) hold exactly the spec's shapes on this
            // device; the kernel reads dy only at output positions it checked to lie in
            // [0, oh) × [0, ow).
            unsafe { l.launch(grid_1d(dev, s.x_len, 1)) }.map_err(|e| launch_err(&name, e))?;
        }
        _ => {
            let m = spec.in_channels / spec.groups;
            let n = spec.batch * spec.h.input * spec.w.input;
            let cfg = gemm_grid(op, m, n, spec.groups)?;
            let name = format!("conv_igemm_bwd_data_{sfx}");
            let f = dev.function("conv", &name)?;
            let mut l = dev.stream().launch_builder(&f);
            l.arg(&g)
                .arg(&w.ptr)
                .arg(&dy.ptr)
                .arg(&dx.ptr)
                .arg(&bias_ptr);
            // SAFETY: as above; the loaders bound every index by the spec's sizes.
            unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
        }
    }
    Ok(())
}

/// dw (and db when given) = the gradients of conv2d with respect to its weight and bias, from x
/// and dy, with [`ConvAlgo::Auto`]. Both are overwritten (not accumulated into).
pub fn conv2d_backward_weight<T: FloatElem>(
    spec: &Conv2dSpec,
    x: DevSlice<'_, T>,
    dy: DevSlice<'_, T>,
    dw: DevSliceMut<'_, T>,
    db: Option<DevSliceMut<'_, T>>,
) -> Result<(), CudaError> {
    conv2d_backward_weight_with(ConvAlgo::Auto, spec, x, dy, dw, db)
}

/// [`conv2d_backward_weight`] with the algorithm chosen by the caller (the bias gradient has
/// one kernel: one block per output channel).
pub fn conv2d_backward_weight_with<T: FloatElem>(
    algo: ConvAlgo,
    spec: &Conv2dSpec,
    x: DevSlice<'_, T>,
    dy: DevSlice<'_, T>,
    dw: DevSliceMut<'_, T>,
    db: Option<DevSliceMut<'_, T>>,
) -> Result<(), CudaError> {
    const OP: &str = "conv2d_backward_weight";
    let s = sizes(OP, spec)?;
    let dev = dw.dev;
    same_device(OP, "x", dev, x.dev)?;
    same_device(OP, "dy", dev, dy.dev)?;
    check_len(OP, "x", x.len, &spec.input_shape(), s.x_len)?;
    check_len(OP, "dy", dy.len, &spec.output_shape(), s.y_len)?;
    check_len(OP, "dw", dw.len, &spec.weight_shape(), s.w_len)?;
    if let Some(db) = &db {
        same_device(OP, "db", dev, db.dev)?;
        check_out(OP, "db", db, spec.out_channels)?;
    }
    let sfx = T::DTYPE.name();
    let mut g = s.geom;
    if let Some(db) = &db {
        let name = format!("conv_bias_grad_{sfx}");
        let f = dev.function("conv", &name)?;
        let cfg = LaunchConfig {
            grid_dim: (block_count(OP, spec.out_channels)?, 1, 1),
            block_dim: (CONV_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut l = dev.stream().launch_builder(&f);
        l.arg(&g).arg(&dy.ptr).arg(&db.ptr);
        // SAFETY: dy holds the spec's output shape and db out_channels elements on this device;
        // block b writes db[b] only, for b < out_channels.
        unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
    }
    match algo.resolve(spec) {
        ConvAlgo::Direct => {
            let name = format!("conv_direct_bwd_weight_{sfx}");
            let f = dev.function("conv", &name)?;
            let cfg = LaunchConfig {
                grid_dim: (block_count(OP, s.w_len)?, 1, 1),
                block_dim: (CONV_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = dev.stream().launch_builder(&f);
            l.arg(&g).arg(&x.ptr).arg(&dy.ptr).arg(&dw.ptr);
            // SAFETY: x, dy and dw hold exactly the spec's shapes on this device; block b
            // writes dw[b] only, for b < w_len; reads of x are bounds-checked taps.
            unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
        }
        _ => {
            let m = spec.out_channels / spec.groups;
            let n = s.w_len / spec.out_channels; // cg·kh·kw
            let k = spec.batch * spec.out_h() * spec.out_w();
            let tiles = m.div_ceil(TILE_M) * n.div_ceil(TILE_N) * spec.groups;
            let (splits, chunk) = splitk_plan(k, tiles);
            g.kchunk = i32::try_from(chunk)
                .map_err(|_| invalid(OP, format!("split-K chunk {chunk} exceeds i32")))?;
            let cfg = gemm_grid(OP, m, n, spec.groups * splits)?;
            let name = format!("conv_igemm_bwd_weight_{sfx}");
            let f = dev.function("conv", &name)?;
            if splits == 1 {
                let mut l = dev.stream().launch_builder(&f);
                l.arg(&g).arg(&dy.ptr).arg(&x.ptr).arg(&dw.ptr);
                // SAFETY: one split writes dw[(group·og + m)·cg·kh·kw + col] for in-range m and
                // col only: inside dw, which holds the spec's weight shape.
                unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
            } else {
                splitk_weight::<T>(dev, &name, &f, cfg, g, &dy, &x, &dw, splits, s.w_len)?;
            }
        }
    }
    Ok(())
}

/// Per-channel sums of a contiguous `[batch, channels, plane]` tensor (a bias gradient), one
/// block per channel, in a fixed order.
fn channel_sums<T: FloatElem>(
    op: &'static str,
    dev: &std::sync::Arc<CudaDevice>,
    (batch, channels, plane): (usize, usize, usize),
    src: &DevSlice<'_, T>,
    out: &DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    let i32_of = |what: &str, v: usize| {
        i32::try_from(v).map_err(|_| invalid(op, format!("{what} {v} exceeds i32")))
    };
    // conv_bias_grad reads n, o and oh·ow only: the plane is passed as oh × 1.
    let g = ConvGeom {
        n: i32_of("batch", batch)?,
        o: i32_of("channels", channels)?,
        oh: i32_of("plane", plane)?,
        ow: 1,
        ..ConvGeom::default()
    };
    if channels == 0 {
        return Ok(());
    }
    let name = format!("conv_bias_grad_{}", T::DTYPE.name());
    let f = dev.function("conv", &name)?;
    let cfg = LaunchConfig {
        grid_dim: (block_count(op, channels)?, 1, 1),
        block_dim: (CONV_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut l = dev.stream().launch_builder(&f);
    l.arg(&g).arg(&src.ptr).arg(&out.ptr);
    // SAFETY: the caller checked src holds batch·channels·plane elements and out channels;
    // block b reads channel b's planes and writes out[b] only.
    unsafe { l.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
    Ok(())
}

/// conv_transpose2d's forward: y = the adjoint of the convolution `spec` applied to x, plus a
/// bias per output channel (PyTorch's `conv_transpose2d`, with `spec` the convolution it
/// transposes: `x` has `spec.output_shape()`, `w` `spec.weight_shape()` — PyTorch's transposed
/// weight `[in, out / groups, kh, kw]` is exactly that — `bias` `spec.in_channels` elements and
/// `y` `spec.input_shape()`, whose extents carry any `output_padding`). It is the backward-data
/// pass with a bias; `y` is overwritten.
pub fn conv_transpose2d_forward<T: FloatElem>(
    algo: ConvAlgo,
    spec: &Conv2dSpec,
    x: DevSlice<'_, T>,
    w: DevSlice<'_, T>,
    bias: Option<DevSlice<'_, T>>,
    y: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    backward_data("conv_transpose2d_forward", algo, spec, x, w, bias, y)
}

/// The input gradient of [`conv_transpose2d_forward`]: dx = conv2d(dy, w) (no bias), with `dy`
/// of `spec.input_shape()` and `dx` of `spec.output_shape()`.
pub fn conv_transpose2d_backward_data<T: FloatElem>(
    algo: ConvAlgo,
    spec: &Conv2dSpec,
    dy: DevSlice<'_, T>,
    w: DevSlice<'_, T>,
    dx: DevSliceMut<'_, T>,
) -> Result<(), CudaError> {
    conv2d_forward_with(algo, spec, dy, w, None, dx)
}

/// The weight (and bias) gradients of [`conv_transpose2d_forward`]: the convolution's
/// backward-weight with the roles of input and output exchanged (`dy`, of `spec.input_shape()`,
/// plays the convolution's input; `x`, of `spec.output_shape()`, its output gradient), and
/// db\[c\] = Σ dy over (n, y, x) per channel. Both are overwritten.
pub fn conv_transpose2d_backward_weight<T: FloatElem>(
    algo: ConvAlgo,
    spec: &Conv2dSpec,
    x: DevSlice<'_, T>,
    dy: DevSlice<'_, T>,
    dw: DevSliceMut<'_, T>,
    db: Option<DevSliceMut<'_, T>>,
) -> Result<(), CudaError> {
    const OP: &str = "conv_transpose2d_backward_weight";
    if let Some(db) = &db {
        let s = sizes(OP, spec)?;
        let dev = db.dev;
        check_in(OP, "dy", dev, &dy, s.x_len)?;
        check_out(OP, "db", db, spec.in_channels)?;
        let plane = spec.h.input * spec.w.input;
        channel_sums(OP, dev, (spec.batch, spec.in_channels, plane), &dy, db)?;
    }
    conv2d_backward_weight_with(algo, spec, dy, x, dw, None)
}

/// The split-K backward-weight: partial products into a workspace of `splits` weight-sized
/// slabs, then their in-order sum into dw.
#[allow(clippy::too_many_arguments)]
fn splitk_weight<T: FloatElem>(
    dev: &std::sync::Arc<CudaDevice>,
    name: &str,
    f: &cudarc::driver::CudaFunction,
    cfg: LaunchConfig,
    g: ConvGeom,
    dy: &DevSlice<'_, T>,
    x: &DevSlice<'_, T>,
    dw: &DevSliceMut<'_, T>,
    splits: usize,
    w_len: usize,
) -> Result<(), CudaError> {
    const OP: &str = "conv2d_backward_weight";
    let ws_len = splits
        .checked_mul(w_len)
        .ok_or_else(|| invalid(OP, format!("{splits} splits of {w_len} overflow")))?;
    let ws = dev.alloc::<T>(ws_len)?;
    let ws_ptr = ws.raw_ptr();
    let mut l = dev.stream().launch_builder(f);
    l.arg(&g).arg(&dy.ptr).arg(&x.ptr).arg(&ws_ptr);
    // SAFETY: split s writes slab s of the workspace (splits · w_len elements, every element
    // written once: each split covers every (m, col) of every group); reads as above.
    unsafe { l.launch(cfg) }.map_err(|e| launch_err(name, e))?;
    let rname = format!("conv_splitk_reduce_{}", T::DTYPE.name());
    let rf = dev.function("conv", &rname)?;
    let len64 = to_i64(OP, w_len)?;
    let splits32 = splits as i32; // at most 64 (splitk_plan)
    let mut l = dev.stream().launch_builder(&rf);
    l.arg(&ws_ptr).arg(&dw.ptr).arg(&len64).arg(&splits32);
    // SAFETY: reads splits · w_len workspace elements and writes w_len elements of dw.
    unsafe { l.launch(grid_1d(dev, w_len, 1)) }.map_err(|e| launch_err(&rname, e))?;
    // The workspace is freed in stream order, after the reduction has read it.
    drop(ws);
    Ok(())
}

/// A one-block-per-item grid size, refused beyond CUDA's x-dimension limit.
fn block_count(op: &'static str, n: usize) -> Result<u32, CudaError> {
    if n > i32::MAX as usize {
        return Err(invalid(op, format!("{n} blocks exceed CUDA's grid limit")));
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_ops::Axis;

    #[test]
    fn splitk_plan_covers_k_with_whole_tiles() {
        for k in [0usize, 1, 15, 16, 17, 255, 256, 1000, 100_352, 1 << 24] {
            for tiles in [1usize, 2, 7, 64, 256, 1000] {
                let (s, c) = splitk_plan(k, tiles);
                assert!((1..=64).contains(&s), "k {k} tiles {tiles}: {s} splits");
                assert_eq!(c % TILE_K, 0);
                assert!(s * c >= k, "k {k}: {s} × {c} < k");
                assert!(k == 0 || (s - 1) * c < k, "k {k}: an empty split");
            }
        }
        // Many output tiles: no split at all.
        assert_eq!(splitk_plan(100_000, 512).0, 1);
    }

    #[test]
    fn auto_takes_direct_kernels_for_depthwise() {
        let mut s = Conv2dSpec {
            batch: 1,
            in_channels: 8,
            out_channels: 16,
            groups: 8,
            h: Axis::new(5, 3),
            w: Axis::new(5, 3),
        };
        assert_eq!(ConvAlgo::Auto.resolve(&s), ConvAlgo::Direct);
        s.groups = 2;
        assert_eq!(ConvAlgo::Auto.resolve(&s), ConvAlgo::ImplicitGemm);
        assert_eq!(ConvAlgo::Direct.resolve(&s), ConvAlgo::Direct);
    }

    #[test]
    fn bad_specs_are_errors_naming_the_op() {
        let s = Conv2dSpec {
            batch: 1,
            in_channels: 3,
            out_channels: 4,
            groups: 2,
            h: Axis::new(5, 3),
            w: Axis::new(5, 3),
        };
        let e = sizes("conv2d_forward", &s)
            .err()
            .expect("groups must divide channels");
        let msg = e.to_string();
        assert!(
            msg.contains("conv2d_forward") && msg.contains("divisible"),
            "{msg}"
        );
        let big = Conv2dSpec {
            batch: 1 << 20,
            in_channels: 1,
            out_channels: 1,
            groups: 1,
            h: Axis::new(1 << 12, 1),
            w: Axis::new(1, 1),
        };
        let msg = sizes("conv2d_forward", &big)
            .err()
            .expect("too big")
            .to_string();
        assert!(msg.contains("32-bit"), "{msg}");
    }
}
