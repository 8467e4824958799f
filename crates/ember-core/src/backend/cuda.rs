//! The CUDA backend: [`BackendStorage`](super::BackendStorage) for device buffers, the twin of
//! [`super::cpu`].
//!
//! Each function takes device storages with their layouts, allocates the output on the same
//! device and calls one ember-cuda kernel; nothing is copied to the host except where an op
//! says so (`to_host`). CUDA tensors are f32 or f64; what ember-cuda has no kernel for (16-bit
//! storage, f64 GEMM) returns a clear error naming the op rather than silently falling back to
//! the host. Index ops take indices the caller already validated on the host (`Tensor::indices`
//! reads the small float index tensor back to check every value is a whole number in range).
//!
//! Kernels run asynchronously on the device's stream; errors from a launch surface at the next
//! synchronising call (a download), as with any CUDA program.

use super::{Arg, MatmulSpec};
use crate::dtype::{DType, Device};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::storage::{CpuStorage, CudaStorage};
use ember_cuda::{CudaDevice, CudaError, DeviceBuffer, FloatElem, Strided};
use ember_ops::{
    Activation, BceForm, BinaryOp, Conv2dSpec, OptimStep, Pad2d, PadMode, Pool2dSpec, ReduceOp,
    UnaryOp,
};
use std::sync::Arc;

/// Wraps an ember-cuda error as an ember-core one, naming the op and device and keeping the
/// CUDA error as its `source()`.
pub(crate) fn err(op: &'static str, ordinal: usize) -> impl FnOnce(CudaError) -> Error {
    move |e| Error::device_call(op, Device::Cuda(ordinal), e)
}

/// The op is not available for CUDA tensors.
pub(crate) fn unsupported(op: &'static str, ordinal: usize, what: &str) -> Error {
    Error::Device {
        op,
        device: Device::Cuda(ordinal),
        reason: format!("{what} is not implemented for CUDA tensors yet"),
    }
}

fn view(l: &Layout) -> Strided<'_> {
    Strided::new(l.shape(), l.strides(), l.offset())
}

/// The device for ordinal `i`.
pub(crate) fn device(op: &'static str, i: usize) -> Result<Arc<CudaDevice>> {
    CudaDevice::get(i).map_err(err(op, i))
}

/// Copies a host view to a fresh buffer on GPU `ordinal` (16-bit data is widened to f32).
pub(crate) fn upload(s: &CpuStorage, l: &Layout, ordinal: usize) -> Result<CudaStorage> {
    let dev = device("to_device", ordinal)?;
    let e = err("to_device", ordinal);
    Ok(match super::cpu::view::contiguous(s, l) {
        CpuStorage::F32(v) => CudaStorage::F32(dev.upload(&v).map_err(e)?),
        CpuStorage::F64(v) => CudaStorage::F64(dev.upload(&v).map_err(e)?),
        other => {
            match super::cpu::view::cast(&other, &Layout::contiguous(&[other.len()]), DType::F32) {
                CpuStorage::F32(v) => CudaStorage::F32(dev.upload(&v).map_err(e)?),
                _ => unreachable!("cast to f32 yields f32"),
            }
        }
    })
}

/// Copies a device view back to host memory.
pub(crate) fn to_host(s: &CudaStorage, l: &Layout) -> Result<CpuStorage> {
    let dense = contiguous(s, l)?;
    let ord = s.ordinal();
    Ok(match dense {
        CudaStorage::F32(b) => CpuStorage::F32(b.to_host().map_err(err("to_host", ord))?),
        CudaStorage::F64(b) => CpuStorage::F64(b.to_host().map_err(err("to_host", ord))?),
    })
}

fn alloc<T: FloatElem>(
    dev: &Arc<CudaDevice>,
    op: &'static str,
    n: usize,
) -> Result<DeviceBuffer<T>> {
    dev.alloc::<T>(n).map_err(err(op, dev.ordinal()))
}

