//! The CPU backend: [`BackendStorage`](super::BackendStorage) for host buffers, one function
//! per op calling one ember-cpu kernel.
//!
//! Kernels compute in f32 or f64. An f32/f64 storage is handed to the kernel as it lies, with
//! its strided layout; an f16/bf16 storage is first widened into a contiguous f32 copy and the
//! result narrowed back to the original dtype ([`operand`], [`Output::into_storage`]). Each op
//! is written once, generic over the float type, through `per_float!`: the f32 and f64 cases
//! are the same code. This module holds no arithmetic of its own; the families live in files
//! mirroring `ops/`: [`view`] (copies, casts, fills), [`elementwise`], [`reduce`], [`matmul`],
//! [`index`], [`loss`], [`conv`], [`pool`] (pooling, upsampling, padding, batch norm).

pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod embedding;
pub(crate) mod index;
pub(crate) mod loss;
pub(crate) mod matmul;
pub(crate) mod mixed;
pub(crate) mod optim;
pub(crate) mod pool;
pub(crate) mod recurrent;
pub(crate) mod reduce;
pub(crate) mod seq;
pub(crate) mod view;

use super::{Arg, MatmulSpec, Planes, PoolIndices};
use crate::dtype::DType;
use crate::error::Result;
use crate::layout::Layout;
use crate::storage::CpuStorage;
use ember_cpu::Float;
use ember_cpu::copy::{cast_strided, copy_strided};
use ember_ops::{
    AttentionSpec, BceForm, BinaryOp, Conv2dSpec, OptimStep, Pad2d, PadMode, Pool2dSpec, ReduceOp,
    UnaryOp,
};
use std::borrow::Cow;

/// One operand of a kernel: its data (borrowed, or a widened copy) and the layout to read it by.
pub(crate) struct View<'a, T: Clone> {
    /// The buffer.
    pub data: Cow<'a, [T]>,
    /// Where the view's elements lie in it.
    pub layout: LayoutRef<'a>,
}

/// A borrowed layout, or an owned one (a widened copy's) behind a box: a `Layout` is 120 bytes,
/// and operands are moved through every generic op, so the common borrowed case stays small.
pub(crate) enum LayoutRef<'a> {
    /// The tensor's own layout.
    Borrowed(&'a Layout),
    /// A layout made for a copy.
    Owned(Box<Layout>),
}

impl std::ops::Deref for LayoutRef<'_> {
    type Target = Layout;
    fn deref(&self) -> &Layout {
        match self {
            LayoutRef::Borrowed(l) => l,
            LayoutRef::Owned(l) => l,
        }
    }
}

impl<T: Float> View<'_, T> {
    /// The view's elements as a contiguous slice, borrowed when already dense.
    pub(crate) fn dense(&self) -> Cow<'_, [T]> {
        contiguous_slice(&self.data, &self.layout)
    }
}

