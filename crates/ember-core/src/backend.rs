//! The CPU dispatch point: one function per op family, matching on dtype and calling ember-cpu.
//!
//! Kernels compute in f32 or f64. An f32/f64 storage is handed to the kernel as it lies, with its
//! strided layout; an f16/bf16 storage is first widened into a contiguous f32 copy and the result
//! narrowed back to the original dtype. This module holds no arithmetic of its own: each function
//! picks the buffers, allocates the output and calls one kernel.

use crate::dtype::DType;
use crate::layout::Layout;
use crate::storage::CpuStorage;
use ember_cpu::Float;
use ember_cpu::copy::{cast_strided, copy_strided};
use ember_cpu::gemm::{Epilogue, MatMut, MatRef, Widen};
use ember_ops::BinaryOp;
use ember_ops::ReduceOp;
use ember_ops::UnaryOp;
use std::borrow::Cow;

/// A storage ready for a kernel: f32 or f64 data with the layout to read it through.
pub(crate) enum Operand<'a> {
    F32(Cow<'a, [f32]>, Cow<'a, Layout>),
    F64(&'a [f64], Cow<'a, Layout>),
}

/// A kernel's result before it is narrowed back to the tensor's dtype.
pub(crate) enum Output {
    F32(Vec<f32>),
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

/// Views `s` through `l` for computation, widening 16-bit floats to a contiguous f32 copy.
pub(crate) fn operand<'a>(s: &'a CpuStorage, l: &'a Layout) -> Operand<'a> {
    match s {
        CpuStorage::F32(v) => Operand::F32(Cow::Borrowed(v), Cow::Borrowed(l)),
        CpuStorage::F64(v) => Operand::F64(v, Cow::Borrowed(l)),
        CpuStorage::F16(v) => {
            let mut out = zeroed(l.elem_count(), 0f32);
            cast_strided(v, l.strided(), &mut out).expect(KERNEL_CHECKED);
            Operand::F32(Cow::Owned(out), Cow::Owned(Layout::contiguous(l.shape())))
        }
        CpuStorage::BF16(v) => {
            let mut out = zeroed(l.elem_count(), 0f32);
            cast_strided(v, l.strided(), &mut out).expect(KERNEL_CHECKED);
            Operand::F32(Cow::Owned(out), Cow::Owned(Layout::contiguous(l.shape())))
        }
    }
}

/// A buffer of `n` copies of `zero`. Small buffers are allocated with `malloc` and filled,
/// not through `vec![0; n]`: that becomes `calloc`, which glibc serves outside its per-thread
/// cache (measured: ≈ 250 instructions per call against ≈ 40, and a training step of the seed
/// model allocates about fifteen such outputs). Large ones keep `calloc`, whose fresh pages
/// come zeroed for free.
pub(crate) fn zeroed<T: Copy>(n: usize, zero: T) -> Vec<T> {
    if n * std::mem::size_of::<T>() > 64 * 1024 {
        return vec![zero; n];
    }
    let mut v = Vec::with_capacity(n);
    v.resize(n, zero);
    v
}

/// Allocates an output of `n` elements and lets `f` fill it.
fn fill<T: Float>(n: usize, f: impl FnOnce(&mut [T])) -> Vec<T> {
    let mut out = zeroed(n, T::ZERO);
    f(&mut out);
    out
}

/// A contiguous copy of the view, in the same dtype.
pub(crate) fn contiguous(s: &CpuStorage, l: &Layout) -> CpuStorage {
    let n = l.elem_count();
    match s {
        CpuStorage::F32(v) => CpuStorage::F32(fill(n, |o| {
            copy_strided(v, l.strided(), o).expect(KERNEL_CHECKED)
        })),
        CpuStorage::F64(v) => CpuStorage::F64(fill(n, |o| {
            copy_strided(v, l.strided(), o).expect(KERNEL_CHECKED)
        })),
        CpuStorage::F16(v) => {
            let mut o = zeroed(n, half::f16::ZERO);
            copy_strided(v, l.strided(), &mut o).expect(KERNEL_CHECKED);
            CpuStorage::F16(o)
        }
        CpuStorage::BF16(v) => {
            let mut o = zeroed(n, half::bf16::ZERO);
            copy_strided(v, l.strided(), &mut o).expect(KERNEL_CHECKED);
            CpuStorage::BF16(o)
        }
    }
}

/// The view's elements converted to `dtype`, contiguous.
pub(crate) fn cast(s: &CpuStorage, l: &Layout, dtype: DType) -> CpuStorage {
    fn to<S: Copy + ember_cpu::copy::Cast<D>, D: Copy + Default>(v: &[S], l: &Layout) -> Vec<D> {
        let mut o = zeroed(l.elem_count(), D::default());
        cast_strided(v, l.strided(), &mut o).expect(KERNEL_CHECKED);
        o
    }
    macro_rules! from {
        ($v:expr) => {
            match dtype {
                DType::F32 => CpuStorage::F32(to($v, l)),
                DType::F64 => CpuStorage::F64(to($v, l)),
                DType::F16 => CpuStorage::F16(to($v, l)),
                DType::BF16 => CpuStorage::BF16(to($v, l)),
            }
        };
    }
    match s {
        CpuStorage::F32(v) => from!(v),
        CpuStorage::F64(v) => from!(v),
        CpuStorage::F16(v) => from!(v),
        CpuStorage::BF16(v) => from!(v),
    }
}

/// Storage of `dtype` holding `values` (converted from f64).
pub(crate) fn from_f64(values: &[f64], dtype: DType) -> CpuStorage {
    // Converted straight into the target type (the same `Cast` rounding as `cast`), without an
    // f64 copy first: every loss value becomes a tensor through here, once per step.
    fn to<D: Copy>(values: &[f64]) -> Vec<D>
    where
        f64: ember_cpu::copy::Cast<D>,
    {
        values
            .iter()
            .map(|&v| ember_cpu::copy::Cast::cast(v))
            .collect()
    }
    match dtype {
        DType::F32 => CpuStorage::F32(to(values)),
        DType::F64 => CpuStorage::F64(values.to_vec()),
        DType::F16 => CpuStorage::F16(to(values)),
        DType::BF16 => CpuStorage::BF16(to(values)),
    }
}

/// `n` copies of `value` (rounded once to `dtype`).
pub(crate) fn filled(value: f64, n: usize, dtype: DType) -> CpuStorage {
    match dtype {
        DType::F32 => CpuStorage::F32(vec![value as f32; n]),
        DType::F64 => CpuStorage::F64(vec![value; n]),
        DType::F16 => CpuStorage::F16(vec![half::f16::from_f64(value); n]),
        DType::BF16 => CpuStorage::BF16(vec![half::bf16::from_f64(value); n]),
    }
}

/// y = op(x), contiguous.
pub(crate) fn unary(s: &CpuStorage, l: &Layout, op: UnaryOp) -> CpuStorage {
    let n = l.elem_count();
    let out = match operand(s, l) {
        Operand::F32(x, xl) => Output::F32(fill(n, |o| {
            ember_cpu::unary::unary(op, &x, xl.strided(), o).expect(KERNEL_CHECKED)
        })),
        Operand::F64(x, xl) => Output::F64(fill(n, |o| {
            ember_cpu::unary::unary(op, x, xl.strided(), o).expect(KERNEL_CHECKED)
        })),
    };
    out.into_storage(s.dtype())
}

/// dx = dy * op'(x) from x, y = op(x) and dy, three views of one shape and dtype.
pub(crate) fn unary_backward(
    op: UnaryOp,
    x: &CpuStorage,
    xl: &Layout,
    y: &CpuStorage,
    yl: &Layout,
    dy: &CpuStorage,
    dyl: &Layout,
) -> CpuStorage {
    let n = xl.elem_count();
    let out = match (operand(x, xl), operand(y, yl), operand(dy, dyl)) {
        (Operand::F32(x, xl), Operand::F32(y, yl), Operand::F32(dy, dyl)) => {
            let (x, y, dy) = (
                contiguous_slice(&x, &xl),
                contiguous_slice(&y, &yl),
                contiguous_slice(&dy, &dyl),
            );
            Output::F32(fill(n, |o| {
                ember_cpu::unary::unary_backward(op, &x, &y, &dy, o).expect(KERNEL_CHECKED)
            }))
        }
        (Operand::F64(x, xl), Operand::F64(y, yl), Operand::F64(dy, dyl)) => {
            let (x, y, dy) = (
                contiguous_slice(x, &xl),
                contiguous_slice(y, &yl),
                contiguous_slice(dy, &dyl),
            );
            Output::F64(fill(n, |o| {
                ember_cpu::unary::unary_backward(op, &x, &y, &dy, o).expect(KERNEL_CHECKED)
            }))
        }
        _ => unreachable!("unary_backward operands share a dtype"),
    };
    out.into_storage(x.dtype())
}

/// out = op(a, b) where both layouts already have the output's shape.
pub(crate) fn binary(
    op: BinaryOp,
    a: &CpuStorage,
    al: &Layout,
    b: &CpuStorage,
    bl: &Layout,
) -> CpuStorage {
    let n = al.elem_count();
    let out = match (operand(a, al), operand(b, bl)) {
        (Operand::F32(x, xl), Operand::F32(y, yl)) => Output::F32(fill(n, |o| {
            ember_cpu::binary::binary(op, &x, xl.strided(), &y, yl.strided(), o)
                .expect(KERNEL_CHECKED)
        })),
        (Operand::F64(x, xl), Operand::F64(y, yl)) => Output::F64(fill(n, |o| {
            ember_cpu::binary::binary(op, x, xl.strided(), y, yl.strided(), o)
                .expect(KERNEL_CHECKED)
        })),
        _ => unreachable!("binary operands share a dtype"),
    };
    out.into_storage(a.dtype())
}

/// out = cond ? a : b, all three layouts with the output's shape.
pub(crate) fn where_cond(
    c: &CpuStorage,
    cl: &Layout,
    a: &CpuStorage,
    al: &Layout,
    b: &CpuStorage,
    bl: &Layout,
) -> CpuStorage {
    let n = al.elem_count();
    let out = match (operand(c, cl), operand(a, al), operand(b, bl)) {
        (Operand::F32(c, cl), Operand::F32(x, xl), Operand::F32(y, yl)) => {
            Output::F32(fill(n, |o| {
                ember_cpu::binary::where_cond(
                    &c,
                    cl.strided(),
                    &x,
                    xl.strided(),
                    &y,
                    yl.strided(),
                    o,
                )
                .expect(KERNEL_CHECKED)
            }))
        }
        (Operand::F64(c, cl), Operand::F64(x, xl), Operand::F64(y, yl)) => {
            Output::F64(fill(n, |o| {
                ember_cpu::binary::where_cond(c, cl.strided(), x, xl.strided(), y, yl.strided(), o)
                    .expect(KERNEL_CHECKED)
            }))
        }
        _ => unreachable!("where_cond operands share a dtype"),
    };
    out.into_storage(a.dtype())
}

/// Reduces over `axes` (keepdim layout: reduced extents become 1).
pub(crate) fn reduce(op: ReduceOp, s: &CpuStorage, l: &Layout, axes: &[usize]) -> CpuStorage {
    let n: usize = l
        .shape()
        .iter()
        .enumerate()
        .map(|(d, &e)| if axes.contains(&d) { 1 } else { e })
        .product();
    let out = match operand(s, l) {
        Operand::F32(x, xl) => Output::F32(fill(n, |o| {
            ember_cpu::reduce::reduce(op, &x, xl.strided(), axes, o).expect(KERNEL_CHECKED)
        })),
        Operand::F64(x, xl) => Output::F64(fill(n, |o| {
            ember_cpu::reduce::reduce(op, x, xl.strided(), axes, o).expect(KERNEL_CHECKED)
        })),
    };
    // Arg-reductions return indices: f32 unless the input is f64.
    let dtype = match (op, s.dtype()) {
        (ReduceOp::ArgMax | ReduceOp::ArgMin, DType::F64) => DType::F64,
        (ReduceOp::ArgMax | ReduceOp::ArgMin, _) => DType::F32,
        (_, d) => d,
    };
    out.into_storage(dtype)
}

/// Softmax or log-softmax along the last axis of a contiguous view.
pub(crate) fn softmax_last(s: &CpuStorage, l: &Layout, log: bool) -> CpuStorage {
    let n = l.elem_count();
    let cols = l.shape().last().copied().unwrap_or(1);
    let out = match operand(s, l) {
        Operand::F32(x, xl) => {
            let x = contiguous_slice(&x, &xl);
            Output::F32(fill(n, |o| {
                ember_cpu::reduce::softmax_rows(&x, cols, o, log).expect(KERNEL_CHECKED)
            }))
        }
        Operand::F64(x, xl) => {
            let x = contiguous_slice(x, &xl);
            Output::F64(fill(n, |o| {
                ember_cpu::reduce::softmax_rows(&x, cols, o, log).expect(KERNEL_CHECKED)
            }))
        }
    };
    out.into_storage(s.dtype())
}

/// The view's elements as a contiguous slice, borrowed when already dense.
fn contiguous_slice<'a, T: Float>(x: &'a [T], l: &Layout) -> Cow<'a, [T]> {
    match l.strided().contiguous_range() {
        Some(r) => Cow::Borrowed(&x[r]),
        None => Cow::Owned(fill(l.elem_count(), |o| {
            copy_strided(x, l.strided(), o).expect(KERNEL_CHECKED)
        })),
    }
}

