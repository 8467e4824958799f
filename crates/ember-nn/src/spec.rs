//! Model files: a network described as data (JSON or TOML), built into a [`Sequential`].
//!
//! A model file lists the per-example input shape and the layers in order, each with its
//! options, as Keras's model config does (`{"class_name": "Conv2D", "config": {...}}`), written
//! flatter: every layer is one table with a `type` and its options. The layer sizes that follow
//! from the previous layer (a Dense layer's input width, a convolution's input channels) are
//! not written: [`ModelSpec::build`] walks the layers with the running output shape, as Keras
//! infers them, and an impossible stack fails there with the layer's index and the shape it got.
//!
//! ```toml
//! name = "mnist_cnn"
//! input_shape = [1, 28, 28]            # channels, height, width (a table: [features])
//! loss = "sparse_categorical_crossentropy_from_logits"
//! optimizer = { name = "adam", lr = 0.001 }
//! training = { epochs = 5, batch_size = 64 }
//!
//! [[layers]]
//! type = "Conv2d"
//! out_channels = 32
//! kernel_size = 3
//! activation = "relu"
//!
//! [[layers]]
//! type = "Flatten"
//! ```
//!
//! The spec is also stored, as JSON, in every checkpoint `ember train --model` writes (header
//! metadata `ember.model`), with the input scaling (`ember.scaling`), so `ember predict` and
//! `ember evaluate` rebuild the same network and preprocess new data the same way.
//!
//! Unknown keys are errors (a misspelt option must not be ignored silently).

use crate::attention as attn;
use crate::checkpoint;
use crate::conv::{Conv1d, Conv2d, ConvOptions, ConvTranspose2d, Padding};
use crate::error::{NnError, Result, config_err};
use crate::layers::{
    ActivationLayer, BatchNorm1d, Dense, DenseOptions, Dropout, Flatten, LeakyRelu, Softmax,
    parse_activation,
};
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::model::Model;
use crate::module::Module;
use crate::optim::Optimizer;
use crate::pooling::{
    AvgPool2d, BatchNorm2d, GlobalAvgPool2d, MaxPool2d, Reshape, Upsample, ZeroPad2d,
};
use crate::recurrent::Recurrent;
use crate::regularizer::Regularizer;
use crate::sequential::Sequential;
use ember_core::{Activation, Device, PoolOptions};
use ember_core::{CellKind, RnnActivation};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A whole model: input shape, layers, and optionally its loss, optimizer and training
/// settings (command-line flags override the latter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ModelSpec {
    /// A name for messages and summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The shape of one example, without the batch dimension: `[features]` for a table,
    /// `[channels, height, width]` for images, `[channels, length]` for 1-D signals.
    pub input_shape: Vec<usize>,
    /// The layers, applied in order.
    pub layers: Vec<LayerSpec>,
    /// The loss by its Keras name (see [`parse_loss`]); default: chosen from the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<String>,
    /// The optimizer; default: Adam with Keras's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerSpec>,
    /// Training settings; command-line flags given explicitly take precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingSpec>,
}

/// The optimizer of a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OptimizerSpec {
    /// `sgd`, `adam`, `adamw`, `adagrad` or `rmsprop`.
    pub name: String,
    /// Learning rate (default: the optimizer's Keras default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// First-moment decay of Adam/AdamW (Keras's `beta_1`; default 0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_1: Option<f64>,
    /// Momentum of SGD and RMSProp (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// Decoupled weight decay (default: the optimizer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
}

/// Training settings of a model file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TrainingSpec {
    /// Number of epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Samples per batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Fraction of the training rows held out for validation (Keras's `validation_split`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f64>,
    /// Random image shifts of up to this many pixels in each direction, per example and
    /// epoch (augmentation; images only; 0 or absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<usize>,
}

/// A size given once for both spatial axes (`3`) or per axis (`[3, 5]`, height first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size2 {
    /// The same on both axes.
    Same(usize),
    /// Height, width.
    Pair([usize; 2]),
}

impl Size2 {
    /// (height, width).
    pub fn hw(self) -> (usize, usize) {
        match self {
            Size2::Same(v) => (v, v),
            Size2::Pair([h, w]) => (h, w),
        }
    }
}

/// Padding: `"valid"` (none), `"same"` (output as large as the input at stride 1, PyTorch's
/// rule: the odd element goes at the end), or explicit sizes on both sides of each axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PaddingSpec {
    /// `"valid"` or `"same"`.
    Named(PaddingMode),
    /// Explicit, symmetric sizes.
    Size(Size2),
}

/// The named paddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingMode {
    /// No padding.
    Valid,
    /// Pad so that stride-1 output has the input's size.
    Same,
}

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn default_one() -> Size2 {
    Size2::Same(1)
}

fn is_one(s: &Size2) -> bool {
    s.hw() == (1, 1)
}

fn default_valid() -> PaddingSpec {
    PaddingSpec::Named(PaddingMode::Valid)
}

fn is_valid(p: &PaddingSpec) -> bool {
    matches!(p, PaddingSpec::Named(PaddingMode::Valid)) || *p == PaddingSpec::Size(Size2::Same(0))
}

fn default_groups() -> usize {
    1
}

