//! Convolutions on host buffers: ember-cpu's conv kernels over dense copies of the operands.
//!
//! The kernels take dense NCHW / OIHW slices, so a strided view (a permuted or sliced
//! tensor) is copied once into a dense buffer (`View::dense`, which borrows when the view is
//! already dense); f16/bf16 tensors compute in f32 and are narrowed back like every CPU op.

use super::{fill, operand, per_float};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::storage::CpuStorage;
use ember_cpu::conv::{self, ConvError};
use ember_ops::Conv2dSpec;

type Arg<'a> = (&'a CpuStorage, &'a Layout);

/// ember-core validated the spec and shapes, so a kernel error here is an internal mismatch;
/// it is still reported, naming the op, never a panic.
fn err(op: &'static str) -> impl Fn(ConvError) -> Error {
    move |e| match e {
        ConvError::Spec { problem, .. } => Error::shape(op, problem),
        e => Error::invalid(op, e.to_string()),
    }
}

/// `x ⋆ w (+ bias)`, `[N, O, OH, OW]`.
pub(crate) fn forward(
    spec: &Conv2dSpec,
    (x, xl): Arg<'_>,
    (w, wl): Arg<'_>,
    bias: Option<Arg<'_>>,
) -> Result<CpuStorage> {
    let n: usize = spec.output_shape().iter().product();
    let dtype = x.dtype();
    // Without a bias, x stands in for the bias operand (so one macro arm covers both).
    let (b, bl) = bias.unwrap_or((x, xl));
    let has_bias = bias.is_some();
    let out = per_float!((operand(x, xl), operand(w, wl), operand(b, bl)) => |x, w, b| {
        let (x, w) = (x.dense(), w.dense());
        let b = has_bias.then(|| b.dense());
        let mut r = Ok(());
        let o = fill(n, |o| r = conv::conv2d_forward(spec, &x, &w, b.as_deref(), o));
        r.map_err(err("conv2d"))?;
        o
    });
    Ok(out.into_storage(dtype))
}

/// The adjoint in the input (`[N, C, H, W]`), plus a per-channel bias when given.
pub(crate) fn backward_data(
    spec: &Conv2dSpec,
    (dy, dyl): Arg<'_>,
    (w, wl): Arg<'_>,
    bias: Option<Arg<'_>>,
) -> Result<CpuStorage> {
    let n: usize = spec.input_shape().iter().product();
    let dtype = dy.dtype();
    let (b, bl) = bias.unwrap_or((dy, dyl));
    let has_bias = bias.is_some();
    let out = per_float!((operand(dy, dyl), operand(w, wl), operand(b, bl)) => |dy, w, b| {
        let (dy, w) = (dy.dense(), w.dense());
        let b = has_bias.then(|| b.dense());
        let mut r = Ok(());
        let o = fill(n, |o| r = conv::conv2d_backward_data(spec, &dy, &w, b.as_deref(), o));
        r.map_err(err("conv2d_backward_data"))?;
        o
    });
    Ok(out.into_storage(dtype))
}

/// The adjoint in the weight, `[O, C/groups, kh, kw]`.
pub(crate) fn backward_weight(
    spec: &Conv2dSpec,
    (x, xl): Arg<'_>,
    (dy, dyl): Arg<'_>,
) -> Result<CpuStorage> {
    let n: usize = spec.weight_shape().iter().product();
    let dtype = x.dtype();
    let out = per_float!((operand(x, xl), operand(dy, dyl)) => |x, dy| {
        let (x, dy) = (x.dense(), dy.dense());
        let mut r = Ok(());
        let o = fill(n, |o| r = conv::conv2d_backward_weight(spec, &x, &dy, o, None));
        r.map_err(err("conv2d_backward_weight"))?;
        o
    });
    Ok(out.into_storage(dtype))
}