/// The operands of one batched matrix product.
pub(crate) struct MatmulSpec<'a> {
    /// Batch extents (already broadcast: both operands have them).
    pub batch: &'a [usize],
    /// Rows of the result.
    pub m: usize,
    /// Columns of the result.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// Bias of length n added to each row (fused epilogue).
    pub bias: Option<(&'a CpuStorage, &'a Layout)>,
    /// Activation applied at store.
    pub act: ember_cpu::gemm::Activation,
}

/// C = A·B over all batch indices; `al`/`bl` have shape `batch ++ [m, k]` / `batch ++ [k, n]`.
pub(crate) fn matmul(
    spec: &MatmulSpec<'_>,
    a: &CpuStorage,
    al: &Layout,
    b: &CpuStorage,
    bl: &Layout,
) -> CpuStorage {
    // Half-precision operands are widened to f32 inside the GEMM, while it packs them (no
    // widened copy of either operand); the bias (n values) is widened up front.
    let half_bias = || {
        spec.bias.map(|(s, l)| match operand(s, l) {
            Operand::F32(v, vl) => contiguous_slice(&v, &vl).into_owned(),
            Operand::F64(..) => unreachable!("bias shares the dtype"),
        })
    };
    match (a, b) {
        (CpuStorage::F16(x), CpuStorage::F16(y)) => {
            let out = matmul_typed(spec, x, al, y, bl, half_bias().as_deref(), gemm_half);
            return Output::F32(out).into_storage(a.dtype());
        }
        (CpuStorage::BF16(x), CpuStorage::BF16(y)) => {
            let out = matmul_typed(spec, x, al, y, bl, half_bias().as_deref(), gemm_half);
            return Output::F32(out).into_storage(a.dtype());
        }
        _ => {}
    }
    let out = match (operand(a, al), operand(b, bl)) {
        (Operand::F32(x, xl), Operand::F32(y, yl)) => {
            // Borrow a dense f32 bias as it lies; widen or gather anything else once.
            let bias = spec
                .bias
                .map(|(s, l)| match (s, l.strided().contiguous_range()) {
                    (CpuStorage::F32(v), Some(r)) => Cow::Borrowed(&v[r]),
                    _ => match operand(s, l) {
                        Operand::F32(v, vl) => Cow::Owned(contiguous_slice(&v, &vl).into_owned()),
                        Operand::F64(..) => unreachable!("bias shares the dtype"),
                    },
                });
            Output::F32(matmul_typed(
                spec,
                &x,
                &xl,
                &y,
                &yl,
                bias.as_deref(),
                gemm_native,
            ))
        }
        (Operand::F64(x, xl), Operand::F64(y, yl)) => {
            let bias = spec.bias.map(|(s, l)| match operand(s, l) {
                Operand::F64(v, vl) => contiguous_slice(v, &vl),
                Operand::F32(..) => unreachable!("bias shares the dtype"),
            });
            Output::F64(matmul_typed(
                spec,
                x,
                &xl,
                y,
                &yl,
                bias.as_deref(),
                gemm_native,
            ))
        }
        _ => unreachable!("matmul operands share a dtype"),
    };
    out.into_storage(a.dtype())
}

