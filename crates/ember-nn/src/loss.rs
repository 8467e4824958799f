//! Loss functions, as Keras computes them.
//!
//! Each loss reduces to the mean over the batch (Keras's default `sum_over_batch_size`). The
//! arithmetic lives in ember-core's `loss` module, which builds them from differentiable
//! primitives; this file chooses the right one, checks and adapts the target's shape, and names
//! the loss in errors.

use crate::error::{Result, config_err};
use ember_core::{Reduction, Tensor, loss};

/// A loss between a model's output and the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Loss {
    /// Binary cross-entropy on probabilities (a sigmoid output), clamped to `[1e-7, 1 - 1e-7]`
    /// as Keras does. Targets are 0/1 of the same shape as the output (`[N]` is accepted for an
    /// `[N, 1]` output).
    BinaryCrossEntropy,
    /// Binary cross-entropy on logits (no sigmoid on the output); numerically stable.
    BinaryCrossEntropyWithLogits,
    /// Softmax cross-entropy on logits `[N, C]` against class ids `[N]` (Keras's
    /// `SparseCategoricalCrossentropy(from_logits=True)`, PyTorch's `CrossEntropyLoss`), or on
    /// sequence logits `[N, T, C]` against ids `[N, T]`, averaged over all N·T positions.
    CrossEntropy,
    /// Mean squared error.
    MeanSquaredError,
}

impl Loss {
    /// The loss's name as Keras writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::BinaryCrossEntropy => "binary_crossentropy",
            Loss::BinaryCrossEntropyWithLogits => "binary_crossentropy_from_logits",
            Loss::CrossEntropy => "sparse_categorical_crossentropy_from_logits",
            Loss::MeanSquaredError => "mean_squared_error",
        }
    }

    /// The mean loss over the batch as a scalar tensor (differentiable).
    pub fn compute(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        match self {
            Loss::CrossEntropy if output.rank() == 3 => {
                // Sequences (Keras semantics): logits [N, T, C] against ids [N, T], the mean
                // over all N·T positions (padded targets count unless the data leaves them out).
                let s = output.shape().to_vec();
                if target.shape() != &s[..2] {
                    return config_err(format!(
                        "{}: targets for sequence logits {s:?} must be class ids {:?}, got {:?}",
                        self.name(),
                        &s[..2],
                        target.shape()
                    ));
                }
                let flat = output.reshape(vec![s[0] * s[1], s[2]])?;
                let ids = target.reshape(vec![s[0] * s[1]])?;
                Ok(loss::cross_entropy(&flat, &ids, Reduction::Mean)?)
            }
            Loss::CrossEntropy => {
                if output.rank() != 2 {
                    return config_err(format!(
                        "{}: output must be [batch, classes] or [batch, steps, classes], got {:?}",
                        self.name(),
                        output.shape()
                    ));
                }
                let ids = if target.rank() == 2 && target.shape()[1] == 1 {
                    target.squeeze(1)?
                } else {
                    target.clone()
                };
                if ids.rank() != 1 || ids.shape()[0] != output.shape()[0] {
                    return config_err(format!(
                        "{}: targets must be class ids [{}], got {:?}",
                        self.name(),
                        output.shape()[0],
                        target.shape()
                    ));
                }
                Ok(loss::cross_entropy(output, &ids, Reduction::Mean)?)
            }
            _ => {
                let target = self.match_shape(output, target)?;
                Ok(match self {
                    Loss::BinaryCrossEntropy => {
                        loss::binary_cross_entropy(output, &target, Reduction::Mean)?
                    }
                    Loss::BinaryCrossEntropyWithLogits => {
                        loss::binary_cross_entropy_with_logits(output, &target, Reduction::Mean)?
                    }
                    _ => loss::mse(output, &target, Reduction::Mean)?,
                })
            }
        }
    }

    /// Reshapes a target with as many elements as the output to the output's shape (so `[N]`
    /// labels work with an `[N, 1]` output), or says why it cannot.
    fn match_shape(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        if output.shape() == target.shape() {
            return Ok(target.clone());
        }
        if output.elem_count() == target.elem_count()
            && output.shape().first() == target.shape().first()
        {
            return Ok(target.reshape(output.shape().to_vec())?);
        }
        config_err(format!(
            "{}: output {:?} and target {:?} do not match",
            self.name(),
            output.shape(),
            target.shape()
        ))
    }

    /// Whether the model's outputs are logits (so metrics must apply a sigmoid or argmax).
    pub fn outputs_logits(&self) -> bool {
        matches!(
            self,
            Loss::BinaryCrossEntropyWithLogits | Loss::CrossEntropy
        )
    }
}
