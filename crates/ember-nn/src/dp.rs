//! DP-SGD (Abadi et al. 2016): training with a differential-privacy guarantee.
//!
//! Each step of [`Model::fit`] with [`FitConfig::dp`](crate::model::FitConfig) set:
//! 1. draws its batch by **Poisson sampling**: every training example joins independently with
//!    probability q = batch_size / n (so batch sizes vary; an empty batch still takes a step
//!    of pure noise), the sampling the accountant's analysis assumes;
//! 2. computes each example's gradient **norm** without materialising per-example gradients:
//!    for a Dense layer with input rows aᵢ and pre-activation gradient rows dzᵢ, example i's
//!    weight gradient is the outer product dzᵢ aᵢᵀ, whose squared norm is ‖dzᵢ‖²‖aᵢ‖² (the
//!    "ghost norm"), plus ‖dzᵢ‖² for the bias;
//! 3. clips: example i is scaled by cᵢ = min(1, C / (‖gᵢ‖ + 10⁻⁶)), and the clipped sum of
//!    weight gradients is one GEMM, (c ⊙ dz)ᵀ a, per layer (no second backward pass);
//! 4. adds Gaussian noise N(0, (σC)²) to every summed gradient element and divides by the
//!    expected batch size q·n; the optimizer then steps as usual;
//! 5. records the step in an [`RdpAccountant`] (σ, q), whose ε for the chosen δ is reported
//!    after every epoch (the `epsilon` entry of the epoch's metrics).
//!
//! Supported layers: Dense and Conv2d (any activation whose derivative follows from its output:
//! none, relu, sigmoid, tanh; gelu is refused; a convolution's per-example gradients are
//! computed by unfolding, see `dp_conv.rs`; grouped convolutions are refused) and layers
//! without parameters (Dropout, activations, Flatten, pooling). A layer that mixes examples (BatchNorm) would break the per-example bound and is
//! refused, as are L1/L2 penalties (their gradient is not clipped). The loss must average over
//! examples, as every ember loss does.

use crate::conv::Conv2d;
use crate::dp_conv;
use crate::error::{Result, config_err};
use crate::layers::{ActivationLayer, Dense};
use crate::model::Model;
use crate::module::Module;
use crate::privacy::RdpAccountant;
use ember_core::{Activation, GradStore, Tensor};
use rand::Rng;
use rand::rngs::StdRng;

/// The settings of DP-SGD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpSgd {
    /// σ: the noise's standard deviation over the clipping norm.
    pub noise_multiplier: f64,
    /// C: the largest norm an example's gradient keeps.
    pub max_grad_norm: f64,
    /// δ of the reported (ε, δ) guarantee.
    pub delta: f64,
}

impl DpSgd {
    /// Checks σ > 0, C > 0 and δ in (0, 1).
    pub fn validate(&self) -> Result<()> {
        if !(self.noise_multiplier > 0.0 && self.noise_multiplier.is_finite()) {
            return config_err(format!(
                "DP-SGD: noise multiplier {} must be positive (σ = 0 adds no noise and gives no privacy)",
                self.noise_multiplier
            ));
        }
        if !(self.max_grad_norm > 0.0 && self.max_grad_norm.is_finite()) {
            return config_err(format!(
                "DP-SGD: clipping norm {} must be positive",
                self.max_grad_norm
            ));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return config_err(format!("DP-SGD: delta {} must lie in (0, 1)", self.delta));
        }
        Ok(())
    }
}

/// The indices of a Poisson-sampled batch: each of `0..n` with probability `q`.
pub fn poisson_batch(n: usize, q: f64, rng: &mut StdRng) -> Vec<usize> {
    (0..n).filter(|_| rng.random::<f64>() < q).collect()
}

/// One Dense layer's record of a DP forward pass: its input and pre-activation output.
struct Tape {
    weight: Tensor,
    bias: Option<Tensor>,
    input: Tensor,
    z: Tensor,
}

