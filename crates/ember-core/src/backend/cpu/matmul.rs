//! Matrix products on host buffers: batched GEMM with the fused Dense epilogue, and the Dense
//! layer's backward in one call.
//!
//! Half-precision operands are widened to f32 inside the GEMM while it packs them (no widened
//! copy of either operand); everything else reads its operands in place through their strides.

use super::{
    CpuFloat, KERNEL_CHECKED, Output, contiguous_slice, fill, operand, per_float, per_float_value,
    zeroed,
};
use crate::backend::MatmulSpec;
use crate::layout::Layout;
use crate::storage::CpuStorage;
use ember_cpu::Float;
use ember_cpu::gemm::{Epilogue, MatMut, MatRef, Widen};
use ember_ops::UnaryOp;
use std::borrow::Cow;

/// C = A·B (+ bias, activation) over all batch indices; `al`/`bl` have shape `batch ++ [m, k]` /
/// `batch ++ [k, n]`; the bias holds n values.
pub(crate) fn matmul(
    spec: &MatmulSpec<'_>,
    (a, al): (&CpuStorage, &Layout),
    (b, bl): (&CpuStorage, &Layout),
    bias: Option<(&CpuStorage, &Layout)>,
) -> CpuStorage {
    // Half-precision operands are widened inside the GEMM; their bias (n values) up front.
    let out = match (a, b) {
        (CpuStorage::F16(x), CpuStorage::F16(y)) => {
            let bias = dense_bias::<f32>(bias);
            Output::F32(matmul_typed(spec, x, al, y, bl, bias.as_deref(), gemm_half))
        }
        (CpuStorage::BF16(x), CpuStorage::BF16(y)) => {
            let bias = dense_bias::<f32>(bias);
            Output::F32(matmul_typed(spec, x, al, y, bl, bias.as_deref(), gemm_half))
        }
        _ => per_float!((operand(a, al), operand(b, bl)) => |x, y| {
            let bias = dense_bias_like(&x.data, bias);
            matmul_typed(
                spec,
                &x.data,
                &x.layout,
                &y.data,
                &y.layout,
                bias.as_deref(),
                gemm_native,
            )
        }),
    };
    out.into_storage(a.dtype())
}

/// The bias as a dense slice of `T` (borrowed when it already is one).
fn dense_bias<'a, T: CpuFloat>(bias: Option<(&'a CpuStorage, &'a Layout)>) -> Option<Cow<'a, [T]>> {
    let (s, l) = bias?;
    // A dense bias of this type is borrowed as it lies (the Dense forward's case).
    if let (Some(v), Some(r)) = (T::slice(s), l.strided().contiguous_range()) {
        return Some(Cow::Borrowed(&v[r]));
    }
    let v =
        T::view(operand(s, l)).expect("the bias shares the operands' dtype (checked by linear)");
    Some(match v.data {
        Cow::Borrowed(d) => contiguous_slice(d, &v.layout),
        Cow::Owned(d) => Cow::Owned(contiguous_slice(&d, &v.layout).into_owned()),
    })
}

/// [`dense_bias`] in the element type of `_like` (names `T` inside a `per_float!` body).
fn dense_bias_like<'a, T: CpuFloat>(
    _like: &[T],
    bias: Option<(&'a CpuStorage, &'a Layout)>,
) -> Option<Cow<'a, [T]>> {
    dense_bias(bias)
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
pub(crate) struct LinearGrads<S> {
    /// dL/dx, `[m, k]`, when asked for.
    pub dx: Option<S>,
    /// dL/dw, `[n, k]`.
    pub dw: S,
    /// dL/db, `[n]`, when the layer has a bias.
    pub db: Option<S>,
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
) -> LinearGrads<CpuStorage> {
    let dtype = x.dtype();
    per_float_value!((operand(x, xl), operand(w, wl), operand(y, yl), operand(g, gl)) => |x, w, y, g| {
        let (dx, dw, db) = linear_backward_typed(
            act,
            (&x.data, &x.layout),
            (&w.data, &w.layout),
            (&y.data, &y.layout),
            (&g.data, &g.layout),
            want_dx,
            want_db,
        );
        let wrap = |v| CpuFloat::output(v).into_storage(dtype);
        LinearGrads {
            dx: dx.map(wrap),
            dw: wrap(dw),
            db: db.map(wrap),
        }
    })
}

/// dx (when wanted), dw, db (when wanted) as plain vectors.
type Grads3<T> = (Option<Vec<T>>, Vec<T>, Option<Vec<T>>);

fn linear_backward_typed<T: CpuFloat>(
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
