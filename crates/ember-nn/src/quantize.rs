//! Dynamic and static int8 quantization of trained Dense and Conv2d networks, for inference (PyTorch's
//! `torch.ao.quantization.quantize_dynamic` on `nn.Linear`, and its post-training static
//! quantization: [`quantize_static`] fixes each layer's input scale from calibration data).
//!
//! [`quantize_dynamic`] turns a trained f32 [`Sequential`] into a new one whose [`Dense`]
//! layers are [`QuantizedDense`]: the weight is quantized once, symmetric per output channel
//! to i8 codes in [-127, 127] with one f32 scale per channel, and packed for the int8 GEMM;
//! at every call the input batch is quantized per tensor to u8 in [0, 127] with a scale and
//! zero point computed from that batch ("dynamic"), multiplied exactly in i32, and the result
//! dequantized to f32, where the bias and the layer's activation are applied. So only the
//! matrix product runs in int8; everything else stays f32. The schemes and the reasons for
//! the 7-bit activations are in `ember_core::qgemm` (ember-cpu's `qgemm` module docs).
//!
//! [`Conv2d`](crate::conv::Conv2d) layers become [`QuantizedConv2d`] (the same GEMM on the
//! patch matrix of the quantized input; `quantize/conv.rs`). Layers without weights pass
//! through in f32: activation layers, Flatten, Softmax, MaxPool2d, AvgPool2d, and Dropout (the
//! identity at inference, so it is dropped). Anything else (BatchNorm, grouped convolutions,
//! ...) is refused with an error naming the layer. The quantized network is inference-only: it has no
//! parameters, and its layers run on the CPU (an input on another device is read back to the
//! host; the output is an f32 tensor on the input's device).
//!
//! [`QuantizedNet::save`] / [`QuantizedNet::load`] store a quantized network in safetensors: for the
//! k-th layer `layers.{k}.weight` (I8, `[out, in]`), `layers.{k}.weight_scale` (F32, `[out]`)
//! and `layers.{k}.bias` (F32, `[out]`, when present); a convolution's weight is I8
//! `[O, C, kh, kw]` (PyTorch's layout). The architecture goes in the header's metadata
//! (`ember.quantized = dynamic-int8`, `ember.layers = "qconv2d:relu:...,maxpool2d:...,flatten,
//! qdense:relu,..."`; the numbers after a convolution's or pool's activation are its stride,
//! padding and dilation), so a file is loaded without the f32 model.

mod conv;
pub use conv::{CHUNK_BYTES, QuantizedConv2d};

