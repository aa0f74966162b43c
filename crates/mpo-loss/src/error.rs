//! The one error type of this crate.

use align_losses::LossError;
use tch::TchError;

/// Everything that can go wrong while computing MPO's terms.
///
/// Every variant names the input or parameter at fault. Failures that every objective crate
/// shares (a tensor of the wrong shape, kind or device, checked with [`align_losses::check`];
/// a parameter out of range, named after the kind `mpo` where no term's name is known; a
/// missing batch input; libtorch) are `align-losses`' own [`LossError`]s inside
/// [`MpoError::Input`], so a trainer sees one vocabulary for them; the other variants are
/// MPO's own. `mlc-loss`'s `MlcError` has the same `Input` variant and the same
/// [`MpoError::into_loss_error`], which turns these errors into [`LossError`]s inside an
/// objective stack.
#[derive(Debug, thiserror::Error)]
pub enum MpoError {
    /// A failure in the vocabulary shared with `align-losses` ([`LossError`]): its message
    /// names the input or parameter at fault.
    #[error(transparent)]
    Input(#[from] LossError),
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
    /// Over a batch split across ranks, a target pair's language is not one of the run's
    /// target languages ([`BatchView::languages`](align_losses::BatchView::languages) after the
    /// dominant one), which every rank must share to report per-language metrics.
    #[error("target language `{language}` is not among the run's target languages {languages:?}")]
    UnknownLanguage {
        /// The pair's language.
        language: String,
        /// The run's target languages.
        languages: Vec<String>,
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
}

impl From<TchError> for MpoError {
    /// A libtorch error, as [`LossError::Torch`].
    fn from(e: TchError) -> Self {
        MpoError::Input(LossError::Torch(e))
    }
}

impl MpoError {
    /// This error as a [`LossError`] of the objective term named `term`, for use inside an
    /// [`ObjectiveStack`](align_losses::ObjectiveStack): a shared-vocabulary error is handed
    /// back itself, attributed to `term` ([`LossError::attributed_to`]: a bad parameter or a
    /// missing input names `term`); MPO's own errors become the source of a
    /// [`LossError::Term`] naming `term`.
    pub fn into_loss_error(self, term: &str) -> LossError {
        match self {
            MpoError::Input(e) => e.attributed_to(term),
            own => LossError::Term { term: term.to_string(), source: Box::new(own) },
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
        let missing = MpoError::Input(align_losses::missing("mpo", "x")).into_loss_error("mpo");
        assert!(matches!(missing, LossError::MissingInput { .. }));
        let invalid = MpoError::Input(align_losses::check::invalid_parameter("mpo", "beta", 0.0, "w"));
        assert!(
            matches!(invalid.into_loss_error("mpo_zh"), LossError::InvalidParameter { ref term, .. } if term == "mpo_zh")
        );
        let term = MpoError::NoTargetPairs.into_loss_error("mpo");
        assert!(matches!(&term, LossError::Term { term, .. } if term == "mpo"));
        assert!(term.to_string().contains("no target-language pairs"), "{term}");
    }
}
