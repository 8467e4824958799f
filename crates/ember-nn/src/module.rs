//! The `Module` trait: what every layer, and `Sequential` itself, provides.
//!
//! A module maps a tensor to a tensor, owns zero or more parameters (variables the optimizer
//! updates), may own buffers (state such as BatchNorm's running statistics that is saved in
//! checkpoints but not trained), and may behave differently in training and evaluation (Dropout,
//! BatchNorm). Names are local ("weight", "bias"); `Sequential` prefixes them to make the
//! model-wide names stored in checkpoints.
//!
//! Training or evaluation is an argument of each call, `forward(x, training)`, as in Keras's
//! `layer(x, training=...)`, not a mode stored in the module: `fit` passes `true`, `evaluate`
//! and `predict` pass `false`, and nothing has to be switched back afterwards. A plain `bool`
//! was chosen over a two-value enum because it is what Keras and Flax use and there is no
//! third mode to anticipate.

use crate::error::Result;
use ember_core::Tensor;

/// A building block of a network.
pub trait Module {
    /// Applies the module to a batch `x` (first dimension = batch). `training` selects the
    /// training behaviour (Dropout drops, BatchNorm normalises with the batch's statistics and
    /// updates its running ones) or the evaluation behaviour (Dropout is the identity,
    /// BatchNorm uses its running statistics and changes nothing).
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor>;

    /// The trainable parameters with their local names, in a fixed order.
    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Non-trained state saved with the model (BatchNorm's running statistics), local names.
    fn buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// The layer's type name as shown by `summary()`, e.g. `"Dense"`.
    fn kind(&self) -> &'static str;

    /// A one-line description for diagrams, e.g. `"Dense 10, relu"`.
    fn describe(&self) -> String {
        self.kind().to_string()
    }

    /// The output shape (without the batch dimension) for an input of shape `input` (without
    /// the batch dimension), or an error naming the layer if it cannot take that input.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    /// The module as `Any`, for code that treats one layer type specially (DP-SGD's
    /// per-example clipping finds Dense layers this way); `None` by default.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// The regularisation penalty this module adds to the loss (Keras's `kernel_regularizer`),
    /// or `None`.
    fn regularization_loss(&self) -> Result<Option<Tensor>> {
        Ok(None)
    }
}