use crate::error::{NnError, Result, config_err};
use crate::layers::{ActivationLayer, Dense, Flatten, Softmax, activation_name, parse_activation};
use crate::module::Module;
use crate::pooling::{AvgPool2d, MaxPool2d};
use crate::sequential::Sequential;
use ember_core::qgemm::quant::{self, QParams, QuantWeights};
use ember_core::qgemm::{Dequant, PackedB, QActs, QError, QOut, qgemm};
use ember_core::{Activation, Device, PoolOptions, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A kernel-level error as an nn configuration error, naming the layer.
pub(crate) fn q_err(layer: &str, e: QError) -> NnError {
    NnError::Config(format!("{layer}: {e}"))
}

/// A Dense layer with int8 weights, dynamically quantized activations and an f32 output.
pub struct QuantizedDense {
    weights: QuantWeights,
    packed: PackedB,
    bias: Option<Vec<f32>>,
    activation: Activation,
    /// Fixed input scale and zero point (static quantization); `None` = chosen per batch.
    input: Option<QParams>,
}

impl QuantizedDense {
    /// Quantizes a trained [`Dense`] layer (its weight and bias are read back as f32).
    pub fn from_dense(dense: &Dense) -> Result<QuantizedDense> {
        let w = dense.weight().to_vec::<f32>()?;
        let bias = dense.bias().map(|b| b.to_vec::<f32>()).transpose()?;
        let (out_f, in_f) = (dense.out_features(), dense.in_features());
        let weights = quant::quantize_weights(&w, out_f, in_f)
            .map_err(|e| q_err("QuantizedDense::from_dense", e))?;
        QuantizedDense::from_parts(weights, bias, dense.activation())
    }

    /// A layer from already quantized weights (`[out, in]` codes and per-row scales), an
    /// optional bias of length `out` and the activation.
    pub fn from_parts(
        weights: QuantWeights,
        bias: Option<Vec<f32>>,
        activation: Activation,
    ) -> Result<QuantizedDense> {
        let (out_f, in_f) = (weights.rows, weights.cols);
        if out_f == 0 || in_f == 0 {
            return config_err(format!(
                "QuantizedDense: sizes must be positive, got [{out_f}, {in_f}]"
            ));
        }
        if weights.codes.len() != out_f * in_f || weights.scales.len() != out_f {
            return config_err(format!(
                "QuantizedDense: weight [{out_f}, {in_f}] needs {} codes and {out_f} scales, got {} and {}",
                out_f * in_f,
                weights.codes.len(),
                weights.scales.len()
            ));
        }
        if let Some((at, s)) = weights
            .scales
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s > 0.0))
        {
            return config_err(format!(
                "QuantizedDense: scale {at} is {s}, expected positive and finite"
            ));
        }
        if let Some(b) = &bias
            && b.len() != out_f
        {
            return config_err(format!(
                "QuantizedDense: bias must hold {out_f} values, got {}",
                b.len()
            ));
        }
        let packed = PackedB::from_transposed(in_f, out_f, &weights.codes, in_f)
            .map_err(|e| q_err("QuantizedDense", e))?;
        Ok(QuantizedDense {
            weights,
            packed,
            bias,
            activation,
            input: None,
        })
    }

    /// Static quantization: the input is quantized with these fixed parameters (from
    /// calibration, see [`quantize_static`]) instead of its own range. Values outside the
    /// calibrated range are clamped to the end codes, as in PyTorch's static quantization.
    pub fn with_input_params(mut self, p: QParams) -> Result<QuantizedDense> {
        let zero_point_ok = (0..=quant::ACT_QMAX).contains(&p.zero_point);
        if !(p.scale.is_finite() && p.scale > 0.0 && zero_point_ok) {
            return config_err(format!(
                "QuantizedDense: input scale {} must be positive and finite and zero point {} \
                 in [0, {}]",
                p.scale,
                p.zero_point,
                quant::ACT_QMAX
            ));
        }
        self.input = Some(p);
        Ok(self)
    }

    /// This layer with `other`'s static input parameters, if it has them.
    pub(crate) fn with_params_of(self, other: &QuantizedDense) -> Result<QuantizedDense> {
        match other.input {
            Some(p) => self.with_input_params(p),
            None => Ok(self),
        }
    }

    /// The fixed input parameters of a statically quantized layer.
    pub fn input_params(&self) -> Option<QParams> {
        self.input
    }

    /// The quantized weight: codes `[out, in]` and one scale per output channel.
    pub fn weights(&self) -> &QuantWeights {
        &self.weights
    }

    /// The f32 bias, if any.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    /// The activation applied in f32 after dequantizing.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Number of inputs.
    pub fn in_features(&self) -> usize {
        self.weights.cols
    }

    /// Number of outputs.
    pub fn out_features(&self) -> usize {
        self.weights.rows
    }

    /// The forward pass on host rows: `x` is `[m, in]` row-major; returns `[m, out]`.
    pub fn forward_host(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let (in_f, out_f) = (self.in_features(), self.out_features());
        let name = "QuantizedDense";
        if x.len() != m * in_f {
            return config_err(format!(
                "{name}({in_f} -> {out_f}): expected {m}x{in_f} = {} inputs, got {}",
                m * in_f,
                x.len()
            ));
        }
        let mut xq = vec![0u8; x.len()];
        let p = match self.input {
            Some(p) => {
                quant::quantize_u8(x, p, &mut xq).map_err(|e| q_err(name, e))?;
                p
            }
            None => quant::quantize_acts(x, &mut xq).map_err(|e| q_err(name, e))?,
        };
        self.forward_codes(&xq, p, m)
    }

    /// The GEMM and epilogue on already quantized rows: `xq` is `[m, in]` u8 codes with
    /// parameters `p`; returns `[m, out]` f32 with the bias and activation applied. (The
    /// quantized convolution feeds it its patch matrix.)
    pub(crate) fn forward_codes(&self, xq: &[u8], p: QParams, m: usize) -> Result<Vec<f32>> {
        let (in_f, out_f) = (self.in_features(), self.out_features());
        let name = "QuantizedDense";
        if xq.len() != m * in_f {
            return config_err(format!(
                "{name}({in_f} -> {out_f}): expected {m}x{in_f} = {} codes, got {}",
                m * in_f,
                xq.len()
            ));
        }
        let mut y = vec![0f32; m * out_f];
        let dq = Dequant {
            a_scale: p.scale,
            b_scales: &self.weights.scales,
            bias: self.bias.as_deref(),
            act: self.activation,
        };
        let acts = QActs {
            data: xq,
            m,
            lda: in_f,
            zero_point: p.zero_point,
        };
        qgemm(
            acts,
            &self.packed,
            QOut::F32 {
                c: &mut y,
                ldc: out_f,
                dq,
            },
        )
        .map_err(|e| q_err(name, e))?;
        Ok(y)
    }
}

