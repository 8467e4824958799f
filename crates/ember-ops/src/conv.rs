//! The geometry of convolutions and pooling windows, shared by every device's kernels.
//!
//! A convolution or pooling kernel needs the same dozen numbers on every device: the input's
//! extents, the window, stride, padding and dilation. They are described once here, validated
//! once ([`Conv2dSpec::validate`], [`Pool2dSpec::validate`]), and handed as they are to
//! ember-cpu's and ember-cuda's kernels, so the two cannot disagree on an output size.
//!
//! Layout is NCHW (batch, channels, height, width), as PyTorch's; a 1-D convolution or pool is
//! the 2-D case with height 1 and a window of height 1. Padding is given per side (begin, end),
//! which expresses PyTorch's symmetric `padding=p` as `(p, p)` and `padding="same"` with an even
//! window, whose extra element goes at the end, exactly as PyTorch pads it.
//!
//! Output extent along one axis (PyTorch's formula):
//! `out = floor((in + pad_begin + pad_end − dilation·(k − 1) − 1) / stride) + 1`
//! (pooling with `ceil_mode` rounds up, and drops a last window that would start in the end
//! padding, as PyTorch does).

/// One spatial axis of a window: its size, stride, dilation and padding on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Axis {
    /// Input extent along the axis.
    pub input: usize,
    /// Window (kernel) size.
    pub kernel: usize,
    /// Step between window starts (≥ 1).
    pub stride: usize,
    /// Step between window taps (≥ 1; 1 is a dense window).
    pub dilation: usize,
    /// Implicit padding before the first element.
    pub pad_begin: usize,
    /// Implicit padding after the last element.
    pub pad_end: usize,
}

impl Axis {
    /// A dense window of `kernel` over `input` with stride 1 and no padding.
    pub fn new(input: usize, kernel: usize) -> Axis {
        Axis {
            input,
            kernel,
            stride: 1,
            dilation: 1,
            pad_begin: 0,
            pad_end: 0,
        }
    }

    /// The span the dilated window covers: `dilation·(kernel − 1) + 1`.
    pub fn span(&self) -> usize {
        self.dilation * (self.kernel.saturating_sub(1)) + 1
    }

    /// The output extent (floor mode); 0 when the padded input is shorter than the window.
    pub fn output(&self) -> usize {
        let padded = self.input + self.pad_begin + self.pad_end;
        if self.kernel == 0 || self.stride == 0 || padded < self.span() {
            return 0;
        }
        (padded - self.span()) / self.stride + 1
    }

    /// The output extent with PyTorch's `ceil_mode`: rounded up, but a window must start
    /// inside the input or the begin padding.
    pub fn output_ceil(&self) -> usize {
        let padded = self.input + self.pad_begin + self.pad_end;
        if self.kernel == 0 || self.stride == 0 || padded < self.span() {
            return 0;
        }
        let mut out = (padded - self.span()).div_ceil(self.stride) + 1;
        if (out - 1) * self.stride >= self.input + self.pad_begin {
            out -= 1;
        }
        out
    }

    /// Checks the axis; `what` names it in the message ("height", "width").
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if self.kernel == 0 {
            return Err(format!("{what}: kernel size must be ≥ 1"));
        }
        if self.stride == 0 {
            return Err(format!("{what}: stride must be ≥ 1"));
        }
        if self.dilation == 0 {
            return Err(format!("{what}: dilation must be ≥ 1"));
        }
        if self.input + self.pad_begin + self.pad_end < self.span() {
            return Err(format!(
                "{what}: input {} with padding ({}, {}) is smaller than the window span {} \
                 (kernel {}, dilation {})",
                self.input, self.pad_begin, self.pad_end, self.span(), self.kernel, self.dilation
            ));
        }
        Ok(())
    }

    /// PyTorch's `padding="same"` for stride 1: total `dilation·(kernel − 1)`, the odd element
    /// at the end.
    pub fn same_padding(kernel: usize, dilation: usize) -> (usize, usize) {
        let total = dilation * kernel.saturating_sub(1);
        (total / 2, total - total / 2)
    }
}

/// A 2-D convolution over NCHW input with OIHW weights (`[out, in / groups, kh, kw]`).
///
/// `conv_transpose2d` is described by the spec of the convolution it is the adjoint of: its
/// input has that convolution's output extents and its output that convolution's input
/// extents (with `output_padding` folded into `h.input`/`w.input` by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dSpec {
    /// Batch size N.
    pub batch: usize,
    /// Input channels C.
    pub in_channels: usize,
    /// Output channels (number of filters).
    pub out_channels: usize,
    /// Channel groups: input and output channels split into this many independent
    /// convolutions (`groups = in_channels = out_channels` is depthwise).
    pub groups: usize,
    /// The height axis.
    pub h: Axis,
    /// The width axis.
    pub w: Axis,
}

impl Conv2dSpec {
    /// Output height.
    pub fn out_h(&self) -> usize {
        self.h.output()
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        self.w.output()
    }

    /// Input shape `[N, C, H, W]`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.h.input, self.w.input]
    }

    /// Weight shape `[O, C / groups, kh, kw]` (PyTorch's).
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.h.kernel,
            self.w.kernel,
        ]
    }

    /// Output shape `[N, O, OH, OW]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.out_h(), self.out_w()]
    }

    /// Multiply-adds of the forward pass (FLOPs are twice this).
    pub fn macs(&self) -> u64 {
        let per_out =
            (self.in_channels / self.groups.max(1)) as u64 * (self.h.kernel * self.w.kernel) as u64;
        self.output_shape().iter().map(|&d| d as u64).product::<u64>() * per_out
    }

    /// Checks channels, groups and both axes; the message names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.groups == 0 {
            return Err("groups must be ≥ 1".into());
        }
        if self.in_channels % self.groups != 0 || self.out_channels % self.groups != 0 {
            return Err(format!(
                "in_channels {} and out_channels {} must both be divisible by groups {}",
                self.in_channels, self.out_channels, self.groups
            ));
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            return Err(format!(
                "in_channels {} and out_channels {} must be ≥ 1",
                self.in_channels, self.out_channels
            ));
        }
        self.h.validate("height")?;
        self.w.validate("width")
    }
}

