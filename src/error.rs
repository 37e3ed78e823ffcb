//! The crate's one error type.
//!
//! Everything a user can cause (bad shapes, non-finite numbers, out-of-range
//! indices, impossible hyperparameters, unreadable files, a missing GPU)
//! comes back as an [`L0Error`]; a panic means a bug in `l0` itself.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = L0Error> = std::result::Result<T, E>;

/// Every way an `l0` call can fail.
#[derive(Debug, thiserror::Error)]
pub enum L0Error {
    /// Two things that must agree in length or shape do not.
    #[error("shape mismatch: {what}: expected {expected}, got {got}")]
    Shape {
        /// What was being checked, e.g. "y (one target per matrix row)".
        what: String,
        /// The expected size, as text (e.g. "200" or "200 x 10000").
        expected: String,
        /// The size found.
        got: String,
    },
    /// A NaN or infinite value where a finite number is required.
    #[error("non-finite value in {what} at index {index}: {value}")]
    NonFinite {
        /// Which input holds it.
        what: String,
        /// Position of the first offending entry.
        index: usize,
        /// The value itself (NaN, inf or -inf).
        value: f64,
    },
    /// An index that points outside its dimension.
    #[error(
        "index out of range in {what}: {index} at position {position}, but the bound is {bound}"
    )]
    IndexOutOfRange {
        /// Which input holds it.
        what: String,
        /// The offending index.
        index: u64,
        /// Where it sits in its array.
        position: usize,
        /// The exclusive upper bound.
        bound: u64,
    },
    /// A hyperparameter or option outside its valid range, or options that
    /// do not fit together.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Training produced a NaN or infinite loss.
    #[error("{}", diverged_message(*epoch, *model_epoch, what))]
    Diverged {
        /// The 1-based epoch of this fit at which the non-finite value appeared.
        epoch: u64,
        /// The same epoch counted over all the model's fits (differs after a
        /// continued or resumed fit).
        model_epoch: u64,
        /// Which quantity went non-finite.
        what: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong, in words.
        message: String,
    },
    /// A file was read but its content is not what it must be.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A size a caller gave (columns, models, a grid's count) needs more
    /// memory than this process can get ([`crate::limits`]).
    #[error("{what} needs {needed} of memory, more than the {available} available")]
    TooLarge {
        /// The argument and its value, e.g. "n_features = 1099511627776".
        what: String,
        /// The memory it needs, in words.
        needed: String,
        /// The memory available, in words.
        available: String,
    },
    /// The CUDA backend could not be used: no driver, no NVRTC, no device,
    /// too little device memory, or a kernel that failed to compile (the
    /// NVRTC log is kept in the message).
    #[error("CUDA: {0}")]
    Cuda(String),
}

fn diverged_message(epoch: u64, model_epoch: u64, what: &str) -> String {
    if epoch == model_epoch {
        format!("training diverged at epoch {epoch}: {what} is not finite")
    } else {
        format!(
            "training diverged at epoch {model_epoch} (epoch {epoch} of this fit): {what} is not finite"
        )
    }
}

impl L0Error {
    /// Shorthand for [`L0Error::InvalidConfig`].
    pub fn config(msg: impl Into<String>) -> Self {
        L0Error::InvalidConfig(msg.into())
    }

    /// Shorthand for [`L0Error::Shape`].
    pub fn shape(what: impl Into<String>, expected: impl ToString, got: impl ToString) -> Self {
        L0Error::Shape {
            what: what.into(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }
}

/// Returns an error naming the first non-finite entry of `values`, if any.
pub fn check_finite<T: Copy + Into<f64>>(what: &str, values: &[T]) -> Result<()> {
    match values.iter().position(|v| !(*v).into().is_finite()) {
        None => Ok(()),
        Some(index) => Err(L0Error::NonFinite {
            what: what.to_string(),
            index,
            value: values[index].into(),
        }),
    }
}

/// Returns an error if a scalar hyperparameter is not finite.
pub fn check_finite_scalar(what: &str, value: f64) -> Result<()> {
    check_finite(what, &[value])
}
