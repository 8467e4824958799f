//! Image layers without weights, and BatchNorm2d: MaxPool2d, AvgPool2d, GlobalAvgPool2d,
//! Upsample (nearest), ZeroPad2d and Pad, Reshape, BatchNorm2d.
//!
//! Inputs are NCHW batches, as PyTorch's; each layer is one call of an ember-core op
//! (`max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d`, `upsample_nearest2d`, `pad`,
//! `batch_norm`), which carries its own backward. `output_shape` (used by `summary()`) computes
//! the same extents as the op from the input shape without the batch dimension, and names the
//! layer when an input does not fit.
//!
//! BatchNorm2d follows PyTorch's `nn.BatchNorm2d`: momentum 0.1 and eps 1e-5 by default, the
//! unbiased batch variance in the running estimate, and the `state_dict` names `weight`,
//! `bias` (parameters) and `running_mean`, `running_var` (buffers, saved in checkpoints).
//! PyTorch's integer `num_batches_tracked` buffer has no ember counterpart (it only matters
//! for `momentum=None`, a cumulative average ember does not offer).

use crate::error::{NnError, Result, config_err};
use crate::module::Module;
use ember_core::ember_ops::{Axis, Pool2dSpec, PoolKind};
use ember_core::{BatchNormOptions, DType, Device, Pad2d, PadMode, PoolOptions, Tensor};

/// `[C, H, W]` from a layer's input shape (without the batch), or an error naming the layer.
fn chw(layer: &str, input: &[usize]) -> Result<[usize; 3]> {
    match input {
        &[c, h, w] => Ok([c, h, w]),
        _ => config_err(format!(
            "{layer}: expected input [channels, height, width], got {input:?}"
        )),
    }
}

/// The output `[C, OH, OW]` of pooling `[C, H, W]` with `o` (the op's own validation).
fn pooled(layer: &str, kind: PoolKind, o: &PoolOptions, input: &[usize]) -> Result<Vec<usize>> {
    let [c, h, w] = chw(layer, input)?;
    let axis = |i: usize, n: usize| Axis {
        input: n,
        kernel: o.kernel[i],
        stride: o.stride[i],
        dilation: o.dilation[i],
        pad_begin: o.padding[i],
        pad_end: o.padding[i],
    };
    let spec = Pool2dSpec {
        batch: 1,
        channels: c,
        kind,
        ceil_mode: o.ceil_mode,
        h: axis(0, h),
        w: axis(1, w),
    };
    spec.validate()
        .map_err(|e| NnError::Config(format!("{layer}: input {input:?}: {e}")))?;
    Ok(vec![c, spec.out_h(), spec.out_w()])
}

fn window_text(o: &PoolOptions) -> String {
    let mut s = format!(
        "{}×{}/{}×{}",
        o.kernel[0], o.kernel[1], o.stride[0], o.stride[1]
    );
    if o.padding != [0, 0] {
        s += &format!(", pad {}×{}", o.padding[0], o.padding[1]);
    }
    s
}

/// 2-D max pooling (PyTorch's `nn.MaxPool2d`, Keras's `MaxPooling2D`).
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    options: PoolOptions,
}

impl MaxPool2d {
    /// A `k`×`k` window with stride `k` (PyTorch's `nn.MaxPool2d(k)`).
    pub fn new(k: usize) -> MaxPool2d {
        MaxPool2d::with_options(PoolOptions::new(k))
    }

    /// Any window: kernel, stride, padding, dilation, ceil_mode.
    pub fn with_options(options: PoolOptions) -> MaxPool2d {
        MaxPool2d { options }
    }

    /// The window: kernel, stride, padding, dilation, ceil_mode (and for average pooling
    /// count_include_pad).
    pub fn options(&self) -> PoolOptions {
        self.options
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        Ok(x.max_pool2d(self.options)?)
    }

