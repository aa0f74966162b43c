//! The [`PreferenceObjective`] trait: one term of a run's objective.

use crate::{BatchView, Layer, Result};
use tch::Tensor;

/// What a term needs the trainer to compute, so that forward passes do only that work.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// Policy log-probs of the dominant-language chosen and rejected completions
    /// ([`BatchView::policy`]).
    PolicyLogps,
    /// Frozen-reference log-probs of the same completions ([`BatchView::reference`]);
    /// a trainer computes them once and caches them.
    ReferenceLogps,
    /// Policy and reference log-probs of mismatched prompt/completion pairs
    /// ([`BatchView::kl`], KTO).
    KlLogps,
    /// Policy log-probs of every target-language pair ([`BatchView::targets`], MPO).
    TargetPairLogps,
    /// Last-prompt-token hidden states of every language variant of each prompt at `layer`
    /// ([`BatchView::prompt_variants`]); prompt-only passes may stop at the deepest such layer.
    PromptVariantStates {
        /// The layer.
        layer: Layer,
    },
    /// Policy and reference hidden states of the dominant-language sequences at `layer`
    /// ([`BatchView::dominant_states`], MPO's retain term).
    DominantStates {
        /// The layer.
        layer: Layer,
    },
}

/// Named scalar metrics of one term, in the order the term reports them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics(pub Vec<(String, f64)>);

impl Metrics {
    /// No metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `name = value`.
    pub fn push(&mut self, name: impl Into<String>, value: f64) {
        self.0.push((name.into(), value));
    }

    /// Appends `name =` the value of the scalar tensor `value` (reads it back from its device).
    pub fn push_tensor(&mut self, name: impl Into<String>, value: &Tensor) -> Result<()> {
        let v = value.f_double_value(&[])?;
        self.push(name, v);
        Ok(())
    }

    /// The value named `name`, if present.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// Iterates over `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

/// What one term computed on one batch.
#[derive(Debug)]
pub struct TermOutput {
    /// Scalar float32 loss, differentiable w.r.t. whatever the inputs depend on.
    pub loss: Tensor,
    /// Named scalar metrics (e.g. `rewards/chosen`), computed without gradient.
    pub metrics: Metrics,
}

/// One term of a run's objective: a base preference objective (DPO, SimPO, …) or a
/// regulariser (MLC, MPO's retain term, …). A weighted [`ObjectiveStack`](crate::ObjectiveStack)
/// of terms is itself a `PreferenceObjective`.
///
/// Every implementation computes its loss in float32, whatever the dtype of its inputs, and
/// returns an `Err` (never panics) when the batch lacks what it needs or shapes disagree.
pub trait PreferenceObjective {
    /// The term's name: its kind (`"dpo"`, `"mlc"`, …) unless the user named it. Metrics are
    /// logged as `loss/<name>`.
    fn name(&self) -> &str;

    /// What the trainer must put into the [`BatchView`] for this term.
    fn needs(&self) -> Vec<Need>;

    /// The term's loss on `batch` (mean over its pairs or groups) and its metrics.
    fn compute(&self, batch: &BatchView) -> Result<TermOutput>;

    /// Trainable tensors owned by the term itself (e.g. MLC's projection head), which the
    /// trainer optimises together with the model. Most terms own none.
    fn trainable_variables(&self) -> Vec<Tensor> {
        Vec::new()
    }
}
