//! Pooling as fused ops: max and average pooling over windows (2-D, and 1-D as its height-1
//! case), adaptive and global average pooling. Each op validates its input, calls one method
//! of the dispatch seam (`pool2d`, `adaptive_avg_pool2d`) and records itself; the backward rules
//! are here.
//!
//! Semantics are PyTorch's (`torch.nn.functional.max_pool2d`, `avg_pool2d`,
//! `adaptive_avg_pool2d`): NCHW input (a 3-D `[C, H, W]` input is one image), the stride
//! defaults to the kernel, padding is at most half the kernel, max pooling ignores padding
//! (−∞), average pooling counts it in the divisor unless `count_include_pad` is off, and
//! `ceil_mode` rounds the output extent up. Max pooling's backward routes each output's
//! gradient to the first maximum of its window in row-major order (PyTorch's CPU choice; a NaN
//! is always the maximum). These ops are first-order: their backward is not itself recorded.

use super::{Fused, FusedOp};
use crate::backend::PoolIndices;
use crate::error::{Error, Result};
use crate::op::Op;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::{Axis, Pool2dSpec, PoolKind};

/// The window of a pooling op, as PyTorch's arguments: `[height, width]` pairs.
///
/// `PoolOptions::new(2)` is a 2×2 window with stride 2 (PyTorch's default stride is the
/// kernel), no padding and no dilation; the builder methods change one field each. 1-D pooling
/// reads only the width entries (index 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolOptions {
    /// Window extents.
    pub kernel: [usize; 2],
    /// Steps between windows.
    pub stride: [usize; 2],
    /// Implicit padding on both sides (at most half the kernel).
    pub padding: [usize; 2],
    /// Steps between window taps (max pooling only; average pooling needs 1).
    pub dilation: [usize; 2],
    /// Round the output extent up (PyTorch's `ceil_mode`).
    pub ceil_mode: bool,
    /// Average pooling: count padded zeros in the divisor (PyTorch's default, `true`).
    pub count_include_pad: bool,
}

impl PoolOptions {
    /// A square `kernel`×`kernel` window with stride `kernel`.
    pub fn new(kernel: usize) -> PoolOptions {
        PoolOptions::rect(kernel, kernel)
    }

