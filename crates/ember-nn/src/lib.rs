//! ember-nn: layers, losses, optimizers, metrics, a Keras-like `Sequential` + `fit`, data
//! loading and checkpoints, on top of ember-core's public API only.
//!
//! The shape of a program follows the Keras script ember grew from:
//!
//! ```no_run
//! use ember_nn::prelude::*;
//! use rand::{SeedableRng, rngs::StdRng};
//! # fn main() -> ember_nn::Result<()> {
//! let mut rng = StdRng::seed_from_u64(0);
//! let mut model = Sequential::new()
//!     .add(Dense::new(10, 10, Activation::Relu, &mut rng)?)
//!     .add(Dense::new(10, 5, Activation::Relu, &mut rng)?)
//!     .add(Dense::new(5, 1, Activation::Sigmoid, &mut rng)?)
//!     .compile(Optimizer::adam(), Loss::BinaryCrossEntropy, &[Metric::Accuracy]);
//! let x = Tensor::rand(0.0, 1.0, (100, 10), DType::F32, Device::Cpu, &mut rng)?;
//! let y = Tensor::rand(0.0, 1.0, (100, 1), DType::F32, Device::Cpu, &mut rng)?.ge_scalar(0.5)?;
//! let history = model.fit(&x, &y, FitConfig { epochs: 100, batch_size: 10, validation_split: 0.2, ..FitConfig::default() })?;
//! let eval = model.evaluate(&x, &y, 32)?;
//! let probs = model.predict(&x, 32)?;
//! # Ok(()) }
//! ```
//!
//! Modules: [`layers`] and [`pooling`] (image layers, BatchNorm2d), [`module`] (the `Module` trait), [`sequential`], [`loss`],
//! Modules: [`layers`], [`conv`] (convolution layers) and [`module`] (the `Module` trait), [`sequential`], [`loss`],
//! [`regularizer`], [`optim`], [`metrics`], [`model`] (compile/fit/evaluate/predict),
//! [`callbacks`], [`data`] (CSV, splits, scalers, IDX), [`checkpoint`] (safetensors), [`init`],
//! [`attention`] (layer norm, multi-head attention, positions, Transformer blocks, masked
//! 1-D pooling), [`spec`] (model files: a network as JSON or TOML), [`augment`] (random image shifts),
//! [`image`] (PNG grids of samples), [`privacy`] (the RDP accountant), [`dp`] (DP-SGD training),
//! [`dist`] (data-parallel training across MPI ranks, bit-identical for any rank count),
//! [`quantize`] (int8 dynamic and static quantization of Dense networks), [`prune`] and
//! [`shrink`] (unstructured and channel pruning), [`sparse`] (CSR inference), [`distill`]
//! (knowledge distillation), [`embedding`] (the Embedding layer), [`text`] (character
//! tokenizer, language-model windows, text CSVs),
//! [`recurrent`] (SimpleRNN, LSTM, GRU), [`mixed`] (bf16/f16 mixed precision and loss scaling).

pub mod attention;
pub mod augment;
pub mod callbacks;
pub mod checkpoint;
pub mod conv;
pub mod data;
pub mod dist;
pub mod dist_buckets;
pub mod distill;
pub mod dp;
pub(crate) mod dp_conv;
pub mod embedding;
pub mod error;
pub mod image;
pub mod init;
pub mod layers;
pub mod loss;
pub mod metrics;
pub mod mixed;
pub mod model;
pub mod model_checkpoint;
pub mod module;
pub mod optim;
pub mod pooling;
pub mod privacy;
pub mod prune;
pub mod quantize;
pub mod recurrent;
pub mod regularizer;
pub mod sequential;
pub mod shrink;
pub mod sparse;
pub mod spec;
pub mod text;

pub use error::{NnError, Result};

/// The names most programs need, in one import.
pub mod prelude {
    pub use crate::callbacks::{Callback, Control, EarlyStopping, EpochHook};
    pub use crate::conv::{Conv1d, Conv2d, ConvOptions, ConvTranspose2d, Padding};
    pub use crate::data::{LabelColumn, Scaler, Table};
    pub use crate::embedding::{Embedding, EmbeddingOptions};
    pub use crate::error::{NnError, Result};
    pub use crate::init::Initializer;
    pub use crate::layers::{
        ActivationLayer, BatchNorm1d, Dense, DenseOptions, Dropout, Flatten, LeakyRelu, Softmax,
    };
    pub use crate::loss::Loss;
    pub use crate::metrics::{ConfusionMatrix, Metric};
    pub use crate::mixed::{LossScaling, Precision, autocast};
    pub use crate::model::{EpochLogs, Evaluation, FitConfig, History, HostReads, Model};
    pub use crate::model_checkpoint::{ModelCheckpoint, ResumePoint};
    pub use crate::module::Module;
    pub use crate::optim::{Algorithm, Clip, Optimizer, Schedule};
    pub use crate::pooling::{
        AvgPool2d, BatchNorm2d, GlobalAvgPool2d, MaxPool2d, Pad, Reshape, Upsample, ZeroPad2d,
    };
    pub use crate::recurrent::{Recurrent, RecurrentOptions};
    pub use crate::regularizer::Regularizer;
    pub use crate::sequential::Sequential;
    pub use ember_core::{Activation, DType, Device, Tensor};
    pub use ember_core::{Pad2d, PadMode, PoolOptions};
}
