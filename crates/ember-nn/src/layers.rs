//! The layers: Dense, activations, Dropout, Flatten and BatchNorm1d.
//!
//! Each layer is a small struct implementing [`Module`]. Their forward passes are written with
//! ember-core's differentiable tensor ops, so gradients come from the core's autograd; Dense uses
//! the core's fused `linear` (matmul + bias + activation in one kernel epilogue).

use crate::error::{NnError, Result, config_err};
use crate::init::Initializer;
use crate::module::Module;
use crate::regularizer::Regularizer;
use ember_core::{Activation, DType, Device, Tensor, no_grad};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;

/// The name of a fused activation, as written in summaries and on the command line.
pub fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::None => "linear",
        Activation::Relu => "relu",
        Activation::Sigmoid => "sigmoid",
        Activation::Tanh => "tanh",
        Activation::Gelu => "gelu",
        Activation::GeluTanh => "gelu_tanh",
    }
}

/// Parses `relu`, `sigmoid`, `tanh`, `gelu` (exact, erf: PyTorch's and Keras's default),
/// `gelu_tanh` (the tanh approximation) or `linear`/`none` into a fused activation.
pub fn parse_activation(name: &str) -> Result<Activation> {
    match name.to_ascii_lowercase().as_str() {
        "relu" => Ok(Activation::Relu),
        "sigmoid" => Ok(Activation::Sigmoid),
        "tanh" => Ok(Activation::Tanh),
        "gelu" => Ok(Activation::Gelu),
        "gelu_tanh" => Ok(Activation::GeluTanh),
        "linear" | "none" => Ok(Activation::None),
        other => config_err(format!(
            "unknown activation '{other}' (expected relu, sigmoid, tanh, gelu, gelu_tanh or linear)"
        )),
    }
}

/// Options of a [`Dense`] layer beyond its sizes; `Default` gives Keras's defaults.
#[derive(Debug, Clone, Copy)]
pub struct DenseOptions {
    /// Activation fused into the forward pass (default: none, as Keras's `Dense`).
    pub activation: Activation,
    /// Initialiser of the weight (default: Glorot uniform).
    pub kernel_init: Initializer,
    /// Initialiser of the bias (default: zeros).
    pub bias_init: Initializer,
    /// Whether the layer has a bias (default: true).
    pub use_bias: bool,
    /// L1/L2 penalty on the weight, added to the loss (default: none).
    pub kernel_regularizer: Option<Regularizer>,
    /// Element type of the parameters (default: f32).
    pub dtype: DType,
    /// Where the parameters live (default: CPU).
    pub device: Device,
}

