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
//!
//! Padded sequence batches carry a **mask** beside the data, as in Keras: a `[N, T]` tensor of
//! 1.0 (a real step) and 0.0 (padding), made by the layer that knows where the padding is (an
//! `Embedding` with `mask_zero`) and read by the layers that must ignore padded steps (recurrent
//! layers, attention, masked pooling). [`Module::forward_masked`] is that path; a layer that
//! neither makes nor reads masks passes the mask on while its output keeps the `[N, T, ...]`
//! leading axes (a Dense or Dropout applied per step), and refuses it otherwise (a Flatten
//! would mix padded steps into real features: Keras raises there too).

use crate::error::{NnError, Result};
use ember_core::Tensor;

/// A building block of a network.
pub trait Module {
    /// Applies the module to a batch `x` (first dimension = batch). `training` selects the
    /// training behaviour (Dropout drops, BatchNorm normalises with the batch's statistics and
    /// updates its running ones) or the evaluation behaviour (Dropout is the identity,
    /// BatchNorm uses its running statistics and changes nothing).
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor>;

    /// Applies the module to `x` with an optional padding mask `[N, T]` (1.0 = real step, 0.0 =
    /// padding) and returns the output with the mask for the next layer.
    ///
    /// The default calls [`Module::forward`] and passes the mask on unchanged when the output
    /// still starts with the mask's `[N, T]`; if it does not, the layer cannot keep track of
    /// the padded steps and the call fails with an error naming the layer. Layers that make a
    /// mask (an `Embedding` with `mask_zero`) or read one (recurrent layers, attention, masked
    /// pooling) override this.
    fn forward_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        training: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let y = self.forward(x, training)?;
        let Some(mask) = mask else {
            return Ok((y, None));
        };
        if y.rank() >= 2 && mask.rank() == 2 && y.shape()[..2] == mask.shape()[..] {
            return Ok((y, Some(mask.clone())));
        }
        Err(NnError::Config(format!(
            "{}: got a padding mask {:?} but its output {:?} no longer has the [batch, time] \
             axes; put a layer that consumes the mask (a recurrent layer with \
             return_sequences = false, or a masked pooling layer) before it",
            self.describe(),
            mask.shape(),
            y.shape()
        )))
    }

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