fn is_one_usize(v: &usize) -> bool {
    *v == 1
}

fn default_activation() -> String {
    "linear".into()
}

fn is_linear(s: &String) -> bool {
    s == "linear" || s == "none"
}

/// One layer of a model file, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
#[non_exhaustive]
pub enum LayerSpec {
    /// A fully connected layer on `[N, features]`, or on every step of `[N, T, features]`
    /// (flatten images first).
    Dense {
        /// Output width: a number, or `"auto"` for the width the text pipeline's data needs
        /// (a language model's vocabulary, a text classifier's classes).
        units: VocabSize,
        /// Fused activation (`relu`, `sigmoid`, `tanh`, `gelu`, `gelu_tanh`, `linear`).
        #[serde(default = "default_activation", skip_serializing_if = "is_linear")]
        activation: String,
        /// Whether the layer has a bias.
        #[serde(default = "default_true", skip_serializing_if = "is_true")]
        use_bias: bool,
        /// L1 penalty on the weight.
        #[serde(default, skip_serializing_if = "is_zero")]
        l1: f64,
        /// L2 penalty on the weight.
        #[serde(default, skip_serializing_if = "is_zero")]
        l2: f64,
    },
    /// Dropout of `rate` during training.
    Dropout {
        /// Fraction of elements zeroed.
        rate: f64,
        /// Seed of the masks (default: the build seed + 1 + the layer's index).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
    },
    /// An activation on its own.
    Activation {
        /// Its name, as for `Dense`.
        activation: String,
    },
    /// Leaky ReLU (`max(x, alpha·x)`); Keras's default slope is 0.3, PyTorch's 0.01.
    LeakyRelu {
        /// Slope for negative inputs.
        #[serde(default = "default_leaky_alpha")]
        alpha: f64,
    },
    /// Softmax over the last axis.
    Softmax,
    /// Flattens everything but the batch dimension.
    Flatten,
    /// Batch normalisation over the features of `[N, C]` (Keras's defaults).
    BatchNorm1d,
    /// 2-D convolution on `[C, H, W]` (PyTorch's `nn.Conv2d`; `out_channels` may be written
    /// `filters`, as Keras names it).
    Conv2d {
        /// Output channels.
        #[serde(alias = "filters")]
        out_channels: usize,
        /// Window size.
        kernel_size: Size2,
        /// Step between windows.
        #[serde(default = "default_one", skip_serializing_if = "is_one")]
        stride: Size2,
        /// `"valid"`, `"same"` or explicit sizes.
        #[serde(default = "default_valid", skip_serializing_if = "is_valid")]
        padding: PaddingSpec,
        /// Step between window taps.
        #[serde(default = "default_one", skip_serializing_if = "is_one")]
        dilation: Size2,
        /// Channel groups.
        #[serde(default = "default_groups", skip_serializing_if = "is_one_usize")]
        groups: usize,
        /// Activation after the convolution.
        #[serde(default = "default_activation", skip_serializing_if = "is_linear")]
        activation: String,
        /// Whether the layer has a bias.
        #[serde(default = "default_true", skip_serializing_if = "is_true")]
        use_bias: bool,
    },
    /// 1-D convolution on `[C, L]` (PyTorch's `nn.Conv1d`).
    Conv1d {
        /// Output channels.
        #[serde(alias = "filters")]
        out_channels: usize,
        /// Window size.
        kernel_size: usize,
        /// Step between windows.
        #[serde(default = "default_groups", skip_serializing_if = "is_one_usize")]
        stride: usize,
        /// `"valid"`, `"same"` or an explicit size.
        #[serde(default = "default_valid", skip_serializing_if = "is_valid")]
        padding: PaddingSpec,
        /// Activation after the convolution.
        #[serde(default = "default_activation", skip_serializing_if = "is_linear")]
        activation: String,
    },
    /// Transposed 2-D convolution (PyTorch's `nn.ConvTranspose2d`; kernel 4, stride 2,
    /// padding 1 doubles height and width).
    ConvTranspose2d {
        /// Output channels.
        #[serde(alias = "filters")]
        out_channels: usize,
        /// Window size.
        kernel_size: Size2,
        /// Step between windows.
        #[serde(default = "default_one", skip_serializing_if = "is_one")]
        stride: Size2,
        /// Explicit padding sizes (as PyTorch's; `"same"` is not defined here).
        #[serde(default = "default_valid", skip_serializing_if = "is_valid")]
        padding: PaddingSpec,
        /// Extra output rows/columns (below the stride).
        #[serde(default, skip_serializing_if = "is_zero_size")]
        output_padding: Size2Zero,
        /// Activation after the convolution.
        #[serde(default = "default_activation", skip_serializing_if = "is_linear")]
        activation: String,
    },
    /// Max pooling (window `kernel_size`, stride = window unless given).
    MaxPool2d {
        /// Window size.
        kernel_size: Size2,
        /// Step between windows (default: the window).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Size2>,
        /// Zeros on both sides (at most half the window).
        #[serde(default, skip_serializing_if = "is_zero_size")]
        padding: Size2Zero,
    },
    /// Average pooling (window `kernel_size`, stride = window unless given).
    AvgPool2d {
        /// Window size.
        kernel_size: Size2,
        /// Step between windows (default: the window).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Size2>,
        /// Zeros on both sides (at most half the window).
        #[serde(default, skip_serializing_if = "is_zero_size")]
        padding: Size2Zero,
    },
    /// Average over height and width: `[C, H, W]` → `[C]`.
    GlobalAvgPool2d,
    /// Batch normalisation per channel of `[C, H, W]` (PyTorch's defaults).
    BatchNorm2d,
    /// Nearest upsampling by an integer factor.
    Upsample {
        /// The factor on height and width.
        scale: usize,
    },
    /// Zero padding on every side.
    ZeroPad2d {
        /// Zeros per side.
        padding: usize,
    },
    /// Reshapes each example (Keras's `Reshape(target_shape)`).
    Reshape {
        /// The new per-example shape.
        shape: Vec<usize>,
    },
    /// A lookup table of token vectors on `[T]` ids per example (PyTorch's `nn.Embedding`,
    /// Keras's `mask_zero`); `vocab = "auto"` takes the text pipeline's vocabulary size.
    Embedding {
        /// Rows of the table: a number, or `"auto"` (resolved by the text pipeline).
        vocab: VocabSize,
        /// Size of each vector.
        dim: usize,
        /// Emit a padding mask for id 0 (Keras's `mask_zero`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        mask_zero: bool,
        /// A row that gets no gradient (PyTorch's `padding_idx`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        padding_idx: Option<usize>,
    },
    /// A simple recurrent layer on `[T, features]` (PyTorch's `nn.RNN`, Keras's `SimpleRNN`).
    #[serde(rename = "SimpleRNN")]
    SimpleRnn {
        /// Hidden units.
        units: usize,
        /// `tanh` (default) or `relu`.
        #[serde(default = "default_rnn_activation")]
        activation: String,
        /// Output every step `[T, D·units]` (else the final state `[D·units]`).
        #[serde(default, skip_serializing_if = "is_false")]
        return_sequences: bool,
        /// Also run backward in time and concatenate (D = 2).
        #[serde(default, skip_serializing_if = "is_false")]
        bidirectional: bool,
        /// Stacked layers.
        #[serde(default = "default_groups", skip_serializing_if = "is_one_usize")]
        num_layers: usize,
    },
    /// An LSTM layer on `[T, features]` (PyTorch's `nn.LSTM`).
    #[serde(rename = "LSTM")]
    Lstm {
        /// Hidden units.
        units: usize,
        /// Output every step `[T, D·units]` (else the final state `[D·units]`).
        #[serde(default, skip_serializing_if = "is_false")]
        return_sequences: bool,
        /// Also run backward in time and concatenate (D = 2).
        #[serde(default, skip_serializing_if = "is_false")]
        bidirectional: bool,
        /// Stacked layers.
        #[serde(default = "default_groups", skip_serializing_if = "is_one_usize")]
        num_layers: usize,
    },
    /// A GRU layer on `[T, features]` (PyTorch's `nn.GRU`).
    #[serde(rename = "GRU")]
    Gru {
        /// Hidden units.
        units: usize,
        /// Output every step `[T, D·units]` (else the final state `[D·units]`).
        #[serde(default, skip_serializing_if = "is_false")]
        return_sequences: bool,
        /// Also run backward in time and concatenate (D = 2).
        #[serde(default, skip_serializing_if = "is_false")]
        bidirectional: bool,
        /// Stacked layers.
        #[serde(default = "default_groups", skip_serializing_if = "is_one_usize")]
        num_layers: usize,
    },
    // Attention layers (`attention.rs`); the width d is the input's last extent.
    /// Layer normalisation over the last axis (PyTorch's `nn.LayerNorm`).
    LayerNorm {
        /// Added to the variance (default 1e-5, PyTorch's).
        #[serde(default = "default_ln_eps")]
        eps: f64,
    },
    /// Multi-head self-attention on `[T, d]` (reads the padding mask).
    MultiHeadAttention {
        /// Heads (d must be a multiple).
        heads: usize,
        /// Step t attends only to steps ≤ t.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        causal: bool,
    },
    /// Learned positions added to `[T, d]` (T ≤ max_len).
    PositionalEmbedding {
        /// The longest sequence.
        max_len: usize,
    },
    /// Fixed sinusoidal positions added to `[T, d]`.
    SinusoidalPositional,
    /// A pre-norm Transformer encoder block on `[T, d]`.
    TransformerEncoder {
        /// Attention heads.
        heads: usize,
        /// Feed-forward width.
        ff: usize,
        /// Dropout on the two residual branches.
        #[serde(default, skip_serializing_if = "is_zero")]
        dropout: f64,
        /// Causal attention (a decoder-only block).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        causal: bool,
    },
    /// A causal pre-norm Transformer block (decoder-only language models) on `[T, d]`.
    TransformerDecoder {
        /// Attention heads.
        heads: usize,
        /// Feed-forward width.
        ff: usize,
        /// Dropout on the two residual branches.
        #[serde(default, skip_serializing_if = "is_zero")]
        dropout: f64,
    },
    /// Masked mean over the steps: `[T, F]` → `[F]`.
    GlobalAveragePooling1D,
    /// Masked maximum over the steps: `[T, F]` → `[F]`.
    GlobalMaxPooling1D,
}