impl Default for DenseOptions {
    fn default() -> Self {
        DenseOptions {
            activation: Activation::None,
            kernel_init: Initializer::GlorotUniform,
            bias_init: Initializer::Zeros,
            use_bias: true,
            kernel_regularizer: None,
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

/// A fully connected layer: `y = act(x Wᵀ + b)` with `W` of shape `[out, in]` (PyTorch's
/// `nn.Linear` layout) and `b` of shape `[out]`.
pub struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
    activation: Activation,
    regularizer: Option<Regularizer>,
    in_features: usize,
    out_features: usize,
}

impl Dense {
    /// A Dense layer with Keras's defaults (Glorot-uniform weight, zero bias, f32 on the CPU)
    /// and the given fused activation.
    pub fn new(
        in_features: usize,
        out_features: usize,
        activation: Activation,
        rng: &mut StdRng,
    ) -> Result<Dense> {
        Dense::with_options(
            in_features,
            out_features,
            DenseOptions {
                activation,
                ..DenseOptions::default()
            },
            rng,
        )
    }

    /// A Dense layer with explicit options.
    pub fn with_options(
        in_features: usize,
        out_features: usize,
        opts: DenseOptions,
        rng: &mut StdRng,
    ) -> Result<Dense> {
        if in_features == 0 || out_features == 0 {
            return config_err(format!(
                "Dense: sizes must be positive, got in_features {in_features}, out_features {out_features}"
            ));
        }
        let weight = opts
            .kernel_init
            .tensor(
                &[out_features, in_features],
                in_features,
                out_features,
                opts.dtype,
                opts.device,
                rng,
            )?
            .as_variable();
        let bias = if opts.use_bias {
            Some(
                opts.bias_init
                    .tensor(
                        &[out_features],
                        in_features,
                        out_features,
                        opts.dtype,
                        opts.device,
                        rng,
                    )?
                    .as_variable(),
            )
        } else {
            None
        };
        Ok(Dense {
            weight,
            bias,
            activation: opts.activation,
            regularizer: opts.kernel_regularizer,
            in_features,
            out_features,
        })
    }

    /// A Dense layer around existing tensors: `weight` `[out, in]` and optional `bias` `[out]`.
    /// They are used as given (call `as_variable()` on them first if they should be trained).
    pub fn from_tensors(
        weight: Tensor,
        bias: Option<Tensor>,
        activation: Activation,
    ) -> Result<Dense> {
        if weight.rank() != 2 {
            return config_err(format!(
                "Dense: weight must be [out, in], got {:?}",
                weight.shape()
            ));
        }
        let (out_features, in_features) = (weight.shape()[0], weight.shape()[1]);
        match &bias {
            Some(b) if b.shape() != [out_features] => {
                return config_err(format!(
                    "Dense: bias must be [{out_features}] for weight {:?}, got {:?}",
                    weight.shape(),
                    b.shape()
                ));
            }
            _ => {}
        }
        Ok(Dense {
            weight,
            bias,
            activation,
            regularizer: None,
            in_features,
            out_features,
        })
    }

    /// Sets (or clears) the L1/L2 penalty on the weight.
    pub fn with_regularizer(mut self, regularizer: Option<Regularizer>) -> Dense {
        self.regularizer = regularizer;
        self
    }

    /// The weight, shape `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, shape `[out]`, if the layer has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The fused activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Number of inputs.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Number of outputs.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

impl Module for Dense {
    /// `[batch, in]` → `[batch, out]`; a higher-rank input `[batch, ..., in]` (a sequence
    /// `[N, T, in]`) is mapped at every position along its last axis, as Keras's `Dense` and
    /// PyTorch's `nn.Linear` do, by one GEMM over all the positions.
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let s = x.shape();
        if s.len() < 2 || s[s.len() - 1] != self.in_features {
            return config_err(format!(
                "Dense({} -> {}): expected input [batch, ..., {}], got {:?}",
                self.in_features, self.out_features, self.in_features, s
            ));
        }
        // Under a 16-bit policy (`crate::mixed`) the GEMM rounds its operands to bf16/f16.
        let linear = |x: &Tensor| -> Result<Tensor> {
            let (w, b, act) = (&self.weight, self.bias.as_ref(), self.activation);
            Ok(match crate::mixed::half_for(w) {
                Some(half) => x.linear_mixed(w, b, act, half)?,
                None => x.linear(w, b, act)?,
            })
        };
        if s.len() == 2 {
            return linear(x);
        }
        let rows: usize = s[..s.len() - 1].iter().product();
        let y = linear(&x.reshape(vec![rows, self.in_features])?)?;
        let mut out = s.to_vec();
        out[s.len() - 1] = self.out_features;
        Ok(y.reshape(out)?)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            p.push(("bias".to_string(), b.clone()));
        }
        p
    }

    fn kind(&self) -> &'static str {
        "Dense"
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    fn describe(&self) -> String {
        format!(
            "Dense {}, {}",
            self.out_features,
            activation_name(self.activation)
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input.last() != Some(&self.in_features) {
            return config_err(format!(
                "Dense({} -> {}): expected input shape [..., {}], got {:?}",
                self.in_features, self.out_features, self.in_features, input
            ));
        }
        let mut out = input.to_vec();
        let last = out.len() - 1;
        out[last] = self.out_features;
        Ok(out)
    }

    fn regularization_loss(&self) -> Result<Option<Tensor>> {
        match &self.regularizer {
            Some(r) => r.penalty(&self.weight),
            None => Ok(None),
        }
    }
}

/// PyTorch's name for a fully connected layer; the same type as [`Dense`].
pub type Linear = Dense;

/// A parameter-free activation layer (Keras's `Activation('relu')`), applying the same
/// [`Activation`] a [`Dense`] layer fuses: nn has one activation vocabulary. The activations
/// with a parameter or an axis are layers of their own: [`LeakyRelu`] and [`Softmax`], as in
/// Keras and PyTorch.
pub struct ActivationLayer {
    act: Activation,
}

impl ActivationLayer {
    /// An activation layer applying `act` (`Activation::None` is the identity).
    pub fn new(act: Activation) -> ActivationLayer {
        ActivationLayer { act }
    }
}

impl Module for ActivationLayer {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        Ok(match self.act.as_unary() {
            Some(op) => x.unary_op(op)?,
            None => x.clone(),
        })
    }

    fn kind(&self) -> &'static str {
        match self.act {
            Activation::Relu => "ReLU",
            Activation::Sigmoid => "Sigmoid",
            Activation::Tanh => "Tanh",
            Activation::Gelu => "GELU",
            Activation::GeluTanh => "GELU(tanh)",
            Activation::None => "Identity",
        }
    }
}

