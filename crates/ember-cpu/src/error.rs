//! The errors ember-cpu's slice kernels report about their operands, before touching any.
//!
//! Kernels that walk a parameter and its gradient and state buffers (the optimizer steps), or
//! predictions and targets (the losses), in lockstep check the lengths first ([`LengthMismatch`]).
//! Without the check, zipping slices of different lengths would quietly process only the
//! shorter prefix — a wrong answer with no sign of it. The strided and indexed kernels
//! (elementwise maps, reductions, copies, gathers) check more ([`OperandError`]): that every
//! view's shape and strides stay inside its buffer, that views meant to share a shape do, and
//! that every index is inside the axis it indexes; without that they would panic on an
//! out-of-range slice index in the middle of writing their output. ember-core checks shapes
//! before it calls a kernel; these checks guard everyone who calls the kernels directly, and
//! cost O(rank) per call (O(indices) for the index kernels).

use crate::strided::Strided;

/// An operand of a slice kernel holds a different number of values than the kernel needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthMismatch {
    /// The kernel, e.g. "adam_step".
    pub op: &'static str,
    /// The operand, e.g. "gradient".
    pub operand: &'static str,
    /// The length the kernel needs (the first operand's).
    pub expected: usize,
    /// The length given.
    pub got: usize,
}

impl std::fmt::Display for LengthMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the {} holds {} values, expected {}",
            self.op, self.operand, self.got, self.expected
        )
    }
}

impl std::error::Error for LengthMismatch {}

/// `Err` naming `operand` when `got != expected`.
pub(crate) fn check_len(
    op: &'static str,
    operand: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), LengthMismatch> {
    if got == expected {
        Ok(())
    } else {
        Err(LengthMismatch {
            op,
            operand,
            expected,
            got,
        })
    }
}

/// What a strided or indexed kernel found wrong with its operands. Nothing has been written when
/// a kernel returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OperandError {
    /// An operand holds a different number of values than the kernel needs.
    Length(LengthMismatch),
    /// A strided view does not fit its buffer, or its shape is not the one the kernel needs.
    View {
        /// The kernel, e.g. "binary".
        op: &'static str,
        /// The operand, e.g. "rhs".
        operand: &'static str,
        /// What is wrong, with the numbers.
        problem: String,
    },
    /// An index is not below the extent of the axis it indexes.
    Index {
        /// The kernel, e.g. "gather".
        op: &'static str,
        /// Where the index sits in the index list.
        position: usize,
        /// The index.
        index: usize,
        /// The axis's extent.
        extent: usize,
    },
    /// The reduction axes are out of range or repeated, or do not suit the reduction.
    Axes {
        /// The kernel.
        op: &'static str,
        /// What is wrong, with the numbers.
        problem: String,
    },
    /// A window, stride, padding, scale or output size is invalid for the input (pooling,
    /// upsampling, padding, batch norm).
    Geometry {
        /// The kernel.
        op: &'static str,
        /// What is wrong, with the numbers.
        problem: String,
    },
}

impl std::fmt::Display for OperandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OperandError::Length(e) => e.fmt(f),
            OperandError::View {
                op,
                operand,
                problem,
            } => write!(f, "{op}: the {operand} view {problem}"),
            OperandError::Index {
                op,
                position,
                index,
                extent,
            } => write!(
                f,
                "{op}: index {index} at position {position} is out of range for an axis of {extent}"
            ),
            OperandError::Axes { op, problem } | OperandError::Geometry { op, problem } => {
                write!(f, "{op}: {problem}")
            }
        }
    }
}

impl std::error::Error for OperandError {
    /// The wrapped [`LengthMismatch`] for [`OperandError::Length`] (so a caller can downcast to
    /// it); the other variants are ember-cpu's own findings and have no underlying error.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OperandError::Length(e) => Some(e),
            _ => None,
        }
    }
}

impl From<LengthMismatch> for OperandError {
    fn from(e: LengthMismatch) -> Self {
        OperandError::Length(e)
    }
}

/// `Err` unless `v`'s shape and strides have the same rank and every element it addresses lies
/// inside a buffer of `len` values (overflow-checked; an empty view always fits).
pub(crate) fn check_view(
    op: &'static str,
    operand: &'static str,
    v: Strided<'_>,
    len: usize,
) -> Result<(), OperandError> {
    let err = |problem: String| OperandError::View {
        op,
        operand,
        problem,
    };
    if v.shape.len() != v.strides.len() {
        return Err(err(format!(
            "has {} dimensions but {} strides",
            v.shape.len(),
            v.strides.len()
        )));
    }
    if v.shape.contains(&0) {
        return Ok(());
    }
    let last = v
        .shape
        .iter()
        .zip(v.strides)
        .try_fold(v.offset, |acc, (&d, &s)| {
            acc.checked_add((d - 1).checked_mul(s)?)
        });
    match last {
        Some(last) if last < len => Ok(()),
        Some(last) => Err(err(format!(
            "(shape {:?}, strides {:?}, offset {}) reaches element {last} of a buffer of {len}",
            v.shape, v.strides, v.offset
        ))),
        None => Err(err(format!(
            "(shape {:?}, strides {:?}, offset {}) overflows the address range",
            v.shape, v.strides, v.offset
        ))),
    }
}