impl Module for QuantizedDense {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let (in_f, out_f) = (self.in_features(), self.out_features());
        let m = match *x.shape() {
            [m, w] if w == in_f => m,
            _ => {
                return config_err(format!(
                    "QuantizedDense({in_f} -> {out_f}): expected input [batch, {in_f}], got {:?}",
                    x.shape()
                ));
            }
        };
        let y = self.forward_host(&x.to_vec::<f32>()?, m)?;
        Ok(Tensor::from_vec(y, (m, out_f), Device::Cpu)?.to_device(x.device())?)
    }

    fn kind(&self) -> &'static str {
        "QuantizedDense"
    }

    fn describe(&self) -> String {
        format!(
            "QuantizedDense {}, {} (int8)",
            self.out_features(),
            activation_name(self.activation)
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input != [self.in_features()] {
            return config_err(format!(
                "QuantizedDense({} -> {}): expected input shape [{}], got {:?}",
                self.in_features(),
                self.out_features(),
                self.in_features(),
                input
            ));
        }
        Ok(vec![self.out_features()])
    }
}

/// The activation of an [`ActivationLayer`] from its kind name.
fn activation_of_kind(kind: &str) -> Option<Activation> {
    Activation::ALL
        .into_iter()
        .find(|&a| ActivationLayer::new(a).kind() == kind)
}

/// One layer of a quantized network.
#[derive(Clone)]
pub enum QLayer {
    /// An int8 Dense layer (shared with the runnable network).
    Dense(Arc<QuantizedDense>),
    /// An int8 Conv2d layer (shared with the runnable network).
    Conv2d(Arc<QuantizedConv2d>),
    /// 2-D max pooling, in f32.
    MaxPool2d(PoolOptions),
    /// 2-D average pooling, in f32.
    AvgPool2d(PoolOptions),
    /// An activation layer.
    Activation(Activation),
    /// Flatten.
    Flatten,
    /// Softmax over the last axis.
    Softmax,
}

/// Lets a shared layer sit in a [`Sequential`] while [`QuantizedNet`] keeps a handle to it.
struct Shared<M>(Arc<M>);

impl<M: Module> Module for Shared<M> {
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        self.0.forward(x, training)
    }
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.0.output_shape(input)
    }
}

/// A dynamically quantized network: its layers, and the same layers as a runnable
/// [`Sequential`] (`forward`, `summary`).
pub struct QuantizedNet {
    network: Sequential,
    layers: Vec<QLayer>,
}

impl QuantizedNet {
    /// An empty network.
    pub fn new() -> QuantizedNet {
        QuantizedNet {
            network: Sequential::new(),
            layers: Vec::new(),
        }
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: QLayer) {
        match &layer {
            QLayer::Dense(d) => self.network.push(Shared(d.clone())),
            QLayer::Conv2d(c) => self.network.push(Shared(c.clone())),
            QLayer::MaxPool2d(o) => self.network.push(MaxPool2d::with_options(*o)),
            QLayer::AvgPool2d(o) => self.network.push(AvgPool2d::with_options(*o)),
            QLayer::Activation(a) => self.network.push(ActivationLayer::new(*a)),
            QLayer::Flatten => self.network.push(Flatten::new()),
            QLayer::Softmax => self.network.push(Softmax),
        }
        self.layers.push(layer);
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[QLayer] {
        &self.layers
    }

    /// The runnable network.
    pub fn network(&self) -> &Sequential {
        &self.network
    }

    /// Inference on a batch: the network's `forward` in evaluation mode, except that runs of
    /// consecutive [`QuantizedDense`] layers pass their f32 activations on the host, without
    /// a tensor in between (each layer's activation is already applied in its epilogue). The
    /// values are the same as layer by layer.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut t = x.clone();
        let mut i = 0;
        while i < self.layers.len() {
            let run: Vec<&Arc<QuantizedDense>> = self
                .layers
                .iter()
                .skip(i)
                .map_while(|l| match l {
                    QLayer::Dense(d) => Some(d),
                    _ => None,
                })
                .collect();
            let Some(first) = run.first() else {
                // The network holds one module per entry of `layers` (push adds both).
                if let Some(layer) = self.network.layers().get(i) {
                    t = layer.forward(&t, false)?;
                }
                i += 1;
                continue;
            };
            let m = match *t.shape() {
                [m, w] if w == first.in_features() => m,
                _ => {
                    return config_err(format!(
                        "QuantizedDense({} -> {}): expected input [batch, {}], got {:?}",
                        first.in_features(),
                        first.out_features(),
                        first.in_features(),
                        t.shape()
                    ));
                }
            };
            let mut h = t.to_vec::<f32>()?;
            let mut width = first.in_features();
            for d in &run {
                if d.in_features() != width {
                    return config_err(format!(
                        "QuantizedDense({} -> {}): expected input [batch, {}], got [{m}, {width}]",
                        d.in_features(),
                        d.out_features(),
                        d.in_features()
                    ));
                }
                h = d.forward_host(&h, m)?;
                width = d.out_features();
            }
            t = Tensor::from_vec(h, (m, width), Device::Cpu)?.to_device(x.device())?;
            i += run.len();
        }
        Ok(t)
    }

