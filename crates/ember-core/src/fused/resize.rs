//! Nearest upsampling and padding as fused ops: forward through the dispatch seam
//! (`upsample_nearest2d`, `pad2d`), backward rules here. Both are linear in the input, so each
//! backward is the adjoint: upsampling's sums every input's block of the gradient, padding's
//! crops it (constant) or folds the mirrored border back onto its sources (reflect).

use super::pool::{as_nchw, from_nchw};
use super::{Fused, FusedOp};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::{Pad2d, PadMode};

impl Tensor {
    /// Nearest upsampling of `[N, C, H, W]` (or `[C, H, W]`) input by integer factors
    /// `(sh, sw)`: PyTorch's `F.interpolate(x, scale_factor=(sh, sw), mode="nearest")`, exact
    /// in integers.
    pub fn upsample_nearest2d(&self, scale: (usize, usize)) -> Result<Tensor> {
        const OP: &str = "upsample_nearest2d";
        let (x4, added) = as_nchw(OP, self)?;
        let s = x4.shape().to_vec();
        let out = s[2]
            .checked_mul(scale.0)
            .zip(s[3].checked_mul(scale.1))
            .filter(|_| scale.0 > 0 && scale.1 > 0);
        let Some((oh, ow)) = out else {
            return Err(Error::invalid(
                OP,
                format!(
                    "input {s:?}: scale factors {}×{} must be ≥ 1 and keep the size in range",
                    scale.0, scale.1
                ),
            ));
        };
        let n = [s[0], s[1], oh, ow]
            .iter()
            .fold(1usize, |a, &d| a.saturating_mul(d));
        crate::tensor::reserve(OP, n, self.dtype())?;
        let planes = (s[0] * s[1], (s[2], s[3]));
        let y = x4.with_storage(|st, l| StorageData::upsample_nearest2d((st, l), planes, scale))?;
        let record = Tensor::record(|| {
            Op::Fused(FusedOp::Resize(Box::new(ResizeOp {
                x: x4.clone(),
                kind: Resize::Upsample(scale),
            })))
        });
        from_nchw(
            Tensor::from_storage(y, &[s[0], s[1], oh, ow], record),
            added,
        )
    }

    /// Pads the last two dimensions by `pads` (`(left, right, top, bottom)`, PyTorch's `F.pad`
    /// order) with a constant or the reflection of the input. Any rank ≥ 2; a rank-1 tensor may
    /// be padded along its one dimension (top and bottom 0). Reflect pads must be smaller than
    /// the extents they pad.
    pub fn pad(&self, pads: Pad2d, mode: PadMode) -> Result<Tensor> {
        const OP: &str = "pad";
        let shape = self.shape().to_vec();
        let r = shape.len();
        let (lead, h, w) = match r {
            0 => (1, 1, 1),
            1 => (1, 1, shape[0]),
            _ => (shape[..r - 2].iter().product(), shape[r - 2], shape[r - 1]),
        };
        if r == 0 || (r == 1 && (pads.top > 0 || pads.bottom > 0)) {
            return Err(Error::shape(
                OP,
                format!("input {shape:?} has no dimensions to pad by {pads:?}"),
            ));
        }
        pads.validate(mode, h, w)
            .map_err(|e| Error::invalid(OP, format!("input {shape:?}: {e}")))?;
        let Some((oh, ow)) = pads.output(h, w) else {
            return Err(Error::invalid(
                OP,
                format!("input {shape:?}: padding overflows"),
            ));
        };
        let mut out_shape = shape.clone();
        out_shape[r - 1] = ow;
        if r >= 2 {
            out_shape[r - 2] = oh;
        }
        crate::tensor::reserve(OP, lead.saturating_mul(oh).saturating_mul(ow), self.dtype())?;
        let planes = (lead, (h, w));
        let y = self.with_storage(|st, l| StorageData::pad2d((st, l), planes, pads, mode))?;
        let record = Tensor::record(|| {
            Op::Fused(FusedOp::Resize(Box::new(ResizeOp {
                x: self.clone(),
                kind: Resize::Pad(pads, mode),
            })))
        });
        Ok(Tensor::from_storage(y, &out_shape, record))
    }
}

/// Which resize a [`ResizeOp`] recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resize {
    /// Nearest upsampling by these factors.
    Upsample((usize, usize)),
    /// Padding.
    Pad(Pad2d, PadMode),
}

/// One recorded upsampling or padding.
#[derive(Debug, Clone)]
pub(crate) struct ResizeOp {
    /// The input (`[N, C, H, W]` for upsampling; any rank for padding).
    pub x: Tensor,
    /// What was done.
    pub kind: Resize,
}

impl Fused for ResizeOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.x);
    }

    /// The adjoint of the (linear) forward.
    fn backward(&self, _y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let s = self.x.shape();
        let r = s.len();
        let dx = match self.kind {
            Resize::Upsample(scale) => {
                let planes = (s[0] * s[1], (s[2], s[3]));
                g.with_storage(|st, l| {
                    StorageData::upsample_nearest2d_backward((st, l), planes, scale)
                })?
            }
            Resize::Pad(pads, mode) => {
                let planes = match r {
                    1 => (1, (1, s[0])),
                    _ => (s[..r - 2].iter().product(), (s[r - 2], s[r - 1])),
                };
                g.with_storage(|st, l| StorageData::pad2d_backward((st, l), planes, pads, mode))?
            }
        };
        Ok(vec![(self.x.clone(), Tensor::from_storage(dx, s, None))])
    }
}
