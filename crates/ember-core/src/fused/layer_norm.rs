//! Layer normalisation (Ba, Kiros & Hinton 2016) as a fused op, PyTorch's
//! `F.layer_norm(x, normalized_shape=[D], weight, bias, eps)`.
//!
//! Only the last axis is normalised (`normalized_shape` of length 1 — what Transformers use);
//! every other axis is a row index. One kernel pass per row computes the mean and the biased
//! variance (two passes over the row, in f64), writes `y = (x − mean)·rstd·γ + β`, and keeps
//! `mean` and `rstd = 1/√(var + eps)` per row as constants of the record. The backward is the
//! closed form through those statistics (ember-cpu's `layer_norm` module has the formulas):
//! dx per row, dγ and dβ summed over rows in a fixed block order.

use super::{Fused, FusedOp};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::storage::StorageData;
use crate::tensor::Tensor;

impl Tensor {
    /// Layer normalisation over the last axis, PyTorch's `F.layer_norm(x, [D], weight, bias,
    /// eps)` for input `[..., D]`; `weight` (γ) and `bias` (β) are `[D]` (absent: 1 and 0).
    ///
    /// ember supports only the last-axis case (`normalized_shape` of one dimension); normalise
    /// several trailing axes by reshaping them into one first.
    pub fn layer_norm(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        const OP: &str = "layer_norm";
        let s = self.shape().to_vec();
        let Some(&d) = s.last() else {
            return Err(Error::shape(
                OP,
                "input [] must have at least one dimension (the normalised one)",
            ));
        };
        if d == 0 {
            return Err(Error::shape(
                OP,
                format!("input {s:?}: the normalised (last) axis is empty"),
            ));
        }
        let check = |what: &str, t: &Tensor| -> Result<()> {
            crate::ops_check_same(OP, self, t)?;
            if t.shape() != [d] {
                return Err(Error::shape(
                    OP,
                    format!("{what} {:?} must be [{d}] for input {s:?}", t.shape()),
                ));
            }
            Ok(())
        };
        if let Some(w) = weight {
            check("weight", w)?;
        }
        if let Some(b) = bias {
            check("bias", b)?;
        }
        if eps.is_nan() || eps < 0.0 {
            return Err(Error::invalid(OP, format!("eps {eps} must be ≥ 0")));
        }
        let rows = self.elem_count() / d;
        let ones;
        let zeros;
        let w = match weight {
            Some(w) => w,
            None => {
                ones = Tensor::ones(d, self.dtype(), self.device())?;
                &ones
            }
        };
        let b = match bias {
            Some(b) => b,
            None => {
                zeros = Tensor::zeros(d, self.dtype(), self.device())?;
                &zeros
            }
        };
        let set = Tensor::read_set([self, w, b]);
        let [y, mean, rstd] = StorageData::layer_norm(
            (set.data(0), self.layout()),
            (set.data(1), w.layout()),
            (set.data(2), b.layout()),
            (rows, d),
            eps,
        )?;
        drop(set);
        let record = Tensor::record(|| {
            Op::Fused(FusedOp::LayerNorm(Box::new(LayerNormOp {
                x: self.clone(),
                weight: weight.cloned(),
                bias: bias.cloned(),
                mean: Tensor::from_storage(mean, &[rows], None),
                rstd: Tensor::from_storage(rstd, &[rows], None),
            })))
        });
        Ok(Tensor::from_storage(y, &s, record))
    }
}

/// One recorded layer norm.
#[derive(Debug, Clone)]
pub(crate) struct LayerNormOp {
    /// The input `[..., D]`.
    pub x: Tensor,
    /// γ, when given.
    pub weight: Option<Tensor>,
    /// β, when given.
    pub bias: Option<Tensor>,
    /// Each row's mean `[rows]` (a constant of the record).
    pub mean: Tensor,
    /// Each row's `1/√(var + eps)` `[rows]`.
    pub rstd: Tensor,
}

impl Fused for LayerNormOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.x);
        if let Some(w) = &self.weight {
            f(w);
        }
        if let Some(b) = &self.bias {
            f(b);
        }
    }

    /// x̂ = (x − mean)·rstd, ĝ = g·γ: dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) per row,
    /// dγ = Σ g·x̂, dβ = Σ g over rows.
    fn backward(&self, _y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let x = &self.x;
        let s = x.shape();
        let d = s.last().copied().unwrap_or(1);
        let rows = self.mean.elem_count();
        let ones;
        let w = match &self.weight {
            Some(w) => w,
            None => {
                ones = Tensor::ones(d, x.dtype(), x.device())?;
                &ones
            }
        };
        let set = Tensor::read_set([x, g, &self.mean, &self.rstd, w]);
        let (dx, dw, db) = StorageData::layer_norm_backward(
            (set.data(0), x.layout()),
            (set.data(1), g.layout()),
            (set.data(2), self.mean.layout()),
            (set.data(3), self.rstd.layout()),
            (set.data(4), w.layout()),
            (rows, d),
            x.requires_grad(),
        )?;
        drop(set);
        let mut v = Vec::with_capacity(3);
        if let Some(dx) = dx {
            v.push((x.clone(), Tensor::from_storage(dx, s, None)));
        }
        if let Some(w) = &self.weight {
            v.push((w.clone(), Tensor::from_storage(dw, &[d], None)));
        }
        if let Some(b) = &self.bias {
            v.push((b.clone(), Tensor::from_storage(db, &[d], None)));
        }
        Ok(v)
    }
}