    /// A `kh`×`kw` window with stride equal to it.
    pub fn rect(kh: usize, kw: usize) -> PoolOptions {
        PoolOptions {
            kernel: [kh, kw],
            stride: [kh, kw],
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// The same stride along both axes.
    pub fn stride(self, s: usize) -> PoolOptions {
        PoolOptions {
            stride: [s, s],
            ..self
        }
    }

    /// The same padding along both axes.
    pub fn padding(self, p: usize) -> PoolOptions {
        PoolOptions {
            padding: [p, p],
            ..self
        }
    }

    /// The same dilation along both axes.
    pub fn dilation(self, d: usize) -> PoolOptions {
        PoolOptions {
            dilation: [d, d],
            ..self
        }
    }

    /// Sets `ceil_mode`.
    pub fn ceil_mode(self, on: bool) -> PoolOptions {
        PoolOptions {
            ceil_mode: on,
            ..self
        }
    }

    /// Sets `count_include_pad`.
    pub fn count_include_pad(self, on: bool) -> PoolOptions {
        PoolOptions {
            count_include_pad: on,
            ..self
        }
    }

    /// The 1-D window (the width entries) as a 2-D one of height 1.
    fn height_one(self) -> PoolOptions {
        PoolOptions {
            kernel: [1, self.kernel[1]],
            stride: [1, self.stride[1]],
            padding: [0, self.padding[1]],
            dilation: [1, self.dilation[1]],
            ..self
        }
    }
}

/// The input's `[N, C, H, W]` view: itself for rank 4, a batch of one for rank 3.
pub(crate) fn as_nchw(op: &'static str, x: &Tensor) -> Result<(Tensor, bool)> {
    match x.rank() {
        4 => Ok((x.clone(), false)),
        3 => Ok((x.unsqueeze(0)?, true)),
        _ => Err(Error::shape(
            op,
            format!("input {:?} must be [N, C, H, W] (or [C, H, W])", x.shape()),
        )),
    }
}

/// `y` back to the caller's rank (the batch axis of one removed when it was added).
pub(crate) fn from_nchw(y: Tensor, added: bool) -> Result<Tensor> {
    if added { y.squeeze(0) } else { Ok(y) }
}

/// The spec of pooling `x4` (`[N, C, H, W]`) by `o`, validated, the message naming the op, the
/// input shape and the options.
fn pool_spec(op: &'static str, x4: &Tensor, kind: PoolKind, o: &PoolOptions) -> Result<Pool2dSpec> {
    let s = x4.shape();
    let axis = |i: usize| Axis {
        input: s[2 + i],
        kernel: o.kernel[i],
        stride: o.stride[i],
        dilation: o.dilation[i],
        pad_begin: o.padding[i],
        pad_end: o.padding[i],
    };
    let spec = Pool2dSpec {
        batch: s[0],
        channels: s[1],
        kind,
        ceil_mode: o.ceil_mode,
        h: axis(0),
        w: axis(1),
    };
    let bad = |why: String| {
        Error::invalid(
            op,
            format!(
                "input {s:?} with kernel {:?}, stride {:?}, padding {:?}, dilation {:?}: {why}",
                o.kernel, o.stride, o.padding, o.dilation
            ),
        )
    };
    spec.validate().map_err(bad)?;
    if !matches!(kind, PoolKind::Max) && o.dilation != [1, 1] {
        return Err(bad("average pooling has no dilation".into()));
    }
    if matches!(kind, PoolKind::Max) && s[2].saturating_mul(s[3]) > u32::MAX as usize {
        return Err(bad(
            "an input plane over 2³² elements is not supported".into()
        ));
    }
    Ok(spec)
}

/// Pools `x` by `spec` and records the op.
fn pool(x4: &Tensor, spec: Pool2dSpec) -> Result<Tensor> {
    let want_argmax = crate::grad_mode::is_grad_enabled() && x4.requires_grad();
    let (y, argmax) = x4.with_storage(|s, l| StorageData::pool2d((s, l), &spec, want_argmax))?;
    let record = Tensor::record(|| {
        Op::Fused(FusedOp::Pool(Box::new(PoolOp {
            x: x4.clone(),
            spec,
            argmax,
        })))
    });
    Ok(Tensor::from_storage(y, &spec.output_shape(), record))
}

impl Tensor {
    /// 2-D max pooling of `[N, C, H, W]` (or `[C, H, W]`) input, as PyTorch's
    /// `F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)`.
    ///
    /// ```
    /// use ember_core::{Device, Tensor, PoolOptions};
    /// let x = Tensor::from_vec((0..16).map(|v| v as f32).collect(), (1, 1, 4, 4), Device::Cpu)?;
    /// let y = x.max_pool2d(PoolOptions::new(2))?;
    /// assert_eq!(y.to_vec::<f32>()?, vec![5.0, 7.0, 13.0, 15.0]);
    /// # Ok::<(), ember_core::Error>(())
    /// ```
    pub fn max_pool2d(&self, o: PoolOptions) -> Result<Tensor> {
        let (x4, added) = as_nchw("max_pool2d", self)?;
        let spec = pool_spec("max_pool2d", &x4, PoolKind::Max, &o)?;
        from_nchw(pool(&x4, spec)?, added)
    }

    /// 2-D average pooling, as PyTorch's `F.avg_pool2d(x, kernel, stride, padding, ceil_mode,
    /// count_include_pad)` (no `divisor_override`).
    pub fn avg_pool2d(&self, o: PoolOptions) -> Result<Tensor> {
        let (x4, added) = as_nchw("avg_pool2d", self)?;
        let kind = PoolKind::Avg {
            count_include_pad: o.count_include_pad,
        };
        let spec = pool_spec("avg_pool2d", &x4, kind, &o)?;
        from_nchw(pool(&x4, spec)?, added)
    }

    /// 1-D max pooling of `[N, C, L]` input: the 2-D op on `[N, C, 1, L]` with the width
    /// entries of `o` (`PoolOptions::new(k)` sets both).
    pub fn max_pool1d(&self, o: PoolOptions) -> Result<Tensor> {
        self.pool1d("max_pool1d", PoolKind::Max, o)
    }

    /// 1-D average pooling of `[N, C, L]` input (see [`Tensor::max_pool1d`]).
    pub fn avg_pool1d(&self, o: PoolOptions) -> Result<Tensor> {
        let kind = PoolKind::Avg {
            count_include_pad: o.count_include_pad,
        };
        self.pool1d("avg_pool1d", kind, o)
    }

    fn pool1d(&self, op: &'static str, kind: PoolKind, o: PoolOptions) -> Result<Tensor> {
        if self.rank() != 3 {
            return Err(Error::shape(
                op,
                format!("input {:?} must be [N, C, L]", self.shape()),
            ));
        }
        let x4 = self.unsqueeze(2)?;
        let spec = pool_spec(op, &x4, kind, &o.height_one())?;
        pool(&x4, spec)?.squeeze(2)
    }

    /// Adaptive average pooling to `output` = (height, width), PyTorch's
    /// `F.adaptive_avg_pool2d`: output `i` of an axis averages input elements
    /// `floor(i·in/out) .. ceil((i+1)·in/out)`.
    pub fn adaptive_avg_pool2d(&self, output: (usize, usize)) -> Result<Tensor> {
        const OP: &str = "adaptive_avg_pool2d";
        let (x4, added) = as_nchw(OP, self)?;
        let s = x4.shape().to_vec();
        if output.0 == 0 || output.1 == 0 || s[2] == 0 || s[3] == 0 {
            return Err(Error::invalid(
                OP,
                format!(
                    "input {s:?} to output {}×{}: spatial extents must be non-empty",
                    output.0, output.1
                ),
            ));
        }
        let planes = (s[0] * s[1], (s[2], s[3]));
        let y =
            x4.with_storage(|st, l| StorageData::adaptive_avg_pool2d((st, l), planes, output))?;
        let record = Tensor::record(|| {
            Op::Fused(FusedOp::AdaptivePool(Box::new(AdaptivePoolOp {
                x: x4.clone(),
                output,
            })))
        });
        let y = Tensor::from_storage(y, &[s[0], s[1], output.0, output.1], record);
        from_nchw(y, added)
    }

    /// Global average pooling: the mean of every plane, `[N, C, 1, 1]` (PyTorch's
    /// `AdaptiveAvgPool2d(1)`).
    pub fn global_avg_pool2d(&self) -> Result<Tensor> {
        self.adaptive_avg_pool2d((1, 1))
    }
}

/// One recorded max or average pooling.
#[derive(Debug, Clone)]
pub(crate) struct PoolOp {
    /// The `[N, C, H, W]` input.
    pub x: Tensor,
    /// The window.
    pub spec: Pool2dSpec,
    /// Max pooling's argmax per output (made when x needed a gradient).
    pub argmax: Option<PoolIndices>,
}

impl Fused for PoolOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.x);
    }

    /// Max: dx\[argmax(o)\] += g\[o\]. Average: every real element of window o gets g\[o\] / divisor.
    fn backward(&self, _y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let dx = g.with_storage(|s, l| {
            StorageData::pool2d_backward((s, l), &self.spec, self.argmax.as_ref())
        })?;
        Ok(vec![(
            self.x.clone(),
            Tensor::from_storage(dx, self.x.shape(), None),
        )])
    }
}

/// One recorded adaptive average pooling.
#[derive(Debug, Clone)]
pub(crate) struct AdaptivePoolOp {
    /// The `[N, C, H, W]` input.
    pub x: Tensor,
    /// Output extents.
    pub output: (usize, usize),
}

impl Fused for AdaptivePoolOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.x);
    }

    /// Every element of bin o gets g\[o\] / (bin height) / (bin width).
    fn backward(&self, _y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let s = self.x.shape();
        let planes = (s[0] * s[1], (s[2], s[3]));
        let dx = g.with_storage(|st, l| {
            StorageData::adaptive_avg_pool2d_backward((st, l), planes, self.output)
        })?;
        Ok(vec![(self.x.clone(), Tensor::from_storage(dx, s, None))])
    }
}