/// A fresh buffer of `n` elements on `like`'s device, filled by the kernel `f`.
fn fill<T: FloatElem>(
    op: &'static str,
    like: &DeviceBuffer<T>,
    n: usize,
    f: impl FnOnce(ember_cuda::DevSliceMut<'_, T>) -> std::result::Result<(), CudaError>,
) -> Result<DeviceBuffer<T>> {
    let dev = like.device().clone();
    let mut out = alloc::<T>(&dev, op, n)?;
    f(out.view_mut()).map_err(err(op, dev.ordinal()))?;
    Ok(out)
}

/// Runs a kernel that fills a fresh buffer of `n` elements of `x`'s dtype, on `x`'s device.
macro_rules! produce {
    ($op:expr, $x:expr, $n:expr, |$buf:ident, $src:ident| $body:expr) => {{
        let ord = $x.ordinal();
        match $x {
            CudaStorage::F32($src) => {
                let dev = $src.device().clone();
                let mut $buf = alloc::<f32>(&dev, $op, $n)?;
                $body.map_err(err($op, ord))?;
                CudaStorage::F32($buf)
            }
            CudaStorage::F64($src) => {
                let dev = $src.device().clone();
                let mut $buf = alloc::<f64>(&dev, $op, $n)?;
                $body.map_err(err($op, ord))?;
                CudaStorage::F64($buf)
            }
        }
    }};
}

/// A dense copy of the view (the same buffer is never returned: callers own the result).
pub(crate) fn contiguous(s: &CudaStorage, l: &Layout) -> Result<CudaStorage> {
    Ok(produce!("contiguous", s, l.elem_count(), |out, x| {
        ember_cuda::elementwise::copy_strided(x.view(), view(l), out.view_mut())
    }))
}

/// y = op(x).
pub(crate) fn unary(s: &CudaStorage, l: &Layout, op: UnaryOp) -> Result<CudaStorage> {
    let cop = op;
    Ok(produce!("unary", s, l.elem_count(), |out, x| {
        ember_cuda::elementwise::unary(cop, x.view(), view(l), out.view_mut())
    }))
}

/// dx = dy · op'(x) for three views of one shape (made dense first, as the kernel wants).
pub(crate) fn unary_backward(
    op: UnaryOp,
    x: &CudaStorage,
    xl: &Layout,
    y: &CudaStorage,
    yl: &Layout,
    dy: &CudaStorage,
    dyl: &Layout,
) -> Result<CudaStorage> {
    let (x, y, dy) = (contiguous(x, xl)?, contiguous(y, yl)?, contiguous(dy, dyl)?);
    let cop = op;
    let n = xl.elem_count();
    use ember_cuda::elementwise::unary_backward as kernel;
    Ok(match (&x, &y, &dy) {
        (CudaStorage::F32(xb), CudaStorage::F32(yb), CudaStorage::F32(db)) => {
            CudaStorage::F32(fill("unary_backward", xb, n, |o| {
                kernel(cop, xb.view(), yb.view(), db.view(), o)
            })?)
        }
        (CudaStorage::F64(xb), CudaStorage::F64(yb), CudaStorage::F64(db)) => {
            CudaStorage::F64(fill("unary_backward", xb, n, |o| {
                kernel(cop, xb.view(), yb.view(), db.view(), o)
            })?)
        }
        _ => unreachable!("operands share a dtype"),
    })
}

/// out = op(a, b) for views of the output's shape.
pub(crate) fn binary(
    op: BinaryOp,
    a: &CudaStorage,
    al: &Layout,
    b: &CudaStorage,
    bl: &Layout,
) -> Result<CudaStorage> {
    let cop = op;
    let n = al.elem_count();
    use ember_cuda::elementwise::binary as kernel;
    Ok(match (a, b) {
        (CudaStorage::F32(ab), CudaStorage::F32(bb)) => {
            CudaStorage::F32(fill("binary", ab, n, |o| {
                kernel(cop, ab.view(), view(al), bb.view(), view(bl), o)
            })?)
        }
        (CudaStorage::F64(ab), CudaStorage::F64(bb)) => {
            CudaStorage::F64(fill("binary", ab, n, |o| {
                kernel(cop, ab.view(), view(al), bb.view(), view(bl), o)
            })?)
        }
        _ => unreachable!("operands share a dtype"),
    })
}

/// Reduces over `axes` (keepdim layout).
pub(crate) fn reduce(
    op: ReduceOp,
    s: &CudaStorage,
    l: &Layout,
    axes: &[usize],
) -> Result<CudaStorage> {
    let cop = op;
    let n: usize = l
        .shape()
        .iter()
        .enumerate()
        .map(|(d, &e)| if axes.contains(&d) { 1 } else { e })
        .product();
    Ok(produce!("reduce", s, n, |out, x| {
        ember_cuda::reduce::reduce(cop, x.view(), view(l), axes, out.view_mut())
    }))
}

/// Softmax or log-softmax along the last axis.
pub(crate) fn softmax_last(s: &CudaStorage, l: &Layout, log: bool) -> Result<CudaStorage> {
    let dense = contiguous(s, l)?;
    let cols = l.shape().last().copied().unwrap_or(1);
    Ok(produce!("softmax", &dense, l.elem_count(), |out, x| {
        ember_cuda::reduce::softmax_rows(x.view(), cols, out.view_mut(), log)
    }))
}

/// C = A·B (+ bias, activation) over all batch indices, f32 only.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    batch: &[usize],
    (m, n, k): (usize, usize, usize),
    a: &CudaStorage,
    al: &Layout,
    b: &CudaStorage,
    bl: &Layout,
    bias: Option<(&CudaStorage, &Layout)>,
    activation: Activation,
) -> Result<CudaStorage> {
    let (CudaStorage::F32(ab), CudaStorage::F32(bb)) = (a, b) else {
        return Err(unsupported(
            "matmul",
            a.ordinal(),
            "f64 matrix multiplication",
        ));
    };
    let ord = a.ordinal();
    let dev = ab.device().clone();
    let bias = match bias {
        Some((s, l)) => match contiguous(s, l)? {
            CudaStorage::F32(v) => Some(v),
            CudaStorage::F64(_) => unreachable!("bias shares the dtype"),
        },
        None => None,
    };
    let nb = batch.len();
    let batches: usize = batch.iter().product();
    let mut out = alloc::<f32>(&dev, "matmul", batches * m * n)?;
    if m * n == 0 {
        return Ok(CudaStorage::F32(out));
    }
    let (ars, acs) = (al.strides()[nb], al.strides()[nb + 1]);
    let (brs, bcs) = (bl.strides()[nb], bl.strides()[nb + 1]);
    for bi in 0..batches {
        let aoff = al.batch_offset(batch, bi);
        let boff = bl.batch_offset(batch, bi);
        let a_view = if k == 0 {
            ab.slice(0..0)
        } else {
            ab.slice(aoff..ab.len())
        }
        .map_err(err("matmul", ord))?;
        let b_view = if k == 0 {
            bb.slice(0..0)
        } else {
            bb.slice(boff..bb.len())
        }
        .map_err(err("matmul", ord))?;
        let c_view = out
            .slice_mut(bi * m * n..(bi + 1) * m * n)
            .map_err(err("matmul", ord))?;
        ember_cuda::gemm::gemm(
            m,
            n,
            k,
            1.0,
            ember_cuda::gemm::MatRef {
                data: a_view,
                rs: ars,
                cs: acs,
            },
            ember_cuda::gemm::MatRef {
                data: b_view,
                rs: brs,
                cs: bcs,
            },
            0.0,
            ember_cuda::gemm::MatMut {
                data: c_view,
                rs: n,
                cs: 1,
            },
            ember_cuda::gemm::Epilogue {
                bias: bias.as_ref().map(|b| b.view()),
                act: activation,
            },
        )
        .map_err(err("matmul", ord))?;
    }
    Ok(CudaStorage::F32(out))
}