/// `Err` unless `v` has exactly `shape`.
pub(crate) fn check_shape(
    op: &'static str,
    operand: &'static str,
    v: Strided<'_>,
    shape: &[usize],
) -> Result<(), OperandError> {
    if v.shape == shape {
        Ok(())
    } else {
        Err(OperandError::View {
            op,
            operand,
            problem: format!("has shape {:?}, expected {shape:?}", v.shape),
        })
    }
}

/// The number of elements of `shape`, or `Err` when that overflows.
pub(crate) fn checked_count(
    op: &'static str,
    operand: &'static str,
    shape: &[usize],
) -> Result<usize, OperandError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| OperandError::View {
            op,
            operand,
            problem: format!("has shape {shape:?}, whose element count overflows"),
        })
}

/// `Err` naming the first index that is not below `extent`.
pub(crate) fn check_indices(
    op: &'static str,
    idx: &[usize],
    extent: usize,
) -> Result<(), OperandError> {
    // A branch-free scan first (it vectorises); the position only when something is wrong.
    if idx.iter().fold(false, |bad, &i| bad | (i >= extent)) {
        let position = idx.iter().position(|&i| i >= extent).unwrap_or(0);
        return Err(OperandError::Index {
            op,
            position,
            index: idx[position],
            extent,
        });
    }
    Ok(())
}