/// An Embedding's vocabulary size or a Dense layer's width in a model file: a number or
/// `"auto"` (filled in by the text pipeline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VocabSize {
    /// A fixed number of rows.
    Fixed(usize),
    /// The tokenizer's vocabulary size, filled in by the text pipeline before building.
    Auto(AutoSize),
}

/// The word `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutoSize {
    /// `"auto"`.
    #[serde(rename = "auto")]
    Auto,
}

fn default_rnn_activation() -> String {
    "tanh".into()
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_ln_eps() -> f64 {
    1e-5
}

/// A pair of sizes that defaults to zero (paddings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Size2Zero(pub Option<Size2>);

impl Size2Zero {
    /// (height, width), zeros when absent.
    pub fn hw(self) -> (usize, usize) {
        self.0.map_or((0, 0), Size2::hw)
    }
}

fn is_zero_size(s: &Size2Zero) -> bool {
    s.hw() == (0, 0)
}

fn default_leaky_alpha() -> f64 {
    0.3
}

impl LayerSpec {
    /// The layer's `type` as written in model files.
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerSpec::Dense { .. } => "Dense",
            LayerSpec::Dropout { .. } => "Dropout",
            LayerSpec::Activation { .. } => "Activation",
            LayerSpec::LeakyRelu { .. } => "LeakyRelu",
            LayerSpec::Softmax => "Softmax",
            LayerSpec::Flatten => "Flatten",
            LayerSpec::BatchNorm1d => "BatchNorm1d",
            LayerSpec::Conv2d { .. } => "Conv2d",
            LayerSpec::Conv1d { .. } => "Conv1d",
            LayerSpec::ConvTranspose2d { .. } => "ConvTranspose2d",
            LayerSpec::MaxPool2d { .. } => "MaxPool2d",
            LayerSpec::AvgPool2d { .. } => "AvgPool2d",
            LayerSpec::GlobalAvgPool2d => "GlobalAvgPool2d",
            LayerSpec::BatchNorm2d => "BatchNorm2d",
            LayerSpec::Upsample { .. } => "Upsample",
            LayerSpec::ZeroPad2d { .. } => "ZeroPad2d",
            LayerSpec::Reshape { .. } => "Reshape",
            LayerSpec::Embedding { .. } => "Embedding",
            LayerSpec::SimpleRnn { .. } => "SimpleRNN",
            LayerSpec::Lstm { .. } => "LSTM",
            LayerSpec::Gru { .. } => "GRU",
            LayerSpec::LayerNorm { .. } => "LayerNorm",
            LayerSpec::MultiHeadAttention { .. } => "MultiHeadAttention",
            LayerSpec::PositionalEmbedding { .. } => "PositionalEmbedding",
            LayerSpec::SinusoidalPositional => "SinusoidalPositional",
            LayerSpec::TransformerEncoder { .. } => "TransformerEncoder",
            LayerSpec::TransformerDecoder { .. } => "TransformerDecoder",
            LayerSpec::GlobalAveragePooling1D => "GlobalAveragePooling1D",
            LayerSpec::GlobalMaxPooling1D => "GlobalMaxPooling1D",
        }
    }
}