/// scale · Σ BCE as a one-element device buffer (no host round trip).
pub(crate) fn bce_sum(
    form: BceForm,
    p: &CudaStorage,
    pl: &Layout,
    y: &CudaStorage,
    yl: &Layout,
    scale: f64,
) -> Result<CudaStorage> {
    use ember_cuda::loss::{bce_logits_sum, bce_probs_sum};
    let (p, y) = (contiguous(p, pl)?, contiguous(y, yl)?);
    Ok(match (&p, &y) {
        (CudaStorage::F32(pb), CudaStorage::F32(yb)) => {
            CudaStorage::F32(fill("bce", pb, 1, |o| match form {
                BceForm::Probs(eps) => bce_probs_sum(pb.view(), yb.view(), eps, scale, o),
                BceForm::Logits => bce_logits_sum(pb.view(), yb.view(), scale, o),
            })?)
        }
        (CudaStorage::F64(pb), CudaStorage::F64(yb)) => {
            CudaStorage::F64(fill("bce", pb, 1, |o| match form {
                BceForm::Probs(eps) => bce_probs_sum(pb.view(), yb.view(), eps, scale, o),
                BceForm::Logits => bce_logits_sum(pb.view(), yb.view(), scale, o),
            })?)
        }
        _ => unreachable!("operands share a dtype"),
    })
}

/// scale · dBCE/dinput per element.
pub(crate) fn bce_grad(
    form: BceForm,
    p: &CudaStorage,
    pl: &Layout,
    y: &CudaStorage,
    yl: &Layout,
    scale: f64,
) -> Result<CudaStorage> {
    use ember_cuda::loss::{bce_logits_grad, bce_probs_grad};
    let (p, y) = (contiguous(p, pl)?, contiguous(y, yl)?);
    let n = pl.elem_count();
    Ok(match (&p, &y) {
        (CudaStorage::F32(pb), CudaStorage::F32(yb)) => {
            CudaStorage::F32(fill("bce_grad", pb, n, |o| match form {
                BceForm::Probs(eps) => bce_probs_grad(pb.view(), yb.view(), eps, scale, o),
                BceForm::Logits => bce_logits_grad(pb.view(), yb.view(), scale, o),
            })?)
        }
        (CudaStorage::F64(pb), CudaStorage::F64(yb)) => {
            CudaStorage::F64(fill("bce_grad", pb, n, |o| match form {
                BceForm::Probs(eps) => bce_probs_grad(pb.view(), yb.view(), eps, scale, o),
                BceForm::Logits => bce_logits_grad(pb.view(), yb.view(), scale, o),
            })?)
        }
        _ => unreachable!("operands share a dtype"),
    })
}

/// (product before `axis`, extent of `axis`, product after `axis`).
fn split3(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    super::cpu::index::split3(shape, axis)
}

/// index_select along `axis` with indices the caller has checked (`Tensor::indices`).
pub(crate) fn index_select(
    s: &CudaStorage,
    l: &Layout,
    axis: usize,
    idx: &[usize],
) -> Result<CudaStorage> {
    let (outer, _, inner) = split3(l.shape(), axis);
    Ok(produce!(
        "index_select",
        s,
        outer * idx.len() * inner,
        |out, x| { ember_cuda::index::index_select(x.view(), view(l), axis, idx, out.view_mut()) }
    ))
}

/// The adjoint of index_select: `grad` summed into zeros of `shape` at the picked positions.
pub(crate) fn index_add(
    g: &CudaStorage,
    gl: &Layout,
    shape: &[usize],
    axis: usize,
    idx: &[usize],
) -> Result<CudaStorage> {
    let n = shape.iter().product();
    Ok(produce!("index_add", g, n, |out, x| {
        ember_cuda::index::index_add(x.view(), view(gl), axis, idx, shape, out.view_mut())
    }))
}

/// gather along `axis` with an index array shaped like the output (checked by the caller).
pub(crate) fn gather(
    s: &CudaStorage,
    l: &Layout,
    axis: usize,
    idx: &[usize],
    out_shape: &[usize],
) -> Result<CudaStorage> {
    Ok(produce!("gather", s, idx.len(), |out, x| {
        ember_cuda::index::gather(x.view(), view(l), axis, idx, out_shape, out.view_mut())
    }))
}

