//! Supervised fine-tuning on the chosen completions (negative log-likelihood).

use crate::{objective_term, BatchView, Need, PreferenceObjective, Result, TermOutput};

objective_term! {
    /// Supervised fine-tuning: the token-level mean negative log-likelihood of the chosen
    /// completions,
    ///
    /// `NLL(y_c) = -sum_b logp_pi(y_c,b) / sum_b |y_c,b|`
    ///
    /// over all scored chosen tokens of the batch
    /// ([`SequenceLogps::token_mean_nll`](crate::SequenceLogps::token_mean_nll)), not a mean of
    /// per-sequence means. It needs [`Need::PolicyLogps`], of which only the chosen half is read
    /// (the rejected completions are ignored). Stacked with a weight on a preference objective it
    /// counters the falling chosen likelihood of DPO-style training. Reports no metrics of its own
    /// (the stack logs `loss/<name>`).
    #[derive(Debug, Clone)]
    pub struct Sft as "sft" {}
}

impl Sft {
    /// The SFT term (it has no parameters; `Result` for symmetry with the other terms).
    pub fn new() -> Result<Self> {
        Ok(Self { name: Self::KIND.into() })
    }
}

impl PreferenceObjective for Sft {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PolicyLogps]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let policy = batch.require_policy(&self.name)?;
        let loss = batch.token_mean_nll(&policy.chosen)?; // []
        Ok(TermOutput { loss, metrics: crate::Metrics::new() })
    }
}
