//! The one error type of GGUF import.

use std::path::PathBuf;

use crate::atomic::AtomicIoError;

/// Everything that can go wrong while reading a GGUF file or exporting it to a Hugging Face folder.
///
/// Variants carry the byte offset, metadata key or tensor name involved, so that a message
/// about a damaged file says where the damage is.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Opening, mapping, writing or renaming a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "rename", ...).
        action: &'static str,
        /// The file or folder involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic bytes.
    #[error("not a GGUF file: the first 4 bytes are {found:?}, expected \"GGUF\"")]
    BadMagic {
        /// The first bytes found (fewer than 4 when the file is shorter).
        found: Vec<u8>,
    },
    /// The header names a format version this reader does not support.
    #[error("unsupported GGUF version {version} (supported: 2 and 3){hint}")]
    UnsupportedVersion {
        /// The version number as read (little-endian).
        version: u32,
        /// Extra advice, e.g. about big-endian files or the obsolete version 1.
        hint: &'static str,
    },
    /// The file ends before a value that the header promised.
    #[error(
        "GGUF file truncated while reading {what} at byte offset {offset}: needs {needed} bytes, {available} left"
    )]
    Truncated {
        /// What was being read (e.g. `value of key "general.name"`).
        what: String,
        /// Byte offset where the read started.
        offset: u64,
        /// Bytes needed.
        needed: u64,
        /// Bytes left in the file from `offset`.
        available: u64,
    },
    /// A structurally invalid field (bad type code, non-UTF-8 string, impossible count, ...).
    #[error("malformed GGUF file at byte offset {offset} ({context}): {message}")]
    Malformed {
        /// Byte offset of the offending field.
        offset: u64,
        /// Which key or tensor was being read.
        context: String,
        /// What is wrong with it.
        message: String,
    },
    /// A tensor's data region is misplaced or lies (partly) outside the file.
    #[error("tensor \"{tensor}\": {message}")]
    TensorData {
        /// The tensor's name.
        tensor: String,
        /// What is wrong (offsets and sizes included).
        message: String,
    },
    /// A tensor uses a GGML type whose dequantisation is not implemented.
    #[error("tensor \"{tensor}\" has GGML type {ggml_type}, which cannot be dequantised yet (supported: {supported})")]
    UnsupportedType {
        /// The tensor's name.
        tensor: String,
        /// The type's name (or its numeric code when unknown).
        ggml_type: String,
        /// The supported types, for the message.
        supported: &'static str,
    },
    /// No tensor with this name exists in the file.
    #[error("no tensor named \"{0}\" in the GGUF file")]
    MissingTensor(String),
    /// A metadata key needed for the export is absent.
    #[error("metadata key \"{0}\" is missing from the GGUF file")]
    MissingKey(String),
    /// A metadata key holds a value of the wrong type or an unusable value.
    #[error("metadata key \"{key}\": {message}")]
    BadValue {
        /// The key.
        key: String,
        /// What was expected and what was found.
        message: String,
    },
    /// The model architecture in `general.architecture` cannot be exported.
    #[error(
        "architecture \"{0}\" cannot be exported to Hugging Face yet (supported: llama, qwen2, qwen3, gemma2, gemma3)"
    )]
    UnsupportedArchitecture(String),
    /// A tensor has no Hugging Face name under the file's architecture.
    #[error("tensor \"{tensor}\" has no Hugging Face name in the {architecture} mapping")]
    UnmappedTensor {
        /// The tensor's GGUF name.
        tensor: String,
        /// `general.architecture`.
        architecture: String,
    },
    /// The tensors do not form the model the metadata describes.
    #[error("the GGUF file does not hold the {architecture} model its metadata describes: {message}")]
    ModelMismatch {
        /// `general.architecture`.
        architecture: String,
        /// Which tensors are missing, misshaped or duplicated.
        message: String,
    },
    /// A tensor's shape does not fit what the export expects.
    #[error("tensor \"{tensor}\": {message}")]
    Shape {
        /// The tensor's name.
        tensor: String,
        /// Expected and found shapes.
        message: String,
    },
    /// The output folder exists and overwriting was not asked for.
    #[error("output folder {0} already exists (set ConvertOptions::overwrite to replace it)")]
    OutputExists(PathBuf),
    /// Writing `model.safetensors` failed inside the safetensors crate.
    #[error("writing safetensors file {path}: {message}")]
    Safetensors {
        /// The file being written.
        path: PathBuf,
        /// The crate's message.
        message: String,
    },
    /// Serialising a JSON file failed.
    #[error("serialising {file}: {source}")]
    Json {
        /// The file being written.
        file: &'static str,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias of the GGUF module.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;

impl From<AtomicIoError> for GgufError {
    fn from(e: AtomicIoError) -> Self {
        GgufError::Io { action: e.action, path: e.path, source: e.source }
    }
}
