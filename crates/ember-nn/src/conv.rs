//! Convolution layers: [`Conv1d`], [`Conv2d`] and [`ConvTranspose2d`], PyTorch's `nn` layers
//! of those names over ember-core's `conv1d`, `conv2d` and `conv_transpose2d` ops.
//!
//! Parameters are named and shaped as PyTorch names and shapes them, so a PyTorch checkpoint's
//! tensors load by name: `weight` `[out, in/groups, kh, kw]` (`[out, in/groups, k]` for 1-D;
//! `[in, out/groups, kh, kw]` for the transposed layer) and `bias` `[out]`. Inputs are NCHW
//! (`[N, C, L]` for 1-D), as PyTorch's; `output_shape` works on the shape without the batch.
//!
//! Initialisation defaults to PyTorch's (`kaiming_uniform_(a=√5)` for the weight, which is
//! `U(−1/√fan_in, 1/√fan_in)`, and the same bound for the bias; `fan_in = weight.shape[1] ·
//! kh · kw`, PyTorch's fan for both the plain and the transposed weight). Any
//! [`Initializer`] (Glorot, He, as Dense has) can be chosen instead in [`ConvOptions`]; their
//! fans are PyTorch's/Keras's for a convolution kernel (`fan_in` as above, `fan_out =
//! weight.shape[0] · kh · kw`). An optional activation runs after the convolution, as Dense's
//! fused one does.

use crate::error::{Result, config_err};
use crate::init::Initializer;
use crate::layers::activation_name;
use crate::module::Module;
use ember_core::{
    Activation, Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, DType, Device, Tensor,
};
use rand::Rng;
use rand::rngs::StdRng;

/// The padding vocabulary of [`ConvOptions`] (ember-core's), re-exported for layer users.
pub use ember_core::Padding;

/// Options of the convolution layers beyond channels and kernel size; `Default` gives PyTorch's
/// defaults (stride 1, no padding, dilation 1, one group, a bias, PyTorch's initialisation,
/// f32 on the CPU, no activation).
///
/// [`Conv1d`] reads the width components (`stride.1`, `dilation.1`, and the `w` padding or
/// `Same`); their height components must stay at their defaults. `output_padding` is used by
/// [`ConvTranspose2d`] only.
#[derive(Debug, Clone, Copy)]
pub struct ConvOptions {
    /// Step between windows (height, width).
    pub stride: (usize, usize),
    /// Zero padding (ember-core's [`Padding`]; `Same` is PyTorch's `padding="same"`).
    pub padding: Padding,
    /// Step between window taps (height, width).
    pub dilation: (usize, usize),
    /// Channel groups (in = out = groups is depthwise).
    pub groups: usize,
    /// Extra output rows/columns of a transposed convolution (below the stride).
    pub output_padding: (usize, usize),
    /// Whether the layer has a bias.
    pub use_bias: bool,
    /// Applied after the convolution (default: none).
    pub activation: Activation,
    /// Weight initialiser; `None` is PyTorch's default, U(±1/√fan_in).
    pub kernel_init: Option<Initializer>,
    /// Bias initialiser; `None` is PyTorch's default, U(±1/√fan_in).
    pub bias_init: Option<Initializer>,
    /// Element type of the parameters.
    pub dtype: DType,
    /// Where the parameters live.
    pub device: Device,
}

impl Default for ConvOptions {
    fn default() -> ConvOptions {
        ConvOptions {
            stride: (1, 1),
            padding: Padding::valid(),
            dilation: (1, 1),
            groups: 1,
            output_padding: (0, 0),
            use_bias: true,
            activation: Activation::None,
            kernel_init: None,
            bias_init: None,
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

/// Which op a layer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Conv1d,
    Conv2d,
    Transpose2d,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Conv1d => "Conv1d",
            Kind::Conv2d => "Conv2d",
            Kind::Transpose2d => "ConvTranspose2d",
        }
    }
}