/// The adjoint of gather: `grad` scatter-added into zeros of `shape`.
pub(crate) fn scatter_add(
    g: &CudaStorage,
    gl: &Layout,
    shape: &[usize],
    axis: usize,
    idx: &[usize],
) -> Result<CudaStorage> {
    let n = shape.iter().product();
    Ok(produce!("scatter_add", g, n, |out, x| {
        ember_cuda::index::scatter_add(x.view(), view(gl), axis, idx, shape, out.view_mut())
    }))
}

/// out = cond ? a : b, all three layouts with the output's shape.
pub(crate) fn where_cond(
    c: &CudaStorage,
    cl: &Layout,
    a: &CudaStorage,
    al: &Layout,
    b: &CudaStorage,
    bl: &Layout,
) -> Result<CudaStorage> {
    use ember_cuda::index::where_cond as kernel;
    let n = al.elem_count();
    Ok(match (c, a, b) {
        (CudaStorage::F32(cb), CudaStorage::F32(ab), CudaStorage::F32(bb)) => {
            CudaStorage::F32(fill("where_cond", ab, n, |o| {
                kernel(
                    cb.view(),
                    view(cl),
                    ab.view(),
                    view(al),
                    bb.view(),
                    view(bl),
                    o,
                )
            })?)
        }
        (CudaStorage::F64(cb), CudaStorage::F64(ab), CudaStorage::F64(bb)) => {
            CudaStorage::F64(fill("where_cond", ab, n, |o| {
                kernel(
                    cb.view(),
                    view(cl),
                    ab.view(),
                    view(al),
                    bb.view(),
                    view(bl),
                    o,
                )
            })?)
        }
        _ => unreachable!("operands share a dtype"),
    })
}

/// The view converted to `dtype`, contiguous. CUDA tensors hold f32 or f64, so a 16-bit target
/// is an error naming the dtype (convert on the host instead).
pub(crate) fn cast(s: &CudaStorage, l: &Layout, dtype: DType) -> Result<CudaStorage> {
    use ember_cuda::index::cast as kernel;
    let ord = s.ordinal();
    let n = l.elem_count();
    let e = || err("to_dtype", ord);
    Ok(match (s, dtype) {
        (CudaStorage::F32(x), DType::F32) => {
            CudaStorage::F32(fill("to_dtype", x, n, |o| kernel(x.view(), view(l), o))?)
        }
        (CudaStorage::F64(x), DType::F64) => {
            CudaStorage::F64(fill("to_dtype", x, n, |o| kernel(x.view(), view(l), o))?)
        }
        (CudaStorage::F32(x), DType::F64) => {
            let mut out = alloc::<f64>(x.device(), "to_dtype", n)?;
            kernel(x.view(), view(l), out.view_mut()).map_err(e())?;
            CudaStorage::F64(out)
        }
        (CudaStorage::F64(x), DType::F32) => {
            let mut out = alloc::<f32>(x.device(), "to_dtype", n)?;
            kernel(x.view(), view(l), out.view_mut()).map_err(e())?;
            CudaStorage::F32(out)
        }
        (_, DType::F16 | DType::BF16) => {
            return Err(Error::Device {
                op: "to_dtype",
                device: Device::Cuda(ord),
                reason: format!(
                    "{dtype} storage is not supported on CUDA (CUDA tensors hold f32 or f64); \
                     move the tensor to the CPU before converting it to {dtype}"
                ),
            });
        }
    })
}

/// Joins `parts` (same dtype and device, equal extents outside `axis`) along `axis`.
pub(crate) fn concat(parts: &[(&CudaStorage, &Layout)], axis: usize) -> Result<CudaStorage> {
    let Some(&(first, fl)) = parts.first() else {
        return Err(Error::invalid("cat", "needs at least one tensor"));
    };
    let ord = first.ordinal();
    let total: usize = parts.iter().map(|(_, l)| l.shape()[axis]).sum();
    let (outer, _, inner) = split3(fl.shape(), axis);
    let n = outer * total * inner;
    macro_rules! go {
        ($variant:ident, $t:ty) => {{
            let views: Vec<(ember_cuda::DevSlice<'_, $t>, Strided<'_>)> = parts
                .iter()
                .map(|(s, l)| match s {
                    CudaStorage::$variant(b) => (b.view(), view(l)),
                    _ => unreachable!("cat parts share a dtype"),
                })
                .collect();
            let dev = match first {
                CudaStorage::$variant(b) => b.device().clone(),
                _ => unreachable!("matched just above"),
            };
            let mut out = alloc::<$t>(&dev, "cat", n)?;
            ember_cuda::index::concat(&views, axis, out.view_mut()).map_err(err("cat", ord))?;
            CudaStorage::$variant(out)
        }};
    }
    Ok(match first {
        CudaStorage::F32(_) => go!(F32, f32),
        CudaStorage::F64(_) => go!(F64, f64),
    })
}

/// Overwrites the whole of `dst` (a contiguous view from offset 0) with the dense `src`.
pub(crate) fn write(dst: &mut CudaStorage, dl: &Layout, src: &CudaStorage) -> Result<()> {
    let ord = dst.ordinal();
    let whole = dl.offset() == 0;
    let e = err("assign", ord);
    match (dst, src) {
        (CudaStorage::F32(d), CudaStorage::F32(s)) if whole && d.len() == s.len() => {
            d.copy_from_device(s).map_err(e)
        }
        (CudaStorage::F64(d), CudaStorage::F64(s)) if whole && d.len() == s.len() => {
            d.copy_from_device(s).map_err(e)
        }
        _ => Err(unsupported(
            "assign",
            ord,
            "assigning into part of a GPU buffer",
        )),
    }
}

