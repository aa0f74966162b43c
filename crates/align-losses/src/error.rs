//! The one error type of this crate.

use tch::TchError;

/// Everything that can go wrong while computing an objective term.
///
/// Every variant carries enough context to say which term and which input is at fault, so a
/// trainer can pass the message straight to its user.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// A tensor has the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// Which input (e.g. `"policy.chosen.sum"`).
        what: String,
        /// The expected shape, in words (e.g. `"[B]"`, `"same as policy.chosen"`).
        expected: String,
        /// The shape that was passed.
        got: Vec<i64>,
    },
    /// A tensor has the wrong element type.
    #[error("{what}: expected a {expected} tensor, got {got:?}")]
    Kind {
        /// Which input.
        what: String,
        /// The expected kind, in words (e.g. `"floating-point"`).
        expected: String,
        /// The kind that was passed.
        got: tch::Kind,
    },
    /// Tensors that must live on one device do not.
    #[error("{what}: expected device {expected:?}, got {got:?}")]
    Device {
        /// Which input.
        what: String,
        /// The device of the first input.
        expected: tch::Device,
        /// The device of this input.
        got: tch::Device,
    },
    /// A term needs an input that the batch does not carry.
    #[error("objective `{term}` needs {input}, which the batch does not provide")]
    MissingInput {
        /// The term's name.
        term: String,
        /// What is missing, in words.
        input: String,
    },
    /// A hyper-parameter is out of its valid range.
    #[error("objective `{term}`: parameter `{parameter}` = {value} is invalid: {why}")]
    InvalidParameter {
        /// The term's name.
        term: String,
        /// The parameter's name (as in the config file).
        parameter: String,
        /// Its value.
        value: f64,
        /// Why it is rejected.
        why: String,
    },
    /// Two terms of one stack share a name.
    #[error("two objective terms are named `{0}`; give each term of one kind its own `name`")]
    DuplicateName(String),
    /// An error raised by a term defined in another crate (e.g. `mlc-loss`), kept as its source.
    #[error("objective `{term}`: {source}")]
    Term {
        /// The term's name.
        term: String,
        /// The term crate's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
}

impl LossError {
    /// This error, attributed to the objective term named `term`: the variants that name a
    /// term ([`LossError::MissingInput`], [`LossError::InvalidParameter`], [`LossError::Term`])
    /// name `term`, the others are returned as they are.
    ///
    /// The regulariser crates' `into_loss_error(term)` use it: their plain functions, which
    /// know no term's name, attribute a bad parameter to their kind (e.g. `"mlc"`), and the
    /// term that called them puts its own name in its place.
    pub fn attributed_to(self, term: &str) -> LossError {
        match self {
            LossError::MissingInput { input, .. } => LossError::MissingInput { term: term.to_string(), input },
            LossError::InvalidParameter { parameter, value, why, .. } => {
                LossError::InvalidParameter { term: term.to_string(), parameter, value, why }
            }
            LossError::Term { source, .. } => LossError::Term { term: term.to_string(), source },
            other => other,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = LossError> = std::result::Result<T, E>;
