//! The recurrent sequence op on host buffers: dense copies of the operands where needed, then
//! ember-cpu's `recurrent::forward` / `recurrent::backward` in the operands' float type.

use super::{CpuFloat, Output, contiguous_slice, operand, zeroed};
use crate::backend::{Arg, RecurrentArgs, RecurrentBackwardArgs};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::storage::CpuStorage;
use ember_cpu::recurrent as k;
use ember_ops::RecurrentSpec;
use std::borrow::Cow;

/// The operand's elements in row-major order as `T` (borrowed when dense already).
fn dense<'a, T: CpuFloat>((s, l): Arg<'a, CpuStorage>) -> Result<Cow<'a, [T]>> {
    let v = T::view(operand(s, l))
        .ok_or_else(|| Error::invalid("recurrent", "the operands' dtypes differ"))?;
    Ok(match v.data {
        Cow::Borrowed(d) => contiguous_slice(d, &v.layout),
        Cow::Owned(d) => Cow::Owned(contiguous_slice(&d, &v.layout).into_owned()),
    })
}

fn dense_opt<'a, T: CpuFloat>(a: Option<Arg<'a, CpuStorage>>) -> Result<Option<Cow<'a, [T]>>> {
    a.map(dense::<T>).transpose()
}

fn kernel_err(e: ember_cpu::OperandError) -> Error {
    Error::invalid("recurrent", e.to_string())
}

fn forward_as<T: CpuFloat>(
    spec: &RecurrentSpec,
    a: &RecurrentArgs<'_, CpuStorage>,
) -> Result<[Output; 2]> {
    let xp = dense::<T>(a.xp)?;
    let h0 = dense::<T>(a.h0)?;
    let c0 = dense_opt::<T>(a.c0)?;
    let w = dense::<T>(a.w_hh)?;
    let b = dense::<T>(a.b_hh)?;
    let m = dense_opt::<T>(a.mask)?;
    let mut out = zeroed(spec.n * spec.t * spec.hidden, T::ZERO);
    let mut saved = zeroed(k::saved_len(spec), T::ZERO);
    let args = k::ForwardArgs {
        xp: &xp,
        h0: &h0,
        c0: c0.as_deref().unwrap_or(&[]),
        w_hh: &w,
        b_hh: &b,
        mask: m.as_deref(),
    };
    k::forward(spec, &args, &mut out, &mut saved).map_err(kernel_err)?;
    Ok([T::output(out), T::output(saved)])
}

fn backward_as<T: CpuFloat>(
    spec: &RecurrentSpec,
    a: &RecurrentBackwardArgs<'_, CpuStorage>,
) -> Result<[Output; 5]> {
    let h0 = dense::<T>(a.h0)?;
    let c0 = dense_opt::<T>(a.c0)?;
    let w = dense::<T>(a.w_hh)?;
    let m = dense_opt::<T>(a.mask)?;
    let out = dense::<T>(a.out)?;
    let saved = dense::<T>(a.saved)?;
    let g = dense::<T>(a.g)?;
    let (n, t, h, gh) = (spec.n, spec.t, spec.hidden, spec.gate_width());
    let c0 = c0.as_deref().unwrap_or(&[]);
    let mut dxp = zeroed(n * t * gh, T::ZERO);
    let mut dh0 = zeroed(n * h, T::ZERO);
    let mut dc0 = zeroed(c0.len(), T::ZERO);
    let mut dw = zeroed(gh * h, T::ZERO);
    let mut db = zeroed(gh, T::ZERO);
    let args = k::BackwardArgs {
        h0: &h0,
        c0,
        w_hh: &w,
        mask: m.as_deref(),
        out: &out,
        saved: &saved,
        g: &g,
    };
    let grads = k::Grads {
        dxp: &mut dxp,
        dh0: &mut dh0,
        dc0: &mut dc0,
        dw_hh: &mut dw,
        db_hh: &mut db,
    };
    k::backward(spec, &args, grads).map_err(kernel_err)?;
    Ok([dxp, dh0, dc0, dw, db].map(T::output))
}

/// The forward: `[output, saved]` in the operands' dtype.
pub(crate) fn forward(
    spec: &RecurrentSpec,
    a: RecurrentArgs<'_, CpuStorage>,
) -> Result<[CpuStorage; 2]> {
    let d = a.xp.0.dtype();
    let r = if d == DType::F64 {
        forward_as::<f64>(spec, &a)?
    } else {
        forward_as::<f32>(spec, &a)?
    };
    Ok(r.map(|o| o.into_storage(d)))
}

/// The backward: `[dxp, dh0, dc0, dw_hh, db_hh]` in the operands' dtype.
pub(crate) fn backward(
    spec: &RecurrentSpec,
    a: RecurrentBackwardArgs<'_, CpuStorage>,
) -> Result<[CpuStorage; 5]> {
    let d = a.g.0.dtype();
    let r = if d == DType::F64 {
        backward_as::<f64>(spec, &a)?
    } else {
        backward_as::<f32>(spec, &a)?
    };
    Ok(r.map(|o| o.into_storage(d)))
}
