//! Reductions: sum, mean, max, min, argmax, argmin, var over axes with keepdim; logsumexp,
//! softmax and log_softmax (numerically stable).
//!
//! The primitive reductions always compute the keepdim form (reduced axes kept with extent 1) and
//! then reshape away the axes when `keepdim` is false; that keeps one derivative rule per
//! primitive. mean, var and logsumexp are composites, so their gradients come for free.

use crate::error::{Error, Result};
use crate::op::Op;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::ReduceOp;

impl Tensor {
    /// Validates `axes` for this tensor: in range, no repeats; returns them sorted.
    fn reduce_axes(&self, op: &'static str, axes: &[usize]) -> Result<Vec<usize>> {
        let mut out = axes.to_vec();
        for &a in axes {
            if a >= self.rank() {
                return Err(Error::Axis {
                    op,
                    axis: a,
                    shape: self.shape().to_vec(),
                });
            }
        }
        out.sort_unstable();
        let before = out.len();
        out.dedup();
        if out.len() != before {
            return Err(Error::invalid(op, format!("axes {axes:?} repeat an axis")));
        }
        Ok(out)
    }

    fn keep_shape(&self, axes: &[usize]) -> Vec<usize> {
        self.shape()
            .iter()
            .enumerate()
            .map(|(d, &e)| if axes.contains(&d) { 1 } else { e })
            .collect()
    }

    fn drop_axes(t: Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        if keepdim {
            return Ok(t);
        }
        let shape: Vec<usize> = t
            .shape()
            .iter()
            .enumerate()
            .filter(|(d, _)| !axes.contains(d))
            .map(|(_, &e)| e)
            .collect();
        t.reshape(shape)
    }

    fn reduce_primitive(
        &self,
        op: ReduceOp,
        name: &'static str,
        axes: &[usize],
        keepdim: bool,
    ) -> Result<Tensor> {
        if op == ReduceOp::Mean {
            return self.mean(axes, keepdim);
        }
        let axes = self.reduce_axes(name, axes)?;
        if matches!(
            op,
            ReduceOp::Max | ReduceOp::Min | ReduceOp::ArgMax | ReduceOp::ArgMin
        ) && axes.iter().any(|&a| self.shape()[a] == 0)
        {
            return Err(Error::shape(
                name,
                format!(
                    "cannot reduce over an empty axis of shape {:?}",
                    self.shape()
                ),
            ));
        }
        let data = self.with_storage(|s, l| StorageData::reduce(op, s, l, &axes))?;
        let record = match op {
            ReduceOp::Sum => Tensor::record(|| Op::Sum(self.clone())),
            ReduceOp::Max | ReduceOp::Min => {
                Tensor::record(|| Op::Extremum(self.clone(), axes.clone()))
            }
            // (Mean returned above, through `mean`.)
            ReduceOp::ArgMax | ReduceOp::ArgMin | ReduceOp::Mean => None,
        };
        // Reducing leading axes without keepdim (a bias gradient's sum over the batch) can
        // build the final shape directly: the result still broadcasts back onto the input,
        // which is all the Sum and Extremum rules need, and no reshape view is made.
        let leading = !keepdim && axes.iter().enumerate().all(|(i, &a)| i == a);
        if leading {
            return Ok(Tensor::from_storage(
                data,
                &self.shape()[axes.len()..],
                record,
            ));
        }
        let t = Tensor::from_storage(data, &self.keep_shape(&axes), record);
        Self::drop_axes(t, &axes, keepdim)
    }

    fn all_axes(&self) -> Vec<usize> {
        (0..self.rank()).collect()
    }

    /// Sum over `axes` (an empty set of values sums to 0).
    pub fn sum(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_primitive(ReduceOp::Sum, "sum", axes, keepdim)
    }

