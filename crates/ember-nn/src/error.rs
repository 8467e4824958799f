//! The error type of ember-nn.
//!
//! Every fallible function in this crate returns [`Result`]. Each variant carries enough context
//! to fix the problem without a debugger: the file, line and column of a bad CSV field, the tensor
//! name and both shapes of a checkpoint mismatch, the layer that rejected an input. Errors from
//! ember-core (shape or dtype mismatches inside an op) are wrapped unchanged, and errors from the
//! libraries underneath (the operating system's I/O error, the csv and safetensors crates, gzip)
//! are kept whole: [`std::error::Error::source`] returns them, so a caller can downcast to the
//! original type (`e.source()?.downcast_ref::<std::io::Error>()`) and read its kind.

use std::error::Error as StdError;
use std::fmt;

/// The boxed underlying error some variants keep (safetensors' or the operating system's).
pub type BoxedSource = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong in ember-nn.
///
/// New variants may be added in a minor release, so a `match` needs a wildcard arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum NnError {
    /// An error from a tensor operation in ember-core (also returned by `source()`).
    Core(ember_core::Error),
    /// A file could not be read or written.
    Io {
        /// The file involved.
        path: String,
        /// What the operating system said (also returned by `source()`).
        source: std::io::Error,
    },
    /// A CSV file is malformed. `line` is 1-based and counts the header; `column` is 1-based.
    Csv {
        /// The file (or a name for in-memory text, such as `<embedded breast_cancer.csv>`).
        file: String,
        /// 1-based line number, if the problem belongs to one line.
        line: Option<u64>,
        /// 1-based column number and the column's name, if the problem belongs to one field.
        column: Option<(usize, String)>,
        /// What is wrong.
        message: String,
        /// The csv crate's error, when the csv reader itself failed (`source()` returns it).
        source: Option<csv::Error>,
    },
    /// An IDX (MNIST-format) file is malformed.
    Idx {
        /// The file involved.
        path: String,
        /// What is wrong.
        message: String,
        /// The gzip decoder's error, when decompression failed (`source()` returns it).
        source: Option<std::io::Error>,
    },
    /// A checkpoint file cannot be written or does not match the model.
    Checkpoint {
        /// The file involved.
        path: String,
        /// What is wrong, naming the tensor.
        message: String,
        /// The underlying error (safetensors' `SafeTensorError` or an `std::io::Error`), when
        /// a library call failed rather than a check of ember's (`source()` returns it).
        source: Option<BoxedSource>,
    },
    /// The training loss became NaN or infinite: the optimisation diverged (typically a learning
    /// rate too high for the data's scale). No configuration is wrong as such, so this is not a
    /// [`NnError::Config`].
    Diverged {
        /// 1-based optimizer step whose batch gave the loss (counted over the optimizer's life).
        step: u64,
        /// 1-based epoch in which the loss was seen; `None` from a bare `Model::train_step`.
        epoch: Option<usize>,
        /// 0-based batch of that epoch whose loss it was; `None` from a bare `Model::train_step`.
        batch: Option<usize>,
        /// The loss value (NaN or ±infinity).
        loss: f64,
    },
    /// A layer, model or optimizer was configured or called in a way that cannot work.
    Config(String),
}

/// `Result` with [`NnError`].
pub type Result<T> = std::result::Result<T, NnError>;

impl fmt::Display for NnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NnError::Core(e) => write!(f, "{e}"),
            NnError::Io { path, source } => write!(f, "{path}: {source}"),
            NnError::Csv {
                file,
                line,
                column,
                message,
                ..
            } => {
                write!(f, "{file}")?;
                if let Some(line) = line {
                    write!(f, ": line {line}")?;
                }
                if let Some((index, name)) = column {
                    write!(f, ", column {index} ({name})")?;
                }
                write!(f, ": {message}")
            }
            NnError::Idx { path, message, .. } => write!(f, "{path}: {message}"),
            NnError::Checkpoint { path, message, .. } => {
                write!(f, "checkpoint {path}: {message}")
            }
            NnError::Diverged {
                step,
                epoch,
                batch,
                loss,
            } => {
                write!(f, "loss became {loss} at optimizer step {step}")?;
                if let (Some(epoch), Some(batch)) = (epoch, batch) {
                    write!(f, " (epoch {epoch}, batch {batch})")?;
                }
                write!(f, ": lower the learning rate or scale the inputs")
            }
            NnError::Config(message) => write!(f, "{message}"),
        }
    }
}

impl StdError for NnError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            NnError::Core(e) => Some(e),
            NnError::Io { source, .. } => Some(source),
            NnError::Csv { source, .. } => source.as_ref().map(|e| e as &(dyn StdError + 'static)),
            NnError::Idx { source, .. } => source.as_ref().map(|e| e as &(dyn StdError + 'static)),
            NnError::Checkpoint { source, .. } => {
                source.as_deref().map(|e| e as &(dyn StdError + 'static))
            }
            NnError::Diverged { .. } | NnError::Config(_) => None,
        }
    }
}

impl From<ember_core::Error> for NnError {
    fn from(e: ember_core::Error) -> Self {
        NnError::Core(e)
    }
}

/// Shorthand for a [`NnError::Config`] error.
pub(crate) fn config_err<T>(message: impl Into<String>) -> Result<T> {
    Err(NnError::Config(message.into()))
}