    fn kind(&self) -> &'static str {
        "MaxPool2d"
    }

    fn describe(&self) -> String {
        format!("MaxPool2d {}", window_text(&self.options))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        pooled("MaxPool2d", PoolKind::Max, &self.options, input)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// 2-D average pooling (PyTorch's `nn.AvgPool2d`; `count_include_pad` defaults to true).
#[derive(Debug, Clone, Copy)]
pub struct AvgPool2d {
    options: PoolOptions,
}

impl AvgPool2d {
    /// A `k`×`k` window with stride `k`.
    pub fn new(k: usize) -> AvgPool2d {
        AvgPool2d::with_options(PoolOptions::new(k))
    }

    /// Any window: kernel, stride, padding, ceil_mode, count_include_pad (no dilation).
    pub fn with_options(options: PoolOptions) -> AvgPool2d {
        AvgPool2d { options }
    }

    /// The window: kernel, stride, padding, dilation, ceil_mode (and for average pooling
    /// count_include_pad).
    pub fn options(&self) -> PoolOptions {
        self.options
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        Ok(x.avg_pool2d(self.options)?)
    }

    fn kind(&self) -> &'static str {
        "AvgPool2d"
    }

    fn describe(&self) -> String {
        format!("AvgPool2d {}", window_text(&self.options))
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let kind = PoolKind::Avg {
            count_include_pad: self.options.count_include_pad,
        };
        pooled("AvgPool2d", kind, &self.options, input)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// The mean of every channel plane. Like Keras's `GlobalAveragePooling2D` the output is
/// `[N, C]` (ready for a Dense layer); [`GlobalAvgPool2d::keep_dims`] gives PyTorch's
/// `nn.AdaptiveAvgPool2d(1)` shape `[N, C, 1, 1]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalAvgPool2d {
    keep_dims: bool,
}

impl GlobalAvgPool2d {
    /// Output `[N, C]`.
    pub fn new() -> GlobalAvgPool2d {
        GlobalAvgPool2d { keep_dims: false }
    }

    /// Output `[N, C, 1, 1]`.
    pub fn keep_dims() -> GlobalAvgPool2d {
        GlobalAvgPool2d { keep_dims: true }
    }
}

impl Module for GlobalAvgPool2d {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let y = x.global_avg_pool2d()?;
        if self.keep_dims || x.rank() != 4 {
            return Ok(y);
        }
        Ok(y.flatten(1, 3)?)
    }

    fn kind(&self) -> &'static str {
        "GlobalAvgPool2d"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [c, h, w] = chw("GlobalAvgPool2d", input)?;
        if h == 0 || w == 0 {
            return config_err(format!("GlobalAvgPool2d: empty input plane {input:?}"));
        }
        Ok(if self.keep_dims {
            vec![c, 1, 1]
        } else {
            vec![c]
        })
    }
}

/// Nearest upsampling by integer factors (PyTorch's `nn.Upsample(scale_factor, mode="nearest")`,
/// Keras's `UpSampling2D`).
#[derive(Debug, Clone, Copy)]
pub struct Upsample {
    scale: (usize, usize),
}

impl Upsample {
    /// Scales height and width by `s`.
    pub fn new(s: usize) -> Upsample {
        Upsample { scale: (s, s) }
    }

    /// Scales height by `sh` and width by `sw`.
    pub fn rect(sh: usize, sw: usize) -> Upsample {
        Upsample { scale: (sh, sw) }
    }
}

impl Module for Upsample {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        Ok(x.upsample_nearest2d(self.scale)?)
    }

    fn kind(&self) -> &'static str {
        "Upsample"
    }

    fn describe(&self) -> String {
        format!("Upsample nearest ×{}×{}", self.scale.0, self.scale.1)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [c, h, w] = chw("Upsample", input)?;
        if self.scale.0 == 0 || self.scale.1 == 0 {
            return config_err(format!(
                "Upsample: scale factors {}×{} must be ≥ 1",
                self.scale.0, self.scale.1
            ));
        }
        Ok(vec![c, h * self.scale.0, w * self.scale.1])
    }
}

/// Padding of the height and width of NCHW input (PyTorch's `nn.ConstantPad2d`,
/// `nn.ReflectionPad2d`; pads in `(left, right, top, bottom)` order).
#[derive(Debug, Clone, Copy)]
pub struct Pad {
    pads: Pad2d,
    mode: PadMode,
}