/// A storage ready for a kernel: f32 or f64 data with the layout to read it through.
pub(crate) enum Operand<'a> {
    /// f32 data (or f16/bf16 widened to f32).
    F32(View<'a, f32>),
    /// f64 data.
    F64(View<'a, f64>),
}

/// A kernel's result before it is narrowed back to the tensor's dtype.
pub(crate) enum Output {
    /// An f32 result.
    F32(Vec<f32>),
    /// An f64 result.
    F64(Vec<f64>),
}

impl Output {
    /// Converts to storage of `dtype` (narrowing f32 results for f16/bf16 tensors).
    pub(crate) fn into_storage(self, dtype: DType) -> CpuStorage {
        match (self, dtype) {
            (Output::F32(v), DType::F32) => CpuStorage::F32(v),
            (Output::F64(v), DType::F64) => CpuStorage::F64(v),
            (Output::F32(v), DType::F16) => {
                CpuStorage::F16(v.iter().map(|&x| half::f16::from_f32(x)).collect())
            }
            (Output::F32(v), DType::BF16) => {
                CpuStorage::BF16(v.iter().map(|&x| half::bf16::from_f32(x)).collect())
            }
            (Output::F64(v), _) => CpuStorage::F64(v),
            (Output::F32(v), DType::F64) => CpuStorage::F64(v.iter().map(|&x| x as f64).collect()),
        }
    }
}

/// The two compute floats, with the conversions a generic backend function needs.
pub(crate) trait CpuFloat: Float {
    /// The view when `op` holds this float type.
    fn view(op: Operand<'_>) -> Option<View<'_, Self>>;
    /// The buffer when `s` stores this float type as it is (no widening).
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    /// The same, writable.
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    /// Wraps a result of this float type.
    fn output(v: Vec<Self>) -> Output;
}

impl CpuFloat for f32 {
    fn view(op: Operand<'_>) -> Option<View<'_, f32>> {
        match op {
            Operand::F32(v) => Some(v),
            Operand::F64(_) => None,
        }
    }
    fn output(v: Vec<f32>) -> Output {
        Output::F32(v)
    }
    fn slice(s: &CpuStorage) -> Option<&[f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl CpuFloat for f64 {
    fn view(op: Operand<'_>) -> Option<View<'_, f64>> {
        match op {
            Operand::F64(v) => Some(v),
            Operand::F32(_) => None,
        }
    }
    fn output(v: Vec<f64>) -> Output {
        Output::F64(v)
    }
    fn slice(s: &CpuStorage) -> Option<&[f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// Runs `$body` for the float type of the operands (all f32 or all f64: ember-core checks that
/// an op's operands share a dtype before it calls the backend) and wraps the result in
/// [`Output`]. `$body` is written once; the macro instantiates it for f32 and for f64.
macro_rules! per_float {
    (($($opnd:expr),+) => |$($x:ident),+| $body:expr) => {
        match ($($opnd,)+) {
            ($($crate::backend::cpu::Operand::F32($x),)+) => $crate::backend::cpu::Output::F32($body),
            ($($crate::backend::cpu::Operand::F64($x),)+) => $crate::backend::cpu::Output::F64($body),
            #[allow(unreachable_patterns)]
            _ => unreachable!("the operands of one op share a dtype (checked by ember-core)"),
        }
    };
}

/// Like `per_float!` for a body whose result is the same type for both floats (a sum).
macro_rules! per_float_value {
    (($($opnd:expr),+) => |$($x:ident),+| $body:expr) => {
        match ($($opnd,)+) {
            ($($crate::backend::cpu::Operand::F32($x),)+) => $body,
            ($($crate::backend::cpu::Operand::F64($x),)+) => $body,
            #[allow(unreachable_patterns)]
            _ => unreachable!("the operands of one op share a dtype (checked by ember-core)"),
        }
    };
}
pub(crate) use {per_float, per_float_value};

/// Views `s` through `l` for computation, widening 16-bit floats to a contiguous f32 copy.
pub(crate) fn operand<'a>(s: &'a CpuStorage, l: &'a Layout) -> Operand<'a> {
    let widened = |out: Vec<f32>| {
        Operand::F32(View {
            data: Cow::Owned(out),
            layout: LayoutRef::Owned(Box::new(Layout::contiguous(l.shape()))),
        })
    };
    match s {
        CpuStorage::F32(v) => Operand::F32(View {
            data: Cow::Borrowed(v),
            layout: LayoutRef::Borrowed(l),
        }),
        CpuStorage::F64(v) => Operand::F64(View {
            data: Cow::Borrowed(v),
            layout: LayoutRef::Borrowed(l),
        }),
        CpuStorage::F16(v) => {
            let mut out = zeroed(l.elem_count(), 0f32);
            cast_strided(v, l.strided(), &mut out).expect(KERNEL_CHECKED);
            widened(out)
        }
        CpuStorage::BF16(v) => {
            let mut out = zeroed(l.elem_count(), 0f32);
            cast_strided(v, l.strided(), &mut out).expect(KERNEL_CHECKED);
            widened(out)
        }
    }
}

/// A buffer of `n` copies of `zero`. Small buffers are allocated with `malloc` and filled,
/// not through `vec![0; n]`: that becomes `calloc`, which glibc serves outside its per-thread
/// cache (≈ 250 instructions per call against ≈ 40; a seed training step makes about fifteen
/// such outputs). Large ones keep `calloc`, whose fresh pages come zeroed for free.
pub(crate) fn zeroed<T: Copy>(n: usize, zero: T) -> Vec<T> {
    if n * std::mem::size_of::<T>() > 64 * 1024 {
        return vec![zero; n];
    }
    let mut v = Vec::with_capacity(n);
    v.resize(n, zero);
    v
}

/// Allocates an output of `n` elements and lets `f` fill it.
pub(crate) fn fill<T: Float>(n: usize, f: impl FnOnce(&mut [T])) -> Vec<T> {
    let mut out = zeroed(n, T::ZERO);
    f(&mut out);
    out
}

/// The view's elements as a contiguous slice, borrowed when already dense.
pub(crate) fn contiguous_slice<'a, T: Float>(x: &'a [T], l: &Layout) -> Cow<'a, [T]> {
    match l.strided().contiguous_range() {
        Some(r) => Cow::Borrowed(&x[r]),
        None => Cow::Owned(fill(l.elem_count(), |o| {
            copy_strided(x, l.strided(), o).expect(KERNEL_CHECKED)
        })),
    }
}

/// Why ember-core's calls of the strided, reduction, index and BCE kernels cannot fail: every op
/// checks shapes, axes and indices before any backend call, layouts always lie inside their
/// storage, and outputs are fresh and sized from the same shapes.
pub(crate) const KERNEL_CHECKED: &str = "ember-core checked the shapes, layouts and indices";

/// The CPU side of the seam: every method is one call into the family modules above.
impl super::BackendStorage for CpuStorage {
    #[inline]
    fn contiguous((x, xl): Arg<'_, Self>) -> Result<Self> {
        Ok(view::contiguous(x, xl))
    }
    #[inline]
    fn cast((x, xl): Arg<'_, Self>, dtype: DType) -> Result<Self> {
        Ok(view::cast(x, xl, dtype))
    }
    #[inline]
    fn unary((x, xl): Arg<'_, Self>, op: UnaryOp) -> Result<Self> {
        Ok(elementwise::unary(x, xl, op))
    }
    #[inline]
    fn unary_backward(
        op: UnaryOp,
        x: Arg<'_, Self>,
        y: Arg<'_, Self>,
        dy: Arg<'_, Self>,
    ) -> Result<Self> {
        Ok(elementwise::unary_backward(op, x, y, dy))
    }
    #[inline]
    fn binary(op: BinaryOp, a: Arg<'_, Self>, b: Arg<'_, Self>) -> Result<Self> {
        Ok(elementwise::binary(op, a, b))
    }
    #[inline]
    fn where_cond(c: Arg<'_, Self>, a: Arg<'_, Self>, b: Arg<'_, Self>) -> Result<Self> {
        Ok(elementwise::where_cond(c, a, b))
    }
    #[inline]
    fn reduce(op: ReduceOp, (x, xl): Arg<'_, Self>, axes: &[usize]) -> Result<Self> {
        Ok(reduce::reduce(op, x, xl, axes))
    }
    #[inline]
    fn softmax_last((x, xl): Arg<'_, Self>, log: bool) -> Result<Self> {
        Ok(reduce::softmax_last(x, xl, log))
    }
    #[inline]
    fn matmul(
        spec: &MatmulSpec<'_>,
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
        bias: Option<Arg<'_, Self>>,
    ) -> Result<Self> {
        Ok(matmul::matmul(spec, a, b, bias))
    }
    fn matmul_rounded(
        spec: &MatmulSpec<'_>,
        half: DType,
        a: Arg<'_, Self>,
        b: Arg<'_, Self>,
        bias: Option<Arg<'_, Self>>,
    ) -> Result<Self> {
        mixed::matmul_rounded(spec, half, a, b, bias)
    }
    #[inline]
    fn linear_backward(
        act: Option<UnaryOp>,
        x: Arg<'_, Self>,
        w: Arg<'_, Self>,
        y: Arg<'_, Self>,
        g: Arg<'_, Self>,
        want_dx: bool,
        want_db: bool,
    ) -> Result<Option<matmul::LinearGrads<Self>>> {
        Ok(Some(matmul::linear_backward(
            act, x, w, y, g, want_dx, want_db,
        )))
    }
    #[inline]
    fn index_select((x, xl): Arg<'_, Self>, axis: usize, idx: &[usize]) -> Result<Self> {
        Ok(index::index_select(x, xl, axis, idx))
    }
    #[inline]
    fn index_add(
        (g, gl): Arg<'_, Self>,
        shape: &[usize],
        axis: usize,
        idx: &[usize],
    ) -> Result<Self> {
        Ok(index::index_add(g, gl, shape, axis, idx))
    }
    #[inline]
    fn gather(
        (x, xl): Arg<'_, Self>,
        axis: usize,
        idx: &[usize],
        out_shape: &[usize],
    ) -> Result<Self> {
        Ok(index::gather(x, xl, axis, idx, out_shape))
    }
    #[inline]
    fn scatter_add(
        (g, gl): Arg<'_, Self>,
        shape: &[usize],
        axis: usize,
        idx: &[usize],
    ) -> Result<Self> {
        Ok(index::scatter_add(g, gl, shape, axis, idx))
    }
    #[inline]
    fn concat(parts: &[Arg<'_, Self>], axis: usize) -> Result<Self> {
        Ok(view::concat(parts, axis))
    }
    #[inline]
    fn bce_loss(form: BceForm, p: Arg<'_, Self>, y: Arg<'_, Self>, scale: f64) -> Result<Self> {
        Ok(view::from_f64(
            &[loss::bce_sum(form, p, y) * scale],
            p.0.dtype(),
        ))
    }
    #[inline]
    fn bce_loss_and_grad(
        form: BceForm,
        p: Arg<'_, Self>,
        y: Arg<'_, Self>,
        scale: f64,
    ) -> Result<Option<(Self, Self)>> {
        let (sum, grad) = loss::bce_sum_grad(form, p, y, scale);
        Ok(Some((view::from_f64(&[sum * scale], p.0.dtype()), grad)))
    }
    #[inline]
    fn bce_grad(form: BceForm, p: Arg<'_, Self>, y: Arg<'_, Self>, scale: f64) -> Result<Self> {
        Ok(loss::bce_grad(form, p, y, scale))
    }
    #[inline]
    fn optimizer_step(
        step: &OptimStep,
        param: (&mut Self, usize),
        grad: (&Self, usize),
        states: [Option<(&mut Self, usize)>; 3],
        n: usize,
    ) -> Result<()> {
        optim::step(step, param, grad, states, n)
    }
    #[inline]
    fn pool2d(
        (x, xl): Arg<'_, Self>,
        spec: &Pool2dSpec,
        want_argmax: bool,
    ) -> Result<(Self, Option<PoolIndices>)> {
        pool::pool2d(x, xl, spec, want_argmax)
    }
    #[inline]
    fn pool2d_backward(
        (g, gl): Arg<'_, Self>,
        spec: &Pool2dSpec,
        argmax: Option<&PoolIndices>,
    ) -> Result<Self> {
        pool::pool2d_backward(g, gl, spec, argmax)
    }
    #[inline]
    fn adaptive_avg_pool2d(
        (x, xl): Arg<'_, Self>,
        (planes, input): Planes,
        output: (usize, usize),
    ) -> Result<Self> {
        pool::adaptive_avg_pool2d(x, xl, planes, input, output)
    }
    #[inline]
    fn adaptive_avg_pool2d_backward(
        (g, gl): Arg<'_, Self>,
        (planes, input): Planes,
        output: (usize, usize),
    ) -> Result<Self> {
        pool::adaptive_avg_pool2d_backward(g, gl, planes, input, output)
    }
    #[inline]
    fn upsample_nearest2d(
        (x, xl): Arg<'_, Self>,
        (planes, input): Planes,
        scale: (usize, usize),
    ) -> Result<Self> {
        pool::upsample_nearest2d(x, xl, planes, input, scale)
    }
    #[inline]
    fn upsample_nearest2d_backward(
        (g, gl): Arg<'_, Self>,
        (planes, input): Planes,
        scale: (usize, usize),
    ) -> Result<Self> {
        pool::upsample_nearest2d_backward(g, gl, planes, input, scale)
    }
    #[inline]
    fn pad2d(
        (x, xl): Arg<'_, Self>,
        (planes, input): Planes,
        pads: Pad2d,
        mode: PadMode,
    ) -> Result<Self> {
        pool::pad2d(x, xl, planes, input, pads, mode)
    }
    #[inline]
    fn pad2d_backward(
        (g, gl): Arg<'_, Self>,
        (planes, input): Planes,
        pads: Pad2d,
        mode: PadMode,
    ) -> Result<Self> {
        pool::pad2d_backward(g, gl, planes, input, pads, mode)
    }
    #[inline]
    fn batch_norm(
        x: Arg<'_, Self>,
        w: Arg<'_, Self>,
        b: Arg<'_, Self>,
        dims: (usize, usize, usize),
        eps: f64,
    ) -> Result<[Self; 3]> {
        pool::batch_norm(x, w, b, dims, eps)
    }
    #[inline]
    fn batch_norm_backward(
        x: Arg<'_, Self>,
        g: Arg<'_, Self>,
        mean: Arg<'_, Self>,
        var: Arg<'_, Self>,
        w: Arg<'_, Self>,
        dims: (usize, usize, usize),
        eps: f64,
        want_dx: bool,
    ) -> Result<(Option<Self>, Self, Self)> {
        pool::batch_norm_backward(x, g, mean, var, w, dims, eps, want_dx)
    }
    #[inline]
    fn conv2d(
        spec: &Conv2dSpec,
        x: Arg<'_, Self>,
        w: Arg<'_, Self>,
        bias: Option<Arg<'_, Self>>,
    ) -> Result<Self> {
        conv::forward(spec, x, w, bias)
    }
    #[inline]
    fn conv2d_backward_data(
        spec: &Conv2dSpec,
        dy: Arg<'_, Self>,
        w: Arg<'_, Self>,
        bias: Option<Arg<'_, Self>>,
    ) -> Result<Self> {
        conv::backward_data(spec, dy, w, bias)
    }
    #[inline]
    fn conv2d_backward_weight(
        spec: &Conv2dSpec,
        x: Arg<'_, Self>,
        dy: Arg<'_, Self>,
    ) -> Result<Self> {
        conv::backward_weight(spec, x, dy)
    }
    #[inline]
    fn embedding_backward(
        g: Arg<'_, Self>,
        vocab: usize,
        dim: usize,
        idx: &[usize],
        padding: Option<usize>,
    ) -> Result<Self> {
        Ok(embedding::embedding_backward(g, vocab, dim, idx, padding))
    }
    #[inline]
    fn recurrent(
        spec: &ember_ops::RecurrentSpec,
        a: super::RecurrentArgs<'_, Self>,
    ) -> Result<[Self; 2]> {
        recurrent::forward(spec, a)
    }
    #[inline]
    fn recurrent_backward(
        spec: &ember_ops::RecurrentSpec,
        a: super::RecurrentBackwardArgs<'_, Self>,
    ) -> Result<[Self; 5]> {
        recurrent::backward(spec, a)
    }
    // Layer norm and attention: `seq.rs`.
    #[inline]
    fn layer_norm(
        x: Arg<'_, Self>,
        w: Arg<'_, Self>,
        b: Arg<'_, Self>,
        dims: (usize, usize),
        eps: f64,
    ) -> Result<[Self; 3]> {
        seq::layer_norm(x, w, b, dims, eps)
    }
    #[inline]
    fn layer_norm_backward(
        x: Arg<'_, Self>,
        g: Arg<'_, Self>,
        mean: Arg<'_, Self>,
        rstd: Arg<'_, Self>,
        w: Arg<'_, Self>,
        dims: (usize, usize),
        want_dx: bool,
    ) -> Result<(Option<Self>, Self, Self)> {
        seq::layer_norm_backward([x, g, mean, rstd, w], dims, want_dx)
    }
    #[inline]
    fn attention(
        spec: &AttentionSpec,
        q: Arg<'_, Self>,
        k: Arg<'_, Self>,
        v: Arg<'_, Self>,
        keep: Option<Arg<'_, Self>>,
    ) -> Result<[Self; 2]> {
        seq::attention(spec, [q, k, v], keep)
    }
    #[inline]
    fn attention_backward(
        spec: &AttentionSpec,
        q: Arg<'_, Self>,
        k: Arg<'_, Self>,
        v: Arg<'_, Self>,
        keep: Option<Arg<'_, Self>>,
        out: Arg<'_, Self>,
        lse: Arg<'_, Self>,
        dout: Arg<'_, Self>,
    ) -> Result<[Self; 3]> {
        seq::attention_backward(spec, [q, k, v, out, lse, dout], keep)
    }
}
