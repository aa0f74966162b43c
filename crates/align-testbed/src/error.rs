//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while generating or writing the testbed.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// A `WorldConfig` or `TinyLlamaConfig` value that cannot describe a world or a model.
    #[error("invalid configuration: {what}")]
    Config {
        /// What is wrong and which field it concerns.
        what: String,
    },
    /// A language tag that is not one of the world's languages.
    #[error("unknown language tag `{tag}` (the world has {known})")]
    UnknownLanguage {
        /// The tag that was asked for.
        tag: String,
        /// The world's tags, comma separated.
        known: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing a file or folder atomically failed.
    #[error(transparent)]
    Atomic(#[from] lm_backend::atomic::AtomicIoError),
    /// Serialising a record or a JSON file failed.
    #[error("{path}: cannot serialise JSON: {source}")]
    Json {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// Building the safetensors file failed.
    #[error("{path}: cannot write safetensors: {why}")]
    Safetensors {
        /// The file being written.
        path: PathBuf,
        /// The underlying error, as text.
        why: String,
    },
    /// Training or evaluating a model (through `align-train`) failed.
    #[error(transparent)]
    Train(#[from] align_train::TrainError),
    /// Loading or running a model failed.
    #[error("{context}: {source}")]
    Model {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: lm_backend::LmError,
    },
}

/// The crate's result type.
pub type Result<T, E = TestbedError> = std::result::Result<T, E>;