/// The loss for its Keras name: `binary_crossentropy` (probabilities), `
/// binary_crossentropy_from_logits`, `sparse_categorical_crossentropy_from_logits` (also
/// `cross_entropy`, PyTorch's name) or `mean_squared_error` (`mse`).
pub fn parse_loss(name: &str) -> Result<Loss> {
    Ok(match name {
        "binary_crossentropy" => Loss::BinaryCrossEntropy,
        "binary_crossentropy_from_logits" => Loss::BinaryCrossEntropyWithLogits,
        "sparse_categorical_crossentropy_from_logits" | "cross_entropy" => Loss::CrossEntropy,
        "mean_squared_error" | "mse" => Loss::MeanSquaredError,
        other => {
            return config_err(format!(
                "unknown loss '{other}': expected binary_crossentropy, \
                 binary_crossentropy_from_logits, sparse_categorical_crossentropy_from_logits \
                 (or cross_entropy) or mean_squared_error (or mse)"
            ));
        }
    })
}

impl ModelSpec {
    /// Parses a model file's text; `source` names it in errors. JSON when the text starts with
    /// `{`, TOML otherwise.
    pub fn parse(text: &str, source: &str) -> Result<ModelSpec> {
        let spec: ModelSpec = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| {
                NnError::Config(format!(
                    "{source}: line {}, column {}: {e}",
                    e.line(),
                    e.column()
                ))
            })?
        } else {
            toml::from_str(text).map_err(|e| {
                // The span is a byte range of `text`; `get` keeps a bad one from panicking.
                let line = e
                    .span()
                    .and_then(|span| text.get(..span.start))
                    .map(|before| before.lines().count().max(1));
                let at = line.map_or_else(String::new, |l| format!("line {l}: "));
                NnError::Config(format!("{source}: {at}{}", e.message()))
            })?
        };
        spec.validate(source)?;
        Ok(spec)
    }

    /// Reads and parses a model file.
    pub fn load(path: &Path) -> Result<ModelSpec> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NnError::Config(format!("model file {}: {e}", path.display())))?;
        ModelSpec::parse(&text, &path.display().to_string())
    }

    /// The spec as one line of JSON (what checkpoints store).
    pub fn to_json(&self) -> String {
        // Every field is a plain number, string, list or table: serialisation cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Checks what can be checked without building: a non-empty input shape of positive
    /// extents and at least one layer.
    fn validate(&self, source: &str) -> Result<()> {
        if self.input_shape.is_empty() || self.input_shape.contains(&0) {
            return config_err(format!(
                "{source}: input_shape {:?} must list at least one extent, all positive",
                self.input_shape
            ));
        }
        if self.layers.is_empty() {
            return config_err(format!("{source}: the model has no layers"));
        }
        if let Some(loss) = &self.loss {
            parse_loss(loss)?;
        }
        Ok(())
    }

    /// The loss the file names, if any.
    pub fn loss(&self) -> Result<Option<Loss>> {
        self.loss.as_deref().map(parse_loss).transpose()
    }

    /// The optimizer the file describes (Adam with Keras's defaults when it names none).
    pub fn optimizer(&self) -> Result<Optimizer> {
        let Some(o) = &self.optimizer else {
            return Ok(Optimizer::adam());
        };
        let mut opt = Optimizer::by_name(&o.name)?;
        if let Some(lr) = o.lr {
            if !(lr.is_finite() && lr > 0.0) {
                return config_err(format!("optimizer lr {lr} must be a positive number"));
            }
            opt = opt.with_lr(lr);
        }
        if let Some(m) = o.momentum {
            opt = opt.with_momentum(m)?;
        }
        if let Some(b1) = o.beta_1 {
            opt = opt.with_beta1(b1)?;
        }
        if let Some(wd) = o.weight_decay {
            opt = opt.with_weight_decay(wd);
        }
        Ok(opt)
    }

    /// Builds the network: parameters initialised from `seed` (the same seed gives the same
    /// weights), on `device`. Each layer's input size comes from the previous layer's output
    /// shape; a layer that cannot take it fails with its index and type.
    pub fn build(&self, seed: u64, device: Device) -> Result<Sequential> {
        self.validate("model")?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut net = Sequential::new();
        let mut shape = self.input_shape.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let at = |e: NnError| {
                NnError::Config(format!(
                    "layer {i} ({}) on input shape {shape:?}: {e}",
                    layer.type_name()
                ))
            };
            let built = build_layer(
                layer,
                &shape,
                seed.wrapping_add(1 + i as u64),
                device,
                &mut rng,
            )
            .map_err(at)?;
            let next = built.output_shape(&shape).map_err(at)?;
            net.push_boxed(built);
            shape = next;
        }
        Ok(net)
    }

    /// The per-example output shape of the built network.
    pub fn output_shape(&self, net: &Sequential) -> Result<Vec<usize>> {
        let mut shape = self.input_shape.clone();
        for layer in net.layers() {
            shape = layer.output_shape(&shape)?;
        }
        Ok(shape)
    }
}

