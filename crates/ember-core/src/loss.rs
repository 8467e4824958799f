//! Loss functions as tensor functions: binary cross-entropy (on probabilities and on logits),
//! mean squared error, and cross-entropy over class indices.
//!
//! The two BCE forms are fused ops (one pass forward, one pass backward, each with its own rule
//! in `fused/bce.rs`), because they sit at the end of every step of the seed model. MSE and
//! cross-entropy are composed from primitives (cross-entropy is `log_softmax` + `gather`), so
//! their gradients come from the primitives' rules.

use crate::error::{Error, Result};
use crate::fused::{BceOp, FusedOp};
use crate::op::Op;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::BceForm;

/// How per-element losses combine into one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reduction {
    /// The mean over elements (NaN for an empty batch).
    #[default]
    Mean,
    /// The sum over elements.
    Sum,
}

/// Keras's clamp for probabilities: BCE uses p in [EPS, 1 − EPS].
pub const BCE_EPS: f64 = 1e-7;

fn check_pair(op: &'static str, input: &Tensor, target: &Tensor) -> Result<()> {
    crate::ops_check_same(op, input, target)?;
    if input.shape() != target.shape() {
        return Err(Error::shape(
            op,
            format!(
                "prediction {:?} and target {:?} must have the same shape",
                input.shape(),
                target.shape()
            ),
        ));
    }
    Ok(())
}

fn scale_for(reduction: Reduction, n: usize) -> f64 {
    match reduction {
        Reduction::Sum => 1.0,
        Reduction::Mean => 1.0 / n as f64,
    }
}

fn fused_bce(
    op: &'static str,
    form: BceForm,
    input: &Tensor,
    target: &Tensor,
    reduction: Reduction,
) -> Result<Tensor> {
    check_pair(op, input, target)?;
    let scale = scale_for(reduction, input.elem_count());
    // When the input's gradient will be needed and the device can, the loss and that gradient
    // come from one pass over the data (the CPU); the gradient waits in the op record for
    // backward. Otherwise the loss alone (on a GPU a device scalar: nothing waits for the host
    // until it is read).
    let wants_grad = crate::grad_mode::is_grad_enabled() && input.requires_grad();
    let set = Tensor::read_set([input, target]);
    let (p, y) = (
        (set.data(0), input.layout()),
        (set.data(1), target.layout()),
    );
    let fused = if wants_grad {
        StorageData::bce_loss_and_grad(form, p, y, scale)?
    } else {
        None
    };
    let (value, input_grad) = match fused {
        Some((value, grad)) => (value, Some(grad)),
        None => (StorageData::bce_loss(form, p, y, scale)?, None),
    };
    drop(set);
    let input_grad = input_grad.map(|g| Tensor::from_storage(g, input.shape(), None));
    let record = Tensor::record(|| {
        Op::Fused(FusedOp::Bce(BceOp {
            input: input.clone(),
            target: target.clone(),
            form,
            scale,
            input_grad,
        }))
    });
    Ok(Tensor::from_storage(value, &[], record))
}

/// Binary cross-entropy on probabilities, with Keras semantics: probabilities are clamped to
/// `[1e-7, 1 − 1e-7]`, so a confident wrong answer costs about 16.1, never infinity.
pub fn binary_cross_entropy(
    probs: &Tensor,
    targets: &Tensor,
    reduction: Reduction,
) -> Result<Tensor> {
    fused_bce(
        "binary_cross_entropy",
        BceForm::Probs(BCE_EPS),
        probs,
        targets,
        reduction,
    )
}

/// Binary cross-entropy on logits in the stable form `max(x,0) − x·y + ln(1 + e^−|x|)`.
pub fn binary_cross_entropy_with_logits(
    logits: &Tensor,
    targets: &Tensor,
    reduction: Reduction,
) -> Result<Tensor> {
    fused_bce(
        "binary_cross_entropy_with_logits",
        BceForm::Logits,
        logits,
        targets,
        reduction,
    )
}

/// Mean (or summed) squared error.
pub fn mse(pred: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    check_pair("mse", pred, target)?;
    let sq = pred.sub(target)?.sqr()?;
    match reduction {
        Reduction::Mean => sq.mean_all(),
        Reduction::Sum => sq.sum_all(),
    }
}

/// Cross-entropy of `logits: [N, C]` against class indices `[N]` (whole numbers in a float
/// tensor): −log_softmax(logits)[i, class_i], averaged or summed over the batch.
pub fn cross_entropy(logits: &Tensor, class_ids: &Tensor, reduction: Reduction) -> Result<Tensor> {
    crate::ops_check_same("cross_entropy", logits, class_ids)?;
    if logits.rank() != 2 || class_ids.shape() != [logits.shape()[0]] {
        return Err(Error::shape(
            "cross_entropy",
            format!(
                "logits {:?} must be [N, C] and class ids {:?} must be [N]",
                logits.shape(),
                class_ids.shape()
            ),
        ));
    }
    let n = logits.shape()[0];
    let picked = logits
        .log_softmax(1)?
        .gather(1, &class_ids.reshape((n, 1))?)?
        .neg()?;
    match reduction {
        Reduction::Mean => picked.mean_all(),
        Reduction::Sum => picked.sum_all(),
    }
}