/// What the three layers share: parameters, options, and the channel counts.
struct ConvCore {
    kind: Kind,
    weight: Tensor,
    bias: Option<Tensor>,
    in_channels: usize,
    out_channels: usize,
    /// Kernel (height, width); height 1 for 1-D.
    kernel: (usize, usize),
    opts: ConvOptions,
}

/// Fills a tensor by `init`, or by PyTorch's U(±1/√fan_in) when `init` is `None`.
fn draw(
    init: Option<Initializer>,
    shape: &[usize],
    fan_in: usize,
    fan_out: usize,
    opts: &ConvOptions,
    rng: &mut StdRng,
) -> Result<Tensor> {
    let t = match init {
        Some(i) => i.tensor(shape, fan_in, fan_out, opts.dtype, opts.device, rng)?,
        None => {
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            let n = shape.iter().product();
            let v: Vec<f64> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
            Tensor::from_vec(v, shape, Device::Cpu)?
                .to_dtype(opts.dtype)?
                .to_device(opts.device)?
        }
    };
    Ok(t.as_variable())
}

impl ConvCore {
    fn new(
        kind: Kind,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        opts: ConvOptions,
        rng: &mut StdRng,
    ) -> Result<ConvCore> {
        let name = kind.name();
        let g = opts.groups;
        if in_channels == 0 || out_channels == 0 || kernel.0 == 0 || kernel.1 == 0 || g == 0 {
            return config_err(format!(
                "{name}: channels, kernel size and groups must be positive, got in {in_channels}, \
                 out {out_channels}, kernel {kernel:?}, groups {g}"
            ));
        }
        if !in_channels.is_multiple_of(g) || !out_channels.is_multiple_of(g) {
            return config_err(format!(
                "{name}: in_channels {in_channels} and out_channels {out_channels} must be \
                 divisible by groups {g}"
            ));
        }
        if kind == Kind::Conv1d {
            let h_pad = matches!(opts.padding, Padding::Explicit { h, .. } if h != (0, 0));
            if opts.stride.0 != 1 || opts.dilation.0 != 1 || h_pad {
                return config_err(format!(
                    "Conv1d: only the width components of stride, dilation and padding apply; \
                     got stride {:?}, dilation {:?}, padding {:?}",
                    opts.stride, opts.dilation, opts.padding
                ));
            }
        }
        if kind == Kind::Transpose2d && opts.padding == Padding::Same {
            return config_err(
                "ConvTranspose2d: padding \"same\" is not supported (as in PyTorch)",
            );
        }
        let rf = kernel.0 * kernel.1;
        let shape: Vec<usize> = match kind {
            Kind::Conv1d => vec![out_channels, in_channels / g, kernel.1],
            Kind::Conv2d => vec![out_channels, in_channels / g, kernel.0, kernel.1],
            Kind::Transpose2d => vec![in_channels, out_channels / g, kernel.0, kernel.1],
        };
        let (fan_in, fan_out) = (shape[1] * rf, shape[0] * rf);
        let weight = draw(opts.kernel_init, &shape, fan_in, fan_out, &opts, rng)?;
        let bias = if opts.use_bias {
            Some(draw(
                opts.bias_init,
                &[out_channels],
                fan_in,
                fan_out,
                &opts,
                rng,
            )?)
        } else {
            None
        };
        Ok(ConvCore {
            kind,
            weight,
            bias,
            in_channels,
            out_channels,
            kernel,
            opts,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let o = &self.opts;
        let rank = if self.kind == Kind::Conv1d { 3 } else { 4 };
        if x.rank() != rank || x.shape()[1] != self.in_channels {
            return config_err(format!(
                "{}({} -> {}): expected input [batch, {}, {}], got {:?}",
                self.kind.name(),
                self.in_channels,
                self.out_channels,
                self.in_channels,
                if rank == 3 { "length" } else { "height, width" },
                x.shape()
            ));
        }
        let b = self.bias.as_ref();
        // Under a 16-bit policy (`crate::mixed`): input and weight rounded, convolution in f32.
        let rounded = match crate::mixed::half_for(&self.weight) {
            Some(half) => Some((
                crate::mixed::round_through(x, half)?,
                crate::mixed::round_through(&self.weight, half)?,
            )),
            None => None,
        };
        let (x, weight) = match &rounded {
            Some((x, w)) => (x, w),
            None => (x, &self.weight),
        };
        let y = match self.kind {
            Kind::Conv2d => x.conv2d(
                weight,
                b,
                &Conv2dOptions {
                    stride: o.stride,
                    padding: o.padding,
                    dilation: o.dilation,
                    groups: o.groups,
                },
            )?,
            Kind::Conv1d => {
                let (padding, same) = match o.padding {
                    Padding::Explicit { w, .. } => (w, false),
                    Padding::Same => ((0, 0), true),
                };
                x.conv1d(
                    weight,
                    b,
                    &Conv1dOptions {
                        stride: o.stride.1,
                        padding,
                        same,
                        dilation: o.dilation.1,
                        groups: o.groups,
                    },
                )?
            }
            Kind::Transpose2d => {
                let padding = match o.padding {
                    Padding::Explicit { h, w } if h.0 == h.1 && w.0 == w.1 => (h.0, w.0),
                    p => {
                        return config_err(format!(
                            "ConvTranspose2d: padding must be symmetric, got {p:?}"
                        ));
                    }
                };
                x.conv_transpose2d(
                    weight,
                    b,
                    &ConvTranspose2dOptions {
                        stride: o.stride,
                        padding,
                        output_padding: o.output_padding,
                        dilation: o.dilation,
                        groups: o.groups,
                    },
                )?
            }
        };
        Ok(match o.activation.as_unary() {
            Some(op) => y.unary_op(op)?,
            None => y,
        })
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            p.push(("bias".to_string(), b.clone()));
        }
        p
    }

    fn describe(&self) -> String {
        let k = if self.kind == Kind::Conv1d {
            format!("{}", self.kernel.1)
        } else {
            format!("{}x{}", self.kernel.0, self.kernel.1)
        };
        format!(
            "{} {}, {k}, {}",
            self.kind.name(),
            self.out_channels,
            activation_name(self.opts.activation)
        )
    }

    /// The output shape without the batch, by running the op on an empty batch (the ops'
    /// own geometry and errors, so layer and op cannot disagree).
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let shape: Vec<usize> = std::iter::once(0).chain(input.iter().copied()).collect();
        let x = Tensor::zeros(shape, self.opts.dtype, self.opts.device)?;
        let y = ember_core::no_grad(|| self.forward(&x))?;
        Ok(y.shape()[1..].to_vec())
    }
}

