//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in a run, each naming the file, line, key or step at fault.
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
    /// A data record is malformed.
    #[error("{path}:{line}: {why}")]
    BadRecord {
        /// The data file.
        path: PathBuf,
        /// 1-based line number.
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
    /// The run cannot resume from its output folder.
    #[error("cannot resume from {path}: {why}")]
    Resume {
        /// The output folder or checkpoint.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