    /// The runnable network, taken out (to compile it into a [`crate::model::Model`] for
    /// `evaluate` and `predict`).
    pub fn into_network(self) -> Sequential {
        self.network
    }

    /// Saves the network to `path` in safetensors (module docs), atomically as checkpoints are.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with_metadata(path, &std::collections::BTreeMap::new())
    }

    /// [`QuantizedNet::save`] with extra header metadata (`ember train`'s `ember.model`,
    /// `ember.scaling`, `ember.classes`, so `ember evaluate` and `ember predict` can use the
    /// file as they use an f32 checkpoint). The quantization keys cannot be overridden.
    pub fn save_with_metadata(
        &self,
        path: &Path,
        extra: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let mut specs = Vec::new();
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (k, layer) in self.layers.iter().enumerate() {
            match layer {
                QLayer::Dense(d) => {
                    specs.push(format!("qdense:{}", activation_name(d.activation)));
                    let shape = vec![d.out_features(), d.in_features()];
                    push_gemm_tensors(&mut tensors, k, d, &d.weights.codes, shape);
                }
                QLayer::Conv2d(c) => {
                    let (st, ((pt, pb), (pl, pr)), dl) = (c.stride(), c.padding(), c.dilation());
                    specs.push(format!(
                        "qconv2d:{}:{}:{}:{pt}:{pb}:{pl}:{pr}:{}:{}",
                        activation_name(c.gemm().activation()),
                        st.0,
                        st.1,
                        dl.0,
                        dl.1
                    ));
                    let g = c.gemm();
                    let (kh, kw) = c.kernel_size();
                    let (o, ci) = (c.out_channels(), c.in_channels());
                    // Stored in PyTorch's [O, C, kh, kw] order.
                    let codes = conv::to_channel_major(&g.weights.codes, o, ci, kh, kw);
                    push_gemm_tensors(&mut tensors, k, g, &codes, vec![o, ci, kh, kw]);
                }
                QLayer::MaxPool2d(o) => specs.push(format!("maxpool2d:{}", pool_text(o))),
                QLayer::AvgPool2d(o) => specs.push(format!("avgpool2d:{}", pool_text(o))),
                QLayer::Activation(a) => specs.push(format!("act:{}", activation_name(*a))),
                QLayer::Flatten => specs.push("flatten".into()),
                QLayer::Softmax => specs.push("softmax".into()),
            }
        }
        let st_err = |message: String, e: safetensors::SafeTensorError| NnError::Checkpoint {
            path: path.display().to_string(),
            message,
            source: Some(Box::new(e)),
        };
        let views = tensors
            .iter()
            .map(|(name, dt, shape, bytes)| {
                TensorView::new(*dt, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| st_err(format!("tensor {name}"), e))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut meta: HashMap<String, String> =
            extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let kind = if self.layers.iter().any(|l| match l {
            QLayer::Dense(d) => d.input.is_some(),
            QLayer::Conv2d(c) => c.gemm().input.is_some(),
            _ => false,
        }) {
            KIND_STATIC
        } else {
            KIND
        };
        meta.insert(META_KIND.to_string(), kind.to_string());
        meta.insert(META_LAYERS.to_string(), specs.join(","));
        let bytes = safetensors::serialize(views, Some(meta))
            .map_err(|e| st_err("serialising the quantized model".into(), e))?;
        crate::checkpoint::write_atomic(path, &bytes)
    }

    /// Loads a network saved by [`QuantizedNet::save`]: every tensor's name, dtype and shape
    /// is checked against the recorded architecture; a mismatch is an error naming it.
    pub fn load(path: &Path) -> Result<QuantizedNet> {
        let bytes = std::fs::read(path).map_err(|source| NnError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let ck = |message: String| NnError::Checkpoint {
            path: path.display().to_string(),
            message,
            source: None,
        };
        let st_err = |message: &str, e: safetensors::SafeTensorError| NnError::Checkpoint {
            path: path.display().to_string(),
            message: message.to_string(),
            source: Some(Box::new(e)),
        };
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| st_err("reading the header", e))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if !matches!(
            meta.get(META_KIND).map(String::as_str),
            Some(KIND) | Some(KIND_STATIC)
        ) {
            return Err(ck(format!(
                "not a quantized ember model (metadata {META_KIND} is not {KIND} or {KIND_STATIC})"
            )));
        }
        let st = SafeTensors::deserialize(&bytes).map_err(|e| st_err("reading the tensors", e))?;
        let spec = meta.get(META_LAYERS).cloned().unwrap_or_default();
        let mut net = QuantizedNet::new();
        for (k, item) in spec.split(',').filter(|s| !s.is_empty()).enumerate() {
            let (tag, arg) = item.split_once(':').unwrap_or((item, ""));
            let layer = match tag {
                "qdense" => QLayer::Dense(Arc::new(load_dense(&st, path, k, arg)?)),
                "qconv2d" => QLayer::Conv2d(Arc::new(load_conv(&st, path, k, arg)?)),
                "maxpool2d" => {
                    QLayer::MaxPool2d(parse_pool(arg).map_err(|m| ck(format!("layer {k}: {m}")))?)
                }
                "avgpool2d" => {
                    QLayer::AvgPool2d(parse_pool(arg).map_err(|m| ck(format!("layer {k}: {m}")))?)
                }
                "act" => QLayer::Activation(parse_activation(arg)?),
                "flatten" => QLayer::Flatten,
                "softmax" => QLayer::Softmax,
                other => return Err(ck(format!("layer {k}: unknown kind '{other}'"))),
            };
            net.push(layer);
        }
        Ok(net)
    }
}

impl Default for QuantizedNet {
    fn default() -> Self {
        QuantizedNet::new()
    }
}

/// Dynamic int8 quantization of a trained network (see the module docs): Dense layers become
/// [`QuantizedDense`], activation layers, Flatten and Softmax are carried over, Dropout (the
/// identity at inference) is dropped; any other layer is an error naming it.
pub fn quantize_dynamic(net: &Sequential) -> Result<QuantizedNet> {
    let mut out = QuantizedNet::new();
    for (i, layer) in net.layers().iter().enumerate() {
        let q = match layer.kind() {
            "Dense" => {
                let Some(dense) = layer.as_any().and_then(|a| a.downcast_ref::<Dense>()) else {
                    return config_err(format!(
                        "quantize_dynamic: layer {i} says it is Dense but is another type"
                    ));
                };
                QLayer::Dense(Arc::new(QuantizedDense::from_dense(dense)?))
            }
            "Conv2d" => {
                let Some(conv) = layer
                    .as_any()
                    .and_then(|a| a.downcast_ref::<crate::conv::Conv2d>())
                else {
                    return config_err(format!(
                        "quantize_dynamic: layer {i} says it is Conv2d but is another type"
                    ));
                };
                QLayer::Conv2d(Arc::new(QuantizedConv2d::from_conv(conv)?))
            }
            "MaxPool2d" | "AvgPool2d" => {
                let any = layer.as_any();
                if let Some(p) = any.and_then(|a| a.downcast_ref::<MaxPool2d>()) {
                    QLayer::MaxPool2d(p.options())
                } else if let Some(p) = any.and_then(|a| a.downcast_ref::<AvgPool2d>()) {
                    QLayer::AvgPool2d(p.options())
                } else {
                    return config_err(format!(
                        "quantize_dynamic: layer {i} says it is {} but is another type",
                        layer.kind()
                    ));
                }
            }
            "Flatten" => QLayer::Flatten,
            "Softmax" => QLayer::Softmax,
            "Dropout" => continue,
            kind => match activation_of_kind(kind) {
                Some(a) => QLayer::Activation(a),
                None => {
                    return config_err(format!(
                        "quantize_dynamic: layer {i} is {kind}, which has no quantized form \
                         (supported: Dense, Conv2d, MaxPool2d, AvgPool2d, activation layers, \
                         Flatten, Softmax, Dropout)"
                    ));
                }
            },
        };
        out.push(q);
    }
    Ok(out)
}

/// Static int8 quantization (PyTorch's post-training static quantization of Linear and Conv2d
/// layers): as [`quantize_dynamic`], but each Dense and Conv2d layer's input scale and zero point are fixed once
/// from the range its inputs take on `calibration` (rows of the model's input, run through the
/// f32 network in evaluation mode), instead of being computed from every batch. Saves the
/// per-batch range scan at inference; inputs outside the calibrated range are clamped.
pub fn quantize_static(net: &Sequential, calibration: &Tensor) -> Result<QuantizedNet> {
    if calibration.rank() == 0 || calibration.shape()[0] == 0 {
        return config_err(format!(
            "quantize_static: the calibration data must hold at least one row, got {:?}",
            calibration.shape()
        ));
    }
    let dynamic = quantize_dynamic(net)?;
    // Each Dense layer's input range over the calibration rows, in batches.
    let mut ranges: Vec<Option<(f32, f32)>> = vec![None; net.len()];
    let rows = calibration.shape()[0];
    for start in (0..rows).step_by(256) {
        let n = 256.min(rows - start);
        let mut h = calibration.narrow(0, start, n)?;
        for (i, layer) in net.layers().iter().enumerate() {
            if is_gemm_layer(layer.kind()) {
                let v = h.to_vec::<f32>()?;
                if let Some(at) = v.iter().position(|x| !x.is_finite()) {
                    return config_err(format!(
                        "quantize_static: calibration value {at} entering layer {i} is {}",
                        v[at]
                    ));
                }
                let (lo, hi) = v
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                        (a.min(x), b.max(x))
                    });
                if let Some(r) = ranges.get_mut(i) {
                    *r = Some(match *r {
                        Some((a, b)) => (a.min(lo), b.max(hi)),
                        None => (lo, hi),
                    });
                }
            }
            h = ember_core::no_grad(|| layer.forward(&h, false))?;
        }
    }
    let mut out = QuantizedNet::new();
    let dense_ranges = net
        .layers()
        .iter()
        .zip(&ranges)
        .filter(|(l, _)| is_gemm_layer(l.kind()))
        .map(|(_, r)| *r);
    let mut dense_ranges = dense_ranges.collect::<Vec<_>>().into_iter();
    for layer in dynamic.layers() {
        let q = match layer {
            QLayer::Dense(d) => {
                let Some(Some((lo, hi))) = dense_ranges.next() else {
                    return config_err("quantize_static: a Dense layer saw no calibration data");
                };
                let p =
                    quant::choose_act_params(lo, hi).map_err(|e| q_err("quantize_static", e))?;
                let fresh =
                    QuantizedDense::from_parts(d.weights.clone(), d.bias.clone(), d.activation)?
                        .with_input_params(p)?;
                QLayer::Dense(Arc::new(fresh))
            }
            QLayer::Conv2d(c) => {
                let Some(Some((lo, hi))) = dense_ranges.next() else {
                    return config_err("quantize_static: a Conv2d layer saw no calibration data");
                };
                let p =
                    quant::choose_act_params(lo, hi).map_err(|e| q_err("quantize_static", e))?;
                let g = c.gemm();
                let gemm =
                    QuantizedDense::from_parts(g.weights.clone(), g.bias.clone(), g.activation)?
                        .with_input_params(p)?;
                let fresh = QuantizedConv2d::from_parts(
                    gemm,
                    c.in_channels(),
                    c.kernel_size(),
                    c.stride(),
                    c.padding(),
                    c.dilation(),
                )?;
                QLayer::Conv2d(Arc::new(fresh))
            }
            other => other.clone(),
        };
        out.push(q);
    }
    Ok(out)
}