/// The loss a model file names, else the one its output implies: binary cross-entropy on
/// probabilities for a single output, softmax cross-entropy on logits for several.
pub fn loss_or_default(spec: &ModelSpec, output_width: usize) -> Result<Loss> {
    Ok(match spec.loss()? {
        Some(l) => l,
        None if output_width == 1 => Loss::BinaryCrossEntropy,
        None => Loss::CrossEntropy,
    })
}

/// A model saved by `ember train --save` (or any checkpoint whose metadata holds
/// `ember.model`), rebuilt on the CPU with its weights loaded, compiled with its loss and the
/// accuracy metric (the optimizer is a fresh Adam: the model is for inference or fine-tuning),
/// and the checkpoint's metadata (`ember.scaling`, `ember.classes`, …). A file written by
/// `ember quantize` (metadata `ember.quantized`) loads as its int8 network, for inference only.
pub fn load_trained(
    path: &Path,
) -> Result<(Model, ModelSpec, std::collections::BTreeMap<String, String>)> {
    let meta = checkpoint::read_metadata(path)?;
    let Some(text) = meta.get("ember.model") else {
        return config_err(format!(
            "{}: no 'ember.model' in its metadata: only checkpoints saved by `ember train --save` \
             (or with Model::metadata[\"ember.model\"] set) describe their model",
            path.display()
        ));
    };
    let spec = ModelSpec::parse(text, &format!("{} (ember.model)", path.display()))?;
    let built = spec.build(0, Device::Cpu)?;
    let width: usize = spec.output_shape(&built)?.iter().product();
    // An int8 file written by `ember quantize` holds its own (quantized) layers.
    let net = if meta.contains_key("ember.quantized") {
        crate::quantize::QuantizedNet::load(path)?.into_network()
    } else {
        checkpoint::load(path, &built, None)?;
        built
    };
    let loss = loss_or_default(&spec, width)?;
    let mut model = net.compile(Optimizer::adam(), loss, &[Metric::Accuracy]);
    model.metadata = meta.clone();
    Ok((model, spec, meta))
}

/// Parses an activation name, also accepting `"none"` for no activation.
fn activation(name: &str) -> Result<Activation> {
    if name == "none" {
        return Ok(Activation::None);
    }
    parse_activation(name)
}