/// The CUDA side of the seam: every method is one call to a function above.
impl super::BackendStorage for CudaStorage {
    fn contiguous((x, xl): Arg<'_, Self>) -> Result<Self> {
        contiguous(x, xl)
    }
    fn cast((x, xl): Arg<'_, Self>, dtype: DType) -> Result<Self> {
        cast(x, xl, dtype)
    }
    fn unary((x, xl): Arg<'_, Self>, op: UnaryOp) -> Result<Self> {
        unary(x, xl, op)
    }
    fn unary_backward(
        op: UnaryOp,
        (x, xl): Arg<'_, Self>,
        (y, yl): Arg<'_, Self>,
        (dy, dyl): Arg<'_, Self>,
    ) -> Result<Self> {
        unary_backward(op, x, xl, y, yl, dy, dyl)
    }
    fn binary(op: BinaryOp, (a, al): Arg<'_, Self>, (b, bl): Arg<'_, Self>) -> Result<Self> {
        binary(op, a, al, b, bl)
    }
    fn where_cond(
        (c, cl): Arg<'_, Self>,
        (a, al): Arg<'_, Self>,
        (b, bl): Arg<'_, Self>,
    ) -> Result<Self> {
        where_cond(c, cl, a, al, b, bl)
    }
    fn reduce(op: ReduceOp, (x, xl): Arg<'_, Self>, axes: &[usize]) -> Result<Self> {
        reduce(op, x, xl, axes)
    }
    fn softmax_last((x, xl): Arg<'_, Self>, log: bool) -> Result<Self> {
        softmax_last(x, xl, log)
    }
    fn matmul(
        spec: &MatmulSpec<'_>,
        (a, al): Arg<'_, Self>,
        (b, bl): Arg<'_, Self>,
        bias: Option<Arg<'_, Self>>,
    ) -> Result<Self> {
        matmul(
            spec.batch,
            (spec.m, spec.n, spec.k),
            a,
            al,
            b,
            bl,
            bias,
            spec.act,
        )
    }
    fn index_select((x, xl): Arg<'_, Self>, axis: usize, idx: &[usize]) -> Result<Self> {
        index_select(x, xl, axis, idx)
    }
    fn index_add(
        (g, gl): Arg<'_, Self>,
        shape: &[usize],
        axis: usize,
        idx: &[usize],
    ) -> Result<Self> {
        index_add(g, gl, shape, axis, idx)
    }
    fn gather(
        (x, xl): Arg<'_, Self>,
        axis: usize,
        idx: &[usize],
        out_shape: &[usize],
    ) -> Result<Self> {
        gather(x, xl, axis, idx, out_shape)
    }
    fn scatter_add(
        (g, gl): Arg<'_, Self>,
        shape: &[usize],
        axis: usize,
        idx: &[usize],
    ) -> Result<Self> {
        scatter_add(g, gl, shape, axis, idx)
    }
    fn concat(parts: &[Arg<'_, Self>], axis: usize) -> Result<Self> {
        concat(parts, axis)
    }
    fn bce_loss(
        form: BceForm,
        (p, pl): Arg<'_, Self>,
        (y, yl): Arg<'_, Self>,
        scale: f64,
    ) -> Result<Self> {
        bce_sum(form, p, pl, y, yl, scale)
    }
    fn bce_grad(
        form: BceForm,
        (p, pl): Arg<'_, Self>,
        (y, yl): Arg<'_, Self>,
        scale: f64,
    ) -> Result<Self> {
        bce_grad(form, p, pl, y, yl, scale)
    }
    fn optimizer_step(
        step: &OptimStep,
        (p, po): (&mut Self, usize),
        (g, go): (&Self, usize),
        states: [Option<(&mut Self, usize)>; 3],
        n: usize,
    ) -> Result<()> {
        let ord = p.ordinal();
        match (p, g) {
            (CudaStorage::F32(p), CudaStorage::F32(g)) => {
                optimizer_step_typed(step, ord, (p, po), (g, go), states, n)
            }
            (CudaStorage::F64(p), CudaStorage::F64(g)) => {
                optimizer_step_typed(step, ord, (p, po), (g, go), states, n)
            }
            _ => Err(Error::invalid(
                step.name(),
                "the gradient's dtype differs from the parameter's",
            )),
        }
    }
    // Pooling, upsampling and padding: ember-cuda's kernels (backwards written as gathers,
    // no atomics) on dense copies of the operands. Batch norm's training statistics have no
    // CUDA kernel yet (evaluation mode is composed of primitives and runs on CUDA).
    fn pool2d(
        (x, xl): Arg<'_, Self>,
        spec: &Pool2dSpec,
        want_argmax: bool,
    ) -> Result<(Self, Option<super::PoolIndices>)> {
        use ember_cuda::pool as k;
        let x = contiguous(x, xl)?;
        let n: usize = spec.output_shape().iter().product();
        if !matches!(spec.kind, ember_ops::PoolKind::Max) {
            let y = produce!("avg_pool2d", &x, n, |out, xb| k::avg_pool2d_forward(
                spec,
                xb.view(),
                out.view_mut()
            ));
            return Ok((y, None));
        }
        let mut indices = None;
        let y = produce!("max_pool2d", &x, n, |out, xb| (|| {
            let mut idx = k::IndexBuffer::zeros(xb.device(), n)?;
            k::max_pool2d_forward(spec, xb.view(), out.view_mut(), &mut idx)?;
            indices = Some(idx);
            Ok::<(), CudaError>(())
        })());
        let indices = if want_argmax { indices } else { None };
        Ok((
            y,
            indices.map(|i| super::PoolIndices::Cuda(std::sync::Arc::new(i))),
        ))
    }
    fn pool2d_backward(
        (g, gl): Arg<'_, Self>,
        spec: &Pool2dSpec,
        argmax: Option<&super::PoolIndices>,
    ) -> Result<Self> {
        use ember_cuda::pool as k;
        let g = contiguous(g, gl)?;
        let n = spec.batch * spec.channels * spec.h.input * spec.w.input;
        if !matches!(spec.kind, ember_ops::PoolKind::Max) {
            return Ok(produce!("avg_pool2d", &g, n, |out, gb| {
                k::avg_pool2d_backward(spec, gb.view(), out.view_mut())
            }));
        }
        let Some(super::PoolIndices::Cuda(idx)) = argmax else {
            return Err(Error::invalid(
                "max_pool2d",
                "the backward needs the forward's argmax on the GPU",
            ));
        };
        Ok(produce!("max_pool2d", &g, n, |out, gb| {
            k::max_pool2d_backward(spec, gb.view(), idx, out.view_mut())
        }))
    }
    fn adaptive_avg_pool2d(
        (x, xl): Arg<'_, Self>,
        (planes, input): super::Planes,
        output: (usize, usize),
    ) -> Result<Self> {
        let x = contiguous(x, xl)?;
        let n = planes * output.0 * output.1;
        Ok(produce!("adaptive_avg_pool2d", &x, n, |out, xb| {
            ember_cuda::pool::adaptive_avg_pool2d_forward(
                planes,
                1,
                input,
                output,
                xb.view(),
                out.view_mut(),
            )
        }))
    }
    fn adaptive_avg_pool2d_backward(
        (g, gl): Arg<'_, Self>,
        (planes, input): super::Planes,
        output: (usize, usize),
    ) -> Result<Self> {
        let g = contiguous(g, gl)?;
        let n = planes * input.0 * input.1;
        Ok(produce!("adaptive_avg_pool2d", &g, n, |out, gb| {
            ember_cuda::pool::adaptive_avg_pool2d_backward(
                planes,
                1,
                input,
                output,
                gb.view(),
                out.view_mut(),
            )
        }))
    }
    fn upsample_nearest2d(
        (x, xl): Arg<'_, Self>,
        (planes, input): super::Planes,
        scale: (usize, usize),
    ) -> Result<Self> {
        let x = contiguous(x, xl)?;
        let n = planes * input.0 * scale.0 * input.1 * scale.1;
        Ok(produce!("upsample_nearest2d", &x, n, |out, xb| {
            ember_cuda::pool::upsample_nearest2d_forward(
                planes,
                1,
                input,
                scale,
                xb.view(),
                out.view_mut(),
            )
        }))
    }
    fn upsample_nearest2d_backward(
        (g, gl): Arg<'_, Self>,
        (planes, input): super::Planes,
        scale: (usize, usize),
    ) -> Result<Self> {
        let g = contiguous(g, gl)?;
        let n = planes * input.0 * input.1;
        Ok(produce!("upsample_nearest2d", &g, n, |out, gb| {
            ember_cuda::pool::upsample_nearest2d_backward(
                planes,
                1,
                input,
                scale,
                gb.view(),
                out.view_mut(),
            )
        }))
    }
    fn pad2d(
        (x, xl): Arg<'_, Self>,
        (planes, input): super::Planes,
        pads: Pad2d,
        mode: PadMode,
    ) -> Result<Self> {
        let x = contiguous(x, xl)?;
        let (oh, ow) = (
            input.0 + pads.top + pads.bottom,
            input.1 + pads.left + pads.right,
        );
        Ok(produce!("pad", &x, planes * oh * ow, |out, xb| {
            ember_cuda::pool::pad2d_forward(planes, 1, input, pads, mode, xb.view(), out.view_mut())
        }))
    }
    fn pad2d_backward(
        (g, gl): Arg<'_, Self>,
        (planes, input): super::Planes,
        pads: Pad2d,
        mode: PadMode,
    ) -> Result<Self> {
        let g = contiguous(g, gl)?;
        Ok(produce!(
            "pad",
            &g,
            planes * input.0 * input.1,
            |out, gb| {
                ember_cuda::pool::pad2d_backward(
                    planes,
                    1,
                    input,
                    pads,
                    mode,
                    gb.view(),
                    out.view_mut(),
                )
            }
        ))
    }
    fn batch_norm(
        (x, _): Arg<'_, Self>,
        _w: Arg<'_, Self>,
        _b: Arg<'_, Self>,
        _dims: (usize, usize, usize),
        _eps: f64,
    ) -> Result<[Self; 3]> {
        Err(not_yet("batch_norm", x))
    }
    fn batch_norm_backward(
        (x, _): Arg<'_, Self>,
        _g: Arg<'_, Self>,
        _mean: Arg<'_, Self>,
        _var: Arg<'_, Self>,
        _w: Arg<'_, Self>,
        _dims: (usize, usize, usize),
        _eps: f64,
        _want_dx: bool,
    ) -> Result<(Option<Self>, Self, Self)> {
        Err(not_yet("batch_norm", x))
    }
    // Recurrent sequences: not yet on CUDA (the CPU runs them).
    fn recurrent(
        _spec: &ember_ops::RecurrentSpec,
        a: super::RecurrentArgs<'_, Self>,
    ) -> Result<[Self; 2]> {
        Err(not_yet("recurrent", a.xp.0))
    }
    fn recurrent_backward(
        _spec: &ember_ops::RecurrentSpec,
        a: super::RecurrentBackwardArgs<'_, Self>,
    ) -> Result<[Self; 5]> {
        Err(not_yet("recurrent", a.g.0))
    }
    // Convolutions: ember-cuda's implicit-GEMM kernels (direct kernels for depthwise) on
    // dense copies of the operands, as the CPU side makes them dense too.
    fn conv2d(
        spec: &Conv2dSpec,
        (x, xl): Arg<'_, Self>,
        (w, wl): Arg<'_, Self>,
        bias: Option<Arg<'_, Self>>,
    ) -> Result<Self> {
        let b = bias.map(|(b, bl)| contiguous(b, bl)).transpose()?;
        conv2d(spec, &contiguous(x, xl)?, &contiguous(w, wl)?, b.as_ref())
    }
    fn conv2d_backward_data(
        spec: &Conv2dSpec,
        (dy, dyl): Arg<'_, Self>,
        (w, wl): Arg<'_, Self>,
        bias: Option<Arg<'_, Self>>,
    ) -> Result<Self> {
        let b = bias.map(|(b, bl)| contiguous(b, bl)).transpose()?;
        conv2d_backward_data(spec, &contiguous(dy, dyl)?, &contiguous(w, wl)?, b.as_ref())
    }
    fn conv2d_backward_weight(
        spec: &Conv2dSpec,
        (x, xl): Arg<'_, Self>,
        (dy, dyl): Arg<'_, Self>,
    ) -> Result<Self> {
        conv2d_backward_weight(spec, &contiguous(x, xl)?, &contiguous(dy, dyl)?)
    }
    fn embedding_backward(
        (g, _): Arg<'_, Self>,
        _vocab: usize,
        _dim: usize,
        _idx: &[usize],
        _padding: Option<usize>,
    ) -> Result<Self> {
        Err(not_yet("embedding backward", g))
    }
    // Mixed precision (f32 operands rounded to 16 bits in the product): not yet on CUDA.
    fn matmul_rounded(
        _spec: &MatmulSpec<'_>,
        _half: DType,
        (a, _): Arg<'_, Self>,
        _b: Arg<'_, Self>,
        _bias: Option<Arg<'_, Self>>,
    ) -> Result<Self> {
        Err(not_yet("linear_mixed", a))
    }
    // Layer norm and attention: not yet on CUDA.
    fn layer_norm(
        (x, _): Arg<'_, Self>,
        _w: Arg<'_, Self>,
        _b: Arg<'_, Self>,
        _dims: (usize, usize),
        _eps: f64,
    ) -> Result<[Self; 3]> {
        Err(not_yet("layer_norm", x))
    }
    fn layer_norm_backward(
        (x, _): Arg<'_, Self>,
        _g: Arg<'_, Self>,
        _mean: Arg<'_, Self>,
        _rstd: Arg<'_, Self>,
        _w: Arg<'_, Self>,
        _dims: (usize, usize),
        _want_dx: bool,
    ) -> Result<(Option<Self>, Self, Self)> {
        Err(not_yet("layer_norm", x))
    }
    fn attention(
        _spec: &ember_ops::AttentionSpec,
        (q, _): Arg<'_, Self>,
        _k: Arg<'_, Self>,
        _v: Arg<'_, Self>,
        _keep: Option<Arg<'_, Self>>,
    ) -> Result<[Self; 2]> {
        Err(not_yet("scaled_dot_product_attention", q))
    }
    fn attention_backward(
        _spec: &ember_ops::AttentionSpec,
        (q, _): Arg<'_, Self>,
        _k: Arg<'_, Self>,
        _v: Arg<'_, Self>,
        _keep: Option<Arg<'_, Self>>,
        _out: Arg<'_, Self>,
        _lse: Arg<'_, Self>,
        _dout: Arg<'_, Self>,
    ) -> Result<[Self; 3]> {
        Err(not_yet("scaled_dot_product_attention", q))
    }
}

/// The f32 and f64 device buffers, for generic code over [`CudaStorage`].
trait CudaFloat: FloatElem {
    /// The buffer when `s` holds this type.
    fn buffer_mut(s: &mut CudaStorage) -> Option<&mut DeviceBuffer<Self>>;
    /// The buffer when `s` holds this type, read-only.
    fn buffer(s: &CudaStorage) -> Option<&DeviceBuffer<Self>>;
}

/// `s`'s buffer as the element type of `_like` (the operands of one op share a dtype; a
/// mismatch is reported, never assumed away).
fn same_type<'a, T: CudaFloat>(
    op: &'static str,
    _like: &DeviceBuffer<T>,
    s: &'a CudaStorage,
) -> std::result::Result<&'a DeviceBuffer<T>, CudaError> {
    T::buffer(s).ok_or_else(|| CudaError::InvalidArgument {
        op,
        msg: "operands of different dtypes".into(),
    })
}