impl Pad {
    /// Pads by `pads` as `mode` says.
    pub fn new(pads: Pad2d, mode: PadMode) -> Pad {
        Pad { pads, mode }
    }
}

/// Zero padding (PyTorch's `nn.ZeroPad2d`, Keras's `ZeroPadding2D`).
pub struct ZeroPad2d;

impl ZeroPad2d {
    /// `p` zeros on every side.
    #[allow(clippy::new_ret_no_self)] // a ZeroPad2d is a Pad with a constant 0
    pub fn new(p: usize) -> Pad {
        Pad::new(Pad2d::uniform(p), PadMode::Constant(0.0))
    }

    /// Zeros per side, `(left, right, top, bottom)`.
    pub fn sides(pads: Pad2d) -> Pad {
        Pad::new(pads, PadMode::Constant(0.0))
    }
}

impl Module for Pad {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        Ok(x.pad(self.pads, self.mode)?)
    }

    fn kind(&self) -> &'static str {
        "Pad"
    }

    fn describe(&self) -> String {
        let p = self.pads;
        let mode = match self.mode {
            PadMode::Constant(v) => format!("constant {v}"),
            _ => "reflect".to_string(),
        };
        format!(
            "Pad ({}, {}, {}, {}) {mode}",
            p.left, p.right, p.top, p.bottom
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [c, h, w] = chw("Pad", input)?;
        self.pads
            .validate(self.mode, h, w)
            .map_err(|e| NnError::Config(format!("Pad: input {input:?}: {e}")))?;
        let (oh, ow) = self
            .pads
            .output(h, w)
            .ok_or_else(|| NnError::Config(format!("Pad: input {input:?}: size overflows")))?;
        Ok(vec![c, oh, ow])
    }
}

/// Reshapes every sample (the batch dimension is kept): Keras's `Reshape(target_shape)`.
#[derive(Debug, Clone)]
pub struct Reshape {
    shape: Vec<usize>,
}

impl Reshape {
    /// Each sample becomes `shape` (its element count must not change).
    pub fn new(shape: &[usize]) -> Reshape {
        Reshape {
            shape: shape.to_vec(),
        }
    }
}

impl Module for Reshape {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let Some((&n, sample)) = x.shape().split_first() else {
            return config_err("Reshape: input must have a batch dimension");
        };
        self.output_shape(sample)?;
        let mut to = vec![n];
        to.extend(&self.shape);
        Ok(x.reshape(to)?)
    }

    fn kind(&self) -> &'static str {
        "Reshape"
    }

    fn describe(&self) -> String {
        format!("Reshape {:?}", self.shape)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (a, b) = (
            input.iter().product::<usize>(),
            self.shape.iter().product::<usize>(),
        );
        if a != b {
            return config_err(format!(
                "Reshape: a sample of shape {input:?} ({a} values) cannot become {:?} ({b} values)",
                self.shape
            ));
        }
        Ok(self.shape.clone())
    }
}

/// Batch normalisation per channel of NCHW input over (N, H, W), PyTorch's `nn.BatchNorm2d`.
///
/// Training (`forward(x, true)`) normalises with the batch's mean and biased variance and moves
/// the running statistics toward the batch's (`running = (1 − momentum)·running +
/// momentum·batch`, unbiased variance); evaluation uses the running statistics and changes
/// nothing. Parameters `weight` (γ, ones) and `bias` (β, zeros); buffers `running_mean`
/// (zeros) and `running_var` (ones).
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    channels: usize,
    momentum: f64,
    eps: f64,
}

impl BatchNorm2d {
    /// PyTorch's defaults (momentum 0.1, eps 1e-5), f32 on the CPU.
    pub fn new(channels: usize) -> Result<BatchNorm2d> {
        BatchNorm2d::with_options(channels, 0.1, 1e-5, DType::F32, Device::Cpu)
    }