/// The one extent of a flat `[features]` input, or an error asking for a Flatten.
fn features(shape: &[usize], what: &str) -> Result<usize> {
    match shape {
        [f] => Ok(*f),
        _ => config_err(format!(
            "{what} takes [features] per example; add a Flatten before it"
        )),
    }
}

/// Builds one layer for per-example input `shape`; `layer_seed` seeds its own randomness
/// (dropout masks).
fn build_layer(
    layer: &LayerSpec,
    shape: &[usize],
    layer_seed: u64,
    device: Device,
    rng: &mut StdRng,
) -> Result<Box<dyn Module>> {
    Ok(match layer {
        LayerSpec::Dense {
            units,
            activation: act,
            use_bias,
            l1,
            l2,
        } => {
            let opts = DenseOptions {
                activation: activation(act)?,
                use_bias: *use_bias,
                kernel_regularizer: Regularizer::l1_l2(*l1, *l2),
                device,
                ..DenseOptions::default()
            };
            // Per example: [features], or a sequence [T, features] mapped at every step.
            let in_features = match shape {
                [f] | [_, f] => *f,
                _ => {
                    return config_err(format!(
                        "Dense takes [features] or [steps, features] per example, got {shape:?}; \
                         add a Flatten before it"
                    ));
                }
            };
            let VocabSize::Fixed(units) = *units else {
                return config_err(
                    "units = \"auto\" is filled in by the text pipeline (the vocabulary of a \
                     language model, the classes of a text classifier); elsewhere give a number",
                );
            };
            Box::new(Dense::with_options(in_features, units, opts, rng)?)
        }
        LayerSpec::Dropout { rate, seed } => {
            Box::new(Dropout::new(*rate, seed.unwrap_or(layer_seed))?)
        }
        LayerSpec::Activation { activation: act } => {
            Box::new(ActivationLayer::new(activation(act)?))
        }
        LayerSpec::LeakyRelu { alpha } => Box::new(LeakyRelu::new(*alpha)),
        LayerSpec::Softmax => Box::new(Softmax),
        LayerSpec::Flatten => Box::new(Flatten::new()),
        LayerSpec::BatchNorm1d => Box::new(BatchNorm1d::with_options(
            features(shape, "BatchNorm1d")?,
            0.99,
            1e-3,
            ember_core::DType::F32,
            device,
        )?),
        LayerSpec::Conv2d {
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            activation: act,
            use_bias,
        } => {
            let opts = ConvOptions {
                stride: stride.hw(),
                padding: conv_padding(*padding)?,
                dilation: dilation.hw(),
                groups: *groups,
                use_bias: *use_bias,
                activation: activation(act)?,
                device,
                ..ConvOptions::default()
            };
            let c = channels(shape, 3, "Conv2d")?;
            Box::new(Conv2d::with_options(
                c,
                *out_channels,
                kernel_size.hw(),
                opts,
                rng,
            )?)
        }
        LayerSpec::Conv1d {
            out_channels,
            kernel_size,
            stride,
            padding,
            activation: act,
        } => {
            let opts = ConvOptions {
                stride: (1, *stride),
                padding: conv_padding(*padding)?,
                activation: activation(act)?,
                device,
                ..ConvOptions::default()
            };
            let c = channels(shape, 2, "Conv1d")?;
            Box::new(Conv1d::with_options(
                c,
                *out_channels,
                *kernel_size,
                opts,
                rng,
            )?)
        }
        LayerSpec::ConvTranspose2d {
            out_channels,
            kernel_size,
            stride,
            padding,
            output_padding,
            activation: act,
        } => {
            let opts = ConvOptions {
                stride: stride.hw(),
                padding: conv_padding(*padding)?,
                output_padding: output_padding.hw(),
                activation: activation(act)?,
                device,
                ..ConvOptions::default()
            };
            let c = channels(shape, 3, "ConvTranspose2d")?;
            Box::new(ConvTranspose2d::with_options(
                c,
                *out_channels,
                kernel_size.hw(),
                opts,
                rng,
            )?)
        }
        LayerSpec::MaxPool2d {
            kernel_size,
            stride,
            padding,
        } => Box::new(MaxPool2d::with_options(pool_options(
            *kernel_size,
            *stride,
            *padding,
        ))),
        LayerSpec::AvgPool2d {
            kernel_size,
            stride,
            padding,
        } => Box::new(AvgPool2d::with_options(pool_options(
            *kernel_size,
            *stride,
            *padding,
        ))),
        LayerSpec::GlobalAvgPool2d => Box::new(GlobalAvgPool2d::new()),
        LayerSpec::BatchNorm2d => {
            let c = channels(shape, 3, "BatchNorm2d")?;
            Box::new(BatchNorm2d::with_options(
                c,
                0.1,
                1e-5,
                ember_core::DType::F32,
                device,
            )?)
        }
        LayerSpec::Upsample { scale } => Box::new(Upsample::new(*scale)),
        LayerSpec::ZeroPad2d { padding } => Box::new(ZeroPad2d::new(*padding)),
        LayerSpec::Reshape { shape: to } => Box::new(Reshape::new(to)),
        LayerSpec::Embedding {
            vocab,
            dim,
            mask_zero,
            padding_idx,
        } => {
            let VocabSize::Fixed(vocab) = vocab else {
                return config_err(
                    "vocab = \"auto\" is the text pipeline's vocabulary size; it is filled in \
                     when training on text (`ember train --task lm` or `--text-column`); \
                     elsewhere give a number",
                );
            };
            let opts = crate::embedding::EmbeddingOptions {
                mask_zero: *mask_zero,
                padding_idx: *padding_idx,
                device,
                ..Default::default()
            };
            Box::new(crate::embedding::Embedding::new(*vocab, *dim, opts, rng)?)
        }
        LayerSpec::SimpleRnn {
            units,
            activation: act,
            return_sequences,
            bidirectional,
            num_layers,
        } => {
            let kind = match act.as_str() {
                "tanh" => CellKind::Rnn(RnnActivation::Tanh),
                "relu" => CellKind::Rnn(RnnActivation::Relu),
                other => {
                    return config_err(format!(
                        "SimpleRNN activation '{other}': expected tanh or relu"
                    ));
                }
            };
            let o = (*return_sequences, *bidirectional, *num_layers);
            Box::new(Recurrent::from_spec(kind, *units, o, shape, device, rng)?)
        }
        LayerSpec::Lstm {
            units,
            return_sequences,
            bidirectional,
            num_layers,
        } => {
            let o = (*return_sequences, *bidirectional, *num_layers);
            Box::new(Recurrent::from_spec(
                CellKind::Lstm,
                *units,
                o,
                shape,
                device,
                rng,
            )?)
        }
        LayerSpec::Gru {
            units,
            return_sequences,
            bidirectional,
            num_layers,
        } => {
            let o = (*return_sequences, *bidirectional, *num_layers);
            Box::new(Recurrent::from_spec(
                CellKind::Gru,
                *units,
                o,
                shape,
                device,
                rng,
            )?)
        }
        // Attention layers: d is the last extent of the per-example [T, d] input.
        LayerSpec::LayerNorm { eps } => {
            Box::new(attn::LayerNorm::with_eps(last_dim(shape)?, *eps)?)
        }
        LayerSpec::MultiHeadAttention { heads, causal } => Box::new(attn::MultiHeadAttention::new(
            seq_dim(shape, "MultiHeadAttention")?,
            *heads,
            *causal,
            rng,
        )?),
        LayerSpec::PositionalEmbedding { max_len } => Box::new(attn::PositionalEmbedding::new(
            *max_len,
            seq_dim(shape, "PositionalEmbedding")?,
            rng,
        )?),
        LayerSpec::SinusoidalPositional => Box::new(attn::SinusoidalPositional::new(seq_dim(
            shape,
            "SinusoidalPositional",
        )?)?),
        LayerSpec::TransformerEncoder {
            heads,
            ff,
            dropout,
            causal,
        } => Box::new(attn::TransformerEncoderBlock::new(
            seq_dim(shape, "TransformerEncoder")?,
            *heads,
            *ff,
            *dropout,
            *causal,
            layer_seed,
            rng,
        )?),
        LayerSpec::TransformerDecoder { heads, ff, dropout } => {
            Box::new(attn::TransformerDecoderBlock::new(
                seq_dim(shape, "TransformerDecoder")?,
                *heads,
                *ff,
                *dropout,
                layer_seed,
                rng,
            )?)
        }
        LayerSpec::GlobalAveragePooling1D => Box::new(attn::GlobalAveragePooling1D),
        LayerSpec::GlobalMaxPooling1D => Box::new(attn::GlobalMaxPooling1D),
    })
}

