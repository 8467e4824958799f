//! Pooling, nearest upsampling, padding and batch norm on host buffers: each function makes
//! its operands dense (16-bit storage widened to f32) and calls one ember-cpu `pool` kernel.
//!
//! The ops in `fused/` validate shapes and geometry first; a kernel's own check failing here
//! still becomes an [`Error`] naming the op (never a panic).

use super::{CpuFloat, operand, per_float_value, zeroed};
use crate::backend::PoolIndices;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::storage::CpuStorage;
use ember_cpu::Float;
use ember_cpu::pool as k;
use ember_ops::{Pad2d, PadMode, Pool2dSpec, PoolKind};
use std::sync::Arc;

/// A kernel's error as ember-core's, naming the op.
fn kernel_err(op: &'static str) -> impl FnOnce(ember_cpu::OperandError) -> Error {
    move |e| Error::invalid(op, e.to_string())
}

/// A fresh output of `n` elements filled by `f`, or `f`'s error.
fn run<T: Float>(
    op: &'static str,
    n: usize,
    f: impl FnOnce(&mut [T]) -> std::result::Result<(), ember_cpu::OperandError>,
) -> Result<Vec<T>> {
    let mut o = zeroed(n, T::ZERO);
    f(&mut o).map_err(kernel_err(op))?;
    Ok(o)
}

/// Max or average pooling; the argmax too when asked (max only).
pub(crate) fn pool2d(
    x: &CpuStorage,
    xl: &Layout,
    spec: &Pool2dSpec,
    want_argmax: bool,
) -> Result<(CpuStorage, Option<PoolIndices>)> {
    let n: usize = spec.output_shape().iter().product();
    let is_max = matches!(spec.kind, PoolKind::Max);
    let mut arg = (want_argmax && is_max).then(|| zeroed(n, 0u32));
    let out = per_float_value!((operand(x, xl)) => |v| {
        let xd = v.dense();
        let o = if is_max {
            run("max_pool2d", n, |o| k::max_pool2d(&xd, spec, o, arg.as_deref_mut()))?
        } else {
            run("avg_pool2d", n, |o| k::avg_pool2d(&xd, spec, o))?
        };
        CpuFloat::output(o)
    });
    Ok((
        out.into_storage(x.dtype()),
        arg.map(|a| PoolIndices::Cpu(Arc::new(a))),
    ))
}

/// The pooling backward: dx from g (max routes through `argmax`).
pub(crate) fn pool2d_backward(
    g: &CpuStorage,
    gl: &Layout,
    spec: &Pool2dSpec,
    argmax: Option<&PoolIndices>,
) -> Result<CpuStorage> {
    let n = spec.batch * spec.channels * spec.h.input * spec.w.input;
    let out = per_float_value!((operand(g, gl)) => |v| {
        let gd = v.dense();
        let o = match (spec.kind, argmax) {
            (PoolKind::Max, Some(PoolIndices::Cpu(a))) => run("max_pool2d", n, |o| {
                k::max_pool2d_backward(&gd, a, spec, o)
            })?,
            (PoolKind::Max, _) => {
                return Err(Error::invalid(
                    "max_pool2d",
                    "the backward needs the forward's argmax on the CPU",
                ));
            }
            _ => run("avg_pool2d", n, |o| k::avg_pool2d_backward(&gd, spec, o))?,
        };
        CpuFloat::output(o)
    });
    Ok(out.into_storage(g.dtype()))
}

/// Adaptive average pooling of `planes` planes `input` → `output`.
pub(crate) fn adaptive_avg_pool2d(
    x: &CpuStorage,
    xl: &Layout,
    planes: usize,
    input: (usize, usize),
    output: (usize, usize),
) -> Result<CpuStorage> {
    let n = planes * output.0 * output.1;
    let out = per_float_value!((operand(x, xl)) => |v| {
        let xd = v.dense();
        CpuFloat::output(run("adaptive_avg_pool2d", n, |o| {
            k::adaptive_avg_pool2d(&xd, planes, input, output, o)
        })?)
    });
    Ok(out.into_storage(x.dtype()))
}

/// The backward of [`adaptive_avg_pool2d`].
pub(crate) fn adaptive_avg_pool2d_backward(
    g: &CpuStorage,
    gl: &Layout,
    planes: usize,
    input: (usize, usize),
    output: (usize, usize),
) -> Result<CpuStorage> {
    let n = planes * input.0 * input.1;
    let out = per_float_value!((operand(g, gl)) => |v| {
        let gd = v.dense();
        CpuFloat::output(run("adaptive_avg_pool2d", n, |o| {
            k::adaptive_avg_pool2d_backward(&gd, planes, input, output, o)
        })?)
    });
    Ok(out.into_storage(g.dtype()))
}

/// Nearest upsampling by integer factors.
pub(crate) fn upsample_nearest2d(
    x: &CpuStorage,
    xl: &Layout,
    planes: usize,
    input: (usize, usize),
    scale: (usize, usize),
) -> Result<CpuStorage> {
    let n = planes * input.0 * scale.0 * input.1 * scale.1;
    let out = per_float_value!((operand(x, xl)) => |v| {
        let xd = v.dense();
        CpuFloat::output(run("upsample_nearest2d", n, |o| {
            k::upsample_nearest2d(&xd, planes, input, scale, o)
        })?)
    });
    Ok(out.into_storage(x.dtype()))
}

