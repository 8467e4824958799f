//! Batch normalisation (Ioffe & Szegedy 2015) as a fused op, PyTorch's `F.batch_norm`.
//!
//! The input is `[N, C, ...]`; statistics are per channel over every other axis (N, H, W for
//! images). In training mode (or without running statistics) the batch's mean and biased
//! variance normalise the input, in one kernel pass with the affine transform (`batch_norm` on
//! the dispatch seam), and the running statistics, when given, move toward the batch's:
//! `running = (1 − momentum)·running + momentum·batch`, with the *unbiased* variance
//! (`var·M/(M − 1)`, M values per channel), as PyTorch does. The backward is the closed form
//! through the batch statistics (`batch_norm_backward`: one pass for the per-channel sums, one
//! for dx). In evaluation mode the running statistics are constants and the op is composed of
//! elementwise primitives (a per-channel scale and shift), whose rules give the gradients.
//!
//! Like PyTorch, training mode needs more than one value per channel, and an empty batch gives
//! an empty output and leaves the running statistics alone.

use super::{Fused, FusedOp};
use crate::error::{Error, Result};
use crate::grad_mode::no_grad;
use crate::op::Op;
use crate::storage::StorageData;
use crate::tensor::Tensor;

/// Mode and constants of [`Tensor::batch_norm`]; `Default` is PyTorch's (training, momentum
/// 0.1, eps 1e-5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormOptions {
    /// Normalise with the batch's statistics (and update the running ones).
    pub training: bool,
    /// Weight of the batch statistics in the running update.
    pub momentum: f64,
    /// Added to the variance before the square root.
    pub eps: f64,
}

