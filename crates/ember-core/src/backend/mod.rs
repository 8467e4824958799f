//! The dispatch seam: one trait every device's storage implements, and the one place where
//! ember-core decides which device runs an op.
//!
//! [`BackendStorage`] lists what the tensor ops need from a device: one method per op family,
//! each taking storages of that device with the layouts to read them by and returning a fresh
//! storage. [`cpu`] implements it for host buffers with ember-cpu's kernels, [`cuda`] for device
//! buffers with ember-cuda's. The ops in `ops/` never match on a device: they call the methods
//! of [`StorageData`] below, each of which is one use of the `on_device!` macro — the only
//! device match (both operands on the CPU, both on one GPU, or an error naming the devices).
//! Adding a device means implementing the trait; adding an op family means one trait method
//! and one [`StorageData`] method.
//!
//! Semantics that differ by device are not allowed here: a CUDA method either computes what the
//! CPU method computes (the GPU tests compare them) or returns an error naming the op.

pub(crate) mod cpu;
pub(crate) mod cuda;
mod recurrent;
mod seq;

use crate::dtype::{DType, Device};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::storage::{CpuStorage, CudaStorage, StorageData};
use ember_ops::{
    Activation, AttentionSpec, BceForm, BinaryOp, Conv2dSpec, OptimStep, Pad2d, PadMode,
    Pool2dSpec, ReduceOp, UnaryOp,
};

pub(crate) use cpu::matmul::LinearGrads;
pub(crate) use cpu::view::{filled, from_f64};
pub(crate) use recurrent::{RecurrentArgs, RecurrentBackwardArgs};

/// An operand: a storage of some device and the layout to read it through.
pub(crate) type Arg<'a, S> = (&'a S, &'a Layout);

/// The shape of one batched matrix product (device-neutral).
pub(crate) struct MatmulSpec<'a> {
    /// Batch extents (already broadcast: both operands have them).
    pub batch: &'a [usize],
    /// Rows of the result.
    pub m: usize,
    /// Columns of the result.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// Activation applied as the result is stored (fused epilogue).
    pub act: Activation,
}

/// The argmax of every max-pooling window (its offset `h·W + w` in the input plane), kept by
/// the forward for the backward, on the device that made them.
#[derive(Debug, Clone)]
pub(crate) enum PoolIndices {
    /// Offsets in host memory, one per output element.
    Cpu(std::sync::Arc<Vec<u32>>),
    /// Offsets in device memory (ember-cuda's u32 index buffer), one per output element.
    Cuda(std::sync::Arc<ember_cuda::pool::IndexBuffer>),
}

/// `planes` planes of `h`×`w` (one plane per (n, c) pair, or per leading index for `pad`).
pub(crate) type Planes = (usize, (usize, usize));