    /// Explicit momentum (PyTorch's convention: the weight of the new batch), eps, dtype and
    /// device.
    pub fn with_options(
        channels: usize,
        momentum: f64,
        eps: f64,
        dtype: DType,
        device: Device,
    ) -> Result<BatchNorm2d> {
        if channels == 0 {
            return config_err("BatchNorm2d: channels must be positive");
        }
        if !(0.0..=1.0).contains(&momentum) || eps.is_nan() || eps < 0.0 {
            return config_err(format!(
                "BatchNorm2d: momentum {momentum} must be in [0, 1] and eps {eps} ≥ 0"
            ));
        }
        Ok(BatchNorm2d {
            weight: Tensor::ones(vec![channels], dtype, device)?.as_variable(),
            bias: Tensor::zeros(vec![channels], dtype, device)?.as_variable(),
            running_mean: Tensor::zeros(vec![channels], dtype, device)?,
            running_var: Tensor::ones(vec![channels], dtype, device)?,
            channels,
            momentum,
            eps,
        })
    }

    /// The running mean and variance (used in evaluation mode).
    pub fn running_stats(&self) -> (&Tensor, &Tensor) {
        (&self.running_mean, &self.running_var)
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if x.rank() != 4 || x.shape()[1] != self.channels {
            return config_err(format!(
                "BatchNorm2d({}): expected input [batch, {}, height, width], got {:?}",
                self.channels,
                self.channels,
                x.shape()
            ));
        }
        let o = BatchNormOptions {
            training,
            momentum: self.momentum,
            eps: self.eps,
        };
        Ok(x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some((&self.running_mean, &self.running_var)),
            o,
        )?)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }

    fn buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".into(), self.running_mean.clone()),
            ("running_var".into(), self.running_var.clone()),
        ]
    }

    fn kind(&self) -> &'static str {
        "BatchNorm2d"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [c, _, _] = chw("BatchNorm2d", input)?;
        if c != self.channels {
            return config_err(format!(
                "BatchNorm2d({}): expected {} channels, got input {input:?}",
                self.channels, self.channels
            ));
        }
        Ok(input.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequential::Sequential;

    fn ramp(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        Tensor::from_vec(v, shape, Device::Cpu).unwrap()
    }

    #[test]
    fn output_shapes_match_the_forward() {
        let x = ramp(&[2, 3, 9, 8]);
        let layers: Vec<Box<dyn Module>> = vec![
            Box::new(MaxPool2d::new(2)),
            Box::new(MaxPool2d::with_options(
                PoolOptions::new(3).stride(2).padding(1).ceil_mode(true),
            )),
            Box::new(AvgPool2d::with_options(PoolOptions::new(3).stride(2))),
            Box::new(GlobalAvgPool2d::new()),
            Box::new(GlobalAvgPool2d::keep_dims()),
            Box::new(Upsample::rect(2, 3)),
            Box::new(ZeroPad2d::new(2)),
            Box::new(Pad::new(Pad2d::new(1, 2, 3, 4), PadMode::Reflect)),
            Box::new(Reshape::new(&[9, 24])),
            Box::new(BatchNorm2d::new(3).unwrap()),
        ];
        for l in &layers {
            for training in [true, false] {
                let y = l.forward(&x, training).unwrap();
                assert_eq!(
                    l.output_shape(&x.shape()[1..]).unwrap(),
                    y.shape()[1..].to_vec(),
                    "{}",
                    l.describe()
                );
            }
        }
    }

    #[test]
    fn bad_inputs_name_the_layer() {
        let e = MaxPool2d::new(4).output_shape(&[3, 2, 2]).unwrap_err();
        assert!(e.to_string().contains("MaxPool2d"), "{e}");
        let e = Reshape::new(&[5]).output_shape(&[2, 3]).unwrap_err();
        assert!(e.to_string().contains("Reshape"), "{e}");
        let bn = BatchNorm2d::new(4).unwrap();
        let e = bn.forward(&ramp(&[2, 3, 2, 2]), true).unwrap_err();
        assert!(e.to_string().contains("BatchNorm2d(4)"), "{e}");
        let e = Pad::new(Pad2d::uniform(3), PadMode::Reflect)
            .output_shape(&[1, 3, 3])
            .unwrap_err();
        assert!(e.to_string().contains("Pad"), "{e}");
        assert!(BatchNorm2d::with_options(2, 1.5, 1e-5, DType::F32, Device::Cpu).is_err());
    }

    #[test]
    fn batch_norm2d_updates_running_stats_only_in_training() {
        let bn = BatchNorm2d::new(3).unwrap();
        let x = ramp(&[4, 3, 2, 2]);
        bn.forward(&x, false).unwrap();
        assert_eq!(bn.running_stats().0.to_vec::<f32>().unwrap(), vec![0.0; 3]);
        let y = bn.forward(&x, true).unwrap();
        let rm = bn.running_stats().0.to_vec::<f32>().unwrap();
        // Channel means of x, times the momentum 0.1.
        let xs = x.to_vec::<f32>().unwrap();
        for (c, &m) in rm.iter().enumerate() {
            let vals: Vec<f32> = (0..4)
                .flat_map(|n| xs[(n * 3 + c) * 4..][..4].to_vec())
                .collect();
            let mean = vals.iter().sum::<f32>() / 16.0;
            assert!((m - 0.1 * mean).abs() < 1e-6);
        }
        // The normalised output has zero mean and unit (biased) variance per channel.
        let ys = y.to_vec::<f32>().unwrap();
        for c in 0..3 {
            let vals: Vec<f32> = (0..4)
                .flat_map(|n| ys[(n * 3 + c) * 4..][..4].to_vec())
                .collect();
            let mean = vals.iter().sum::<f32>() / 16.0;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 16.0;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
                "{mean} {var}"
            );
        }
        // Names as PyTorch's state_dict, inside a Sequential.
        let net = Sequential::new().add(bn);
        let names: Vec<String> = net
            .named_parameters()
            .into_iter()
            .chain(net.named_buffers())
            .map(|(n, _)| n)
            .collect();
        for want in ["weight", "bias", "running_mean", "running_var"] {
            assert!(names.iter().any(|n| n.ends_with(want)), "{names:?}");
        }
    }

    #[test]
    fn a_small_cnn_trains_through_the_layers() {
        // Gradients reach every parameter through pool, pad, upsample and batch norm.
        let bn = BatchNorm2d::new(2).unwrap();
        let net = Sequential::new()
            .add(bn)
            .add(ZeroPad2d::new(1))
            .add(MaxPool2d::new(2))
            .add(Upsample::new(2))
            .add(AvgPool2d::new(2))
            .add(GlobalAvgPool2d::new());
        let x = ramp(&[3, 2, 6, 6]);
        let y = net.forward(&x, true).unwrap();
        assert_eq!(y.shape(), [3, 2]);
        let w =
            Tensor::from_vec(vec![1.0f32, -2.0, 0.5, 3.0, -1.0, 2.0], (3, 2), Device::Cpu).unwrap();
        let g = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, p) in net.named_parameters() {
            assert!(g.get(&p).is_some(), "{name} got no gradient");
        }
    }

    #[test]
    fn batch_norm2d_state_survives_a_checkpoint() {
        let make = || Sequential::new().add(BatchNorm2d::new(3).unwrap());
        let trained = make();
        trained.forward(&ramp(&[4, 3, 2, 2]), true).unwrap();
        let path =
            std::env::temp_dir().join(format!("ember-bn2d-{}.safetensors", std::process::id()));
        crate::checkpoint::save(&path, &trained, None).unwrap();
        let fresh = make();
        crate::checkpoint::load(&path, &fresh, None).unwrap();
        std::fs::remove_file(&path).ok();
        for ((n, a), (_, b)) in trained.named_buffers().iter().zip(fresh.named_buffers()) {
            assert_eq!(
                a.to_vec::<f32>().unwrap(),
                b.to_vec::<f32>().unwrap(),
                "{n}"
            );
        }
        assert_ne!(
            fresh.named_buffers()[0].1.to_vec::<f32>().unwrap(),
            vec![0.0; 3]
        );
    }
}