/// The convolution forward on dense operands (`bias` per output channel).
pub(crate) fn conv2d(
    spec: &Conv2dSpec,
    x: &CudaStorage,
    w: &CudaStorage,
    bias: Option<&CudaStorage>,
) -> Result<CudaStorage> {
    const OP: &str = "conv2d";
    let n = spec.output_shape().iter().product();
    Ok(produce!(OP, x, n, |out, xb| {
        (|| {
            let wb = same_type(OP, xb, w)?;
            let bb = bias.map(|b| same_type(OP, xb, b)).transpose()?;
            ember_cuda::conv::conv2d_forward(
                spec,
                xb.view(),
                wb.view(),
                bb.map(|b| b.view()),
                out.view_mut(),
            )
        })()
    }))
}

/// The convolution's adjoint in its input (plus a bias per input channel: conv_transpose2d's
/// forward), on dense operands.
pub(crate) fn conv2d_backward_data(
    spec: &Conv2dSpec,
    dy: &CudaStorage,
    w: &CudaStorage,
    bias: Option<&CudaStorage>,
) -> Result<CudaStorage> {
    const OP: &str = "conv2d_backward_data";
    let n = spec.input_shape().iter().product();
    Ok(produce!(OP, dy, n, |out, dyb| {
        (|| {
            let wb = same_type(OP, dyb, w)?;
            let bb = bias.map(|b| same_type(OP, dyb, b)).transpose()?;
            ember_cuda::conv::conv_transpose2d_forward(
                ember_cuda::conv::ConvAlgo::Auto,
                spec,
                dyb.view(),
                wb.view(),
                bb.map(|b| b.view()),
                out.view_mut(),
            )
        })()
    }))
}