/// One GEMM call of [`matmul_typed`]: operands stored as `S`, computed in `T`.
type GemmFn<S, T> =
    fn(usize, usize, usize, MatRef<'_, S>, MatRef<'_, S>, MatMut<'_, T>, Epilogue<'_, T>);

/// C = A·B (+ epilogue) for operands stored in the product's own type.
fn gemm_native<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: MatMut<'_, T>,
    epi: Epilogue<'_, T>,
) {
    ember_cpu::gemm::gemm(m, n, k, T::ONE, a, b, T::ZERO, c, epi).expect(GEMM_CHECKED);
}

/// Why ember-core's calls of the strided, reduction and index kernels cannot fail: every op
/// checks shapes, axes and indices before any backend call, layouts always lie inside their
/// storage, and outputs are fresh and sized from the same shapes.
pub(crate) const KERNEL_CHECKED: &str = "ember-core checked the shapes, layouts and indices";

/// Why ember-core's GEMM calls cannot fail: matmul and linear check shapes and dtypes before
/// any backend call, layouts always lie inside their storage, and outputs are fresh and dense.
const GEMM_CHECKED: &str = "ember-core checked the operands' shapes and layouts";

/// C = A·B (+ epilogue) in f32 for f16/bf16 operands, widened while packed.
fn gemm_half<S: Widen<f32>>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, S>,
    b: MatRef<'_, S>,
    c: MatMut<'_, f32>,
    epi: Epilogue<'_, f32>,
) {
    ember_cpu::gemm::gemm_widen(m, n, k, 1.0, a, b, 0.0, c, epi).expect(GEMM_CHECKED);
}

