//! CPO (Xu et al., 2024, arXiv 2401.08417).

use crate::check::check_parameter;
use crate::metrics::reward_metrics;
use crate::{objective_term, BatchView, Need, PreferenceObjective, Result, TermOutput};

objective_term! {
    /// Contrastive Preference Optimisation, reference-free (Xu et al. 2024, *Contrastive
    /// Preference Optimization: Pushing the Boundaries of LLM Performance in Machine
    /// Translation*, arXiv 2401.08417: its preference loss plus the NLL regulariser).
    ///
    /// With summed completion log-probs `logp(y)` (not length-normalised), the loss is
    ///
    /// `mean_pairs[-log sig(beta (logp(y_c) - logp(y_r)))] + alpha * NLL(y_c)`
    ///
    /// where `NLL(y_c)` is the token-level mean negative log-likelihood over all scored chosen
    /// tokens of the batch ([`SequenceLogps::token_mean_nll`](crate::SequenceLogps::token_mean_nll)),
    /// the behaviour-cloning term. Needs the policy only. Implicit rewards (metrics):
    /// `beta * logp(y_c)`, `beta * logp(y_r)`; also `nll`.
    #[derive(Debug, Clone)]
    pub struct Cpo as "cpo" {
        beta: f64,
        alpha: f64,
    }
}

impl Cpo {
    /// CPO with `beta > 0` and NLL weight `alpha >= 0`.
    pub fn new(beta: f64, alpha: f64) -> Result<Self> {
        check_parameter(Self::KIND, "beta", beta, 0.0, false)?;
        check_parameter(Self::KIND, "alpha", alpha, 0.0, true)?;
        Ok(Self { name: Self::KIND.into(), beta, alpha })
    }
}

impl PreferenceObjective for Cpo {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PolicyLogps]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let policy = batch.require_policy(&self.name)?;
        let reward_c = &policy.chosen.sum * self.beta; // [B]
        let reward_r = &policy.rejected.sum * self.beta; // [B]
        let preference = -(&reward_c - &reward_r).log_sigmoid(); // [B]
        let nll = batch.token_mean_nll(&policy.chosen)?; // []
        let loss = batch.mean(&preference)? + &nll * self.alpha;
        let mut metrics = reward_metrics(batch, &reward_c, &reward_r, policy)?;
        metrics.push("nll", batch.global_value(&nll.detach())?);
        Ok(TermOutput { loss, metrics })
    }
}