macro_rules! conv_layer {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $kernel:ty, $to_pair:expr) => {
        $(#[$doc])*
        pub struct $name(ConvCore);

        impl $name {
            /// A layer with PyTorch's defaults (stride 1, no padding, a bias, PyTorch's
            /// initialisation, f32 on the CPU).
            pub fn new(
                in_channels: usize,
                out_channels: usize,
                kernel: $kernel,
                rng: &mut StdRng,
            ) -> Result<$name> {
                $name::with_options(in_channels, out_channels, kernel, ConvOptions::default(), rng)
            }

            /// A layer with explicit options.
            pub fn with_options(
                in_channels: usize,
                out_channels: usize,
                kernel: $kernel,
                opts: ConvOptions,
                rng: &mut StdRng,
            ) -> Result<$name> {
                let to_pair: fn($kernel) -> (usize, usize) = $to_pair;
                Ok($name(ConvCore::new(
                    $kind,
                    in_channels,
                    out_channels,
                    to_pair(kernel),
                    opts,
                    rng,
                )?))
            }

            /// The weight (PyTorch's shape and name).
            pub fn weight(&self) -> &Tensor {
                &self.0.weight
            }

            /// The bias, if the layer has one.
            pub fn bias(&self) -> Option<&Tensor> {
                self.0.bias.as_ref()
            }

            /// The options it was built with.
            pub fn options(&self) -> ConvOptions {
                self.0.opts
            }

            /// (in_channels, out_channels).
            pub fn channels(&self) -> (usize, usize) {
                (self.0.in_channels, self.0.out_channels)
            }

            /// Kernel (height, width); height 1 for 1-D.
            pub fn kernel_size(&self) -> (usize, usize) {
                self.0.kernel
            }
        }

        impl Module for $name {
            fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
                self.0.forward(x)
            }

            fn parameters(&self) -> Vec<(String, Tensor)> {
                self.0.parameters()
            }

            fn kind(&self) -> &'static str {
                $kind.name()
            }

            fn describe(&self) -> String {
                self.0.describe()
            }

            fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
                self.0.output_shape(input)
            }

            fn as_any(&self) -> Option<&dyn std::any::Any> {
                Some(self)
            }
        }
    };
}

