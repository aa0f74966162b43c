//! The error type of the evaluation functions.
//!
//! Kept beside the evaluation code for now; it wraps the crate's [`TrainError`] (data files)
//! and the errors of the model backend and the loss crates.

use crate::TrainError;
use std::path::PathBuf;

/// Everything that can go wrong in an evaluation, each naming the file, record, language or
/// endpoint at fault.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the training-format data failed.
    #[error(transparent)]
    Data(#[from] TrainError),
    /// The model backend failed (loading, forward pass, tokenizer, chat template).
    #[error("model: {0}")]
    Model(#[from] lm_backend::LmError),
    /// A log-prob or reward-gap computation rejected its inputs.
    #[error("log-probs: {0}")]
    Loss(#[from] align_losses::LossError),
    /// A collinearity computation rejected its inputs.
    #[error("consistency: {0}")]
    Mlc(#[from] mlc_loss::MlcError),
    /// libtorch failed.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    /// A record could not be tokenised.
    #[error("record `{id}` ({lang}): {why}")]
    Encode {
        /// The record id.
        id: String,
        /// The language tag.
        lang: String,
        /// What the encoder said.
        why: String,
    },
    /// A safety-prompt file is malformed.
    #[error("{path}:{line}: {why}")]
    BadPrompts {
        /// The prompt file.
        path: PathBuf,
        /// 1-based line (JSONL) or record (CSV, header = 1) number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// An option or input is out of range or inconsistent.
    #[error("{what}: {why}")]
    BadInput {
        /// The option or input.
        what: String,
        /// Why it is rejected and what would be accepted.
        why: String,
    },
    /// The HTTP judge gave up on one request.
    #[error("judge at {url}: {why} (after {attempts} attempt(s))")]
    Judge {
        /// The endpoint.
        url: String,
        /// How many requests were sent.
        attempts: u32,
        /// The last failure and what to check.
        why: String,
    },
    /// A plot could not be drawn or written.
    #[error("{path}: cannot draw the plot: {why}")]
    Plot {
        /// The image file.
        path: PathBuf,
        /// What the drawing backend said.
        why: String,
    },
}

impl EvalError {
    /// An [`EvalError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io { path: path.into(), source }
    }

    /// An [`EvalError::BadInput`].
    pub fn input(what: impl Into<String>, why: impl Into<String>) -> Self {
        EvalError::BadInput { what: what.into(), why: why.into() }
    }
}

/// Shorthand for results of the evaluation functions.
pub type EvalResult<T> = std::result::Result<T, EvalError>;