/// `x` if positive else `alpha·x`. Keras's default alpha is 0.3 (Keras 3: 0.2); PyTorch's 0.01.
pub struct LeakyRelu {
    alpha: f64,
}

impl LeakyRelu {
    /// A leaky ReLU with slope `alpha` for negative inputs.
    pub fn new(alpha: f64) -> LeakyRelu {
        LeakyRelu { alpha }
    }
}

impl Module for LeakyRelu {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        Ok(x.leaky_relu(self.alpha)?)
    }

    fn kind(&self) -> &'static str {
        "LeakyReLU"
    }
}

/// Softmax over the last axis.
pub struct Softmax;

impl Module for Softmax {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        if x.rank() == 0 {
            return config_err("Softmax: input must have at least one dimension");
        }
        Ok(x.softmax(x.rank() - 1)?)
    }

    fn kind(&self) -> &'static str {
        "Softmax"
    }
}

/// Inverted dropout: in training (`forward(x, true)`) each element is zeroed with probability
/// `rate` and the survivors are scaled by `1 / (1 - rate)`, so evaluation (`forward(x, false)`)
/// is the identity. The mask comes from the layer's own seeded generator, drawn from only in
/// training, so a seed fixes every mask of a training run whatever evaluation calls come between.
pub struct Dropout {
    rate: f64,
    rng: Mutex<StdRng>,
}

impl Dropout {
    /// A dropout layer with drop probability `rate` in `[0, 1)`, seeded with `seed`.
    pub fn new(rate: f64, seed: u64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&rate) {
            return config_err(format!("Dropout: rate must be in [0, 1), got {rate}"));
        }
        Ok(Dropout {
            rate,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        })
    }

    /// The drop probability.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if !training || self.rate == 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.rate;
        let scale = 1.0 / keep;
        let mask: Vec<f64> = {
            // A poisoned lock only means another thread panicked mid-draw; the generator
            // state is still a valid generator, so keep using it.
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..x.elem_count())
                .map(|_| {
                    if rng.random::<f64>() < keep {
                        scale
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let mask = Tensor::from_vec(mask, x.shape().to_vec(), Device::Cpu)?.to_dtype(x.dtype())?;
        let mask = if x.device() == Device::Cpu {
            mask
        } else {
            mask.to_device(x.device())?
        };
        Ok(x.mul(&mask)?)
    }

    fn kind(&self) -> &'static str {
        "Dropout"
    }

    fn describe(&self) -> String {
        format!("Dropout {}", self.rate)
    }
}

/// Flattens every dimension after the batch dimension: `[N, a, b] -> [N, a*b]`.
#[derive(Default)]
pub struct Flatten;

impl Flatten {
    /// A flatten layer.
    pub fn new() -> Flatten {
        Flatten
    }
}

impl Module for Flatten {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        match x.rank() {
            0 => config_err("Flatten: input must have a batch dimension"),
            1 => Ok(x.unsqueeze(1)?),
            2 => Ok(x.clone()),
            r => Ok(x.flatten(1, r - 1)?),
        }
    }

    fn kind(&self) -> &'static str {
        "Flatten"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(vec![input.iter().product()])
    }
}

/// Batch normalisation over the feature axis of `[N, C]` inputs, with Keras's defaults:
/// `momentum = 0.99` (running = 0.99 running + 0.01 batch; PyTorch's `momentum=0.1` is the same
/// rule written the other way round), `epsilon = 1e-3` (PyTorch: 1e-5), and the population
/// variance for both normalising and the running variance (PyTorch stores the unbiased one).
pub struct BatchNorm1d {
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    features: usize,
    momentum: f64,
    eps: f64,
}