fn matmul_typed<S: Copy, T: Float>(
    spec: &MatmulSpec<'_>,
    a: &[S],
    al: &Layout,
    b: &[S],
    bl: &Layout,
    bias: Option<&[T]>,
    run: GemmFn<S, T>,
) -> Vec<T> {
    let (m, n, k) = (spec.m, spec.n, spec.k);
    let nb = spec.batch.len();
    let batches: usize = spec.batch.iter().product();
    let mut out = zeroed(batches * m * n, T::ZERO);
    if m * n == 0 {
        return out;
    }
    let (ars, acs) = (al.strides()[nb], al.strides()[nb + 1]);
    let (brs, bcs) = (bl.strides()[nb], bl.strides()[nb + 1]);
    for (bi, c) in out.chunks_exact_mut(m * n).enumerate() {
        // Offsets of this batch's matrices (batch strides may be 0 for broadcast operands).
        let aoff = al.batch_offset(spec.batch, bi);
        let boff = bl.batch_offset(spec.batch, bi);
        // With k == 0 the operands may be empty; the product is then all zeros plus epilogue.
        let a_data = if k == 0 { &a[..0] } else { &a[aoff..] };
        let b_data = if k == 0 { &b[..0] } else { &b[boff..] };
        run(
            m,
            n,
            k,
            MatRef {
                data: a_data,
                rs: ars,
                cs: acs,
            },
            MatRef {
                data: b_data,
                rs: brs,
                cs: bcs,
            },
            MatMut {
                data: c,
                rs: n,
                cs: 1,
            },
            Epilogue {
                bias,
                act: spec.act,
            },
        );
    }
    out
}

