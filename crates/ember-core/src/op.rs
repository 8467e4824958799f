//! The op record: what produced a tensor, kept only when a gradient may flow through it.
//!
//! Each variant owns its inputs (cheap `Tensor` handles), which is all the graph there is: the
//! output points at its inputs, and dropping the output frees the chain. Non-differentiable ops
//! (comparisons, argmax) record nothing. The rule for each primitive lives in `backprop.rs`;
//! fused ops carry theirs (`fused/`).

use crate::fused::FusedOp;
use crate::tensor::Tensor;
use ember_ops::{BinaryOp, UnaryOp};

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
    /// A fused op (a Dense layer, a BCE loss): its forward ran as one kernel pass; its
    /// backward lives with it in `fused/`.
    Fused(FusedOp),
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
            Op::Cat(xs, _) => xs.iter().for_each(f),
            Op::Fused(op) => op.visit_inputs(f),
        }
    }
}