/// Layers whose input is quantized (their calibration ranges are recorded).
fn is_gemm_layer(kind: &str) -> bool {
    matches!(kind, "Dense" | "Conv2d")
}

const META_KIND: &str = "ember.quantized";
const META_LAYERS: &str = "ember.layers";
const KIND: &str = "dynamic-int8";
const KIND_STATIC: &str = "static-int8";

/// Little-endian bytes of f32 values.
fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// f32 values from little-endian bytes.
fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
        .collect()
}

/// Reads a tensor's raw bytes, checking its dtype and shape.
fn read_tensor<'a>(
    st: &'a SafeTensors<'a>,
    path: &Path,
    name: &str,
    dtype: Dtype,
    shape: Option<&[usize]>,
) -> Result<(Vec<usize>, &'a [u8])> {
    let ck = |message: String| NnError::Checkpoint {
        path: path.display().to_string(),
        message,
        source: None,
    };
    let t = st
        .tensor(name)
        .map_err(|_| ck(format!("tensor {name} is missing")))?;
    if t.dtype() != dtype || shape.is_some_and(|s| t.shape() != s) {
        return Err(ck(format!(
            "tensor {name} is {:?} {:?}, expected {dtype:?} {}",
            t.dtype(),
            t.shape(),
            shape.map_or("[out, in]".to_string(), |s| format!("{s:?}"))
        )));
    }
    Ok((t.shape().to_vec(), t.data()))
}

