//! The error type of every fallible ember-core operation.
//!
//! Each variant names the op and the shapes, dtypes, devices or values involved, so a message
//! alone tells the user what was wrong: `matmul: lhs [2, 3] and rhs [4, 5]: inner dimensions 3
//! and 4 differ`. Library code returns these; only operator sugar (`&a + &b`) panics, with the
//! same message. When an error of a lower layer caused it (the CUDA layer's `CudaError`), that
//! error is kept whole in [`Error::DeviceCall`] and returned by
//! [`std::error::Error::source`], so a caller can downcast to it and match its variants.

use crate::dtype::{DType, Device};
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// The lower layer's error kept inside an [`Error`] (shared, so `Error` stays `Clone`).
///
/// Two sources compare equal when they are the same allocation or print the same text.
#[derive(Clone)]
pub struct ErrorSource(Arc<dyn StdError + Send + Sync + 'static>);

impl ErrorSource {
    /// Wraps an error (any `std::error::Error + Send + Sync`, or a boxed one).
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> ErrorSource {
        ErrorSource(Arc::from(error.into()))
    }

    /// The wrapped error; `downcast_ref` it to reach the original type.
    pub fn get(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self.0.as_ref()
    }
}

impl fmt::Debug for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl PartialEq for ErrorSource {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

/// What went wrong in an ember-core operation.
///
/// New variants may be added in a minor release, so a `match` needs a wildcard arm.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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
    /// A buffer could not be allocated: the op, and the bytes it asked for.
    OutOfMemory {
        /// The op that failed.
        op: &'static str,
        /// Bytes requested (saturated at `usize::MAX` when the count itself overflowed).
        bytes: usize,
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
    /// A call into the device layer failed (a CUDA driver, NVRTC or kernel-launch error); the
    /// device layer's own error is kept in `source` and returned by `source()`.
    DeviceCall {
        /// The op that failed.
        op: &'static str,
        /// The device it ran on.
        device: Device,
        /// The device layer's error (for CUDA, an `ember_cuda::CudaError`).
        source: ErrorSource,
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
            Error::OutOfMemory { op, bytes } => {
                write!(f, "{op}: out of memory allocating {bytes} bytes")
            }
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
            Error::DeviceCall { op, device, source } => write!(f, "{op} on {device}: {source}"),
            Error::Index { op, value, size } => {
                write!(f, "{op}: index {value} is not an integer in 0..{size}")
            }
            Error::Invalid { op, detail } => write!(f, "{op}: {detail}"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::DeviceCall { source, .. } => Some(source.get()),
            _ => None,
        }
    }
}

impl Error {
    /// An [`Error::DeviceCall`]: `op` on `device` failed with the device layer's `source`,
    /// which is kept (not only its text). Its message is `"{op} on {device}: {source}"`.
    pub fn device_call(
        op: &'static str,
        device: Device,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        Error::DeviceCall {
            op,
            device,
            source: ErrorSource::new(source),
        }
    }

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