/// The convolution's adjoint in its weight, on dense operands.
pub(crate) fn conv2d_backward_weight(
    spec: &Conv2dSpec,
    x: &CudaStorage,
    dy: &CudaStorage,
) -> Result<CudaStorage> {
    const OP: &str = "conv2d_backward_weight";
    let n = spec.weight_shape().iter().product();
    Ok(produce!(OP, x, n, |out, xb| {
        (|| {
            let dyb = same_type(OP, xb, dy)?;
            ember_cuda::conv::conv2d_backward_weight(
                spec,
                xb.view(),
                dyb.view(),
                out.view_mut(),
                None,
            )
        })()
    }))
}

impl CudaFloat for f32 {
    fn buffer_mut(s: &mut CudaStorage) -> Option<&mut DeviceBuffer<f32>> {
        match s {
            CudaStorage::F32(b) => Some(b),
            CudaStorage::F64(_) => None,
        }
    }
    fn buffer(s: &CudaStorage) -> Option<&DeviceBuffer<f32>> {
        match s {
            CudaStorage::F32(b) => Some(b),
            CudaStorage::F64(_) => None,
        }
    }
}

impl CudaFloat for f64 {
    fn buffer_mut(s: &mut CudaStorage) -> Option<&mut DeviceBuffer<f64>> {
        match s {
            CudaStorage::F64(b) => Some(b),
            CudaStorage::F32(_) => None,
        }
    }
    fn buffer(s: &CudaStorage) -> Option<&DeviceBuffer<f64>> {
        match s {
            CudaStorage::F64(b) => Some(b),
            CudaStorage::F32(_) => None,
        }
    }
}