/// The k-th layer's QuantizedDense from a file.
fn load_dense(st: &SafeTensors<'_>, path: &Path, k: usize, act: &str) -> Result<QuantizedDense> {
    let w_name = format!("layers.{k}.weight");
    let (shape, _) = read_tensor(st, path, &w_name, Dtype::I8, None)?;
    let &[o, i] = shape.as_slice() else {
        return Err(NnError::Checkpoint {
            path: path.display().to_string(),
            message: format!("tensor {w_name} is {shape:?}, expected [out, in]"),
            source: None,
        });
    };
    load_gemm(st, path, k, act, [o, i])
}

/// The k-th layer's GEMM (codes read as `[o, i]` whatever their stored shape), scales, bias
/// and input parameters.
fn load_gemm(
    st: &SafeTensors<'_>,
    path: &Path,
    k: usize,
    act: &str,
    [o, i]: [usize; 2],
) -> Result<QuantizedDense> {
    let act = parse_activation(act)?;
    let w_name = format!("layers.{k}.weight");
    let (_, codes) = read_tensor(st, path, &w_name, Dtype::I8, None)?;
    if codes.len() != o * i {
        return Err(NnError::Checkpoint {
            path: path.display().to_string(),
            message: format!(
                "tensor {w_name} holds {} codes, expected {o}x{i}",
                codes.len()
            ),
            source: None,
        });
    }
    let scale_name = format!("layers.{k}.weight_scale");
    let (_, scales) = read_tensor(st, path, &scale_name, Dtype::F32, Some(&[o]))?;
    let b_name = format!("layers.{k}.bias");
    let bias = if st.names().iter().any(|n| **n == b_name) {
        Some(f32s(
            read_tensor(st, path, &b_name, Dtype::F32, Some(&[o]))?.1,
        ))
    } else {
        None
    };
    let w = QuantWeights {
        rows: o,
        cols: i,
        codes: codes.iter().map(|&b| b as i8).collect(),
        scales: f32s(scales),
    };
    let layer = QuantizedDense::from_parts(w, bias, act)?;
    let p_name = format!("layers.{k}.input_qparams");
    if !st.names().iter().any(|n| **n == p_name) {
        return Ok(layer);
    }
    let v = f32s(read_tensor(st, path, &p_name, Dtype::F32, Some(&[2]))?.1);
    let (scale, zp) = (
        v.first().copied().unwrap_or(0.0),
        v.get(1).copied().unwrap_or(-1.0),
    );
    if zp.fract() != 0.0 || !(0.0..=quant::ACT_QMAX as f32).contains(&zp) {
        return Err(NnError::Checkpoint {
            path: path.display().to_string(),
            message: format!("tensor {p_name}: zero point {zp} is not a code in [0, 127]"),
            source: None,
        });
    }
    layer.with_input_params(QParams {
        scale,
        zero_point: zp as i32,
    })
}