/// What a device's storage computes for the tensor ops. Every method returns a fresh, dense
/// storage on the operands' device; operands are already validated by the op (shapes, dtypes,
/// axes, indices), so an `Err` here is a device failure or an op the device lacks.
pub(crate) trait BackendStorage: Sized {
    /// A dense copy of the view, in the same dtype.
    fn contiguous(x: Arg<'_, Self>) -> Result<Self>;
    /// The view's elements converted to `dtype`, dense.
    fn cast(x: Arg<'_, Self>, dtype: DType) -> Result<Self>;
    /// y = op(x).
    fn unary(x: Arg<'_, Self>, op: UnaryOp) -> Result<Self>;
    /// dx = dy · op'(x), given x, y = op(x) and dy of one shape.
    fn unary_backward(
        op: UnaryOp,
        x: Arg<'_, Self>,
        y: Arg<'_, Self>,
        dy: Arg<'_, Self>,
    ) -> Result<Self>;
    /// out = op(a, b), both views already of the output's shape (broadcast by stride 0).
    fn binary(op: BinaryOp, a: Arg<'_, Self>, b: Arg<'_, Self>) -> Result<Self>;
    /// out = cond ? a : b, all of the output's shape.
    fn where_cond(c: Arg<'_, Self>, a: Arg<'_, Self>, b: Arg<'_, Self>) -> Result<Self>;
    /// Reduction over `axes`, keepdim layout (arg-reductions give f32 indices, f64 for f64).
    fn reduce(op: ReduceOp, x: Arg<'_, Self>, axes: &[usize]) -> Result<Self>;
    /// Softmax (or log-softmax) along the last axis.
    fn softmax_last(x: Arg<'_, Self>, log: bool) -> Result<Self>;
    /// act(A·B + bias) over the batch; A `batch ++ [m, k]`, B `batch ++ [k, n]`, bias `[n]`.
    fn matmul(
        spec: &MatmulSpec<'_>,
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
        bias: Option<Arg<'_, Self>>,
    ) -> Result<Self>;
    /// act(round(A)·round(B) + bias) for f32 A `[m, k]`, B `[k, n]` and bias `[n]`, the operands
    /// rounded to `half` (bf16 or f16) and the products summed in f32; an f32 result. The
    /// mixed-precision Dense layer (`fused/mixed.rs`); `spec.batch` is empty.
    fn matmul_rounded(
        spec: &MatmulSpec<'_>,
        half: DType,
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
        bias: Option<Arg<'_, Self>>,
    ) -> Result<Self>;
    /// The Dense layer's backward in one call (dx only when wanted, db only with a bias), or
    /// `None` when the device has no fused form and the composed rule should run.
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        _act: Option<UnaryOp>,
        _x: Arg<'_, Self>,
        _w: Arg<'_, Self>,
        _y: Arg<'_, Self>,
        _g: Arg<'_, Self>,
        _want_dx: bool,
        _want_db: bool,
    ) -> Result<Option<LinearGrads<Self>>> {
        Ok(None)
    }
    /// Picks `idx` along `axis`.
    fn index_select(x: Arg<'_, Self>, axis: usize, idx: &[usize]) -> Result<Self>;
    /// The adjoint of index_select: `g` scatter-added into zeros of `shape`.
    fn index_add(g: Arg<'_, Self>, shape: &[usize], axis: usize, idx: &[usize]) -> Result<Self>;
    /// Gathers along `axis` with an index array shaped like the output.
    fn gather(x: Arg<'_, Self>, axis: usize, idx: &[usize], out_shape: &[usize]) -> Result<Self>;
    /// The adjoint of gather: `g` scatter-added into zeros of `shape`.
    fn scatter_add(g: Arg<'_, Self>, shape: &[usize], axis: usize, idx: &[usize]) -> Result<Self>;
    /// The parts joined along `axis` (all of one dtype and matching shapes elsewhere).
    fn concat(parts: &[Arg<'_, Self>], axis: usize) -> Result<Self>;
    /// A one-element storage of `p`'s dtype holding `scale · Σ BCE(p, y)`.
    fn bce_loss(form: BceForm, p: Arg<'_, Self>, y: Arg<'_, Self>, scale: f64) -> Result<Self>;
    /// The loss (as [`BackendStorage::bce_loss`]) and `scale · dBCE/dp` in one pass, or `None`
    /// when the device computes them separately.
    fn bce_loss_and_grad(
        _form: BceForm,
        _p: Arg<'_, Self>,
        _y: Arg<'_, Self>,
        _scale: f64,
    ) -> Result<Option<(Self, Self)>> {
        Ok(None)
    }
    /// `scale · dBCE/dp` per element.
    fn bce_grad(form: BceForm, p: Arg<'_, Self>, y: Arg<'_, Self>, scale: f64) -> Result<Self>;
    /// One fused optimizer update in place over `n` elements: the parameter and the state
    /// slots the rule uses (each `(buffer, offset)` of a dense range), from the dense gradient.
    fn optimizer_step(
        step: &OptimStep,
        param: (&mut Self, usize),
        grad: (&Self, usize),
        states: [Option<(&mut Self, usize)>; 3],
        n: usize,
    ) -> Result<()>;

    // Pooling, upsampling, padding and batch norm (`fused/pool.rs`, `fused/resize.rs`,
    // `fused/norm.rs`); geometry already validated by the op.

    /// Max or average pooling of the NCHW view `x` by `spec`; with `want_argmax` (max only)
    /// also every window's argmax, for the backward.
    fn pool2d(
        x: Arg<'_, Self>,
        spec: &Pool2dSpec,
        want_argmax: bool,
    ) -> Result<(Self, Option<PoolIndices>)>;
    /// The pooling backward: dx `[N, C, H, W]` from g `[N, C, OH, OW]` (max pooling routes
    /// through the forward's `argmax`).
    fn pool2d_backward(
        g: Arg<'_, Self>,
        spec: &Pool2dSpec,
        argmax: Option<&PoolIndices>,
    ) -> Result<Self>;
    /// Adaptive average pooling of `planes` to `output` extents.
    fn adaptive_avg_pool2d(
        x: Arg<'_, Self>,
        planes: Planes,
        output: (usize, usize),
    ) -> Result<Self>;
    /// The backward of [`BackendStorage::adaptive_avg_pool2d`] (`planes` are the input's).
    fn adaptive_avg_pool2d_backward(
        g: Arg<'_, Self>,
        planes: Planes,
        output: (usize, usize),
    ) -> Result<Self>;
    /// Nearest upsampling of `planes` by integer factors `scale`.
    fn upsample_nearest2d(x: Arg<'_, Self>, planes: Planes, scale: (usize, usize)) -> Result<Self>;
    /// The backward of [`BackendStorage::upsample_nearest2d`] (`planes` are the input's).
    fn upsample_nearest2d_backward(
        g: Arg<'_, Self>,
        planes: Planes,
        scale: (usize, usize),
    ) -> Result<Self>;
    /// `planes` padded by `pads` as `mode` says.
    fn pad2d(x: Arg<'_, Self>, planes: Planes, pads: Pad2d, mode: PadMode) -> Result<Self>;
    /// The backward of [`BackendStorage::pad2d`] (`planes` are the input's).
    fn pad2d_backward(g: Arg<'_, Self>, planes: Planes, pads: Pad2d, mode: PadMode)
    -> Result<Self>;
    /// Batch norm of `x` (`[n, c, l]` by `dims`) with its own per-channel statistics, scaled
    /// by `w` and shifted by `b` (each `[c]`): `[y, batch mean, biased batch variance]`.
    fn batch_norm(
        x: Arg<'_, Self>,
        w: Arg<'_, Self>,
        b: Arg<'_, Self>,
        dims: (usize, usize, usize),
        eps: f64,
    ) -> Result<[Self; 3]>;
    /// The training-mode batch-norm backward from the forward's statistics:
    /// `(dx when wanted, dw, db)`.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        x: Arg<'_, Self>,
        g: Arg<'_, Self>,
        mean: Arg<'_, Self>,
        var: Arg<'_, Self>,
        w: Arg<'_, Self>,
        dims: (usize, usize, usize),
        eps: f64,
        want_dx: bool,
    ) -> Result<(Option<Self>, Self, Self)>;
    /// The convolution `x ⋆ w + bias` of `spec` (x NCHW, w OIHW, bias `[O]`): `[N, O, OH, OW]`.
    fn conv2d(
        spec: &Conv2dSpec,
        x: Arg<'_, Self>,
        w: Arg<'_, Self>,
        bias: Option<Arg<'_, Self>>,
    ) -> Result<Self>;
    /// The convolution's adjoint in its input, `[N, C, H, W]` from `dy` `[N, O, OH, OW]`, plus
    /// `bias[c]` on channel c when given: the backward-data of `conv2d` and the forward of
    /// `conv_transpose2d`.
    fn conv2d_backward_data(
        spec: &Conv2dSpec,
        dy: Arg<'_, Self>,
        w: Arg<'_, Self>,
        bias: Option<Arg<'_, Self>>,
    ) -> Result<Self>;
    /// The convolution's adjoint in its weight: `dw` `[O, C/groups, kh, kw]` from x and dy.
    fn conv2d_backward_weight(
        spec: &Conv2dSpec,
        x: Arg<'_, Self>,
        dy: Arg<'_, Self>,
    ) -> Result<Self>;
    /// The embedding lookup's adjoint: the rows of `g` (`[idx.len(), dim]`) summed into zeros
    /// of `[vocab, dim]` at rows `idx` (skipping `padding`), each row in position order.
    fn embedding_backward(
        g: Arg<'_, Self>,
        vocab: usize,
        dim: usize,
        idx: &[usize],
        padding: Option<usize>,
    ) -> Result<Self>;
    /// The recurrent sequence of `spec` (`fused/recurrent.rs`): `[output [N, T, H], saved]`,
    /// `saved` what the backward needs (opaque to the caller, 1-D).
    fn recurrent(spec: &ember_ops::RecurrentSpec, a: RecurrentArgs<'_, Self>) -> Result<[Self; 2]>;
    /// Backpropagation through time for [`BackendStorage::recurrent`]:
    /// `[dxp, dh0, dc0 (empty unless LSTM), dw_hh, db_hh]`.
    fn recurrent_backward(
        spec: &ember_ops::RecurrentSpec,
        a: RecurrentBackwardArgs<'_, Self>,
    ) -> Result<[Self; 5]>;

    // Layer norm and attention (`fused/layer_norm.rs`, `fused/attention.rs`, `seq.rs` here).

    /// Layer norm of `rows` rows of `d` values of `x`, scaled by `w` and shifted by `b` (each
    /// `[d]`): `[y, mean, rstd]`, the last two `[rows]`.
    fn layer_norm(
        x: Arg<'_, Self>,
        w: Arg<'_, Self>,
        b: Arg<'_, Self>,
        dims: (usize, usize),
        eps: f64,
    ) -> Result<[Self; 3]>;
    /// The layer-norm backward from the forward's `mean` and `rstd`: `(dx when wanted, dw, db)`.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_backward(
        x: Arg<'_, Self>,
        g: Arg<'_, Self>,
        mean: Arg<'_, Self>,
        rstd: Arg<'_, Self>,
        w: Arg<'_, Self>,
        dims: (usize, usize),
        want_dx: bool,
    ) -> Result<(Option<Self>, Self, Self)>;
    /// Scaled dot-product attention of `spec`: `[out, logsumexp]` (see ember-cpu's
    /// `attention` module for the layouts and the fully masked rows).
    fn attention(
        spec: &AttentionSpec,
        q: Arg<'_, Self>,
        k: Arg<'_, Self>,
        v: Arg<'_, Self>,
        keep: Option<Arg<'_, Self>>,
    ) -> Result<[Self; 2]>;
    /// The attention backward: `[dq, dk, dv]` from the forward's `out` and `lse` and `dout`.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        spec: &AttentionSpec,
        q: Arg<'_, Self>,
        k: Arg<'_, Self>,
        v: Arg<'_, Self>,
        keep: Option<Arg<'_, Self>>,
        out: Arg<'_, Self>,
        lse: Arg<'_, Self>,
        dout: Arg<'_, Self>,
    ) -> Result<[Self; 3]>;
}

/// The error for operands on different devices (the first pair that differs).
fn mismatch(op: &'static str, devices: &[Device]) -> Error {
    let lhs = devices[0];
    let rhs = devices.iter().copied().find(|&d| d != lhs).unwrap_or(lhs);
    Error::DeviceMismatch { op, lhs, rhs }
}

/// The device match, written once: binds each named operand to its CPU or CUDA storage and
/// evaluates `$call` (the same expression, through [`BackendStorage`], for either device), or
/// reports a device mismatch naming `$op`.
macro_rules! on_device {
    ($op:expr, ($($s:ident),+) => $call:expr) => {
        match ($($s,)+) {
            ($(StorageData::Cpu($s),)+) => Ok(StorageData::Cpu($call?)),
            ($(StorageData::Cuda($s),)+) => Ok(StorageData::Cuda($call?)),
            #[allow(unreachable_patterns)]
            _ => Err(mismatch($op, &[$($s.device()),+])),
        }
    };
}

/// The ops on storages of either device: each is one `on_device!` dispatch to the trait.
impl StorageData {
    /// See [`BackendStorage::contiguous`].
    #[inline]
    pub(crate) fn contiguous(x: &StorageData, xl: &Layout) -> Result<StorageData> {
        on_device!("contiguous", (x) => BackendStorage::contiguous((x, xl)))
    }

    /// See [`BackendStorage::cast`].
    #[inline]
    pub(crate) fn cast(x: &StorageData, xl: &Layout, dtype: DType) -> Result<StorageData> {
        on_device!("to_dtype", (x) => BackendStorage::cast((x, xl), dtype))
    }

    /// See [`BackendStorage::unary`].
    #[inline]
    pub(crate) fn unary(x: &StorageData, xl: &Layout, op: UnaryOp) -> Result<StorageData> {
        on_device!("unary", (x) => BackendStorage::unary((x, xl), op))
    }

    /// See [`BackendStorage::unary_backward`].
    #[inline]
    pub(crate) fn unary_backward(
        op: UnaryOp,
        (x, xl): Arg<'_, StorageData>,
        (y, yl): Arg<'_, StorageData>,
        (dy, dyl): Arg<'_, StorageData>,
    ) -> Result<StorageData> {
        on_device!("backward", (x, y, dy) => BackendStorage::unary_backward(op, (x, xl), (y, yl), (dy, dyl)))
    }

    /// See [`BackendStorage::binary`].
    #[inline]
    pub(crate) fn binary(
        op: BinaryOp,
        (a, al): Arg<'_, StorageData>,
        (b, bl): Arg<'_, StorageData>,
    ) -> Result<StorageData> {
        on_device!(crate::ops::binary_name(op), (a, b) => BackendStorage::binary(op, (a, al), (b, bl)))
    }

    /// See [`BackendStorage::where_cond`].
    #[inline]
    pub(crate) fn where_cond(
        (c, cl): Arg<'_, StorageData>,
        (a, al): Arg<'_, StorageData>,
        (b, bl): Arg<'_, StorageData>,
    ) -> Result<StorageData> {
        on_device!("where_cond", (c, a, b) => BackendStorage::where_cond((c, cl), (a, al), (b, bl)))
    }

    /// See [`BackendStorage::reduce`].
    #[inline]
    pub(crate) fn reduce(
        op: ReduceOp,
        x: &StorageData,
        xl: &Layout,
        axes: &[usize],
    ) -> Result<StorageData> {
        on_device!("reduce", (x) => BackendStorage::reduce(op, (x, xl), axes))
    }

    /// See [`BackendStorage::softmax_last`].
    #[inline]
    pub(crate) fn softmax_last(x: &StorageData, xl: &Layout, log: bool) -> Result<StorageData> {
        on_device!("softmax", (x) => BackendStorage::softmax_last((x, xl), log))
    }

    /// See [`BackendStorage::matmul`]; without a bias, pass any operand as `bias.0` and `None`
    /// layout (the storage is then not read).
    #[inline]
    pub(crate) fn matmul(
        op: &'static str,
        spec: &MatmulSpec<'_>,
        (a, al): Arg<'_, StorageData>,
        (b, bl): Arg<'_, StorageData>,
        (bias, biasl): (&StorageData, Option<&Layout>),
    ) -> Result<StorageData> {
        on_device!(op, (a, b, bias) => BackendStorage::matmul(spec, (a, al), (b, bl), biasl.map(|l| (bias, l))))
    }

    /// See [`BackendStorage::matmul_rounded`]; the bias as in [`StorageData::matmul`].
    #[inline]
    pub(crate) fn matmul_rounded(
        spec: &MatmulSpec<'_>,
        half: DType,
        (a, al): Arg<'_, StorageData>,
        (b, bl): Arg<'_, StorageData>,
        (bias, biasl): (&StorageData, Option<&Layout>),
    ) -> Result<StorageData> {
        on_device!("linear_mixed", (a, b, bias) => BackendStorage::matmul_rounded(spec, half, (a, al), (b, bl), biasl.map(|l| (bias, l))))
    }

    /// See [`BackendStorage::linear_backward`].
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn linear_backward(
        act: Option<UnaryOp>,
        (x, xl): Arg<'_, StorageData>,
        (w, wl): Arg<'_, StorageData>,
        (y, yl): Arg<'_, StorageData>,
        (g, gl): Arg<'_, StorageData>,
        want_dx: bool,
        want_db: bool,
    ) -> Result<Option<LinearGrads<StorageData>>> {
        fn lift<S: Into<StorageData>>(
            r: Option<LinearGrads<S>>,
        ) -> Option<LinearGrads<StorageData>> {
            r.map(|g| LinearGrads {
                dx: g.dx.map(Into::into),
                dw: g.dw.into(),
                db: g.db.map(Into::into),
            })
        }
        match (x, w, y, g) {
            (
                StorageData::Cpu(x),
                StorageData::Cpu(w),
                StorageData::Cpu(y),
                StorageData::Cpu(g),
            ) => Ok(lift(CpuStorage::linear_backward(
                act,
                (x, xl),
                (w, wl),
                (y, yl),
                (g, gl),
                want_dx,
                want_db,
            )?)),
            (
                StorageData::Cuda(x),
                StorageData::Cuda(w),
                StorageData::Cuda(y),
                StorageData::Cuda(g),
            ) => Ok(lift(CudaStorage::linear_backward(
                act,
                (x, xl),
                (w, wl),
                (y, yl),
                (g, gl),
                want_dx,
                want_db,
            )?)),
            _ => Err(mismatch(
                "backward",
                &[x.device(), w.device(), y.device(), g.device()],
            )),
        }
    }

    /// See [`BackendStorage::index_select`].
    #[inline]
    pub(crate) fn index_select(
        x: &StorageData,
        xl: &Layout,
        axis: usize,
        idx: &[usize],
    ) -> Result<StorageData> {
        on_device!("index_select", (x) => BackendStorage::index_select((x, xl), axis, idx))
    }

    /// See [`BackendStorage::index_add`].
    #[inline]
    pub(crate) fn index_add(
        g: &StorageData,
        gl: &Layout,
        shape: &[usize],
        axis: usize,
        idx: &[usize],
    ) -> Result<StorageData> {
        on_device!("index_add", (g) => BackendStorage::index_add((g, gl), shape, axis, idx))
    }

    /// See [`BackendStorage::gather`].
    #[inline]
    pub(crate) fn gather(
        x: &StorageData,
        xl: &Layout,
        axis: usize,
        idx: &[usize],
        out_shape: &[usize],
    ) -> Result<StorageData> {
        on_device!("gather", (x) => BackendStorage::gather((x, xl), axis, idx, out_shape))
    }

    /// See [`BackendStorage::scatter_add`].
    #[inline]
    pub(crate) fn scatter_add(
        g: &StorageData,
        gl: &Layout,
        shape: &[usize],
        axis: usize,
        idx: &[usize],
    ) -> Result<StorageData> {
        on_device!("scatter_add", (g) => BackendStorage::scatter_add((g, gl), shape, axis, idx))
    }

    /// See [`BackendStorage::concat`]; every part must be on the first part's device.
    #[inline]
    pub(crate) fn concat(parts: &[Arg<'_, StorageData>], axis: usize) -> Result<StorageData> {
        let devices: Vec<Device> = parts.iter().map(|(s, _)| s.device()).collect();
        if devices.iter().any(|&d| d != devices[0]) {
            return Err(mismatch("cat", &devices));
        }
        match parts.first().map(|p| p.0) {
            Some(StorageData::Cuda(_)) => {
                let cuda: Vec<Arg<'_, CudaStorage>> = parts
                    .iter()
                    .filter_map(|&(s, l)| match s {
                        StorageData::Cuda(c) => Some((c, l)),
                        StorageData::Cpu(_) => None,
                    })
                    .collect();
                Ok(StorageData::Cuda(CudaStorage::concat(&cuda, axis)?))
            }
            _ => {
                let cpu: Vec<Arg<'_, CpuStorage>> = parts
                    .iter()
                    .filter_map(|&(s, l)| match s {
                        StorageData::Cpu(c) => Some((c, l)),
                        StorageData::Cuda(_) => None,
                    })
                    .collect();
                Ok(StorageData::Cpu(CpuStorage::concat(&cpu, axis)?))
            }
        }
    }

    /// See [`BackendStorage::bce_loss`].
    #[inline]
    pub(crate) fn bce_loss(
        form: BceForm,
        (p, pl): Arg<'_, StorageData>,
        (y, yl): Arg<'_, StorageData>,
        scale: f64,
    ) -> Result<StorageData> {
        on_device!("binary_cross_entropy", (p, y) => BackendStorage::bce_loss(form, (p, pl), (y, yl), scale))
    }

    /// See [`BackendStorage::bce_loss_and_grad`].
    #[inline]
    pub(crate) fn bce_loss_and_grad(
        form: BceForm,
        (p, pl): Arg<'_, StorageData>,
        (y, yl): Arg<'_, StorageData>,
        scale: f64,
    ) -> Result<Option<(StorageData, StorageData)>> {
        fn lift<S: Into<StorageData>>(r: Option<(S, S)>) -> Option<(StorageData, StorageData)> {
            r.map(|(a, b)| (a.into(), b.into()))
        }
        match (p, y) {
            (StorageData::Cpu(p), StorageData::Cpu(y)) => Ok(lift(CpuStorage::bce_loss_and_grad(
                form,
                (p, pl),
                (y, yl),
                scale,
            )?)),
            (StorageData::Cuda(p), StorageData::Cuda(y)) => Ok(lift(
                CudaStorage::bce_loss_and_grad(form, (p, pl), (y, yl), scale)?,
            )),
            _ => Err(mismatch("binary_cross_entropy", &[p.device(), y.device()])),
        }
    }

    /// See [`BackendStorage::bce_grad`].
    #[inline]
    pub(crate) fn bce_grad(
        form: BceForm,
        (p, pl): Arg<'_, StorageData>,
        (y, yl): Arg<'_, StorageData>,
        scale: f64,
    ) -> Result<StorageData> {
        on_device!("backward", (p, y) => BackendStorage::bce_grad(form, (p, pl), (y, yl), scale))
    }

    /// See [`BackendStorage::conv2d`]; without a bias, pass any operand as `bias.0` and `None`.
    #[inline]
    pub(crate) fn conv2d(
        spec: &Conv2dSpec,
        (x, xl): Arg<'_, StorageData>,
        (w, wl): Arg<'_, StorageData>,
        (bias, biasl): (&StorageData, Option<&Layout>),
    ) -> Result<StorageData> {
        on_device!("conv2d", (x, w, bias) => BackendStorage::conv2d(spec, (x, xl), (w, wl), biasl.map(|l| (bias, l))))
    }

    /// See [`BackendStorage::conv2d_backward_data`]; the bias as in [`StorageData::conv2d`].
    #[inline]
    pub(crate) fn conv2d_backward_data(
        op: &'static str,
        spec: &Conv2dSpec,
        (dy, dyl): Arg<'_, StorageData>,
        (w, wl): Arg<'_, StorageData>,
        (bias, biasl): (&StorageData, Option<&Layout>),
    ) -> Result<StorageData> {
        on_device!(op, (dy, w, bias) => BackendStorage::conv2d_backward_data(spec, (dy, dyl), (w, wl), biasl.map(|l| (bias, l))))
    }

    /// See [`BackendStorage::conv2d_backward_weight`].
    #[inline]
    pub(crate) fn conv2d_backward_weight(
        spec: &Conv2dSpec,
        (x, xl): Arg<'_, StorageData>,
        (dy, dyl): Arg<'_, StorageData>,
    ) -> Result<StorageData> {
        on_device!("backward", (x, dy) => BackendStorage::conv2d_backward_weight(spec, (x, xl), (dy, dyl)))
    }

    /// The view copied to `device` (dense), converting between host and GPU memory; the one
    /// place data crosses devices.
    #[inline]
    pub(crate) fn to_device(x: &StorageData, xl: &Layout, device: Device) -> Result<StorageData> {
        Ok(match (x, device) {
            (StorageData::Cpu(c), Device::Cpu) => StorageData::Cpu(cpu::view::contiguous(c, xl)),
            (StorageData::Cuda(c), Device::Cpu) => StorageData::Cpu(cuda::to_host(c, xl)?),
            (StorageData::Cpu(c), Device::Cuda(i)) => StorageData::Cuda(cuda::upload(c, xl, i)?),
            (StorageData::Cuda(c), Device::Cuda(i)) if c.ordinal() == i => {
                StorageData::Cuda(cuda::contiguous(c, xl)?)
            }
            (StorageData::Cuda(c), Device::Cuda(i)) => {
                let host = cuda::to_host(c, xl)?;
                StorageData::Cuda(cuda::upload(&host, &Layout::contiguous(xl.shape()), i)?)
            }
        })
    }
}

/// Pooling, upsampling, padding and batch norm on storages of either device.
impl StorageData {
    /// See [`BackendStorage::pool2d`].
    pub(crate) fn pool2d(
        (x, xl): Arg<'_, StorageData>,
        spec: &Pool2dSpec,
        want_argmax: bool,
    ) -> Result<(StorageData, Option<PoolIndices>)> {
        Ok(match x {
            StorageData::Cpu(x) => {
                let (y, i) = CpuStorage::pool2d((x, xl), spec, want_argmax)?;
                (StorageData::Cpu(y), i)
            }
            StorageData::Cuda(x) => {
                let (y, i) = CudaStorage::pool2d((x, xl), spec, want_argmax)?;
                (StorageData::Cuda(y), i)
            }
        })
    }

    /// See [`BackendStorage::pool2d_backward`].
    pub(crate) fn pool2d_backward(
        (g, gl): Arg<'_, StorageData>,
        spec: &Pool2dSpec,
        argmax: Option<&PoolIndices>,
    ) -> Result<StorageData> {
        on_device!("pool2d_backward", (g) => BackendStorage::pool2d_backward((g, gl), spec, argmax))
    }

    /// See [`BackendStorage::adaptive_avg_pool2d`].
    pub(crate) fn adaptive_avg_pool2d(
        (x, xl): Arg<'_, StorageData>,
        planes: Planes,
        output: (usize, usize),
    ) -> Result<StorageData> {
        on_device!("adaptive_avg_pool2d", (x) => BackendStorage::adaptive_avg_pool2d((x, xl), planes, output))
    }

    /// See [`BackendStorage::adaptive_avg_pool2d_backward`].
    pub(crate) fn adaptive_avg_pool2d_backward(
        (g, gl): Arg<'_, StorageData>,
        planes: Planes,
        output: (usize, usize),
    ) -> Result<StorageData> {
        on_device!("adaptive_avg_pool2d", (g) => BackendStorage::adaptive_avg_pool2d_backward((g, gl), planes, output))
    }

    /// See [`BackendStorage::upsample_nearest2d`].
    pub(crate) fn upsample_nearest2d(
        (x, xl): Arg<'_, StorageData>,
        planes: Planes,
        scale: (usize, usize),
    ) -> Result<StorageData> {
        on_device!("upsample_nearest2d", (x) => BackendStorage::upsample_nearest2d((x, xl), planes, scale))
    }

    /// See [`BackendStorage::upsample_nearest2d_backward`].
    pub(crate) fn upsample_nearest2d_backward(
        (g, gl): Arg<'_, StorageData>,
        planes: Planes,
        scale: (usize, usize),
    ) -> Result<StorageData> {
        on_device!("upsample_nearest2d", (g) => BackendStorage::upsample_nearest2d_backward((g, gl), planes, scale))
    }

    /// See [`BackendStorage::pad2d`].
    pub(crate) fn pad2d(
        (x, xl): Arg<'_, StorageData>,
        planes: Planes,
        pads: Pad2d,
        mode: PadMode,
    ) -> Result<StorageData> {
        on_device!("pad", (x) => BackendStorage::pad2d((x, xl), planes, pads, mode))
    }

    /// See [`BackendStorage::pad2d_backward`].
    pub(crate) fn pad2d_backward(
        (g, gl): Arg<'_, StorageData>,
        planes: Planes,
        pads: Pad2d,
        mode: PadMode,
    ) -> Result<StorageData> {
        on_device!("pad", (g) => BackendStorage::pad2d_backward((g, gl), planes, pads, mode))
    }

    /// See [`BackendStorage::batch_norm`].
    pub(crate) fn batch_norm(
        (x, xl): Arg<'_, StorageData>,
        (w, wl): Arg<'_, StorageData>,
        (b, bl): Arg<'_, StorageData>,
        dims: (usize, usize, usize),
        eps: f64,
    ) -> Result<[StorageData; 3]> {
        match (x, w, b) {
            (StorageData::Cpu(x), StorageData::Cpu(w), StorageData::Cpu(b)) => Ok(
                CpuStorage::batch_norm((x, xl), (w, wl), (b, bl), dims, eps)?.map(StorageData::Cpu),
            ),
            (StorageData::Cuda(x), StorageData::Cuda(w), StorageData::Cuda(b)) => Ok(
                CudaStorage::batch_norm((x, xl), (w, wl), (b, bl), dims, eps)?
                    .map(StorageData::Cuda),
            ),
            _ => Err(mismatch(
                "batch_norm",
                &[x.device(), w.device(), b.device()],
            )),
        }
    }

    /// See [`BackendStorage::batch_norm_backward`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn batch_norm_backward(
        (x, xl): Arg<'_, StorageData>,
        (g, gl): Arg<'_, StorageData>,
        (m, ml): Arg<'_, StorageData>,
        (v, vl): Arg<'_, StorageData>,
        (w, wl): Arg<'_, StorageData>,
        dims: (usize, usize, usize),
        eps: f64,
        want_dx: bool,
    ) -> Result<(Option<StorageData>, StorageData, StorageData)> {
        use StorageData::{Cpu, Cuda};
        match (x, g, m, v, w) {
            (Cpu(x), Cpu(g), Cpu(m), Cpu(v), Cpu(w)) => {
                let (dx, dw, db) = CpuStorage::batch_norm_backward(
                    (x, xl),
                    (g, gl),
                    (m, ml),
                    (v, vl),
                    (w, wl),
                    dims,
                    eps,
                    want_dx,
                )?;
                Ok((dx.map(Cpu), Cpu(dw), Cpu(db)))
            }
            (Cuda(x), Cuda(g), Cuda(m), Cuda(v), Cuda(w)) => {
                let (dx, dw, db) = CudaStorage::batch_norm_backward(
                    (x, xl),
                    (g, gl),
                    (m, ml),
                    (v, vl),
                    (w, wl),
                    dims,
                    eps,
                    want_dx,
                )?;
                Ok((dx.map(Cuda), Cuda(dw), Cuda(db)))
            }
            _ => Err(mismatch(
                "batch_norm",
                &[x.device(), g.device(), m.device(), v.device(), w.device()],
            )),
        }
    }
}

/// Host access and in-place writes: the remaining places where storage meets a device.
impl StorageData {
    /// The view as host data: borrowed as it lies on the CPU, downloaded (dense) from a GPU.
    #[inline]
    pub(crate) fn on_host<'a>(
        x: &'a StorageData,
        xl: &'a Layout,
    ) -> Result<(
        std::borrow::Cow<'a, CpuStorage>,
        std::borrow::Cow<'a, Layout>,
    )> {
        use std::borrow::Cow;
        Ok(match x {
            StorageData::Cpu(c) => (Cow::Borrowed(c), Cow::Borrowed(xl)),
            StorageData::Cuda(c) => (
                Cow::Owned(cuda::to_host(c, xl)?),
                Cow::Owned(Layout::contiguous(xl.shape())),
            ),
        })
    }

    /// Element `at` of a host buffer as f64 (exact for every dtype), read in place; `None` for
    /// device memory (read it through [`StorageData::on_host`]).
    #[inline]
    pub(crate) fn host_value(&self, at: usize) -> Option<f64> {
        match self {
            StorageData::Cpu(CpuStorage::F32(v)) => v.get(at).map(|&x| x as f64),
            StorageData::Cpu(CpuStorage::F64(v)) => v.get(at).copied(),
            StorageData::Cpu(CpuStorage::F16(v)) => v.get(at).map(|x| x.to_f64()),
            StorageData::Cpu(CpuStorage::BF16(v)) => v.get(at).map(|x| x.to_f64()),
            StorageData::Cuda(_) => None,
        }
    }

    /// Overwrites `dst`'s elements in the contiguous range `dl` with the dense `src` (same
    /// device and dtype; the caller checked shapes).
    #[inline]
    pub(crate) fn write(dst: &mut StorageData, dl: &Layout, src: &StorageData) -> Result<()> {
        let r = dl.offset()..dl.offset() + dl.elem_count();
        match (dst, src) {
            (StorageData::Cpu(d), StorageData::Cpu(s)) => {
                match (d, s) {
                    (CpuStorage::F32(d), CpuStorage::F32(s)) => d[r].copy_from_slice(s),
                    (CpuStorage::F64(d), CpuStorage::F64(s)) => d[r].copy_from_slice(s),
                    (CpuStorage::F16(d), CpuStorage::F16(s)) => d[r].copy_from_slice(s),
                    (CpuStorage::BF16(d), CpuStorage::BF16(s)) => d[r].copy_from_slice(s),
                    (d, s) => {
                        return Err(Error::DTypeMismatch {
                            op: "assign",
                            lhs: d.dtype(),
                            rhs: s.dtype(),
                        });
                    }
                }
                Ok(())
            }
            (StorageData::Cuda(d), StorageData::Cuda(s)) => cuda::write(d, dl, s),
            (d, s) => Err(mismatch("assign", &[d.device(), s.device()])),
        }
    }

    /// See [`BackendStorage::optimizer_step`]: the device match for in-place updates (the
    /// caller holds the write guards, so the storages arrive as `&mut`).
    pub(crate) fn optimizer_step(
        step: &OptimStep,
        (p, po): (&mut StorageData, usize),
        (g, go): (&StorageData, usize),
        states: [Option<(&mut StorageData, usize)>; 3],
        n: usize,
    ) -> Result<()> {
        let op = step.name();
        match (p, g) {
            (StorageData::Cpu(p), StorageData::Cpu(g)) => {
                let states = states_on(op, states, |s| match s {
                    StorageData::Cpu(c) => Some(c),
                    StorageData::Cuda(_) => None,
                })?;
                CpuStorage::optimizer_step(step, (p, po), (g, go), states, n)
            }
            (StorageData::Cuda(p), StorageData::Cuda(g)) => {
                let states = states_on(op, states, |s| match s {
                    StorageData::Cuda(c) => Some(c),
                    StorageData::Cpu(_) => None,
                })?;
                CudaStorage::optimizer_step(step, (p, po), (g, go), states, n)
            }
            (p, g) => Err(mismatch(op, &[p.device(), g.device()])),
        }
    }
}

/// The state slots on one device (`pick` unwraps that device's storage), or a device mismatch.
#[allow(clippy::type_complexity)]
#[inline(always)]
fn states_on<'a, S>(
    op: &'static str,
    states: [Option<(&'a mut StorageData, usize)>; 3],
    pick: impl Fn(&'a mut StorageData) -> Option<&'a mut S>,
) -> Result<[Option<(&'a mut S, usize)>; 3]> {
    let mut out: [Option<(&'a mut S, usize)>; 3] = [None, None, None];
    for (o, s) in out.iter_mut().zip(states) {
        if let Some((s, off)) = s {
            let device = s.device();
            *o = Some((
                pick(s).ok_or_else(|| {
                    Error::invalid(
                        op,
                        format!("a state tensor is on {device}, not the parameter's device"),
                    )
                })?,
                off,
            ));
        }
    }
    Ok(out)
}

/// The embedding op's storage dispatch (see `fused/embedding.rs`).
impl StorageData {
    /// See [`BackendStorage::embedding_backward`].
    pub(crate) fn embedding_backward(
        (g, gl): Arg<'_, StorageData>,
        vocab: usize,
        dim: usize,
        idx: &[usize],
        padding: Option<usize>,
    ) -> Result<StorageData> {
        on_device!("embedding", (g) => BackendStorage::embedding_backward((g, gl), vocab, dim, idx, padding))
    }
}