/// The gradients of one Dense layer, from [`linear_backward`].
pub(crate) struct LinearGrads {
    /// dL/dx, `[m, k]`, when asked for.
    pub dx: Option<CpuStorage>,
    /// dL/dw, `[n, k]`.
    pub dw: CpuStorage,
    /// dL/db, `[n]`, when the layer has a bias.
    pub db: Option<CpuStorage>,
}

/// The backward of y = act(x·wᵀ + b) in one call, given g = dL/dy (x `[m, k]`, w `[n, k]`,
/// y and g `[m, n]`): dz = g·act'(y) goes to a scratch buffer instead of a tensor, then
/// dx = dz·w, dw = dzᵀ·x (dzᵀ read through strides) and db = Σ_rows dz. These are the same
/// kernels, in the same order, as the composed rule, so the results are identical; a tiny
/// layer just skips three tensor nodes and their dispatch.
pub(crate) fn linear_backward(
    act: Option<UnaryOp>,
    (x, xl): (&CpuStorage, &Layout),
    (w, wl): (&CpuStorage, &Layout),
    (y, yl): (&CpuStorage, &Layout),
    (g, gl): (&CpuStorage, &Layout),
    want_dx: bool,
    want_db: bool,
) -> LinearGrads {
    let dtype = x.dtype();
    let wrap = |o: Output| o.into_storage(dtype);
    match (
        operand(x, xl),
        operand(w, wl),
        operand(y, yl),
        operand(g, gl),
    ) {
        (Operand::F32(x, xl), Operand::F32(w, wl), Operand::F32(y, yl), Operand::F32(g, gl)) => {
            let (dx, dw, db) = linear_backward_typed(
                act,
                (&x, &xl),
                (&w, &wl),
                (&y, &yl),
                (&g, &gl),
                want_dx,
                want_db,
            );
            LinearGrads {
                dx: dx.map(|v| wrap(Output::F32(v))),
                dw: wrap(Output::F32(dw)),
                db: db.map(|v| wrap(Output::F32(v))),
            }
        }
        (Operand::F64(x, xl), Operand::F64(w, wl), Operand::F64(y, yl), Operand::F64(g, gl)) => {
            let (dx, dw, db) = linear_backward_typed(
                act,
                (x, &xl),
                (w, &wl),
                (y, &yl),
                (g, &gl),
                want_dx,
                want_db,
            );
            LinearGrads {
                dx: dx.map(|v| wrap(Output::F64(v))),
                dw: wrap(Output::F64(dw)),
                db: db.map(|v| wrap(Output::F64(v))),
            }
        }
        _ => unreachable!("linear operands share a dtype"),
    }
}