/// A tensor to save: name, dtype, shape, little-endian bytes.
type Saved = (String, Dtype, Vec<usize>, Vec<u8>);

/// The k-th layer's GEMM tensors: the weight `codes` (I8, `shape`), the per-channel scales, the
/// bias and the static input parameters when present.
fn push_gemm_tensors(
    tensors: &mut Vec<Saved>,
    k: usize,
    d: &QuantizedDense,
    codes: &[i8],
    shape: Vec<usize>,
) {
    let o = d.out_features();
    let codes = codes.iter().map(|&c| c as u8).collect();
    tensors.push((format!("layers.{k}.weight"), Dtype::I8, shape, codes));
    tensors.push((
        format!("layers.{k}.weight_scale"),
        Dtype::F32,
        vec![o],
        f32_bytes(&d.weights.scales),
    ));
    if let Some(b) = &d.bias {
        tensors.push((
            format!("layers.{k}.bias"),
            Dtype::F32,
            vec![o],
            f32_bytes(b),
        ));
    }
    if let Some(p) = d.input {
        // [scale, zero point]: the zero point is a whole number in [0, 127], exact in f32.
        tensors.push((
            format!("layers.{k}.input_qparams"),
            Dtype::F32,
            vec![2],
            f32_bytes(&[p.scale, p.zero_point as f32]),
        ));
    }
}