impl BatchNorm1d {
    /// A BatchNorm over `features` channels with Keras's defaults, f32 on the CPU.
    pub fn new(features: usize) -> Result<BatchNorm1d> {
        BatchNorm1d::with_options(features, 0.99, 1e-3, DType::F32, Device::Cpu)
    }

    /// A BatchNorm with explicit momentum, epsilon, dtype and device.
    pub fn with_options(
        features: usize,
        momentum: f64,
        eps: f64,
        dtype: DType,
        device: Device,
    ) -> Result<BatchNorm1d> {
        if features == 0 {
            return config_err("BatchNorm1d: features must be positive");
        }
        Ok(BatchNorm1d {
            gamma: Tensor::ones(vec![features], dtype, device)?.as_variable(),
            beta: Tensor::zeros(vec![features], dtype, device)?.as_variable(),
            running_mean: Tensor::zeros(vec![features], dtype, device)?,
            running_var: Tensor::ones(vec![features], dtype, device)?,
            features,
            momentum,
            eps,
        })
    }
}

impl BatchNorm1d {
    /// A BatchNorm around existing scale (`gamma`) and shift (`beta`) tensors of shape
    /// `[features]`, with zero running mean and unit running variance.
    pub fn from_tensors(
        gamma: Tensor,
        beta: Tensor,
        momentum: f64,
        eps: f64,
    ) -> Result<BatchNorm1d> {
        if gamma.rank() != 1 || gamma.shape() != beta.shape() {
            return config_err(format!(
                "BatchNorm1d: gamma {:?} and beta {:?} must be equal 1-D shapes",
                gamma.shape(),
                beta.shape()
            ));
        }
        let features = gamma.shape()[0];
        let (dtype, device) = (gamma.dtype(), gamma.device());
        Ok(BatchNorm1d {
            running_mean: Tensor::zeros(vec![features], dtype, device)?,
            running_var: Tensor::ones(vec![features], dtype, device)?,
            gamma,
            beta,
            features,
            momentum,
            eps,
        })
    }

    /// The running mean and variance (used in evaluation mode).
    pub fn running_stats(&self) -> (&Tensor, &Tensor) {
        (&self.running_mean, &self.running_var)
    }
}

impl Module for BatchNorm1d {
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if x.rank() != 2 || x.shape()[1] != self.features {
            return config_err(format!(
                "BatchNorm1d({}): expected input [batch, {}], got {:?}",
                self.features,
                self.features,
                x.shape()
            ));
        }
        let (mean, var) = if training {
            let mean = x.mean(&[0], false)?;
            let var = x.var(&[0], false)?;
            // Update the running statistics in place, outside the graph.
            no_grad(|| -> Result<()> {
                let m = self.momentum;
                let new_mean = self
                    .running_mean
                    .mul_scalar(m)?
                    .add(&mean.detach().mul_scalar(1.0 - m)?)?;
                let new_var = self
                    .running_var
                    .mul_scalar(m)?
                    .add(&var.detach().mul_scalar(1.0 - m)?)?;
                self.running_mean.assign(&new_mean)?;
                self.running_var.assign(&new_var)?;
                Ok(())
            })?;
            (mean, var)
        } else {
            (self.running_mean.clone(), self.running_var.clone())
        };
        let inv_std = var.add_scalar(self.eps)?.sqrt()?.recip()?;
        let normed = x.sub(&mean)?.mul(&inv_std)?;
        Ok(normed.mul(&self.gamma)?.add(&self.beta)?)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.gamma.clone()),
            ("bias".into(), self.beta.clone()),
        ]
    }

    fn buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".into(), self.running_mean.clone()),
            ("running_var".into(), self.running_var.clone()),
        ]
    }

    fn kind(&self) -> &'static str {
        "BatchNorm1d"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input != [self.features] {
            return Err(NnError::Config(format!(
                "BatchNorm1d({}): expected input shape [{}], got {:?}",
                self.features, self.features, input
            )));
        }
        Ok(input.to_vec())
    }
}
