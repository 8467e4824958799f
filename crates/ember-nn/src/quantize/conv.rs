//! An int8 `Conv2d` for inference: the quantized Dense layer's GEMM applied to the patch matrix
//! of the quantized input (im2col on u8 codes), so a convolution costs one int8 GEMM.
//!
//! The scheme is the Dense layer's (module docs of [`super`]): the weight `[O, C, kh, kw]` is
//! permuted to the tap-major `[O, kh, kw, C]` that the patch matrix uses (ember-cpu's
//! `qgemm::patches`: each image goes to NHWC, where a window row is one contiguous copy), viewed
//! as `[O, kh·kw·C]` and quantized symmetric per output channel (a permutation within a channel
//! does not change its scale); files store PyTorch's `[O, C, kh, kw]`; the input batch is
//! quantized per tensor to u8 in [0, 127] (from its own range, or from calibration); padding
//! taps take the zero point, the exact code of 0.0, so they are the f32 convolution's zeros.
//! The GEMM accumulates exactly in i32 and its epilogue dequantizes, adds the bias and applies
//! the activation; the result is f32 `[N, O, OH, OW]`. PyTorch's `quantize_dynamic` has no
//! convolution (its dynamic mode covers Linear and recurrent layers); this follows its static
//! `nn.quantized.Conv2d` arithmetic with an f32 output instead of a requantized one.
//!
//! Grouped convolutions are refused (no int8 form yet); everything else `Conv2d` accepts
//! (stride, explicit or `same` padding, dilation) is supported. Batches are cut into chunks of
//! whole images whose patch matrix and f32 GEMM output fit in about [`CHUNK_BYTES`] (the L2
//! cache of current cores), so the NHWC → NCHW transpose of the output reads from cache.

use super::{QuantizedDense, q_err};
use crate::conv::Conv2d;
use crate::error::{Result, config_err};
use crate::layers::activation_name;
use crate::module::Module;
use ember_core::ember_ops::{Axis, Conv2dSpec};
use ember_core::qgemm::patches::{conv_patches_u8, patch_cols, patch_rows};
use ember_core::qgemm::quant::{self, QParams};
use ember_core::{Device, Padding, Tensor};

/// Bytes of patch matrix plus GEMM output computed at once (a batch is cut into chunks of
/// whole images; at least one image per chunk).
pub const CHUNK_BYTES: usize = 1 << 20;

/// `[O, C, kh, kw]` (PyTorch) → `[O, kh, kw, C]` (tap-major), for any element.
pub(crate) fn to_tap_major<T: Copy>(v: &[T], o: usize, c: usize, kh: usize, kw: usize) -> Vec<T> {
    let taps = kh * kw;
    (0..o * taps * c)
        .filter_map(|idx| {
            let (oc, rest) = (idx / (taps * c), idx % (taps * c));
            let (tap, ch) = (rest / c, rest % c);
            v.get((oc * c + ch) * taps + tap).copied()
        })
        .collect()
}

/// `[O, kh, kw, C]` (tap-major) → `[O, C, kh, kw]` (PyTorch), for any element.
pub(crate) fn to_channel_major<T: Copy>(
    v: &[T],
    o: usize,
    c: usize,
    kh: usize,
    kw: usize,
) -> Vec<T> {
    let taps = kh * kw;
    (0..o * c * taps)
        .filter_map(|idx| {
            let (oc, rest) = (idx / (c * taps), idx % (c * taps));
            let (ch, tap) = (rest / taps, rest % taps);
            v.get((oc * taps + tap) * c + ch).copied()
        })
        .collect()
}

/// A Conv2d layer with int8 weights and quantized activations (module docs).
pub struct QuantizedConv2d {
    /// The GEMM: weight `[O, kh·kw·C]` (tap-major), bias, activation and the static input
    /// parameters.
    gemm: QuantizedDense,
    in_channels: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    /// Resolved padding: (top, bottom), (left, right).
    padding: ((usize, usize), (usize, usize)),
    dilation: (usize, usize),
}