conv_layer!(
    /// PyTorch's `nn.Conv2d`: `[N, C, H, W]` → `[N, O, OH, OW]`, weight `[O, C/groups, kh, kw]`.
    Conv2d,
    Kind::Conv2d,
    (usize, usize),
    |k| k
);

conv_layer!(
    /// PyTorch's `nn.Conv1d`: `[N, C, L]` → `[N, O, L_out]`, weight `[O, C/groups, k]`.
    Conv1d,
    Kind::Conv1d,
    usize,
    |k| (1, k)
);

conv_layer!(
    /// PyTorch's `nn.ConvTranspose2d`: `[N, C, H, W]` → `[N, O, H_out, W_out]`, weight
    /// `[C, O/groups, kh, kw]`; with kernel 4, stride 2 and padding 1 it doubles H and W (the
    /// DCGAN generator's step).
    ConvTranspose2d,
    Kind::Transpose2d,
    (usize, usize),
    |k| k
);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(1)
    }

    #[test]
    fn shapes_and_names_follow_pytorch() {
        let c = Conv2d::with_options(
            4,
            6,
            (3, 5),
            ConvOptions {
                groups: 2,
                padding: Padding::symmetric(1, 2),
                activation: Activation::Relu,
                ..Default::default()
            },
            &mut rng(),
        )
        .unwrap();
        let names: Vec<(String, Vec<usize>)> = c
            .parameters()
            .into_iter()
            .map(|(n, t)| (n, t.shape().to_vec()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("weight".to_string(), vec![6, 2, 3, 5]),
                ("bias".to_string(), vec![6])
            ]
        );
        assert_eq!(c.output_shape(&[4, 10, 9]).unwrap(), vec![6, 10, 9]);
        let x = Tensor::ones([2, 4, 10, 9], DType::F32, Device::Cpu).unwrap();
        let y = c.forward(&x, true).unwrap();
        assert_eq!(y.shape(), [2, 6, 10, 9]);
        assert!(y.to_vec::<f32>().unwrap().iter().all(|&v| v >= 0.0));
        assert_eq!(c.describe(), "Conv2d 6, 3x5, relu");

        let t = ConvTranspose2d::with_options(
            3,
            4,
            (4, 4),
            ConvOptions {
                stride: (2, 2),
                padding: Padding::symmetric(1, 1),
                ..Default::default()
            },
            &mut rng(),
        )
        .unwrap();
        assert_eq!(t.weight().shape(), [3, 4, 4, 4]);
        assert_eq!(t.output_shape(&[3, 7, 7]).unwrap(), vec![4, 14, 14]);

        let c1 = Conv1d::new(2, 3, 5, &mut rng()).unwrap();
        assert_eq!(c1.weight().shape(), [3, 2, 5]);
        assert_eq!(c1.output_shape(&[2, 20]).unwrap(), vec![3, 16]);
    }

    #[test]
    fn default_init_is_pytorchs_uniform_bound() {
        let c = Conv2d::new(8, 16, (3, 3), &mut rng()).unwrap();
        let bound = 1.0 / ((8 * 9) as f32).sqrt();
        for t in [c.weight(), c.bias().unwrap()] {
            let v = t.to_vec::<f32>().unwrap();
            assert!(v.iter().all(|x| x.abs() <= bound));
            // Spread over the range, not a constant.
            let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(max > 0.5 * bound, "{max} vs bound {bound}");
        }
        let he = Conv2d::with_options(
            8,
            16,
            (3, 3),
            ConvOptions {
                kernel_init: Some(Initializer::HeUniform),
                ..Default::default()
            },
            &mut rng(),
        )
        .unwrap();
        let limit = (6.0 / 72.0f32).sqrt();
        let v = he.weight().to_vec::<f32>().unwrap();
        assert!(v.iter().all(|x| x.abs() <= limit) && v.iter().any(|x| x.abs() > bound));
    }

    #[test]
    fn bad_configurations_and_inputs_are_errors() {
        let e = Conv2d::with_options(
            3,
            4,
            (3, 3),
            ConvOptions {
                groups: 2,
                ..Default::default()
            },
            &mut rng(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("divisible by groups 2"), "{e}");
        let c = Conv2d::new(3, 4, (3, 3), &mut rng()).unwrap();
        let x = Tensor::ones([1, 2, 5, 5], DType::F32, Device::Cpu).unwrap();
        let e = c.forward(&x, false).unwrap_err().to_string();
        assert!(
            e.contains("Conv2d(3 -> 4): expected input [batch, 3, height, width]"),
            "{e}"
        );
        let e = c.output_shape(&[3, 2, 2]).unwrap_err().to_string();
        assert!(e.contains("conv2d") && e.contains("window span 3"), "{e}");
        let e = Conv1d::with_options(
            1,
            1,
            3,
            ConvOptions {
                stride: (2, 1),
                ..Default::default()
            },
            &mut rng(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("Conv1d: only the width components"), "{e}");
    }

    /// A small CNN learns to tell vertical from horizontal bars through `Sequential` and `fit`
    /// (the layers' parameters reach the optimizer; gradients flow through conv and Flatten).
    #[test]
    fn a_small_cnn_trains_through_sequential_fit() {
        use crate::layers::{Dense, Flatten};
        use crate::prelude::{FitConfig, Loss, Optimizer, Sequential};
        let mut r = rng();
        let n = 64;
        let mut xs = vec![0.0f32; n * 64];
        let mut ys = vec![0.0f32; n];
        for i in 0..n {
            let (class, at) = (i % 2, 1 + (i / 2) % 6);
            ys[i] = class as f32;
            for t in 0..8 {
                let (h, w) = if class == 0 { (t, at) } else { (at, t) };
                xs[i * 64 + h * 8 + w] = 1.0;
            }
            for v in &mut xs[i * 64..(i + 1) * 64] {
                *v += r.random_range(-0.1..0.1f32);
            }
        }
        let x = Tensor::from_vec(xs, [n, 1, 8, 8], Device::Cpu).unwrap();
        let y = Tensor::from_vec(ys, [n], Device::Cpu).unwrap();
        let conv = Conv2d::with_options(
            1,
            4,
            (3, 3),
            ConvOptions {
                activation: Activation::Relu,
                ..Default::default()
            },
            &mut r,
        )
        .unwrap();
        let model = Sequential::new()
            .add(conv)
            .add(Flatten::new())
            .add(Dense::new(4 * 6 * 6, 2, Activation::None, &mut r).unwrap());
        let summary = model.summary(&[1, 8, 8]).unwrap();
        assert!(
            summary.contains("Conv2d") && summary.contains("40"),
            "{summary}"
        );
        let mut model = model.compile(Optimizer::adam(), Loss::CrossEntropy, &[]);
        let history = model
            .fit(
                &x,
                &y,
                FitConfig {
                    epochs: 30,
                    batch_size: 16,
                    ..FitConfig::default()
                },
            )
            .unwrap();
        let loss = history.series("loss");
        assert!(
            loss[loss.len() - 1] < 0.5 * loss[0],
            "the loss did not fall: {loss:?}"
        );
    }
}
