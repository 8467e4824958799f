//! Convolutions: `conv2d`, `conv1d` and `conv_transpose2d`, with PyTorch's semantics
//! (`torch.nn.functional.conv2d` and friends: cross-correlation, NCHW input, weights
//! `[out, in/groups, kh, kw]`, transposed weights `[in, out/groups, kh, kw]`).
//!
//! Each op validates its operands (rank, channels, groups, window against the padded input)
//! with an error naming the op and the shapes, turns its options into an
//! [`ember_ops::Conv2dSpec`] (the geometry every device shares), calls one device method and
//! records one fused op ([`crate::fused`]) whose backward is three kernels: the convolution,
//! its backward-data and its backward-weight. A 1-D convolution is the 2-D one over a height-1
//! view, so it needs no kernels of its own. Strided inputs are read through their layouts (the
//! CPU backend makes them dense once); an empty batch gives an empty output.

use super::check_same;
use crate::error::{Error, Result};
use crate::fused::{ConvOp, FusedOp};
use crate::op::Op;
use crate::storage::StorageData;
use crate::tensor::{Tensor, reserve};
use ember_ops::{Axis, Conv2dSpec};

/// Implicit zero padding of a 2-D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Zeros before and after each axis: `h: (top, bottom)`, `w: (left, right)`. PyTorch's
    /// `padding=(ph, pw)` is `Padding::symmetric(ph, pw)`; `"valid"` is `Padding::valid()`.
    Explicit {
        /// Height padding (begin, end).
        h: (usize, usize),
        /// Width padding (begin, end).
        w: (usize, usize),
    },
    /// PyTorch's `padding="same"`: the output has the input's extent (stride 1 only); the
    /// total `dilation·(k − 1)` is split with the odd element at the end, as PyTorch does.
    Same,
}

impl Padding {
    /// `ph` zeros above and below, `pw` left and right.
    pub fn symmetric(ph: usize, pw: usize) -> Padding {
        Padding::Explicit {
            h: (ph, ph),
            w: (pw, pw),
        }
    }

    /// No padding (PyTorch's `"valid"`, the default).
    pub fn valid() -> Padding {
        Padding::symmetric(0, 0)
    }
}

impl Default for Padding {
    fn default() -> Padding {
        Padding::valid()
    }
}

/// Options of [`Tensor::conv2d`] (PyTorch's defaults: stride 1, no padding, dilation 1, one
/// group). Build with struct update syntax: `Conv2dOptions { stride: (2, 2), ..Default::default() }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Step between windows (height, width).
    pub stride: (usize, usize),
    /// Zero padding.
    pub padding: Padding,
    /// Step between window taps (height, width).
    pub dilation: (usize, usize),
    /// Channel groups (`groups = in_channels` with one filter per group is depthwise).
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Conv2dOptions {
        Conv2dOptions {
            stride: (1, 1),
            padding: Padding::valid(),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

/// Options of [`Tensor::conv1d`]: as [`Conv2dOptions`] along one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv1dOptions {
    /// Step between windows.
    pub stride: usize,
    /// Zeros (before, after); ignored when `same` is set.
    pub padding: (usize, usize),
    /// PyTorch's `padding="same"` (stride 1 only).
    pub same: bool,
    /// Step between window taps.
    pub dilation: usize,
    /// Channel groups.
    pub groups: usize,
}

impl Default for Conv1dOptions {
    fn default() -> Conv1dOptions {
        Conv1dOptions {
            stride: 1,
            padding: (0, 0),
            same: false,
            dilation: 1,
            groups: 1,
        }
    }
}

/// Options of [`Tensor::conv_transpose2d`] (PyTorch's `ConvTranspose2d` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTranspose2dOptions {
    /// Stride of the convolution this transposes (height, width).
    pub stride: (usize, usize),
    /// Padding of the convolution this transposes: the output loses `padding` rows (columns)
    /// on each side.
    pub padding: (usize, usize),
    /// Extra rows/columns added at the end of the output, to pick among the input sizes a
    /// strided convolution maps to one size. Must be smaller than the stride (PyTorch also
    /// accepts values below the dilation; ember does not, see [`Tensor::conv_transpose2d`]).
    pub output_padding: (usize, usize),
    /// Step between window taps (height, width).
    pub dilation: (usize, usize),
    /// Channel groups.
    pub groups: usize,
}

