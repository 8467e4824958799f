//! Layer norm and attention on host buffers: each function makes its operands dense (16-bit
//! storage widened to f32), calls one ember-cpu kernel (`layer_norm`, `attention`) in the
//! operands' compute float, and narrows the results back to the input's dtype.
//!
//! The ops in `fused/` validate shapes first; a kernel's own check failing here still becomes
//! an [`Error`] naming the op (never a panic).

use super::{CpuFloat, View, operand, zeroed};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::storage::CpuStorage;
use ember_cpu::{attention as ka, layer_norm as kl};
use ember_ops::AttentionSpec;

type A<'a> = (&'a CpuStorage, &'a Layout);

/// The operand as a view of float type `T`, or a dtype error naming `op`.
fn view_of<'a, T: CpuFloat>(op: &'static str, (s, l): A<'a>) -> Result<View<'a, T>> {
    T::view(operand(s, l)).ok_or_else(|| {
        Error::invalid(
            op,
            format!("operands must share a dtype (found {})", s.dtype()),
        )
    })
}

fn kernel_err(op: &'static str) -> impl FnOnce(ember_cpu::OperandError) -> Error {
    move |e| Error::invalid(op, e.to_string())
}

/// True when `x` computes in f64 (else f32, 16-bit types widened).
fn is_f64(x: &CpuStorage) -> bool {
    x.dtype() == DType::F64
}

fn ln_t<T: CpuFloat>(
    x: A<'_>,
    w: A<'_>,
    b: A<'_>,
    (rows, d): (usize, usize),
    eps: f64,
) -> Result<[CpuStorage; 3]> {
    const OP: &str = "layer_norm";
    let (xv, wv, bv) = (
        view_of::<T>(OP, x)?,
        view_of::<T>(OP, w)?,
        view_of::<T>(OP, b)?,
    );
    let (xd, wd, bd) = (xv.dense(), wv.dense(), bv.dense());
    let mut y = zeroed(rows * d, T::ZERO);
    let mut m = zeroed(rows, T::ZERO);
    let mut r = zeroed(rows, T::ZERO);
    kl::layer_norm_forward(
        &xd,
        (rows, d),
        Some(&wd),
        Some(&bd),
        eps,
        &mut y,
        &mut m,
        &mut r,
    )
    .map_err(kernel_err(OP))?;
    let dt = x.0.dtype();
    Ok([y, m, r].map(|v| T::output(v).into_storage(dt)))
}

/// See [`crate::backend::BackendStorage::layer_norm`].
pub(crate) fn layer_norm(
    x: A<'_>,
    w: A<'_>,
    b: A<'_>,
    dims: (usize, usize),
    eps: f64,
) -> Result<[CpuStorage; 3]> {
    if is_f64(x.0) {
        ln_t::<f64>(x, w, b, dims, eps)
    } else {
        ln_t::<f32>(x, w, b, dims, eps)
    }
}

