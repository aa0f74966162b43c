//! The one error type of this crate, for training and evaluation alike.

use std::path::PathBuf;

/// Everything that can go wrong in a run or an evaluation, each naming the file, line, key,
/// record, step or endpoint at fault, and saying what was being done.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The run config is not valid TOML or has a value of the wrong type.
    #[error("{path}: {message}")]
    ConfigSyntax {
        /// The config file.
        path: PathBuf,
        /// What the TOML parser or the type check said.
        message: String,
    },
    /// A config key that this version does not know (a typo, usually).
    #[error("{path}: unknown key `{key}` in {table}; allowed keys: {allowed}")]
    UnknownKey {
        /// The config file.
        path: PathBuf,
        /// The table, e.g. `[optim]` or `[[objective]] #2 (kind = "simpo")`.
        table: String,
        /// The unknown key.
        key: String,
        /// The keys that table accepts.
        allowed: String,
    },
    /// A required config key is absent.
    #[error("{path}: missing key `{key}` in {table}")]
    MissingKey {
        /// The config file.
        path: PathBuf,
        /// The table.
        table: String,
        /// The missing key.
        key: String,
    },
    /// A config value is out of range or inconsistent with another.
    #[error("{path}: {table} `{key}`: {why}")]
    InvalidValue {
        /// The config file.
        path: PathBuf,
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// Why it is rejected and what would be accepted.
        why: String,
    },
    /// A data record (a training line, a safety prompt, a judge-cache line) is malformed.
    #[error("{path}:{line}: {why}")]
    BadRecord {
        /// The data file.
        path: PathBuf,
        /// 1-based line (JSONL) or record (CSV, header = 1) number; 0 for the file as a whole.
        line: usize,
        /// What is wrong with the record.
        why: String,
    },
    /// A data file holds no usable record.
    #[error("{path}: no records{detail}")]
    EmptyData {
        /// The data file.
        path: PathBuf,
        /// Extra context (e.g. how many lines were skipped as bad).
        detail: String,
    },
    /// An objective term rejected its parameters or its inputs.
    #[error("{context}: {source}")]
    Loss {
        /// Which term or step (e.g. `[[objective]] #2 (kind = "mlc")`, `step 12`).
        context: String,
        /// The loss crate's error.
        #[source]
        source: align_losses::LossError,
    },
    /// The model or tokenizer failed to load, run or save.
    #[error("{context}: {source}")]
    Model {
        /// What was being done (e.g. `loading the policy from models/base`).
        context: String,
        /// The backend's error.
        #[source]
        source: lm_backend::LmError,
    },
    /// The device in `[model] device` cannot be used.
    #[error("[model] device: {0}")]
    Device(#[from] torch_device::DeviceError),
    /// A libtorch operation failed.
    #[error("{context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// libtorch's error.
        #[source]
        source: tch::TchError,
    },
    /// The loss or the gradient became NaN or infinite and the run was stopped
    /// (`on_nonfinite = "stop"`); the last good state was saved.
    #[error("step {step}: {what} is not finite ({value}); the step was not applied and the last good state was saved to {saved}")]
    NonFinite {
        /// The optimizer step (1-based).
        step: u64,
        /// `loss` or `gradient norm`.
        what: String,
        /// The value.
        value: f64,
        /// The checkpoint written.
        saved: PathBuf,
    },
    /// A record could not be tokenised for an evaluation.
    #[error("record `{id}` ({lang}): {why}")]
    Encode {
        /// The record id.
        id: String,
        /// The language tag.
        lang: String,
        /// What the encoder said.
        why: String,
    },
    /// An option or input of a library call is out of range or inconsistent.
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
    /// The run cannot resume from its output folder.
    #[error("cannot resume from {path}: {why}")]
    Resume {
        /// The output folder or checkpoint.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl From<lm_backend::atomic::AtomicIoError> for TrainError {
    fn from(e: lm_backend::atomic::AtomicIoError) -> Self {
        TrainError::Io { path: e.path, source: e.source }
    }
}

impl TrainError {
    /// A [`TrainError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.into(), source }
    }

    /// A [`TrainError::BadInput`].
    pub fn input(what: impl Into<String>, why: impl Into<String>) -> Self {
        TrainError::BadInput { what: what.into(), why: why.into() }
    }

    /// Wraps a backend error as [`TrainError::Model`], saying what was being done.
    pub fn model(context: impl Into<String>) -> impl FnOnce(lm_backend::LmError) -> Self {
        let context = context.into();
        move |source| TrainError::Model { context, source }
    }

    /// Wraps a loss-crate error as [`TrainError::Loss`], saying which computation failed.
    pub fn loss(context: impl Into<String>) -> impl FnOnce(align_losses::LossError) -> Self {
        let context = context.into();
        move |source| TrainError::Loss { context, source }
    }

    /// Wraps a libtorch error as [`TrainError::Torch`], saying what was being done.
    pub fn torch(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> Self {
        let context = context.into();
        move |source| TrainError::Torch { context, source }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