/// The backward of [`upsample_nearest2d`].
pub(crate) fn upsample_nearest2d_backward(
    g: &CpuStorage,
    gl: &Layout,
    planes: usize,
    input: (usize, usize),
    scale: (usize, usize),
) -> Result<CpuStorage> {
    let n = planes * input.0 * input.1;
    let out = per_float_value!((operand(g, gl)) => |v| {
        let gd = v.dense();
        CpuFloat::output(run("upsample_nearest2d", n, |o| {
            k::upsample_nearest2d_backward(&gd, planes, input, scale, o)
        })?)
    });
    Ok(out.into_storage(g.dtype()))
}

/// Padding of the last two dimensions.
pub(crate) fn pad2d(
    x: &CpuStorage,
    xl: &Layout,
    planes: usize,
    input: (usize, usize),
    pads: Pad2d,
    mode: PadMode,
) -> Result<CpuStorage> {
    let (oh, ow) = pads
        .output(input.0, input.1)
        .ok_or_else(|| Error::invalid("pad", format!("padding {pads:?} overflows")))?;
    let n = planes * oh * ow;
    let out = per_float_value!((operand(x, xl)) => |v| {
        let xd = v.dense();
        CpuFloat::output(run("pad", n, |o| k::pad2d(&xd, planes, input, pads, mode, o))?)
    });
    Ok(out.into_storage(x.dtype()))
}

/// The backward of [`pad2d`].
pub(crate) fn pad2d_backward(
    g: &CpuStorage,
    gl: &Layout,
    planes: usize,
    input: (usize, usize),
    pads: Pad2d,
    mode: PadMode,
) -> Result<CpuStorage> {
    let n = planes * input.0 * input.1;
    let out = per_float_value!((operand(g, gl)) => |v| {
        let gd = v.dense();
        CpuFloat::output(run("pad", n, |o| {
            k::pad2d_backward(&gd, planes, input, pads, mode, o)
        })?)
    });
    Ok(out.into_storage(g.dtype()))
}

/// Batch norm with batch statistics: `[y, mean, var]` (`var` biased).
pub(crate) fn batch_norm(
    (x, xl): (&CpuStorage, &Layout),
    (w, wl): (&CpuStorage, &Layout),
    (b, bl): (&CpuStorage, &Layout),
    dims: (usize, usize, usize),
    eps: f64,
) -> Result<[CpuStorage; 3]> {
    let (n, c) = (xl.elem_count(), dims.1);
    let r = per_float_value!((operand(x, xl), operand(w, wl), operand(b, bl)) => |xv, wv, bv| {
        let (xd, wd, bd) = (xv.dense(), wv.dense(), bv.dense());
        let (mut y, mut m, mut v) = (zeroed(n, Float::ZERO), zeroed(c, Float::ZERO), zeroed(c, Float::ZERO));
        k::batch_norm_forward(&xd, dims, Some(&wd), Some(&bd), eps, &mut y, &mut m, &mut v)
            .map_err(kernel_err("batch_norm"))?;
        [CpuFloat::output(y), CpuFloat::output(m), CpuFloat::output(v)]
    });
    let d = x.dtype();
    let [y, m, v] = r;
    Ok([y.into_storage(d), m.into_storage(d), v.into_storage(d)])
}

/// The training-mode batch-norm backward: `(dx when wanted, dweight, dbias)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_backward(
    (x, xl): (&CpuStorage, &Layout),
    (g, gl): (&CpuStorage, &Layout),
    (m, ml): (&CpuStorage, &Layout),
    (v, vl): (&CpuStorage, &Layout),
    (w, wl): (&CpuStorage, &Layout),
    dims: (usize, usize, usize),
    eps: f64,
    want_dx: bool,
) -> Result<(Option<CpuStorage>, CpuStorage, CpuStorage)> {
    let (n, c) = (xl.elem_count(), dims.1);
    let ops = (
        operand(x, xl),
        operand(g, gl),
        operand(m, ml),
        operand(v, vl),
        operand(w, wl),
    );
    let (dx, dw, db) = per_float_value!((ops.0, ops.1, ops.2, ops.3, ops.4) => |xv, gv, mv, vv, wv| {
        let (xd, gd, md, vd, wd) = (xv.dense(), gv.dense(), mv.dense(), vv.dense(), wv.dense());
        let mut dx = want_dx.then(|| zeroed(n, Float::ZERO));
        let (mut dw, mut db) = (zeroed(c, Float::ZERO), zeroed(c, Float::ZERO));
        k::batch_norm_backward(
            &xd, &gd, dims, &md, &vd, Some(&wd), eps, dx.as_deref_mut(), &mut dw, &mut db,
        )
        .map_err(kernel_err("batch_norm"))?;
        (dx.map(CpuFloat::output), CpuFloat::output(dw), CpuFloat::output(db))
    });
    let d = x.dtype();
    Ok((
        dx.map(|o| o.into_storage(d)),
        dw.into_storage(d),
        db.into_storage(d),
    ))
}