impl QuantizedConv2d {
    /// Quantizes a trained [`Conv2d`] (its weight and bias are read back as f32). Grouped
    /// convolutions are an error.
    pub fn from_conv(conv: &Conv2d) -> Result<QuantizedConv2d> {
        let o = conv.options();
        let (cin, cout) = conv.channels();
        let (kh, kw) = conv.kernel_size();
        if o.groups != 1 {
            return config_err(format!(
                "QuantizedConv2d: Conv2d({cin} -> {cout}) has groups = {}; grouped \
                 convolutions have no int8 form yet",
                o.groups
            ));
        }
        let padding = match o.padding {
            Padding::Explicit { h, w } => (h, w),
            Padding::Same => (
                Axis::same_padding(kh, o.dilation.0),
                Axis::same_padding(kw, o.dilation.1),
            ),
        };
        let w = to_tap_major(&conv.weight().to_vec::<f32>()?, cout, cin, kh, kw);
        let bias = conv.bias().map(|b| b.to_vec::<f32>()).transpose()?;
        let weights = quant::quantize_weights(&w, cout, cin * kh * kw)
            .map_err(|e| q_err("QuantizedConv2d::from_conv", e))?;
        let gemm = QuantizedDense::from_parts(weights, bias, o.activation)?;
        QuantizedConv2d::from_parts(gemm, cin, (kh, kw), o.stride, padding, o.dilation)
    }

    /// A layer from its GEMM (weight `[O, kh·kw·C]`, the tap-major order of a `[O, kh, kw, C]`
    /// weight: see the module docs) and its geometry; the sizes must agree and be positive.
    pub fn from_parts(
        gemm: QuantizedDense,
        in_channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: ((usize, usize), (usize, usize)),
        dilation: (usize, usize),
    ) -> Result<QuantizedConv2d> {
        let positive = [in_channels, kernel.0, kernel.1, stride.0, stride.1]
            .into_iter()
            .chain([dilation.0, dilation.1])
            .all(|v| v > 0);
        if !positive || gemm.in_features() != in_channels * kernel.0 * kernel.1 {
            return config_err(format!(
                "QuantizedConv2d: in_channels {in_channels}, kernel {kernel:?}, stride \
                 {stride:?} and dilation {dilation:?} must be positive, and the weight must \
                 have in_channels·kh·kw = {} columns, got {}",
                in_channels * kernel.0 * kernel.1,
                gemm.in_features()
            ));
        }
        Ok(QuantizedConv2d {
            gemm,
            in_channels,
            kernel,
            stride,
            padding,
            dilation,
        })
    }

    /// Static quantization: the input is quantized with these fixed parameters (see
    /// [`QuantizedDense::with_input_params`]).
    pub fn with_input_params(mut self, p: QParams) -> Result<QuantizedConv2d> {
        self.gemm = self.gemm.with_input_params(p)?;
        Ok(self)
    }

    /// The GEMM: the weight as tap-major `[O, kh·kw·C]`, the bias, the activation, the input
    /// parameters.
    pub fn gemm(&self) -> &QuantizedDense {
        &self.gemm
    }

    /// Input channels C.
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// Output channels O.
    pub fn out_channels(&self) -> usize {
        self.gemm.out_features()
    }

    /// Kernel (height, width).
    pub fn kernel_size(&self) -> (usize, usize) {
        self.kernel
    }

    /// Stride (height, width).
    pub fn stride(&self) -> (usize, usize) {
        self.stride
    }

    /// Padding: (top, bottom), (left, right).
    pub fn padding(&self) -> ((usize, usize), (usize, usize)) {
        self.padding
    }

    /// Dilation (height, width).
    pub fn dilation(&self) -> (usize, usize) {
        self.dilation
    }

    /// The geometry for a batch of `n` images of `h`×`w`, validated.
    fn spec(&self, n: usize, h: usize, w: usize) -> Result<Conv2dSpec> {
        let axis = |input, kernel, stride, dilation, (pad_begin, pad_end)| Axis {
            input,
            kernel,
            stride,
            dilation,
            pad_begin,
            pad_end,
        };
        let spec = Conv2dSpec {
            batch: n,
            in_channels: self.in_channels,
            out_channels: self.out_channels(),
            groups: 1,
            h: axis(
                h,
                self.kernel.0,
                self.stride.0,
                self.dilation.0,
                self.padding.0,
            ),
            w: axis(
                w,
                self.kernel.1,
                self.stride.1,
                self.dilation.1,
                self.padding.1,
            ),
        };
        for (a, what) in [(&spec.h, "height"), (&spec.w, "width")] {
            if let Err(e) = a.validate(what) {
                return config_err(format!("{}: {e}", self.title()));
            }
        }
        Ok(spec)
    }

    /// `QuantizedConv2d(C -> O, kh×kw)`, for messages.
    fn title(&self) -> String {
        format!(
            "QuantizedConv2d({} -> {}, {}x{})",
            self.in_channels,
            self.out_channels(),
            self.kernel.0,
            self.kernel.1
        )
    }

