//! Fused ops: several primitives computed in one kernel pass, plugged into autograd through one
//! extension point.
//!
//! The op record (`op.rs`) lists primitives plus one variant, [`Op::Fused`](crate::op::Op),
//! holding a [`FusedOp`]. A fused op has
//! - a forward per device: one method of [`BackendStorage`](crate::backend::BackendStorage),
//!   implemented by each device's storage (`matmul` with its epilogue for Linear, `bce_loss` and
//!   `bce_loss_and_grad` for the BCE losses), called from the op's public function;
//! - a backward: [`Fused::backward`], the vector-Jacobian product, in the op's own file here.
//!
//! Dispatch over [`FusedOp`] is a `match` (static), not a trait object.
//!
//! Adding one (a convolution, attention, a recurrent cell) means: a struct with its inputs and
//! parameters implementing [`Fused`], a variant of [`FusedOp`], and its forward method in the
//! backend trait. The enum (rather than a boxed trait object) keeps recording allocation-free:
//! a training step records a Linear per layer.

mod attention;
mod bce;
mod conv;
mod embedding;
mod layer_norm;
mod linear;
mod mixed;
mod norm;
mod pool;
mod recurrent;
mod resize;

pub(crate) use attention::AttentionOp;
pub use attention::{AttentionOptions, scaled_dot_product_attention};
pub(crate) use bce::BceOp;
pub(crate) use conv::ConvOp;
pub(crate) use embedding::EmbeddingOp;
pub(crate) use layer_norm::LayerNormOp;
pub(crate) use linear::LinearOp;
pub(crate) use mixed::MixedLinearOp;
pub(crate) use norm::BatchNormOp;
pub use norm::BatchNormOptions;
pub use pool::PoolOptions;
pub(crate) use pool::{AdaptivePoolOp, PoolOp};
pub(crate) use recurrent::RecurrentOp;
pub use recurrent::{RecurrentInputs, RecurrentOutput, recurrent};
pub(crate) use resize::ResizeOp;

use crate::error::Result;
use crate::tensor::Tensor;

/// What autograd needs from a fused op.
pub(crate) trait Fused {
    /// Calls `f` on each tensor the op read, in order.
    fn visit_inputs(&self, f: impl FnMut(&Tensor));
    /// (input, gradient) pairs given the output `y` and the gradient `g` of the loss w.r.t. it.
    fn backward(&self, y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>>;
}

/// Every fused op ember records. The image ops are boxed: their records (geometry, options,
/// saved indices) are several times a Linear's, and every node of every graph carries an `Op`
/// by value — unboxed they made the seed model's training step 4.7 % more instructions.
#[derive(Debug, Clone)]
pub(crate) enum FusedOp {
    /// A Dense layer, `act(x·wᵀ + b)`.
    Linear(LinearOp),
    /// Binary cross-entropy (probabilities or logits), reduced.
    Bce(BceOp),
    /// Max or average pooling over windows.
    Pool(Box<PoolOp>),
    /// Adaptive (and global) average pooling.
    AdaptivePool(Box<AdaptivePoolOp>),
    /// Nearest upsampling or padding.
    Resize(Box<ResizeOp>),
    /// Training-mode batch normalisation.
    BatchNorm(Box<BatchNormOp>),
    /// A 2-D convolution or transposed convolution (1-D ones are views of it).
    Conv(Box<ConvOp>),
    /// An embedding lookup (its record holds the ids).
    Embedding(Box<EmbeddingOp>),
    /// A recurrent sequence (simple RNN, LSTM, GRU).
    Recurrent(Box<RecurrentOp>),
    /// Layer normalisation over the last axis.
    LayerNorm(Box<LayerNormOp>),
    /// Scaled dot-product attention (tiled, FlashAttention-2).
    Attention(Box<AttentionOp>),
    /// A Dense layer with its GEMM operands rounded to bf16/f16 (mixed precision).
    MixedLinear(MixedLinearOp),
}

/// Dispatches to the op (statically: the backward walk visits every node's inputs).
impl FusedOp {
    /// See [`Fused::visit_inputs`].
    #[inline]
    pub(crate) fn visit_inputs(&self, f: impl FnMut(&Tensor)) {
        match self {
            FusedOp::Linear(op) => op.visit_inputs(f),
            FusedOp::Bce(op) => op.visit_inputs(f),
            FusedOp::Pool(op) => op.visit_inputs(f),
            FusedOp::AdaptivePool(op) => op.visit_inputs(f),
            FusedOp::Resize(op) => op.visit_inputs(f),
            FusedOp::BatchNorm(op) => op.visit_inputs(f),
            FusedOp::Conv(op) => op.visit_inputs(f),
            FusedOp::Embedding(op) => op.visit_inputs(f),
            FusedOp::Recurrent(op) => op.visit_inputs(f),
            FusedOp::LayerNorm(op) => op.visit_inputs(f),
            FusedOp::Attention(op) => op.visit_inputs(f),
            FusedOp::MixedLinear(op) => op.visit_inputs(f),
        }
    }

    /// See [`Fused::backward`].
    pub(crate) fn backward(&self, y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        match self {
            FusedOp::Linear(op) => op.backward(y, g),
            FusedOp::Bce(op) => op.backward(y, g),
            FusedOp::Pool(op) => op.backward(y, g),
            FusedOp::AdaptivePool(op) => op.backward(y, g),
            FusedOp::Resize(op) => op.backward(y, g),
            FusedOp::BatchNorm(op) => op.backward(y, g),
            FusedOp::Conv(op) => op.backward(y, g),
            FusedOp::Embedding(op) => op.backward(y, g),
            FusedOp::Recurrent(op) => op.backward(y, g),
            FusedOp::LayerNorm(op) => op.backward(y, g),
            FusedOp::Attention(op) => op.backward(y, g),
            FusedOp::MixedLinear(op) => op.backward(y, g),
        }
    }
}
