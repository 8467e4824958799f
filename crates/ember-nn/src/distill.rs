//! Knowledge distillation (Hinton, Vinyals & Dean, 2015): a student trained on the labels and
//! on a teacher's softened predictions.
//!
//! With student logits `s`, teacher logits `t` and temperature `T`, each training step
//! minimises `α·CE(s, labels) + (1 − α)·T²·KL(softmax(t/T) ‖ softmax(s/T))`, the loss of
//! Keras's distillation example and of the issue that asked for it. The `T²` keeps the soft
//! term's gradients on the scale of the hard term's as `T` grows (the soft gradients shrink as
//! `1/T²`). KL is summed over classes and averaged over the batch (PyTorch's
//! `kl_div(reduction="batchmean")`). The teacher runs in evaluation mode (Dropout off,
//! BatchNorm on its running statistics) without recording a graph, once per batch, on the same
//! (augmented) inputs the student sees.
//!
//! Installed with [`Model::distill_from`]; `fit` then trains with it and reports the combined
//! loss. Validation losses and `evaluate` stay the student's own loss on the labels (what the
//! student will be judged by), as in Keras's `Distiller`.

use crate::error::{Result, config_err};
use crate::loss::Loss;
use crate::model::Model;
use crate::module::Module;
use crate::sequential::Sequential;
use ember_core::{Tensor, no_grad};

/// A teacher network and the distillation constants.
pub struct Teacher {
    /// The trained teacher (outputs logits of the same classes as the student).
    pub network: Sequential,
    /// Softening temperature `T > 0`.
    pub temperature: f64,
    /// Weight `α ∈ [0, 1]` of the hard-label loss (`1 − α` goes to the soft term).
    pub alpha: f64,
}

/// `T²·KL(softmax(t/T) ‖ softmax(s/T))` summed over classes (axis 1), averaged over rows.
pub fn soft_target_loss(student: &Tensor, teacher: &Tensor, temperature: f64) -> Result<Tensor> {
    if student.shape() != teacher.shape() || student.rank() != 2 {
        return config_err(format!(
            "distillation: student logits {:?} and teacher logits {:?} must both be \
             [batch, classes]",
            student.shape(),
            teacher.shape()
        ));
    }
    let inv_t = 1.0 / temperature;
    let log_q = student.mul_scalar(inv_t)?.log_softmax(1)?;
    let log_p = teacher.mul_scalar(inv_t)?.log_softmax(1)?;
    let p = log_p.exp()?;
    let kl_rows = p.mul(&log_p.sub(&log_q)?)?.sum(&[1], false)?;
    Ok(kl_rows.mean_all()?.mul_scalar(temperature * temperature)?)
}

impl Model {
    /// Trains this model (the student) from now on with `teacher`'s softened outputs as well
    /// as the labels (see the module docs). The student's loss must be
    /// [`Loss::CrossEntropy`] (logits); `temperature > 0`, `alpha` in `[0, 1]`.
    pub fn distill_from(
        &mut self,
        teacher: Sequential,
        temperature: f64,
        alpha: f64,
    ) -> Result<()> {
        if self.loss != Loss::CrossEntropy {
            return config_err(format!(
                "distillation needs a softmax cross-entropy student (logits), the model's \
                 loss is {}",
                self.loss.name()
            ));
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            return config_err(format!(
                "distillation: temperature must be > 0, got {temperature}"
            ));
        }
        if !(0.0..=1.0).contains(&alpha) {
            return config_err(format!(
                "distillation: alpha must be in [0, 1], got {alpha}"
            ));
        }
        self.teacher = Some(Teacher {
            network: teacher,
            temperature,
            alpha,
        });
        Ok(())
    }

    /// Stops distilling: later training uses the labels alone.
    pub fn clear_teacher(&mut self) -> Option<Teacher> {
        self.teacher.take()
    }

    /// The training loss of a batch: the plain loss, or with a teacher
    /// `α·loss + (1 − α)·T²·KL + penalty` (the regularisation penalty unscaled).
    pub(crate) fn training_loss(&self, x: &Tensor, out: &Tensor, y: &Tensor) -> Result<Tensor> {
        let Some(t) = &self.teacher else {
            return self.batch_loss(out, y);
        };
        let hard = self.loss.compute(out, y)?;
        let soft_logits = no_grad(|| t.network.forward(x, false))?.detach();
        let soft = soft_target_loss(out, &soft_logits, t.temperature)?;
        let total = hard
            .mul_scalar(t.alpha)?
            .add(&soft.mul_scalar(1.0 - t.alpha)?)?;
        Ok(match self.network.regularization()? {
            Some(r) => total.add(&r.to_dtype(total.dtype())?)?,
            None => total,
        })
    }
}