impl Default for BatchNormOptions {
    fn default() -> Self {
        BatchNormOptions {
            training: true,
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

impl Tensor {
    /// Batch normalisation of `[N, C, ...]` input per channel, PyTorch's
    /// `F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)`.
    ///
    /// `weight` (γ) and `bias` (β) are `[C]` (absent: 1 and 0). `running` is
    /// `(running_mean, running_var)`, each `[C]` and contiguous: read in evaluation mode,
    /// updated in place in training mode (outside autograd). Without running statistics the
    /// batch's are used in both modes.
    pub fn batch_norm(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        running: Option<(&Tensor, &Tensor)>,
        o: BatchNormOptions,
    ) -> Result<Tensor> {
        const OP: &str = "batch_norm";
        let s = self.shape().to_vec();
        if s.len() < 2 {
            return Err(Error::shape(
                OP,
                format!("input {s:?} must be [N, C, ...] (at least 2 dimensions)"),
            ));
        }
        let (n, c) = (s[0], s[1]);
        let l: usize = s[2..].iter().product();
        let check = |what: &str, t: &Tensor| -> Result<()> {
            crate::ops_check_same(OP, self, t)?;
            if t.shape() != [c] {
                return Err(Error::shape(
                    OP,
                    format!("{what} {:?} must be [{c}] for input {s:?}", t.shape()),
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
        if let Some((m, v)) = running {
            check("running_mean", m)?;
            check("running_var", v)?;
        }
        if o.eps.is_nan() || o.eps < 0.0 || !o.momentum.is_finite() {
            return Err(Error::invalid(
                OP,
                format!(
                    "eps {} must be ≥ 0 and momentum {} finite",
                    o.eps, o.momentum
                ),
            ));
        }
        let per_channel = n * l;
        let use_batch = o.training || running.is_none();
        if self.elem_count() == 0 {
            // PyTorch: an empty batch normalises to an empty output, statistics untouched.
            return self.mul_scalar(1.0);
        }
        if !use_batch {
            let (rm, rv) = running.ok_or_else(|| Error::invalid(OP, "no running statistics"))?;
            return self.batch_norm_eval(weight, bias, rm, rv, o.eps);
        }
        if per_channel <= 1 {
            return Err(Error::invalid(
                OP,
                format!("expected more than 1 value per channel when training, got input {s:?}"),
            ));
        }
        let ones;
        let zeros;
        let w = match weight {
            Some(w) => w,
            None => {
                ones = Tensor::ones(c, self.dtype(), self.device())?;
                &ones
            }
        };
        let b = match bias {
            Some(b) => b,
            None => {
                zeros = Tensor::zeros(c, self.dtype(), self.device())?;
                &zeros
            }
        };
        let dims = (n, c, l);
        let set = Tensor::read_set([self, w, b]);
        let [y, mean, var] = StorageData::batch_norm(
            (set.data(0), self.layout()),
            (set.data(1), w.layout()),
            (set.data(2), b.layout()),
            dims,
            o.eps,
        )?;
        drop(set);
        let mean = Tensor::from_storage(mean, &[c], None);
        let var = Tensor::from_storage(var, &[c], None);
        if let (true, Some((rm, rv))) = (o.training, running) {
            let unbiased = per_channel as f64 / (per_channel - 1) as f64;
            let keep = 1.0 - o.momentum;
            no_grad(|| -> Result<()> {
                rm.assign(&rm.mul_scalar(keep)?.add(&mean.mul_scalar(o.momentum)?)?)?;
                rv.assign(
                    &rv.mul_scalar(keep)?
                        .add(&var.mul_scalar(o.momentum * unbiased)?)?,
                )
            })?;
        }
        let record = Tensor::record(|| {
            Op::Fused(FusedOp::BatchNorm(Box::new(BatchNormOp {
                x: self.clone(),
                weight: weight.cloned(),
                bias: bias.cloned(),
                mean: mean.clone(),
                var: var.clone(),
                eps: o.eps,
            })))
        });
        Ok(Tensor::from_storage(y, &s, record))
    }

    /// Evaluation mode: `x·k + (β − mean·k)` with `k = γ / sqrt(var + eps)` per channel,
    /// composed of primitives.
    fn batch_norm_eval(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        rm: &Tensor,
        rv: &Tensor,
        eps: f64,
    ) -> Result<Tensor> {
        let s = self.shape();
        let mut bshape = vec![1; s.len()];
        bshape[1] = s[1];
        let inv = rv.add_scalar(eps)?.sqrt()?.recip()?;
        let k = match weight {
            Some(w) => w.mul(&inv)?,
            None => inv,
        };
        let shift = rm.mul(&k)?.neg()?;
        let shift = match bias {
            Some(b) => b.add(&shift)?,
            None => shift,
        };
        self.mul(&k.reshape(bshape.clone())?)?
            .add(&shift.reshape(bshape)?)
    }
}

/// One recorded training-mode batch norm.
#[derive(Debug, Clone)]
pub(crate) struct BatchNormOp {
    /// The input `[N, C, ...]`.
    pub x: Tensor,
    /// γ, when given.
    pub weight: Option<Tensor>,
    /// β, when given.
    pub bias: Option<Tensor>,
    /// The batch mean `[C]` (a constant of the record).
    pub mean: Tensor,
    /// The biased batch variance `[C]`.
    pub var: Tensor,
    /// The eps of the forward.
    pub eps: f64,
}

impl Fused for BatchNormOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.x);
        if let Some(w) = &self.weight {
            f(w);
        }
        if let Some(b) = &self.bias {
            f(b);
        }
    }

    /// x̂ = (x − mean)·invstd: dβ = Σ g, dγ = Σ g·x̂, dx = γ·invstd/M · (M·g − dβ − x̂·dγ).
    fn backward(&self, _y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let x = &self.x;
        let s = x.shape();
        let c = s[1];
        let dims = (s[0], c, s[2..].iter().product());
        let ones;
        let w = match &self.weight {
            Some(w) => w,
            None => {
                ones = Tensor::ones(c, x.dtype(), x.device())?;
                &ones
            }
        };
        let set = Tensor::read_set([x, g, &self.mean, &self.var, w]);
        let (dx, dw, db) = StorageData::batch_norm_backward(
            (set.data(0), x.layout()),
            (set.data(1), g.layout()),
            (set.data(2), self.mean.layout()),
            (set.data(3), self.var.layout()),
            (set.data(4), w.layout()),
            dims,
            self.eps,
            x.requires_grad(),
        )?;
        drop(set);
        let mut v = Vec::with_capacity(3);
        if let Some(dx) = dx {
            v.push((x.clone(), Tensor::from_storage(dx, s, None)));
        }
        if let Some(w) = &self.weight {
            v.push((w.clone(), Tensor::from_storage(dw, &[c], None)));
        }
        if let Some(b) = &self.bias {
            v.push((b.clone(), Tensor::from_storage(db, &[c], None)));
        }
        Ok(v)
    }
}