/// One fused optimizer update with ember-cuda's kernels (the rules and roundings are the CPU's).
fn optimizer_step_typed<T: CudaFloat>(
    step: &OptimStep,
    ord: usize,
    (p, po): (&mut DeviceBuffer<T>, usize),
    (g, go): (&DeviceBuffer<T>, usize),
    states: [Option<(&mut CudaStorage, usize)>; 3],
    n: usize,
) -> Result<()> {
    use ember_cuda::optim as k;
    let op = step.name();
    let e = || err(op, ord);
    let pv = p.slice_mut(po..po + n).map_err(e())?;
    let gv = g.slice(go..go + n).map_err(e())?;
    let mut slots = [None, None, None];
    for (slot, s) in slots.iter_mut().zip(states) {
        if let Some((s, off)) = s {
            let b = T::buffer_mut(s).ok_or_else(|| {
                Error::invalid(op, "a state tensor's dtype differs from the parameter's")
            })?;
            *slot = Some(b.slice_mut(off..off + n).map_err(e())?);
        }
    }
    let [s0, s1, s2] = slots;
    let missing = || Error::invalid(op, "a required state tensor is missing");
    match step {
        OptimStep::Sgd(c) => match s0 {
            Some(v) => k::sgd_step(c, pv, gv, v),
            // Without momentum the kernel never reads the velocity; a one-element stand-in
            // fills the argument.
            None => {
                let mut stand_in = pv.device().alloc::<T>(1).map_err(e())?;
                k::sgd_step(c, pv, gv, stand_in.view_mut())
            }
        },
        OptimStep::Adam(c) => {
            k::adam_step(c, pv, gv, s0.ok_or_else(missing)?, s1.ok_or_else(missing)?)
        }
        OptimStep::Adagrad(c) => k::adagrad_step(c, pv, gv, s0.ok_or_else(missing)?),
        OptimStep::Rmsprop(c) => k::rmsprop_step(c, pv, gv, s0.ok_or_else(missing)?, s1, s2),
    }
    .map_err(e())
}

/// The error of an op whose CUDA kernel is not wired yet (the CPU has it).
fn not_yet(op: &'static str, on: &CudaStorage) -> Error {
    Error::Device {
        op,
        device: Device::Cuda(on.ordinal()),
        reason: format!(
            "{op} is not yet on CUDA (it runs on the CPU: move the tensors with .to_device(Device::Cpu))"
        ),
    }
}
