//! Binary cross-entropy as one fused op: forward `scale · Σ loss(input, target)` in one pass
//! (`loss.rs`), backward here.

use super::Fused;
use crate::error::Result;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::BceForm;

/// One recorded BCE loss.
#[derive(Debug, Clone)]
pub(crate) struct BceOp {
    /// Probabilities or logits.
    pub input: Tensor,
    /// Targets in [0, 1].
    pub target: Tensor,
    /// Which form.
    pub form: BceForm,
    /// 1 for a sum, 1/n for a mean.
    pub scale: f64,
    /// `scale · d(loss)/d(input)`, when the forward computed it in the same pass as the loss
    /// (backward then only scales it by the upstream gradient). Not an input.
    pub input_grad: Option<Tensor>,
}

impl Fused for BceOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.input);
        f(&self.target);
    }

    /// d/dx = scale · g · loss'(x); d/dy = −scale · g · x (logits) or
    /// −scale · g · (ln p − ln(1−p)) on the clamped p (probabilities).
    fn backward(&self, _y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let BceOp {
            input,
            target,
            form,
            scale,
            input_grad,
        } = self;
        // The upstream gradient is one element. When it is readable in place (host memory) it
        // is folded into the kernel's scale; on a GPU it stays on the device and multiplies the
        // result, so backward never waits for a download.
        let host_g = g.with_storage(|s, l| s.host_value(l.offset()));
        let gs = host_g.unwrap_or(1.0);
        let upstream = |t: Tensor| -> Result<Tensor> {
            match host_g {
                Some(_) => Ok(t),
                None => t.mul(&g.broadcast_to(input.shape())?),
            }
        };
        let dx = match input_grad {
            // Computed with the loss: only the upstream scalar is left to apply.
            Some(gx) if gs == 1.0 => upstream(gx.clone())?,
            Some(gx) => upstream(gx.mul_scalar(gs)?)?,
            None => {
                let set = Tensor::read_set([input, target]);
                let data = StorageData::bce_grad(
                    *form,
                    (set.data(0), input.layout()),
                    (set.data(1), target.layout()),
                    scale * gs,
                )?;
                drop(set);
                upstream(Tensor::from_storage(data, input.shape(), None))?
            }
        };
        let mut v = vec![(input.clone(), dx)];
        if target.requires_grad() {
            let dy = match form {
                BceForm::Logits => input.neg()?,
                BceForm::Probs(eps) => {
                    let p = input.clamp(*eps, 1.0 - eps)?;
                    p.log()?.sub(&p.neg()?.add_scalar(1.0)?.log()?)?.neg()?
                }
            };
            v.push((target.clone(), upstream(dy.mul_scalar(scale * gs)?)?));
        }
        Ok(v)
    }
}
