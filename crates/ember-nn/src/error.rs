//! The error type of ember-nn.
//!
//! Every fallible function in this crate returns [`Result`]. Each variant carries enough context
//! to fix the problem without a debugger: the file, line and column of a bad CSV field, the tensor
//! name and both shapes of a checkpoint mismatch, the layer that rejected an input. Errors from
//! ember-core (shape or dtype mismatches inside an op) are wrapped unchanged.

use std::fmt;

/// Everything that can go wrong in ember-nn.
#[derive(Debug)]
pub enum NnError {
    /// An error from a tensor operation in ember-core.
    Core(ember_core::Error),
    /// A file could not be read or written.
    Io {
        /// The file involved.
        path: String,
        /// What the operating system said.
        message: String,
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
    },
    /// An IDX (MNIST-format) file is malformed.
    Idx {
        /// The file involved.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint file cannot be written or does not match the model.
    Checkpoint {
        /// The file involved.
        path: String,
        /// What is wrong, naming the tensor.
        message: String,
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
            NnError::Io { path, message } => write!(f, "{path}: {message}"),
            NnError::Csv {
                file,
                line,
                column,
                message,
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
            NnError::Idx { path, message } => write!(f, "{path}: {message}"),
            NnError::Checkpoint { path, message } => write!(f, "checkpoint {path}: {message}"),
            NnError::Config(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for NnError {}

impl From<ember_core::Error> for NnError {
    fn from(e: ember_core::Error) -> Self {
        NnError::Core(e)
    }
}

/// Shorthand for a [`NnError::Config`] error.
pub(crate) fn config_err<T>(message: impl Into<String>) -> Result<T> {
    Err(NnError::Config(message.into()))
}
