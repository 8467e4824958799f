//! ember-cpu: the CPU kernels of ember.
//!
//! Every kernel here is a plain function over raw slices with sizes and element strides. It knows
//! nothing of `Tensor`, autograd or devices, which keeps each kernel benchmarkable and testable on
//! its own and keeps `ember-core` free of arithmetic loops. `ember-core` converts its `Layout` into
//! a [`Strided`] view and calls these functions; swapping a kernel for a faster one touches only
//! this crate.
//!
//! Modules, one family each:
//! - [`strided`]: the strided view type and the row-major offset walk every kernel shares.
//! - [`element`]: the [`Float`] trait (f32 and f64) that kernels are generic over.
//! - [`unary`], [`binary`]: elementwise maps, forward and activation backward.
//! - [`vmath`]: branch-free f32 exp/ln/tanh/sigmoid/GELU/softplus that vectorise, with error bounds.
//! - [`reduce`]: sums, extrema and arg-extrema over any set of axes; softmax along the last axis.
//! - [`gemm`]: general matrix multiply with arbitrary strides and a Dense epilogue.
//! - [`conv`]: 2-D convolution forward, backward-data and backward-weight as tiled GEMMs.
//! - [`cache`]: the data caches detected at run time and the GEMM blocking derived from them.
//! - [`isa`]: the run-time choice between the AVX2+FMA and portable kernel paths.
//! - [`copy`]: strided copies and dtype casts.
//! - [`error`]: the operand checks (lengths, views, indices) every public kernel makes first.
//! - [`index`]: index_select, gather and their scatter-add adjoints.
//! - [`embedding`]: the deterministic (sorted, per-row) backward of an embedding lookup.
//! - [`loss`]: fused binary cross-entropy forward and backward.
//! - [`optim`]: fused per-parameter optimizer updates.
//! - [`par`]: the fixed chunking that makes parallel results independent of the thread count.
//! - [`pool`]: max/average/adaptive pooling, nearest upsampling, 2-D padding, batch-norm
//!   statistics, forward and backward over NCHW planes.
//! - [`recurrent`]: simple RNN, LSTM and GRU sequences: the step loop and its exact backward.
//! - [`layer_norm`]: layer normalisation over the last axis, forward and backward.
//! - [`attention`]: tiled (FlashAttention-2) scaled dot-product attention, forward and backward.
//! - [`peak`]: FMA-throughput and copy-bandwidth probes, the yardsticks of `ember bench`.

pub mod attention;
pub mod binary;
pub mod cache;
pub mod conv;
pub mod copy;
pub mod element;
pub mod embedding;
pub mod error;
pub mod gemm;
pub mod index;
pub mod isa;
pub mod layer_norm;
pub mod loss;
pub mod optim;
pub mod par;
pub mod peak;
pub mod pool;
pub mod qgemm;
pub mod recurrent;
pub mod reduce;
pub mod sparse;
pub mod strided;
pub mod unary;
pub mod verf;
pub mod vmath;

pub use element::Float;
pub use error::{LengthMismatch, OperandError};
pub use strided::Strided;