#[allow(clippy::type_complexity)]
fn ln_back_t<T: CpuFloat>(
    [x, g, m, r, w]: [A<'_>; 5],
    (rows, d): (usize, usize),
    want_dx: bool,
) -> Result<(Option<CpuStorage>, CpuStorage, CpuStorage)> {
    const OP: &str = "layer_norm";
    let vs = [x, g, m, r, w].map(|a| view_of::<T>(OP, a));
    let [xv, gv, mv, rv, wv] = vs;
    let (xv, gv, mv, rv, wv) = (xv?, gv?, mv?, rv?, wv?);
    let (xd, gd, md, rd, wd) = (xv.dense(), gv.dense(), mv.dense(), rv.dense(), wv.dense());
    let mut dx = want_dx.then(|| zeroed(rows * d, T::ZERO));
    let (mut dw, mut db) = (zeroed(d, T::ZERO), zeroed(d, T::ZERO));
    kl::layer_norm_backward(
        &xd,
        &gd,
        (rows, d),
        &md,
        &rd,
        Some(&wd),
        dx.as_deref_mut(),
        &mut dw,
        &mut db,
    )
    .map_err(kernel_err(OP))?;
    let dt = x.0.dtype();
    Ok((
        dx.map(|v| T::output(v).into_storage(dt)),
        T::output(dw).into_storage(dt),
        T::output(db).into_storage(dt),
    ))
}

/// See [`crate::backend::BackendStorage::layer_norm_backward`].
#[allow(clippy::type_complexity)]
pub(crate) fn layer_norm_backward(
    ops: [A<'_>; 5],
    dims: (usize, usize),
    want_dx: bool,
) -> Result<(Option<CpuStorage>, CpuStorage, CpuStorage)> {
    if is_f64(ops[0].0) {
        ln_back_t::<f64>(ops, dims, want_dx)
    } else {
        ln_back_t::<f32>(ops, dims, want_dx)
    }
}

fn attn_t<T: CpuFloat>(
    spec: &AttentionSpec,
    [q, k, v]: [A<'_>; 3],
    keep: Option<A<'_>>,
) -> Result<[CpuStorage; 2]> {
    const OP: &str = "scaled_dot_product_attention";
    let (qv, kv, vv) = (
        view_of::<T>(OP, q)?,
        view_of::<T>(OP, k)?,
        view_of::<T>(OP, v)?,
    );
    let mv = keep.map(|m| view_of::<T>(OP, m)).transpose()?;
    let (qd, kd, vd) = (qv.dense(), kv.dense(), vv.dense());
    let md = mv.as_ref().map(|m| m.dense());
    let g = spec.groups();
    let mut out = zeroed(g * spec.tq * spec.dv, T::ZERO);
    let mut lse = zeroed(g * spec.tq, T::ZERO);
    ka::attention_forward(spec, &qd, &kd, &vd, md.as_deref(), &mut out, &mut lse)
        .map_err(kernel_err(OP))?;
    let dt = q.0.dtype();
    Ok([out, lse].map(|v| T::output(v).into_storage(dt)))
}

/// See [`crate::backend::BackendStorage::attention`].
pub(crate) fn attention(
    spec: &AttentionSpec,
    qkv: [A<'_>; 3],
    keep: Option<A<'_>>,
) -> Result<[CpuStorage; 2]> {
    if is_f64(qkv[0].0) {
        attn_t::<f64>(spec, qkv, keep)
    } else {
        attn_t::<f32>(spec, qkv, keep)
    }
}

fn attn_back_t<T: CpuFloat>(
    spec: &AttentionSpec,
    [q, k, v, o, l, g]: [A<'_>; 6],
    keep: Option<A<'_>>,
) -> Result<[CpuStorage; 3]> {
    const OP: &str = "scaled_dot_product_attention";
    let vs = [q, k, v, o, l, g].map(|a| view_of::<T>(OP, a));
    let [qv, kv, vv, ov, lv, gv] = vs;
    let (qv, kv, vv, ov, lv, gv) = (qv?, kv?, vv?, ov?, lv?, gv?);
    let mv = keep.map(|m| view_of::<T>(OP, m)).transpose()?;
    let (qd, kd, vd, od, ld, gd) = (
        qv.dense(),
        kv.dense(),
        vv.dense(),
        ov.dense(),
        lv.dense(),
        gv.dense(),
    );
    let md = mv.as_ref().map(|m| m.dense());
    let mut dq = zeroed(qd.len(), T::ZERO);
    let mut dk = zeroed(kd.len(), T::ZERO);
    let mut dv = zeroed(vd.len(), T::ZERO);
    ka::attention_backward(
        spec,
        &qd,
        &kd,
        &vd,
        md.as_deref(),
        &od,
        &ld,
        &gd,
        &mut dq,
        &mut dk,
        &mut dv,
    )
    .map_err(kernel_err(OP))?;
    let dt = q.0.dtype();
    Ok([dq, dk, dv].map(|v| T::output(v).into_storage(dt)))
}

/// See [`crate::backend::BackendStorage::attention_backward`].
pub(crate) fn attention_backward(
    spec: &AttentionSpec,
    ops: [A<'_>; 6],
    keep: Option<A<'_>>,
) -> Result<[CpuStorage; 3]> {
    if is_f64(ops[0].0) {
        attn_back_t::<f64>(spec, ops, keep)
    } else {
        attn_back_t::<f32>(spec, ops, keep)
    }
}
