//! The one error type of this crate.

use align_losses::LossError;
use tch::{Device, Kind, TchError};

/// Everything that can go wrong in this crate's functions.
///
/// Each variant names the input at fault. Inside an
/// [`ObjectiveStack`](align_losses::ObjectiveStack) the terms turn it into the matching
/// [`LossError`] variant with [`MlcError::into_loss_error`].
#[derive(Debug, thiserror::Error)]
pub enum MlcError {
    /// A tensor has the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// Which input (e.g. `"states"`).
        what: String,
        /// The expected shape, in words (e.g. `"[G, K, D]"`).
        expected: String,
        /// The shape that was passed.
        got: Vec<i64>,
    },
    /// A tensor has the wrong element type.
    #[error("{what}: expected a {expected} tensor, got {got:?}")]
    Kind {
        /// Which input.
        what: String,
        /// The expected kind, in words.
        expected: String,
        /// The kind that was passed.
        got: Kind,
    },
    /// Tensors that must live on one device do not.
    #[error("{what}: expected device {expected:?} (the device of `states`), got {got:?}")]
    Device {
        /// Which input.
        what: String,
        /// The device of `states`.
        expected: Device,
        /// The device of this input.
        got: Device,
    },
    /// A parameter is out of its valid range.
    #[error("parameter `{parameter}` = {value} is invalid: {why}")]
    InvalidParameter {
        /// The parameter's name (as in the config file, e.g. `"tau"`).
        parameter: String,
        /// Its value.
        value: f64,
        /// Why it is rejected.
        why: String,
    },
    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
}

impl MlcError {
    /// The matching [`LossError`] for the objective term named `term`: shape, kind, device and
    /// libtorch errors keep their variant, parameter errors name the term.
    pub fn into_loss_error(self, term: &str) -> LossError {
        match self {
            MlcError::Shape { what, expected, got } => LossError::Shape { what, expected, got },
            MlcError::Kind { what, expected, got } => LossError::Kind { what, expected, got },
            MlcError::Device { what, expected, got } => LossError::Device { what, expected, got },
            MlcError::InvalidParameter { parameter, value, why } => {
                LossError::InvalidParameter { term: term.to_string(), parameter, value, why }
            }
            MlcError::Torch(e) => LossError::Torch(e),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = MlcError> = std::result::Result<T, E>;
