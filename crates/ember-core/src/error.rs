//! The error type of every fallible ember-core operation.
//!
//! Each variant names the op and the shapes, dtypes, devices or values involved, so a message
//! alone tells the user what was wrong: `matmul: lhs [2, 3] and rhs [4, 5]: inner dimensions 3
//! and 4 differ`. Library code returns these; only operator sugar (`&a + &b`) panics, with the
//! same message.

use crate::dtype::{DType, Device};
use std::fmt;

/// What went wrong in an ember-core operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Two shapes cannot be broadcast together.
    Broadcast {
        /// The op that failed.
        op: &'static str,
        /// Left operand's shape.
        lhs: Vec<usize>,
        /// Right operand's shape.
        rhs: Vec<usize>,
    },
    /// Shapes are incompatible for a reason given in `detail`.
    Shape {
        /// The op that failed.
        op: &'static str,
        /// What about the shapes is wrong, naming them.
        detail: String,
    },
    /// A data length does not match the element count of a shape.
    ElementCount {
        /// The op that failed.
        op: &'static str,
        /// The requested shape.
        shape: Vec<usize>,
        /// Elements the shape holds.
        expected: usize,
        /// Elements supplied.
        got: usize,
    },
    /// An axis is out of range for the tensor's rank.
    Axis {
        /// The op that failed.
        op: &'static str,
        /// The axis given.
        axis: usize,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// Operands have different dtypes.
    DTypeMismatch {
        /// The op that failed.
        op: &'static str,
        /// Left operand's dtype.
        lhs: DType,
        /// Right operand's dtype.
        rhs: DType,
    },
    /// Operands live on different devices.
    DeviceMismatch {
        /// The op that failed.
        op: &'static str,
        /// Left operand's device.
        lhs: Device,
        /// Right operand's device.
        rhs: Device,
    },
    /// The op is not available on this device (or the device is not usable).
    Device {
        /// The op that failed.
        op: &'static str,
        /// The device asked for.
        device: Device,
        /// Why it cannot run there.
        reason: String,
    },
    /// An index value is out of range or not an integer.
    Index {
        /// The op that failed.
        op: &'static str,
        /// The offending value.
        value: f64,
        /// The size of the indexed dimension.
        size: usize,
    },
    /// Any other invalid argument, described.
    Invalid {
        /// The op that failed.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// `Result` with ember-core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Broadcast { op, lhs, rhs } => {
                write!(
                    f,
                    "{op}: shapes {lhs:?} and {rhs:?} cannot be broadcast together"
                )
            }
            Error::Shape { op, detail } => write!(f, "{op}: {detail}"),
            Error::ElementCount {
                op,
                shape,
                expected,
                got,
            } => write!(
                f,
                "{op}: shape {shape:?} holds {expected} elements but {got} were given"
            ),
            Error::Axis { op, axis, shape } => write!(
                f,
                "{op}: axis {axis} is out of range for a tensor of shape {shape:?} (rank {})",
                shape.len()
            ),
            Error::DTypeMismatch { op, lhs, rhs } => {
                write!(f, "{op}: dtypes differ: lhs is {lhs}, rhs is {rhs}")
            }
            Error::DeviceMismatch { op, lhs, rhs } => {
                write!(f, "{op}: devices differ: lhs is on {lhs}, rhs is on {rhs}")
            }
            Error::Device { op, device, reason } => write!(f, "{op} on {device}: {reason}"),
            Error::Index { op, value, size } => {
                write!(f, "{op}: index {value} is not an integer in 0..{size}")
            }
            Error::Invalid { op, detail } => write!(f, "{op}: {detail}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub(crate) fn invalid(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            detail: detail.into(),
        }
    }
}
