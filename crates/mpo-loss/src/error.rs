//! The one error type of this crate.

use align_losses::LossError;
use tch::TchError;

/// Everything that can go wrong while computing MPO's terms.
///
/// Every variant names the input or parameter at fault. Shape, kind and device errors are
/// `align-losses`' own ([`LossError::Shape`] etc., inside [`MpoError::Loss`]), so a trainer
/// sees one vocabulary for them. Inside an objective stack these errors reach the trainer as
/// [`LossError`]s (see [`MpoError::into_loss_error`]).
#[derive(Debug, thiserror::Error)]
pub enum MpoError {
    /// The batch has no target-language pairs, so the mean of eq. (5) is undefined.
    #[error("the batch has no target-language pairs; MPO's gap-matching loss (eq. 5) needs at least one")]
    NoTargetPairs,
    /// A target pair points at a dominant pair that the batch does not have.
    #[error("target pair {pair} belongs to record {record}, but the batch has {records} dominant pairs (valid: 0..{records})")]
    RecordOutOfRange {
        /// Index of the target pair.
        pair: usize,
        /// Its record index.
        record: i64,
        /// Number of dominant pairs `B`.
        records: i64,
    },
    /// The language tags do not match the target pairs one to one.
    #[error("target pairs carry {languages} language tags for {pairs} pairs; give exactly one tag per pair")]
    LanguageCount {
        /// Number of tags.
        languages: usize,
        /// Number of target pairs `P`.
        pairs: i64,
    },
    /// An attention mask holds something other than 0 and 1.
    #[error("attention mask: expected only 0 (padding) and 1 (real token), found {value}")]
    MaskValue {
        /// The offending value.
        value: f64,
    },
    /// A sequence has no real token, so it has no last token and no mean.
    #[error("attention mask: sequence {row} has no real token")]
    EmptySequence {
        /// The sequence's row in the batch.
        row: usize,
    },
    /// A hyper-parameter is out of its valid range.
    #[error("parameter `{parameter}` = {value} is invalid: {why}")]
    InvalidParameter {
        /// The parameter's name (as in the config file).
        parameter: String,
        /// Its value.
        value: f64,
        /// Why it is rejected.
        why: String,
    },
    /// A config string names no known option.
    #[error("`{key}` = {value:?} is not one of {allowed}")]
    UnknownOption {
        /// The config key (e.g. `"retain"`).
        key: String,
        /// The value that was given.
        value: String,
        /// The accepted values, in words.
        allowed: String,
    },
    /// An error from the shared objective crate (e.g. a missing batch input).
    #[error(transparent)]
    Loss(#[from] LossError),
    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
}

impl MpoError {
    /// This error as a [`LossError`] of the term named `term`: errors that came from
    /// `align-losses` are handed back unchanged, an invalid parameter becomes
    /// [`LossError::InvalidParameter`], and the rest are kept as the source of
    /// [`LossError::Term`].
    pub fn into_loss_error(self, term: &str) -> LossError {
        match self {
            MpoError::Loss(e) => e,
            MpoError::InvalidParameter { parameter, value, why } => {
                LossError::InvalidParameter { term: term.to_string(), parameter, value, why }
            }
            other => LossError::Term { term: term.to_string(), source: Box::new(other) },
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = MpoError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_errors_keep_their_kind() {
        let missing = MpoError::Loss(align_losses::missing("mpo", "x")).into_loss_error("mpo");
        assert!(matches!(missing, LossError::MissingInput { .. }));
        let invalid = MpoError::InvalidParameter { parameter: "beta".into(), value: 0.0, why: "w".into() };
        assert!(
            matches!(invalid.into_loss_error("mpo_zh"), LossError::InvalidParameter { ref term, .. } if term == "mpo_zh")
        );
        let term = MpoError::NoTargetPairs.into_loss_error("mpo");
        assert!(matches!(&term, LossError::Term { term, .. } if term == "mpo"));
        assert!(term.to_string().contains("no target-language pairs"), "{term}");
    }
}