/// dx (when wanted), dw, db (when wanted) as plain vectors.
type Grads3<T> = (Option<Vec<T>>, Vec<T>, Option<Vec<T>>);

fn linear_backward_typed<T: Float>(
    act: Option<UnaryOp>,
    (x, xl): (&[T], &Layout),
    (w, wl): (&[T], &Layout),
    (y, yl): (&[T], &Layout),
    (g, gl): (&[T], &Layout),
    want_dx: bool,
    want_db: bool,
) -> Grads3<T> {
    let (m, k, n) = (xl.shape()[0], xl.shape()[1], wl.shape()[0]);
    let g = contiguous_slice(g, gl);
    let dz: Cow<'_, [T]> = match act {
        None => g,
        Some(op) => {
            let y = contiguous_slice(y, yl);
            Cow::Owned(fill(m * n, |o| {
                ember_cpu::unary::unary_backward(op, &y, &y, &g, o).expect(KERNEL_CHECKED)
            }))
        }
    };
    // C (mm×nn) = A·B, fresh and contiguous.
    let gemm = |mm: usize, nn: usize, kk: usize, a: MatRef<'_, T>, b: MatRef<'_, T>| {
        let mut out = zeroed(mm * nn, T::ZERO);
        if mm * nn > 0 {
            // With kk == 0 the operands may be empty; the product is then all zeros.
            let (a, b) = if kk == 0 {
                (
                    MatRef {
                        data: &a.data[..0],
                        ..a
                    },
                    MatRef {
                        data: &b.data[..0],
                        ..b
                    },
                )
            } else {
                (a, b)
            };
            ember_cpu::gemm::gemm(
                mm,
                nn,
                kk,
                T::ONE,
                a,
                b,
                T::ZERO,
                MatMut {
                    data: &mut out,
                    rs: nn,
                    cs: 1,
                },
                Epilogue::default(),
            )
            .expect(GEMM_CHECKED);
        }
        out
    };
    // Each operand's offset and its row and column strides.
    let place = |l: &Layout| (l.offset(), l.strides()[0], l.strides()[1]);
    let (xo, xrs, xcs) = place(xl);
    let (wo, wrs, wcs) = place(wl);
    let dzr = MatRef {
        data: &dz[..],
        rs: n,
        cs: 1,
    };
    let dzt = MatRef {
        data: &dz[..],
        rs: 1,
        cs: n,
    };
    let xr = MatRef {
        data: &x[xo.min(x.len())..],
        rs: xrs,
        cs: xcs,
    };
    let wr = MatRef {
        data: &w[wo.min(w.len())..],
        rs: wrs,
        cs: wcs,
    };
    let dx = want_dx.then(|| gemm(m, k, n, dzr, wr));
    let dw = gemm(n, k, m, dzt, xr);
    // Column sums of dz, rows added in order from zero (the order ember-cpu's leading-axis sum
    // uses, so the result matches `dz.sum(&[0])` bit for bit).
    let db = want_db.then(|| {
        let mut out = zeroed(n, T::ZERO);
        for row in dz.chunks_exact(n.max(1)).take(m) {
            for (o, &v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
        out
    });
    (dx, dw, db)
}

/// index_select along `axis`, reading the source as `[outer, dim, inner]` (in place when dense).
pub(crate) fn index_select(s: &CpuStorage, l: &Layout, axis: usize, idx: &[usize]) -> CpuStorage {
    // Read a dense source in place; gather a strided one once.
    let dense;
    let (s, base) = match l.strided().contiguous_range() {
        Some(r) => (s, r.start),
        None => {
            dense = contiguous(s, l);
            (&dense, 0)
        }
    };
    let (outer, dim, inner) = split3(l.shape(), axis);
    let n = outer * idx.len() * inner;
    let len = outer * dim * inner;
    macro_rules! go {
        ($v:expr, $zero:expr, $variant:ident) => {{
            let mut o = zeroed(n, $zero);
            ember_cpu::index::index_select(&$v[base..base + len], outer, dim, inner, idx, &mut o)
                .expect(KERNEL_CHECKED);
            CpuStorage::$variant(o)
        }};
    }
    match s {
        CpuStorage::F32(v) => go!(v, 0f32, F32),
        CpuStorage::F64(v) => go!(v, 0f64, F64),
        CpuStorage::F16(v) => go!(v, half::f16::ZERO, F16),
        CpuStorage::BF16(v) => go!(v, half::bf16::ZERO, BF16),
    }
}

/// The adjoint of index_select: scatters-adds `grad` (`[outer, idx.len(), inner]`) into zeros of
/// `shape`.
pub(crate) fn index_add(
    grad: &CpuStorage,
    gl: &Layout,
    shape: &[usize],
    axis: usize,
    idx: &[usize],
) -> CpuStorage {
    let (outer, dim, inner) = split3(shape, axis);
    let total = shape.iter().product();
    let out = match operand(grad, gl) {
        Operand::F32(g, glay) => {
            let g = contiguous_slice(&g, &glay);
            Output::F32(fill(total, |o| {
                ember_cpu::index::index_add(&g, outer, dim, inner, idx, o).expect(KERNEL_CHECKED)
            }))
        }
        Operand::F64(g, glay) => {
            let g = contiguous_slice(g, &glay);
            Output::F64(fill(total, |o| {
                ember_cpu::index::index_add(&g, outer, dim, inner, idx, o).expect(KERNEL_CHECKED)
            }))
        }
    };
    out.into_storage(grad.dtype())
}

/// gather along `axis` with an index array shaped like the output.
pub(crate) fn gather(
    s: &CpuStorage,
    l: &Layout,
    axis: usize,
    idx: &[usize],
    out_shape: &[usize],
) -> CpuStorage {
    let s = contiguous(s, l);
    let (outer, dim, inner) = split3(l.shape(), axis);
    let n_ax = out_shape[axis];
    let total: usize = out_shape.iter().product();
    macro_rules! go {
        ($v:expr, $zero:expr, $variant:ident) => {{
            let mut o = zeroed(total, $zero);
            ember_cpu::index::gather($v, outer, dim, inner, idx, n_ax, &mut o)
                .expect(KERNEL_CHECKED);
            CpuStorage::$variant(o)
        }};
    }
    match &s {
        CpuStorage::F32(v) => go!(v, 0f32, F32),
        CpuStorage::F64(v) => go!(v, 0f64, F64),
        CpuStorage::F16(v) => go!(v, half::f16::ZERO, F16),
        CpuStorage::BF16(v) => go!(v, half::bf16::ZERO, BF16),
    }
}

/// The adjoint of gather: scatter-adds `grad` into zeros of `shape`.
pub(crate) fn scatter_add(
    grad: &CpuStorage,
    gl: &Layout,
    shape: &[usize],
    axis: usize,
    idx: &[usize],
) -> CpuStorage {
    let (outer, dim, inner) = split3(shape, axis);
    let n_ax = gl.shape()[axis];
    let total = shape.iter().product();
    let out = match operand(grad, gl) {
        Operand::F32(g, glay) => {
            let g = contiguous_slice(&g, &glay);
            Output::F32(fill(total, |o| {
                ember_cpu::index::scatter_add(&g, outer, dim, inner, idx, n_ax, o)
                    .expect(KERNEL_CHECKED)
            }))
        }
        Operand::F64(g, glay) => {
            let g = contiguous_slice(g, &glay);
            Output::F64(fill(total, |o| {
                ember_cpu::index::scatter_add(&g, outer, dim, inner, idx, n_ax, o)
                    .expect(KERNEL_CHECKED)
            }))
        }
    };
    out.into_storage(grad.dtype())
}

/// Splits a shape into (product before axis, extent of axis, product after axis).
pub(crate) fn split3(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

pub(crate) use ember_ops::BceForm;

/// Why ember-core's BCE kernel calls cannot fail: the loss checks that input and target have
/// one shape before any backend call, and the gradient buffer is made that size.
const BCE_CHECKED: &str = "ember-core checked that the BCE input and target shapes match";

/// Sum of per-element BCE losses over two views of equal shape.
pub(crate) fn bce_sum(
    form: BceForm,
    p: &CpuStorage,
    pl: &Layout,
    y: &CpuStorage,
    yl: &Layout,
) -> f64 {
    match (operand(p, pl), operand(y, yl)) {
        (Operand::F32(p, pl), Operand::F32(y, yl)) => {
            let (p, y) = (contiguous_slice(&p, &pl), contiguous_slice(&y, &yl));
            match form {
                BceForm::Probs(eps) => {
                    ember_cpu::loss::bce_probs_sum(&p, &y, eps).expect(BCE_CHECKED)
                }
                BceForm::Logits => ember_cpu::loss::bce_logits_sum(&p, &y).expect(BCE_CHECKED),
            }
        }
        (Operand::F64(p, pl), Operand::F64(y, yl)) => {
            let (p, y) = (contiguous_slice(p, &pl), contiguous_slice(y, &yl));
            match form {
                BceForm::Probs(eps) => {
                    ember_cpu::loss::bce_probs_sum(&p, &y, eps).expect(BCE_CHECKED)
                }
                BceForm::Logits => ember_cpu::loss::bce_logits_sum(&p, &y).expect(BCE_CHECKED),
            }
        }
        _ => unreachable!("bce operands share a dtype"),
    }
}

/// The loss sum and `scale ·` its gradient with respect to `p`, in one pass over the data
/// (ember-cpu's fused kernels): what [`bce_sum`] and [`bce_grad`] give, bit for bit.
pub(crate) fn bce_sum_grad(
    form: BceForm,
    p: &CpuStorage,
    pl: &Layout,
    y: &CpuStorage,
    yl: &Layout,
    scale: f64,
) -> (f64, CpuStorage) {
    use ember_cpu::loss::{bce_logits_sum_grad, bce_probs_sum_grad};
    let n = pl.elem_count();
    let (sum, out) = match (operand(p, pl), operand(y, yl)) {
        (Operand::F32(p, pl), Operand::F32(y, yl)) => {
            let (p, y) = (contiguous_slice(&p, &pl), contiguous_slice(&y, &yl));
            let mut o = zeroed(n, 0f32);
            let sum = match form {
                BceForm::Probs(eps) => bce_probs_sum_grad(&p, &y, eps, scale, &mut o),
                BceForm::Logits => bce_logits_sum_grad(&p, &y, scale, &mut o),
            }
            .expect(BCE_CHECKED);
            (sum, Output::F32(o))
        }
        (Operand::F64(p, pl), Operand::F64(y, yl)) => {
            let (p, y) = (contiguous_slice(p, &pl), contiguous_slice(y, &yl));
            let mut o = zeroed(n, 0f64);
            let sum = match form {
                BceForm::Probs(eps) => bce_probs_sum_grad(&p, &y, eps, scale, &mut o),
                BceForm::Logits => bce_logits_sum_grad(&p, &y, scale, &mut o),
            }
            .expect(BCE_CHECKED);
            (sum, Output::F64(o))
        }
        _ => unreachable!("bce operands share a dtype"),
    };
    (sum, out.into_storage(p.dtype()))
}

/// scale * dBCE/dinput per element, contiguous.
pub(crate) fn bce_grad(
    form: BceForm,
    p: &CpuStorage,
    pl: &Layout,
    y: &CpuStorage,
    yl: &Layout,
    scale: f64,
) -> CpuStorage {
    let n = pl.elem_count();
    let out = match (operand(p, pl), operand(y, yl)) {
        (Operand::F32(p, pl), Operand::F32(y, yl)) => {
            let (p, y) = (contiguous_slice(&p, &pl), contiguous_slice(&y, &yl));
            Output::F32(fill(n, |o| match form {
                BceForm::Probs(eps) => {
                    ember_cpu::loss::bce_probs_grad(&p, &y, eps, scale, o).expect(BCE_CHECKED)
                }
                BceForm::Logits => {
                    ember_cpu::loss::bce_logits_grad(&p, &y, scale, o).expect(BCE_CHECKED)
                }
            }))
        }
        (Operand::F64(p, pl), Operand::F64(y, yl)) => {
            let (p, y) = (contiguous_slice(p, &pl), contiguous_slice(y, &yl));
            Output::F64(fill(n, |o| match form {
                BceForm::Probs(eps) => {
                    ember_cpu::loss::bce_probs_grad(&p, &y, eps, scale, o).expect(BCE_CHECKED)
                }
                BceForm::Logits => {
                    ember_cpu::loss::bce_logits_grad(&p, &y, scale, o).expect(BCE_CHECKED)
                }
            }))
        }
        _ => unreachable!("bce operands share a dtype"),
    };
    out.into_storage(p.dtype())
}