    /// The forward pass on host data: `x` is `[n, C, h, w]` row-major; returns the
    /// `[n, O, OH, OW]` output and (OH, OW).
    pub fn forward_host(
        &self,
        x: &[f32],
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<(Vec<f32>, (usize, usize))> {
        let spec = self.spec(n, h, w)?;
        let image = self.in_channels * h * w;
        if x.len() != n * image {
            return config_err(format!(
                "{}: expected {n}x{}x{h}x{w} = {} inputs, got {}",
                self.title(),
                self.in_channels,
                n * image,
                x.len()
            ));
        }
        let mut xq = vec![0u8; x.len()];
        let p = match self.gemm.input_params() {
            Some(p) => {
                quant::quantize_u8(x, p, &mut xq).map_err(|e| q_err("QuantizedConv2d", e))?;
                p
            }
            None => quant::quantize_acts(x, &mut xq).map_err(|e| q_err("QuantizedConv2d", e))?,
        };
        let Ok(zero) = u8::try_from(p.zero_point) else {
            return config_err(format!(
                "{}: zero point {} is not a u8 code",
                self.title(),
                p.zero_point
            ));
        };
        let (oh, ow) = (spec.out_h(), spec.out_w());
        let (pixels, cols, o) = (oh * ow, patch_cols(&spec), self.out_channels());
        if pixels == 0 || n == 0 {
            return Ok((vec![0f32; n * o * pixels], (oh, ow)));
        }
        let per_image = pixels * (cols + 4 * o);
        let per_chunk = (CHUNK_BYTES / per_image).clamp(1, n);
        let mut out = Vec::with_capacity(n * o * pixels);
        let mut patches = Vec::new();
        for n0 in (0..n).step_by(per_chunk) {
            let n1 = (n0 + per_chunk).min(n);
            let rows = patch_rows(&spec, n1 - n0);
            patches.resize(rows * cols, 0);
            conv_patches_u8(&spec, &xq, zero, n0..n1, &mut patches)
                .map_err(|e| q_err("QuantizedConv2d", e))?;
            // [rows, O] in NHWC order (in cache), transposed into NCHW in tiles of TILE pixels
            // (each tile's rows stay in L1 while every channel plane takes its TILE values).
            let y = self.gemm.forward_codes(&patches, p, rows)?;
            let start = out.len();
            out.resize(start + y.len(), 0.0);
            for (img, dst) in y
                .chunks_exact(pixels * o)
                .zip(out[start..].chunks_exact_mut(pixels * o))
            {
                const TILE: usize = 16;
                for px0 in (0..pixels).step_by(TILE) {
                    let px1 = (px0 + TILE).min(pixels);
                    let tile = &img[px0 * o..px1 * o];
                    for (c, plane) in dst.chunks_exact_mut(pixels).enumerate() {
                        for (d, row) in plane[px0..px1].iter_mut().zip(tile.chunks_exact(o)) {
                            *d = row[c];
                        }
                    }
                }
            }
        }
        Ok((out, (oh, ow)))
    }
}

impl Module for QuantizedConv2d {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let &[n, c, h, w] = x.shape() else {
            return config_err(format!(
                "{}: expected input [batch, {}, height, width], got {:?}",
                self.title(),
                self.in_channels,
                x.shape()
            ));
        };
        if c != self.in_channels {
            return config_err(format!(
                "{}: expected input [batch, {}, height, width], got {:?}",
                self.title(),
                self.in_channels,
                x.shape()
            ));
        }
        let (y, (oh, ow)) = self.forward_host(&x.to_vec::<f32>()?, n, h, w)?;
        let o = self.out_channels();
        Ok(Tensor::from_vec(y, (n, o, oh, ow), Device::Cpu)?.to_device(x.device())?)
    }

    fn kind(&self) -> &'static str {
        "QuantizedConv2d"
    }

    fn describe(&self) -> String {
        format!(
            "QuantizedConv2d {}, {}x{}, {} (int8)",
            self.out_channels(),
            self.kernel.0,
            self.kernel.1,
            activation_name(self.gemm.activation())
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let &[c, h, w] = input else {
            return config_err(format!(
                "{}: expected input shape [{}, height, width], got {input:?}",
                self.title(),
                self.in_channels
            ));
        };
        if c != self.in_channels {
            return config_err(format!(
                "{}: expected input shape [{}, height, width], got {input:?}",
                self.title(),
                self.in_channels
            ));
        }
        let spec = self.spec(1, h, w)?;
        Ok(vec![self.out_channels(), spec.out_h(), spec.out_w()])
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}
