//! The op record: what produced a tensor, kept only when a gradient may flow through it.
//!
//! Each variant owns its inputs (cheap `Tensor` handles), which is all the graph there is: the
//! output points at its inputs, and dropping the output frees the chain. Non-differentiable ops
//! (comparisons, argmax) record nothing. The rule for each variant lives in `backprop.rs`.

use crate::tensor::Tensor;
use ember_ops::BceForm;
use ember_ops::{Activation, BinaryOp, UnaryOp};

/// How a tensor was computed from its inputs.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// y = f(x) elementwise.
    Unary(UnaryOp, Tensor),
    /// y = f(a, b) elementwise, a and b already of y's shape.
    Binary(BinaryOp, Tensor, Tensor),
    /// Sum over axes, keepdim form (the rule only needs the input's shape).
    Sum(Tensor),
    /// Max or min over axes, keepdim form (the same rule serves both).
    Extremum(Tensor, Vec<usize>),
    /// Batched matrix product with equal batch dims.
    Matmul(Tensor, Tensor),
    /// Dense layer: act(x · wᵀ + b), with act one that its output determines the slope of.
    Linear {
        x: Tensor,
        w: Tensor,
        b: Option<Tensor>,
        act: Activation,
    },
    /// Softmax along the last axis.
    Softmax(Tensor),
    /// Log-softmax along the last axis.
    LogSoftmax(Tensor),
    /// New shape over the same elements.
    Reshape(Tensor),
    /// Reordered axes.
    Permute(Tensor, Vec<usize>),
    /// A sub-range of one axis: (input, axis, start).
    Narrow(Tensor, usize, usize),
    /// Repeated along stride-0 axes.
    Broadcast(Tensor),
    /// Same values, new storage or dtype (contiguous, to_dtype).
    Copy(Tensor),
    /// Concatenation along an axis.
    Cat(Vec<Tensor>, usize),
    /// Rows picked by index along an axis.
    IndexSelect(Tensor, Vec<usize>, usize),
    /// Elements picked by an index tensor along an axis.
    Gather(Tensor, Vec<usize>, usize),
    /// cond ? a : b (the mask gets no gradient).
    Where(Tensor, Tensor, Tensor),
    /// Fused binary cross-entropy: scale * Σ loss(input, target).
    Bce {
        input: Tensor,
        target: Tensor,
        form: BceForm,
        scale: f64,
        /// `scale · d(loss)/d(input)`, when the CPU forward computed it in the same pass as the
        /// loss (backward then only scales it by the upstream gradient). Not an input.
        input_grad: Option<Tensor>,
    },
}

impl Op {
    /// Calls `f` on each tensor this op read, in order (no allocation: this runs per op).
    pub(crate) fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        match self {
            Op::Unary(_, x)
            | Op::Sum(x)
            | Op::Extremum(x, _)
            | Op::Softmax(x)
            | Op::LogSoftmax(x)
            | Op::Reshape(x)
            | Op::Permute(x, _)
            | Op::Narrow(x, _, _)
            | Op::Broadcast(x)
            | Op::Copy(x)
            | Op::IndexSelect(x, _, _)
            | Op::Gather(x, _, _) => f(x),
            Op::Binary(_, a, b) | Op::Matmul(a, b) | Op::Where(_, a, b) => {
                f(a);
                f(b)
            }
            Op::Linear { x, w, b, .. } => {
                f(x);
                f(w);
                if let Some(b) = b {
                    f(b);
                }
            }
            Op::Cat(xs, _) => xs.iter().for_each(f),
            Op::Bce { input, target, .. } => {
                f(input);
                f(target)
            }
        }
    }
}