impl Model {
    /// Checks that every layer is one DP-SGD supports (see the module doc).
    pub(crate) fn check_dp_layers(&self) -> Result<()> {
        if self.network.regularization()?.is_some() {
            return config_err(
                "DP-SGD: L1/L2 penalties are not supported (their gradient would not be clipped)",
            );
        }
        for (i, layer) in self.network.layers().iter().enumerate() {
            if let Some(c) = layer.as_any().and_then(|a| a.downcast_ref::<Conv2d>()) {
                let o = c.options();
                if o.groups != 1 {
                    return config_err(format!(
                        "DP-SGD: layer {i} (Conv2d with groups = {}): grouped convolutions are not supported",
                        o.groups
                    ));
                }
                if matches!(o.activation, Activation::Gelu | Activation::GeluTanh) {
                    return config_err(format!(
                        "DP-SGD: layer {i} (Conv2d with gelu): gelu's derivative does not follow from its output; use relu, tanh, sigmoid or none"
                    ));
                }
                continue;
            }
            match layer.as_any().and_then(|a| a.downcast_ref::<Dense>()) {
                Some(d) if matches!(d.activation(), Activation::Gelu | Activation::GeluTanh) => {
                    return config_err(format!(
                        "DP-SGD: layer {i} (Dense with gelu): gelu's derivative does not follow from its output; use relu, tanh, sigmoid or none"
                    ));
                }
                Some(_) => {}
                None if layer.parameters().is_empty() && layer.buffers().is_empty() => {}
                None => {
                    return config_err(format!(
                        "DP-SGD: layer {i} ({}) is not supported: per-example clipping covers Dense and Conv2d layers and layers without parameters",
                        layer.kind()
                    ));
                }
            }
        }
        Ok(())
    }