/// The product `a·b·c`, or `Err` naming `operand` when it overflows.
pub(crate) fn checked_len3(
    op: &'static str,
    operand: &'static str,
    a: usize,
    b: usize,
    c: usize,
) -> Result<usize, OperandError> {
    a.checked_mul(b)
        .and_then(|ab| ab.checked_mul(c))
        .ok_or_else(|| OperandError::View {
            op,
            operand,
            problem: format!("of {a}×{b}×{c} elements overflows the address range"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{BinaryOp, binary, where_cond};
    use crate::copy::{cast_strided, concat, copy_strided};
    use crate::index::{gather, index_add, index_select, scatter_add};
    use crate::reduce::{ReduceOp, reduce, softmax_rows};
    use crate::unary::{UnaryOp, unary, unary_backward};

    const SENTINEL: f32 = 7.5;

    /// The length error inside an `OperandError` is its `source()`, with its own type.
    #[test]
    fn operand_length_error_keeps_its_source() {
        use std::error::Error as _;
        let inner = check_len("adam_step", "gradient", 4, 3).unwrap_err();
        let e = OperandError::from(inner.clone());
        let source = e.source().and_then(|s| s.downcast_ref::<LengthMismatch>());
        assert_eq!(source, Some(&inner));
        let view = OperandError::Axes {
            op: "reduce",
            problem: "axis 3 repeats".into(),
        };
        assert!(view.source().is_none());
    }

    /// Asserts `r` is an error whose message mentions every word of `words`, and that `out`
    /// still holds only the sentinel.
    fn refused<E: std::fmt::Display>(r: Result<(), E>, words: &[&str], out: &[f32]) {
        let msg = match r {
            Ok(()) => panic!("accepted; expected an error mentioning {words:?}"),
            Err(e) => e.to_string(),
        };
        for w in words {
            assert!(msg.contains(w), "{msg:?} does not mention {w:?}");
        }
        assert!(
            out.iter().all(|&v| v == SENTINEL),
            "{msg}: output was written"
        );
    }

    #[test]
    fn views_that_leave_their_buffer_are_errors_before_anything_is_written() {
        let x = [1.0f32; 6];
        let mut out = [SENTINEL; 6];
        // A 2×3 view at offset 1 reaches element 6 of a 6-element buffer.
        let past = Strided::new(&[2, 3], &[3, 1], 1);
        refused(
            unary(UnaryOp::Exp, &x, past, &mut out),
            &["unary", "input", "reaches element 6"],
            &out,
        );
        let ok = Strided::new(&[2, 3], &[3, 1], 0);
        refused(
            binary(BinaryOp::Add, &x, ok, &x, past, &mut out),
            &["binary", "rhs"],
            &out,
        );
        refused(
            copy_strided(&x, past, &mut out),
            &["copy_strided", "source"],
            &out,
        );
        let mut out64 = [SENTINEL as f64; 6];
        assert!(cast_strided(&x, past, &mut out64).is_err());
        assert!(out64.iter().all(|&v| v == SENTINEL as f64));
        // Strides that overflow the address range, and a rank mismatch.
        let huge = Strided::new(&[2, 3], &[usize::MAX, 1], 0);
        refused(copy_strided(&x, huge, &mut out), &["overflows"], &out);
        let ranks = Strided::new(&[2, 3], &[3], 0);
        refused(
            copy_strided(&x, ranks, &mut out),
            &["2 dimensions but 1 strides"],
            &out,
        );
        // An empty view fits anywhere; an output of the wrong length does not.
        assert!(copy_strided(&x, Strided::new(&[0, 3], &[99, 99], 99), &mut []).is_ok());
        refused(
            unary(UnaryOp::Exp, &x, ok, &mut out[..5]),
            &["output", "holds 5", "expected 6"],
            &out,
        );
    }

    #[test]
    fn views_meant_to_share_a_shape_must() {
        let x = [1.0f32; 6];
        let mut out = [SENTINEL; 6];
        let a = Strided::new(&[2, 3], &[3, 1], 0);
        let b = Strided::new(&[3, 2], &[2, 1], 0);
        refused(
            binary(BinaryOp::Mul, &x, a, &x, b, &mut out),
            &["binary", "rhs", "[3, 2]", "[2, 3]"],
            &out,
        );
        refused(
            where_cond(&x, a, &x, a, &x, b, &mut out),
            &["where_cond", "else"],
            &out,
        );
    }

    #[test]
    fn lockstep_lengths_and_rows_are_checked() {
        let x = [0.5f32; 6];
        let mut out = [SENTINEL; 6];
        refused(
            unary_backward(UnaryOp::Tanh, &x, &x, &x[..4], &mut out),
            &["unary_backward", "upstream gradient", "holds 4"],
            &out,
        );
        refused(
            softmax_rows(&x, 4, &mut out, false),
            &["whole number of rows of 4"],
            &out,
        );
        refused(
            softmax_rows(&x, 3, &mut out[..5], false),
            &["softmax_rows", "output"],
            &out,
        );
        refused(
            concat(&[(&x[..4], 2), (&x[..], 3)], 2, &mut out),
            &["concat", "destination", "expected 10"],
            &out,
        );
        refused(
            concat(&[(&x[..3], 2)], 2, &mut out[..4]),
            &["concat", "part", "holds 3"],
            &out,
        );
    }

    #[test]
    fn reduction_axes_are_checked() {
        let x = [1.0f32; 6];
        let mut out = [SENTINEL; 3];
        let v = Strided::new(&[2, 3], &[3, 1], 0);
        refused(
            reduce(ReduceOp::Sum, &x, v, &[2], &mut out),
            &["axis 2 is out of range"],
            &out,
        );
        refused(
            reduce(ReduceOp::Sum, &x, v, &[0, 0], &mut out),
            &["listed twice"],
            &out,
        );
        refused(
            reduce(ReduceOp::ArgMax, &x, v, &[0, 1], &mut out),
            &["exactly one axis"],
            &out,
        );
        refused(
            reduce(ReduceOp::Sum, &x, v, &[0], &mut out[..2]),
            &["reduce", "output"],
            &out,
        );
        let empty = Strided::new(&[2, 0], &[0, 1], 0);
        let mut two = [SENTINEL; 2];
        refused(
            reduce(ReduceOp::ArgMin, &x, empty, &[1], &mut two),
            &["empty"],
            &two,
        );
        // A valid call still works.
        reduce(ReduceOp::Sum, &x, v, &[0], &mut out).unwrap();
        assert_eq!(out, [2.0; 3]);
    }

    #[test]
    fn out_of_range_indices_are_errors_before_anything_is_written() {
        // src is [outer 2, dim 3, inner 2].
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut out = [SENTINEL; 8];
        refused(
            index_select(&src, 2, 3, 2, &[0, 3], &mut out),
            &["index_select", "index 3 at position 1", "axis of 3"],
            &out,
        );
        refused(
            index_select(&src[..11], 2, 3, 2, &[0, 1], &mut out),
            &["source", "holds 11"],
            &out,
        );
        let mut dst = [SENTINEL; 12];
        refused(
            index_add(&out, 2, 3, 2, &[1, 5], &mut dst),
            &["index_add", "index 5"],
            &dst,
        );
        let idx = [0, 1, 2, 0, 1, 9, 0, 0];
        refused(
            gather(&src, 2, 3, 2, &idx, 2, &mut out),
            &["gather", "index 9 at position 5"],
            &out,
        );
        refused(
            gather(&src, 2, 3, 2, &idx[..7], 2, &mut out),
            &["gather", "index", "holds 7"],
            &out,
        );
        refused(
            scatter_add(&out, 2, 3, 2, &idx, 2, &mut dst),
            &["scatter_add", "index 9"],
            &dst,
        );
        // Valid indices still work.
        index_select(&src, 2, 3, 2, &[2, 0], &mut out).unwrap();
        assert_eq!(out, [4.0, 5.0, 0.0, 1.0, 10.0, 11.0, 6.0, 7.0]);
    }
}