/// The reduction a pooling window computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PoolKind {
    /// The window's maximum; padding never wins (it counts as −∞). The backward routes the
    /// gradient to the first maximum in row-major window order (PyTorch's CPU choice).
    Max,
    /// The window's mean. With `count_include_pad` the divisor is the window size clipped to
    /// the padded input (PyTorch's default), otherwise the number of real elements.
    Avg {
        /// Whether padded zeros count in the divisor.
        count_include_pad: bool,
    },
}

impl PoolKind {
    /// Every kind (`Avg` once per flag), for tests.
    pub const ALL: [PoolKind; 3] = [
        PoolKind::Max,
        PoolKind::Avg {
            count_include_pad: true,
        },
        PoolKind::Avg {
            count_include_pad: false,
        },
    ];

    /// The numeric code a CUDA kernel switches on.
    pub fn code(self) -> u32 {
        match self {
            PoolKind::Max => 0,
            PoolKind::Avg {
                count_include_pad: true,
            } => 1,
            PoolKind::Avg {
                count_include_pad: false,
            } => 2,
        }
    }
}

/// A 2-D pooling window over NCHW input; channels pool independently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool2dSpec {
    /// Batch size N.
    pub batch: usize,
    /// Channels C.
    pub channels: usize,
    /// Max or average.
    pub kind: PoolKind,
    /// PyTorch's `ceil_mode`: round the output extent up.
    pub ceil_mode: bool,
    /// The height axis.
    pub h: Axis,
    /// The width axis.
    pub w: Axis,
}

impl Pool2dSpec {
    /// Output height.
    pub fn out_h(&self) -> usize {
        if self.ceil_mode {
            self.h.output_ceil()
        } else {
            self.h.output()
        }
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        if self.ceil_mode {
            self.w.output_ceil()
        } else {
            self.w.output()
        }
    }

    /// Output shape `[N, C, OH, OW]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.out_h(), self.out_w()]
    }

    /// Checks both axes and PyTorch's rule that padding is at most half the window.
    pub fn validate(&self) -> Result<(), String> {
        for (a, what) in [(&self.h, "height"), (&self.w, "width")] {
            a.validate(what)?;
            if a.pad_begin.max(a.pad_end) * 2 > a.kernel {
                return Err(format!(
                    "{what}: padding ({}, {}) must be at most half the kernel size {}",
                    a.pad_begin, a.pad_end, a.kernel
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(input: usize, kernel: usize, stride: usize, dilation: usize, pad: usize) -> Axis {
        Axis {
            input,
            kernel,
            stride,
            dilation,
            pad_begin: pad,
            pad_end: pad,
        }
    }

    #[test]
    fn output_extents_follow_pytorch() {
        // torch.nn.Conv2d docs: H_out = floor((H + 2p − d(k−1) − 1)/s + 1).
        assert_eq!(axis(28, 3, 1, 1, 0).output(), 26);
        assert_eq!(axis(28, 3, 1, 1, 1).output(), 28);
        assert_eq!(axis(28, 3, 2, 1, 1).output(), 14);
        assert_eq!(axis(10, 3, 1, 2, 0).output(), 6);
        assert_eq!(axis(2, 3, 1, 1, 0).output(), 0);
        // max_pool2d(kernel 2, stride 2) on 5: floor → 2, ceil → 3.
        assert_eq!(axis(5, 2, 2, 1, 0).output(), 2);
        assert_eq!(axis(5, 2, 2, 1, 0).output_ceil(), 3);
        // ceil_mode never starts a window in the end padding: in 4, k 2, s 2, p 1 →
        // floor (4+2−2)/2+1 = 3; ceil also 3.
        assert_eq!(axis(4, 2, 2, 1, 1).output_ceil(), 3);
    }

    #[test]
    fn same_padding_puts_the_odd_element_last() {
        assert_eq!(Axis::same_padding(3, 1), (1, 1));
        assert_eq!(Axis::same_padding(4, 1), (1, 2));
        assert_eq!(Axis::same_padding(3, 2), (2, 2));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut s = Conv2dSpec {
            batch: 1,
            in_channels: 3,
            out_channels: 4,
            groups: 2,
            h: Axis::new(5, 3),
            w: Axis::new(5, 3),
        };
        assert!(s.validate().unwrap_err().contains("divisible by groups"));
        s.groups = 1;
        assert!(s.validate().is_ok());
        assert_eq!(s.weight_shape(), [4, 3, 3, 3]);
        assert_eq!(s.output_shape(), [1, 4, 3, 3]);
        assert_eq!(s.macs(), 4 * 9 * 27);
        s.w.stride = 0;
        assert!(s.validate().unwrap_err().contains("width: stride"));
        let p = Pool2dSpec {
            batch: 1,
            channels: 1,
            kind: PoolKind::Max,
            ceil_mode: false,
            h: axis(4, 2, 2, 1, 2),
            w: Axis::new(4, 2),
        };
        assert!(p.validate().unwrap_err().contains("at most half"));
    }

    #[test]
    fn pool_codes_are_dense() {
        let mut c: Vec<u32> = PoolKind::ALL.iter().map(|k| k.code()).collect();
        c.sort();
        assert_eq!(c, vec![0, 1, 2]);
    }
}