    /// One DP-SGD step on the Poisson-sampled batch (`x`, `y`) with `expected` = q·n; returns
    /// the batch's summed loss and its outputs (detached). An empty batch (`x` is `None`)
    /// takes a step of noise alone.
    pub(crate) fn dp_step(
        &mut self,
        batch: Option<(&Tensor, &Tensor)>,
        dp: &DpSgd,
        expected: f64,
        rng: &mut StdRng,
    ) -> Result<(f64, Option<Tensor>)> {
        let params = self.network.parameters_ref().to_vec();
        let mut store = GradStore::new();
        let sigma = dp.noise_multiplier * dp.max_grad_norm;
        let noisy = |g: Option<Tensor>, p: &Tensor, rng: &mut StdRng| -> Result<Tensor> {
            let noise = Tensor::randn(0.0, sigma, p.shape().to_vec(), p.dtype(), p.device(), rng)?;
            let sum = match g {
                Some(g) => g.add(&noise)?,
                None => noise,
            };
            Ok(sum.mul_scalar(1.0 / expected)?)
        };
        let Some((x, y)) = batch else {
            for (_, p) in &params {
                store.insert(p, noisy(None, p, rng)?);
            }
            self.optimizer.step(&params, &store)?;
            return Ok((0.0, None));
        };
        let rows = x.shape()[0];
        // Forward, keeping each Dense layer's input and pre-activation output.
        let mut tapes = Vec::new();
        let mut conv_tapes = Vec::new();
        let mut h = x.clone();
        for layer in self.network.layers() {
            if let Some(cv) = layer.as_any().and_then(|a| a.downcast_ref::<Conv2d>()) {
                let tape = dp_conv::forward(cv, &h)?;
                h = ActivationLayer::new(cv.options().activation).forward(&tape.z, true)?;
                conv_tapes.push(tape);
                continue;
            }
            match layer.as_any().and_then(|a| a.downcast_ref::<Dense>()) {
                Some(d) => {
                    if h.rank() != 2 {
                        return config_err(format!(
                            "DP-SGD: per-example clipping handles Dense layers on [batch, \
                             features] inputs only; {} got {:?}",
                            d.describe(),
                            h.shape()
                        ));
                    }
                    let z = h.linear(d.weight(), d.bias(), Activation::None)?;
                    let out = ActivationLayer::new(d.activation()).forward(&z, true)?;
                    tapes.push(Tape {
                        weight: d.weight().clone(),
                        bias: d.bias().cloned(),
                        input: h,
                        z,
                    });
                    h = out;
                }
                None => h = layer.forward(&h, true)?,
            }
        }
        // The losses average over examples: times the row count, each dz row is one
        // example's gradient.
        let loss = self.loss.compute(&h, y)?.mul_scalar(rows as f64)?;
        let loss_value = loss.to_scalar::<f64>()?;
        // As in `train_step`: a non-finite loss stops training before its update is applied.
        if !loss_value.is_finite() {
            return Err(crate::error::NnError::Diverged {
                step: self.optimizer.iterations() + 1,
                epoch: None,
                batch: None,
                loss: loss_value,
            });
        }
        let grads = loss.backward()?;
        // Per-example squared norms, summed over the layers (ghost norms).
        let mut sq = vec![0.0f64; rows];
        let mut dzs = Vec::with_capacity(tapes.len());
        for t in &tapes {
            let dz = match grads.get(&t.z) {
                Some(g) => g.clone(),
                None => t.z.zeros_like()?,
            };
            let dz2 = dz.mul(&dz)?.sum(&[1], false)?.to_vec::<f64>()?;
            let a2 = t.input.mul(&t.input)?.sum(&[1], false)?.to_vec::<f64>()?;
            let with_bias = if t.bias.is_some() { 1.0 } else { 0.0 };
            for i in 0..rows {
                sq[i] += dz2[i] * (a2[i] + with_bias);
            }
            dzs.push(dz);
        }
        let mut per_example = Vec::with_capacity(conv_tapes.len());
        for t in &conv_tapes {
            let dz = match grads.get(&t.z) {
                Some(g) => g.clone(),
                None => t.z.zeros_like()?,
            };
            let pe = t.per_example(&dz)?;
            for (s, v) in sq.iter_mut().zip(pe.squared_norms()?) {
                *s += v;
            }
            per_example.push(pe);
        }
        let scale: Vec<f64> = sq
            .iter()
            .map(|s| (dp.max_grad_norm / (s.sqrt() + 1e-6)).min(1.0))
            .collect();
        let c64 = Tensor::from_vec(scale.clone(), vec![rows], ember_core::Device::Cpu)?;
        for (t, pe) in conv_tapes.iter().zip(&per_example) {
            let (gw, gb) = pe.clipped_sums(&c64, t)?;
            store.insert(&t.weight, noisy(Some(gw), &t.weight, rng)?);
            if let (Some(b), Some(gb)) = (&t.bias, gb) {
                store.insert(b, noisy(Some(gb), b, rng)?);
            }
        }
        let c = Tensor::from_vec(scale, vec![rows, 1], ember_core::Device::Cpu)?
            .to_dtype(x.dtype())?
            .to_device(x.device())?;
        for (t, dz) in tapes.iter().zip(&dzs) {
            let clipped = dz.mul(&c.broadcast_to(dz.shape())?)?;
            let gw = clipped.t()?.matmul(&t.input)?;
            store.insert(&t.weight, noisy(Some(gw), &t.weight, rng)?);
            if let Some(b) = &t.bias {
                let gb = clipped.sum(&[0], false)?;
                store.insert(b, noisy(Some(gb), b, rng)?);
            }
        }
        self.optimizer.step(&params, &store)?;
        Ok((loss_value, Some(h.detach())))
    }
}

/// Records one epoch's steps and returns ε for `delta`.
pub(crate) fn account(acc: &mut RdpAccountant, dp: &DpSgd, q: f64, steps: u64) -> Result<f64> {
    acc.record(dp.noise_multiplier, q, steps)?;
    Ok(acc.epsilon(dp.delta)?.0)
}