    /// Sum of all elements, as a rank-0 tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        self.sum(&self.all_axes(), false)
    }

    /// Mean over `axes` (NaN over an empty set, as NumPy gives).
    pub fn mean(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let axes = self.reduce_axes("mean", axes)?;
        let count: usize = axes.iter().map(|&a| self.shape()[a]).product();
        self.sum(&axes, keepdim)?.div_scalar(count as f64)
    }

    /// Mean of all elements, as a rank-0 tensor.
    pub fn mean_all(&self) -> Result<Tensor> {
        self.mean(&self.all_axes(), false)
    }

    /// Maximum over `axes`; the gradient is shared equally among tied maxima.
    pub fn max(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_primitive(ReduceOp::Max, "max", axes, keepdim)
    }

    /// Minimum over `axes`; the gradient is shared equally among tied minima.
    pub fn min(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce_primitive(ReduceOp::Min, "min", axes, keepdim)
    }

    /// Index of the first maximum along `axis` (f32 values; f64 for f64 input). Not differentiable.
    pub fn argmax(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        self.reduce_primitive(ReduceOp::ArgMax, "argmax", &[axis], keepdim)
    }

    /// Index of the first minimum along `axis` (f32 values; f64 for f64 input). Not differentiable.
    pub fn argmin(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        self.reduce_primitive(ReduceOp::ArgMin, "argmin", &[axis], keepdim)
    }

    /// Population variance (ddof = 0) over `axes`, as Keras and batch normalisation use.
    pub fn var(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let mu = self.mean(axes, true)?;
        self.sub(&mu)?.sqr()?.mean(axes, keepdim)
    }

    /// ln Σ e^x over `axes`, computed as m + ln Σ e^(x−m) with m the (detached) maximum, so it
    /// neither overflows nor underflows.
    pub fn logsumexp(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let axes = self.reduce_axes("logsumexp", axes)?;
        // Over an empty set the sum of exponentials is 0: −∞, as PyTorch gives (the sum of no
        // elements is 0, so this keeps the gradient path, of size zero).
        if axes.iter().any(|&a| self.shape()[a] == 0) {
            return self.sum(&axes, keepdim)?.add_scalar(f64::NEG_INFINITY);
        }
        // The shift is a constant for the gradient; clamp ±inf so x − m stays defined.
        let big = match self.dtype() {
            crate::DType::F64 => f64::MAX,
            crate::DType::F32 => f32::MAX as f64,
            crate::DType::F16 => half::f16::MAX.to_f64(),
            crate::DType::BF16 => half::bf16::MAX.to_f64(),
        };
        let m = self.max(&axes, true)?.detach().clamp(-big, big)?;
        let s = self.sub(&m)?.exp()?.sum(&axes, true)?.log()?.add(&m)?;
        Self::drop_axes(s, &axes, keepdim)
    }

    /// Moves `axis` last, applies `f` (which works on the last axis), and moves it back.
    fn along_last(
        &self,
        op: &'static str,
        axis: usize,
        f: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if axis >= self.rank() {
            return Err(Error::Axis {
                op,
                axis,
                shape: self.shape().to_vec(),
            });
        }
        let last = self.rank() - 1;
        if axis == last {
            return f(self);
        }
        f(&self.transpose(axis, last)?)?.transpose(axis, last)
    }

    /// Softmax along `axis`: e^(x − max) / Σ e^(x − max).
    pub fn softmax(&self, axis: usize) -> Result<Tensor> {
        self.along_last("softmax", axis, |x| {
            let data = x.with_storage(|s, l| StorageData::softmax_last(s, l, false))?;
            Ok(Tensor::from_storage(
                data,
                x.shape(),
                Tensor::record(|| Op::Softmax(x.clone())),
            ))
        })
    }

    /// Log-softmax along `axis`: x − logsumexp(x), stable for any input.
    pub fn log_softmax(&self, axis: usize) -> Result<Tensor> {
        self.along_last("log_softmax", axis, |x| {
            let data = x.with_storage(|s, l| StorageData::softmax_last(s, l, true))?;
            Ok(Tensor::from_storage(
                data,
                x.shape(),
                Tensor::record(|| Op::LogSoftmax(x.clone())),
            ))
        })
    }
}
