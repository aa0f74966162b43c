//! The crate's one error type.

use std::path::PathBuf;

use crate::atomic::AtomicIoError;

/// Everything that can go wrong while loading or running a model or tokenizer.
///
/// Each variant names the file, key or tensor involved, so a message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config, index, tokenizer config) is not valid or lacks a required key.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The parser's error (it names the key and line).
        #[source]
        source: serde_json::Error,
    },
    /// `config.json` names a `model_type` this crate does not implement.
    #[error("{path}: unsupported model_type \"{model_type}\" (supported: {supported})", supported = crate::arch::supported_model_types())]
    UnsupportedModel {
        /// The config file.
        path: PathBuf,
        /// The `model_type` found.
        model_type: String,
    },
    /// A config key has a value this crate cannot use.
    #[error("{path}: key `{key}`: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The offending key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A safetensors file could not be parsed.
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors {
        /// The weights file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A tensor the config requires is in none of the checkpoint's files.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The checkpoint folder.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A tensor of the checkpoint is not one the config describes.
    #[error("{path}: unexpected tensor `{name}` (not part of this model_type and config)")]
    UnexpectedTensor {
        /// The weights file holding it.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A tensor's shape differs from what the config implies.
    #[error("{path}: tensor `{name}` has shape {found:?}, the config implies {expected:?}")]
    TensorShape {
        /// The weights file holding it.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The shape the config implies.
        expected: Vec<i64>,
        /// The shape in the file.
        found: Vec<i64>,
    },
    /// A LoRA adapter (folder, spec or tensors) does not fit the model, or is of a kind this
    /// crate does not apply.
    #[error("{path}: {message}")]
    Adapter {
        /// The adapter folder or file (or the model folder, for a spec).
        path: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
    /// A tensor is stored in a dtype this crate does not read.
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype}")]
    TensorDtype {
        /// The weights file holding it.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The stored dtype.
        dtype: String,
    },
    /// An input tensor given to a model has the wrong shape, dtype or device.
    #[error("input `{name}`: {message}")]
    Input {
        /// The argument's name.
        name: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The tokenizer failed to load, encode or decode.
    #[error("{context}: {message}")]
    Tokenizer {
        /// The file or operation.
        context: String,
        /// The tokenizer library's message.
        message: String,
    },
    /// The chat template failed to compile or render (including its own `raise_exception`).
    #[error("chat template: {message}")]
    ChatTemplate {
        /// The template engine's message.
        message: String,
    },
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Result type of this crate.
pub type Result<T, E = LmError> = std::result::Result<T, E>;

impl From<AtomicIoError> for LmError {
    /// Keeps the failed step in the message: `cannot <action>: <OS error>`.
    fn from(e: AtomicIoError) -> Self {
        let source = std::io::Error::new(e.source.kind(), format!("cannot {}: {}", e.action, e.source));
        LmError::Io { path: e.path, source }
    }
}

impl LmError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LmError::Io { path: path.into(), source }
    }

    pub(crate) fn input(name: &'static str, message: impl Into<String>) -> Self {
        LmError::Input { name, message: message.into() }
    }
}
