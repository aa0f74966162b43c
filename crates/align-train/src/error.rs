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
}

/// Shorthand for results of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