impl Default for ConvTranspose2dOptions {
    fn default() -> ConvTranspose2dOptions {
        ConvTranspose2dOptions {
            stride: (1, 1),
            padding: (0, 0),
            output_padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

/// Checks dtypes/devices of the weight and bias against x, the ranks, and the bias shape.
fn check_operands(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    rank: usize,
    bias_len: impl Fn(&[usize]) -> usize,
) -> Result<()> {
    check_same(op, x, w)?;
    let layout = if rank == 4 {
        "[N, C, H, W]"
    } else {
        "[N, C, L]"
    };
    if x.rank() != rank || w.rank() != rank {
        return Err(Error::shape(
            op,
            format!(
                "input {:?} and weight {:?}: both need rank {rank} (input {layout}, weight \
                 {})",
                x.shape(),
                w.shape(),
                if rank == 4 {
                    "[out, in/groups, kh, kw]"
                } else {
                    "[out, in/groups, k]"
                }
            ),
        ));
    }
    if let Some(b) = bias {
        check_same(op, x, b)?;
        let n = bias_len(w.shape());
        if b.shape() != [n] {
            return Err(Error::shape(
                op,
                format!(
                    "bias {:?} must have shape [{n}] (one per output channel) for weight {:?}",
                    b.shape(),
                    w.shape()
                ),
            ));
        }
    }
    Ok(())
}

/// Validates a finished spec, naming the op and the shapes.
fn validate(op: &'static str, spec: &Conv2dSpec, x: &Tensor, w: &Tensor) -> Result<()> {
    spec.validate().map_err(|e| {
        Error::shape(
            op,
            format!("input {:?} and weight {:?}: {e}", x.shape(), w.shape()),
        )
    })
}

/// The error for a `groups` that does not fit the channel counts.
fn groups_error(op: &'static str, x: &Tensor, w: &Tensor, groups: usize, what: &str) -> Error {
    Error::shape(
        op,
        format!(
            "input {:?} and weight {:?} with groups {groups}: {what}",
            x.shape(),
            w.shape()
        ),
    )
}

impl Tensor {
    /// 2-D convolution (PyTorch's `F.conv2d`): `self` `[N, C, H, W]`, `w` `[O, C/groups, kh,
    /// kw]`, optional `bias` `[O]`; the result is `[N, O, OH, OW]` with
    /// `OH = ⌊(H + pad_top + pad_bottom − dilation·(kh − 1) − 1) / stride⌋ + 1` (and likewise OW).
    ///
    /// Errors name the op and shapes: wrong rank, `C` not `groups × w[1]`, `O` not divisible
    /// by groups, a window larger than the padded input, zero stride/dilation/groups, `"same"`
    /// padding with a stride above 1 (PyTorch refuses it too), dtypes or devices that differ.
    pub fn conv2d(
        &self,
        w: &Tensor,
        bias: Option<&Tensor>,
        opts: &Conv2dOptions,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        check_operands(OP, self, w, bias, 4, |ws| ws[0])?;
        let (xs, ws) = (self.shape(), w.shape());
        let groups = opts.groups;
        if groups == 0 {
            return Err(groups_error(OP, self, w, 0, "groups must be ≥ 1"));
        }
        if ws[1] * groups != xs[1] {
            return Err(groups_error(
                OP,
                self,
                w,
                groups,
                &format!(
                    "the input has {} channels, the weight expects {} per group × {groups} = {}",
                    xs[1],
                    ws[1],
                    ws[1] * groups
                ),
            ));
        }
        let axis = |input, kernel, stride, dilation| Axis {
            input,
            kernel,
            stride,
            dilation,
            pad_begin: 0,
            pad_end: 0,
        };
        let mut h = axis(xs[2], ws[2], opts.stride.0, opts.dilation.0);
        let mut wa = axis(xs[3], ws[3], opts.stride.1, opts.dilation.1);
        match opts.padding {
            Padding::Explicit { h: ph, w: pw } => {
                (h.pad_begin, h.pad_end) = ph;
                (wa.pad_begin, wa.pad_end) = pw;
            }
            Padding::Same => {
                if opts.stride != (1, 1) {
                    return Err(Error::shape(
                        OP,
                        format!(
                            "padding \"same\" needs stride 1 (PyTorch's rule), got stride {:?}",
                            opts.stride
                        ),
                    ));
                }
                (h.pad_begin, h.pad_end) = Axis::same_padding(ws[2], opts.dilation.0);
                (wa.pad_begin, wa.pad_end) = Axis::same_padding(ws[3], opts.dilation.1);
            }
        }
        let spec = Conv2dSpec {
            batch: xs[0],
            in_channels: xs[1],
            out_channels: ws[0],
            groups,
            h,
            w: wa,
        };
        validate(OP, &spec, self, w)?;
        let out = spec.output_shape();
        reserve(OP, out.iter().product(), self.dtype())?;
        let set = Tensor::read_set([self, w, bias.unwrap_or(self)]);
        let data = StorageData::conv2d(
            &spec,
            (set.data(0), self.layout()),
            (set.data(1), w.layout()),
            (set.data(2), bias.map(|b| b.layout())),
        )?;
        drop(set);
        let op = || {
            Op::Fused(FusedOp::Conv(Box::new(ConvOp {
                x: self.clone(),
                w: w.clone(),
                b: bias.cloned(),
                spec,
                transposed: false,
            })))
        };
        Ok(Tensor::from_storage(data, &out, Tensor::record(op)))
    }

    /// 1-D convolution (PyTorch's `F.conv1d`): `self` `[N, C, L]`, `w` `[O, C/groups, k]`,
    /// optional `bias` `[O]`; the result is `[N, O, L_out]`. Computed as [`Tensor::conv2d`]
    /// over height-1 views, so its gradients are the 2-D ones.
    pub fn conv1d(
        &self,
        w: &Tensor,
        bias: Option<&Tensor>,
        opts: &Conv1dOptions,
    ) -> Result<Tensor> {
        const OP: &str = "conv1d";
        check_operands(OP, self, w, bias, 3, |ws| ws[0])?;
        let o2 = Conv2dOptions {
            stride: (1, opts.stride),
            padding: if opts.same {
                Padding::Same
            } else {
                Padding::Explicit {
                    h: (0, 0),
                    w: opts.padding,
                }
            },
            dilation: (1, opts.dilation),
            groups: opts.groups,
        };
        if opts.same && opts.stride != 1 {
            return Err(Error::shape(
                OP,
                format!(
                    "padding \"same\" needs stride 1 (PyTorch's rule), got stride {}",
                    opts.stride
                ),
            ));
        }
        let y = self
            .unsqueeze(2)?
            .conv2d(&w.unsqueeze(2)?, bias, &o2)
            .map_err(|e| rename(e, OP))?;
        y.squeeze(2)
    }

    /// Transposed 2-D convolution (PyTorch's `F.conv_transpose2d`, the gradient of
    /// [`Tensor::conv2d`] with respect to its input): `self` `[N, C_in, H, W]`, `w` `[C_in,
    /// C_out/groups, kh, kw]` (PyTorch's layout), optional `bias` `[C_out]`; the result is
    /// `[N, C_out, H_out, W_out]` with
    /// `H_out = (H − 1)·stride − 2·padding + dilation·(kh − 1) + output_padding + 1`.
    ///
    /// ember requires `output_padding < stride` on each axis; PyTorch also allows
    /// `output_padding < dilation` with stride 1, an unusual case ember refuses with an error.
    pub fn conv_transpose2d(
        &self,
        w: &Tensor,
        bias: Option<&Tensor>,
        opts: &ConvTranspose2dOptions,
    ) -> Result<Tensor> {
        const OP: &str = "conv_transpose2d";
        let groups = opts.groups;
        check_operands(OP, self, w, bias, 4, |ws| ws[1] * groups.max(1))?;
        let (xs, ws) = (self.shape(), w.shape());
        if groups == 0 {
            return Err(groups_error(OP, self, w, 0, "groups must be ≥ 1"));
        }
        if ws[0] != xs[1] || !xs[1].is_multiple_of(groups) {
            return Err(groups_error(
                OP,
                self,
                w,
                groups,
                &format!(
                    "the weight's first extent {} must equal the input's {} channels, which \
                     must be divisible by groups",
                    ws[0], xs[1]
                ),
            ));
        }
        let axis = |name: &str,
                    input: usize,
                    kernel: usize,
                    stride: usize,
                    dilation: usize,
                    pad: usize,
                    outpad: usize| {
            if stride == 0 || dilation == 0 {
                return Err(Error::shape(
                    OP,
                    format!("{name}: stride {stride} and dilation {dilation} must be ≥ 1"),
                ));
            }
            if outpad >= stride {
                return Err(Error::shape(
                    OP,
                    format!(
                        "{name}: output_padding {outpad} must be smaller than the stride {stride}"
                    ),
                ));
            }
            let full =
                input.saturating_sub(1) * stride + dilation * kernel.saturating_sub(1) + outpad + 1;
            if input == 0 || full <= 2 * pad {
                return Err(Error::shape(
                    OP,
                    format!(
                        "input {:?} and weight {:?}: {name}: the output extent {full} − 2·{pad} \
                         (padding) is not positive",
                        xs, ws
                    ),
                ));
            }
            Ok(Axis {
                input: full - 2 * pad,
                kernel,
                stride,
                dilation,
                pad_begin: pad,
                pad_end: pad,
            })
        };
        let h = axis(
            "height",
            xs[2],
            ws[2],
            opts.stride.0,
            opts.dilation.0,
            opts.padding.0,
            opts.output_padding.0,
        )?;
        let wa = axis(
            "width",
            xs[3],
            ws[3],
            opts.stride.1,
            opts.dilation.1,
            opts.padding.1,
            opts.output_padding.1,
        )?;
        // The convolution this op is the adjoint of: its input is our output, its output our
        // input, its weight ours (PyTorch's transposed layout is the conv's OIHW).
        let spec = Conv2dSpec {
            batch: xs[0],
            in_channels: ws[1] * groups,
            out_channels: xs[1],
            groups,
            h,
            w: wa,
        };
        validate(OP, &spec, self, w)?;
        if spec.out_h() != xs[2] || spec.out_w() != xs[3] {
            return Err(Error::shape(
                OP,
                format!(
                    "input {xs:?} and weight {ws:?}: the geometry does not invert (the \
                     convolution of the output would be {}×{})",
                    spec.out_h(),
                    spec.out_w()
                ),
            ));
        }
        let out = spec.input_shape();
        reserve(OP, out.iter().product(), self.dtype())?;
        let set = Tensor::read_set([self, w, bias.unwrap_or(self)]);
        let data = StorageData::conv2d_backward_data(
            OP,
            &spec,
            (set.data(0), self.layout()),
            (set.data(1), w.layout()),
            (set.data(2), bias.map(|b| b.layout())),
        )?;
        drop(set);
        let op = || {
            Op::Fused(FusedOp::Conv(Box::new(ConvOp {
                x: self.clone(),
                w: w.clone(),
                b: bias.cloned(),
                spec,
                transposed: true,
            })))
        };
        Ok(Tensor::from_storage(data, &out, Tensor::record(op)))
    }
}

/// Renames the op in an error from the 2-D path taken by a 1-D convolution.
fn rename(e: Error, op: &'static str) -> Error {
    match e {
        Error::Shape { detail, .. } => Error::Shape { op, detail },
        e => e,
    }
}