/// The width d of a per-example sequence `[T, d]`, or an error naming the layer.
fn seq_dim(shape: &[usize], what: &str) -> Result<usize> {
    match shape {
        [_, d] => Ok(*d),
        _ => config_err(format!(
            "{what} takes a sequence [steps, features] per example, got {shape:?}"
        )),
    }
}

/// The last extent of a per-example shape (the features LayerNorm normalises).
fn last_dim(shape: &[usize]) -> Result<usize> {
    match shape.last() {
        Some(&d) => Ok(d),
        None => config_err("LayerNorm needs at least one feature axis"),
    }
}

/// The channel count of a `rank`-dimensional per-example input, or an error saying what the
/// layer takes.
fn channels(shape: &[usize], rank: usize, what: &str) -> Result<usize> {
    if shape.len() != rank {
        let want = if rank == 3 {
            "[channels, height, width]"
        } else {
            "[channels, length]"
        };
        return config_err(format!(
            "{what} takes {want} per example; add a Reshape before it"
        ));
    }
    Ok(shape[0])
}

/// A model file's padding as the convolution layers take it.
fn conv_padding(p: PaddingSpec) -> Result<Padding> {
    Ok(match p {
        PaddingSpec::Named(PaddingMode::Valid) => Padding::valid(),
        PaddingSpec::Named(PaddingMode::Same) => Padding::Same,
        PaddingSpec::Size(s) => {
            let (h, w) = s.hw();
            Padding::symmetric(h, w)
        }
    })
}