/// A pooling window as `kh:kw:sh:sw:ph:pw:dh:dw:ceil:count_include_pad` (flags 0/1).
fn pool_text(o: &PoolOptions) -> String {
    format!(
        "{}:{}:{}:{}:{}:{}:{}:{}:{}:{}",
        o.kernel[0],
        o.kernel[1],
        o.stride[0],
        o.stride[1],
        o.padding[0],
        o.padding[1],
        o.dilation[0],
        o.dilation[1],
        u8::from(o.ceil_mode),
        u8::from(o.count_include_pad)
    )
}

/// Parses `n` colon-separated whole numbers.
fn numbers(text: &str, n: usize, what: &str) -> std::result::Result<Vec<usize>, String> {
    let v = text
        .split(':')
        .map(|t| t.parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| format!("{what} '{text}': expected {n} whole numbers separated by ':'"))?;
    if v.len() != n {
        return Err(format!(
            "{what} '{text}': expected {n} numbers, got {}",
            v.len()
        ));
    }
    Ok(v)
}

/// What [`pool_text`] wrote.
fn parse_pool(text: &str) -> std::result::Result<PoolOptions, String> {
    let v = numbers(text, 10, "pooling window")?;
    let &[kh, kw, sh, sw, ph, pw, dh, dw, ceil, cip] = v.as_slice() else {
        return Err(format!("pooling window '{text}': expected 10 numbers"));
    };
    let flag = |x: usize| match x {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(format!("pooling window '{text}': flags must be 0 or 1")),
    };
    let o = PoolOptions {
        kernel: [kh, kw],
        stride: [sh, sw],
        padding: [ph, pw],
        dilation: [dh, dw],
        ceil_mode: flag(ceil)?,
        count_include_pad: flag(cip)?,
    };
    if o.kernel.contains(&0) || o.stride.contains(&0) || o.dilation.contains(&0) {
        return Err(format!(
            "pooling window '{text}': kernel, stride and dilation must be positive"
        ));
    }
    Ok(o)
}

/// The k-th layer's QuantizedConv2d from a file: `arg` is `act:sh:sw:pt:pb:pl:pr:dh:dw`, the
/// weight I8 `[O, C, kh, kw]`.
fn load_conv(st: &SafeTensors<'_>, path: &Path, k: usize, arg: &str) -> Result<QuantizedConv2d> {
    let ck = |message: String| NnError::Checkpoint {
        path: path.display().to_string(),
        message: format!("layer {k}: {message}"),
        source: None,
    };
    let (act, geometry) = arg.split_once(':').unwrap_or((arg, ""));
    let g = numbers(geometry, 8, "convolution geometry").map_err(ck)?;
    let &[sh, sw, pt, pb, pl, pr, dh, dw] = g.as_slice() else {
        return Err(ck(format!(
            "convolution geometry '{geometry}': expected 8 numbers"
        )));
    };
    let w_name = format!("layers.{k}.weight");
    let (shape, _) = read_tensor(st, path, &w_name, Dtype::I8, None)?;
    let &[o, c, kh, kw] = shape.as_slice() else {
        return Err(ck(format!(
            "tensor {w_name} is {shape:?}, expected [out, in, kh, kw]"
        )));
    };
    let gemm = load_gemm(st, path, k, act, [o, c * kh * kw])?;
    // Stored as [O, C, kh, kw]; the layer computes in tap-major order (conv.rs).
    let weights = QuantWeights {
        codes: conv::to_tap_major(&gemm.weights.codes, o, c, kh, kw),
        ..gemm.weights.clone()
    };
    let gemm = QuantizedDense::from_parts(weights, gemm.bias.clone(), gemm.activation)?
        .with_params_of(&gemm)?;
    QuantizedConv2d::from_parts(gemm, c, (kh, kw), (sh, sw), ((pt, pb), (pl, pr)), (dh, dw))
}
