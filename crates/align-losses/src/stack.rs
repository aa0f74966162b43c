//! A weighted sum of objective terms, itself an objective.

use crate::check::check_parameter;
use crate::{BatchView, LossError, Metrics, Need, PreferenceObjective, Result, TermOutput};
use tch::Tensor;

/// One term of a stack with its weight.
pub struct WeightedTerm {
    /// Multiplies the term's loss in the sum (the papers' `lambda` for regularisers).
    pub weight: f64,
    /// The term.
    pub term: Box<dyn PreferenceObjective>,
}

/// `sum_i weight_i * term_i`: how a run combines a base objective with regularisers, e.g.
/// DPO + 0.5 * MLC.
///
/// Metrics: `loss/<name>` is each term's *unweighted* loss; each term's own metrics follow
/// under their own names, except that a name already reported by an earlier term is prefixed
/// with `<name>/` so nothing is overwritten.
#[derive(Default)]
pub struct ObjectiveStack {
    terms: Vec<WeightedTerm>,
}

impl ObjectiveStack {
    /// An empty stack (its loss is an error until a term is added).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `term` with `weight` (finite). Term names must be unique within a stack.
    pub fn push(&mut self, weight: f64, term: Box<dyn PreferenceObjective>) -> Result<()> {
        check_parameter(term.name(), "weight", weight, f64::NEG_INFINITY, false)?;
        if self.terms.iter().any(|t| t.term.name() == term.name()) {
            return Err(LossError::DuplicateName(term.name().to_string()));
        }
        self.terms.push(WeightedTerm { weight, term });
        Ok(())
    }

    /// Builder form of [`ObjectiveStack::push`].
    pub fn with(mut self, weight: f64, term: impl PreferenceObjective + 'static) -> Result<Self> {
        self.push(weight, Box::new(term))?;
        Ok(self)
    }

    /// The terms, in order.
    pub fn terms(&self) -> &[WeightedTerm] {
        &self.terms
    }
}

impl PreferenceObjective for ObjectiveStack {
    fn name(&self) -> &str {
        "stack"
    }

    fn needs(&self) -> Vec<Need> {
        let mut needs: Vec<Need> = self.terms.iter().flat_map(|t| t.term.needs()).collect();
        needs.sort();
        needs.dedup();
        needs
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        if self.terms.is_empty() {
            return Err(LossError::MissingInput { term: "stack".into(), input: "at least one objective term".into() });
        }
        let mut total: Option<Tensor> = None;
        let mut metrics = Metrics::new();
        for WeightedTerm { weight, term } in &self.terms {
            let out = term.compute(batch)?;
            metrics.push(format!("loss/{}", term.name()), batch.global_value(&out.loss.detach())?);
            for (key, value) in out.metrics.0 {
                let key = if metrics.get(&key).is_some() { format!("{}/{key}", term.name()) } else { key };
                metrics.push(key, value);
            }
            let weighted = out.loss * *weight;
            total = Some(match total {
                None => weighted,
                Some(t) => t + weighted,
            });
        }
        let loss = total.expect("non-empty stack");
        Ok(TermOutput { loss, metrics })
    }

    fn trainable_variables(&self) -> Vec<Tensor> {
        self.terms.iter().flat_map(|t| t.term.trainable_variables()).collect()
    }
}