/// Pooling options: the window, its stride (default: the window) and padding.
fn pool_options(kernel: Size2, stride: Option<Size2>, padding: Size2Zero) -> PoolOptions {
    let (kh, kw) = kernel.hw();
    let (sh, sw) = stride.map_or((kh, kw), Size2::hw);
    let (ph, pw) = padding.hw();
    let mut o = PoolOptions::rect(kh, kw);
    o.stride = [sh, sw];
    o.padding = [ph, pw];
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const MLP: &str = r#"
name = "seed"
input_shape = [30]
loss = "binary_crossentropy"
optimizer = { name = "adam", lr = 0.01 }

[[layers]]
type = "Dense"
units = 10
activation = "relu"

[[layers]]
type = "Dropout"
rate = 0.1

[[layers]]
type = "Dense"
units = 1
activation = "sigmoid"
"#;

    #[test]
    fn toml_and_json_give_the_same_spec() {
        let a = ModelSpec::parse(MLP, "mlp.toml").unwrap();
        let b = ModelSpec::parse(&a.to_json(), "mlp.json").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.layers.len(), 3);
        assert_eq!(a.loss().unwrap(), Some(Loss::BinaryCrossEntropy));
        let net = a.build(0, Device::Cpu).unwrap();
        assert_eq!(net.len(), 3);
        assert_eq!(a.output_shape(&net).unwrap(), vec![1]);
        assert_eq!(net.parameter_count(), 30 * 10 + 10 + 10 + 1);
        // Same seed, same weights.
        let again = a.build(0, Device::Cpu).unwrap();
        for ((_, x), (_, y)) in net.named_parameters().iter().zip(again.named_parameters()) {
            assert_eq!(x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
        }
    }

    #[test]
    fn image_layers_build_with_inferred_sizes() {
        // The MNIST CNN of examples/models/mnist_cnn.toml, written as JSON here.
        let cnn = r#"{"input_shape": [1, 28, 28], "layers": [
            {"type": "Conv2d", "filters": 32, "kernel_size": 3, "activation": "relu"},
            {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "out_channels": 64, "kernel_size": [3, 3], "padding": "valid",
             "activation": "relu"},
            {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Flatten"},
            {"type": "Dense", "units": 128, "activation": "relu"},
            {"type": "Dense", "units": 10}]}"#;
        let spec = ModelSpec::parse(cnn, "cnn.json").unwrap();
        let net = spec.build(0, Device::Cpu).unwrap();
        // PyTorch's count for the same model: 320 + 18,496 + 204,928 + 1,290.
        assert_eq!(net.parameter_count(), 225_034);
        assert_eq!(spec.output_shape(&net).unwrap(), vec![10]);
        let summary = net.summary(&spec.input_shape).unwrap();
        assert!(
            summary.contains("Conv2d") && summary.contains("(None, 64, 5, 5)"),
            "{summary}"
        );
        let mermaid = net.to_mermaid(&spec.input_shape).unwrap();
        assert!(
            mermaid.contains("Conv2d") && mermaid.contains("MaxPool2d"),
            "{mermaid}"
        );
        // "same" padding, a transposed conv, upsampling, batch norm and a reshape chain too.
        let generator = r#"{"input_shape": [16], "layers": [
            {"type": "Dense", "units": 32},
            {"type": "Reshape", "shape": [2, 4, 4]},
            {"type": "ConvTranspose2d", "out_channels": 3, "kernel_size": 4, "stride": 2,
             "padding": 1},
            {"type": "BatchNorm2d"},
            {"type": "Upsample", "scale": 2},
            {"type": "Conv2d", "out_channels": 1, "kernel_size": 3, "padding": "same"},
            {"type": "GlobalAvgPool2d"}]}"#;
        let spec = ModelSpec::parse(generator, "gen.json").unwrap();
        let net = spec.build(0, Device::Cpu).unwrap();
        assert_eq!(spec.output_shape(&net).unwrap(), vec![1]);
        // A convolution on a flat input names the layer and asks for a Reshape.
        let bad = r#"{"input_shape": [784], "layers": [
            {"type": "Conv2d", "out_channels": 4, "kernel_size": 3}]}"#;
        let e = ModelSpec::parse(bad, "bad.json")
            .unwrap()
            .build(0, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("layer 0 (Conv2d)") && e.contains("Reshape"),
            "{e}"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let typo = MLP.replace("units = 10", "unit = 10");
        let e = ModelSpec::parse(&typo, "m.toml").unwrap_err().to_string();
        assert!(e.contains("m.toml") && e.contains("unit"), "{e}");
        let e = ModelSpec::parse(&MLP.replace("[30]", "[]"), "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("input_shape"), "{e}");
        let e = ModelSpec::parse(&MLP.replace("\"Dropout\"", "\"Dropot\""), "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Dropot"), "{e}");
        let e = ModelSpec::parse(&MLP.replace("binary_crossentropy", "bce"), "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown loss 'bce'"), "{e}");
        // A Dense layer on image-shaped input says to flatten, naming the layer.
        let img = MLP.replace("[30]", "[1, 5, 5]");
        let spec = ModelSpec::parse(&img, "m.toml").unwrap();
        let e = spec.build(0, Device::Cpu).err().unwrap().to_string();
        assert!(
            e.contains("layer 0 (Dense)") && e.contains("Flatten"),
            "{e}"
        );
        let e = ModelSpec::parse("{\"input_shape\": [2], \"layers\": [", "m.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.json: line 1"), "{e}");
    }
}
