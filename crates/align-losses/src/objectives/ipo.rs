//! IPO (Azar et al., 2023, arXiv 2310.12036).

use crate::check::check_parameter;
use crate::metrics::reward_metrics;
use crate::{objective_term, BatchView, Need, PreferenceObjective, Result, TermOutput};

objective_term! {
    /// Identity Preference Optimisation (Azar et al. 2023, *A General Theoretical Paradigm to
    /// Understand Learning from Human Preferences*, arXiv 2310.12036: the sampled IPO loss).
    ///
    /// Length-normalised, as the reference Python trainer (TRL) computes it: with the per-token
    /// log-ratios `h_c = (logp_pi(y_c) - logp_ref(y_c)) / |y_c|` and `h_r` likewise (`|y|` is the
    /// number of scored completion tokens, taken from the policy's counts; the reference scores
    /// the same tokens), the per-pair loss is
    ///
    /// `(h_c - h_r - 1/(2 beta))^2`
    ///
    /// averaged over the pairs of the batch. The paper states the loss on summed log-ratios; the
    /// per-token form makes it invariant to scaling a sequence's log-prob sum and length together.
    /// Implicit rewards (metrics): `beta * h_c`, `beta * h_r`, the per-token log-ratios, as TRL
    /// reports them for IPO.
    #[derive(Debug, Clone)]
    pub struct Ipo as "ipo" {
        beta: f64,
    }
}

impl Ipo {
    /// IPO with `beta > 0` (the paper's `tau`; the target margin is `1/(2 beta)`).
    pub fn new(beta: f64) -> Result<Self> {
        check_parameter(Self::KIND, "beta", beta, 0.0, false)?;
        Ok(Self { name: Self::KIND.into(), beta })
    }
}

impl PreferenceObjective for Ipo {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PolicyLogps, Need::ReferenceLogps]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let (policy, reference) = batch.require_policy_and_reference(&self.name)?;
        let h_c = (&policy.chosen.sum - &reference.chosen.sum) / &policy.chosen.count; // [B]
        let h_r = (&policy.rejected.sum - &reference.rejected.sum) / &policy.rejected.count; // [B]
        let per_pair = (&h_c - &h_r - 1.0 / (2.0 * self.beta)).square(); // [B]
        let loss = batch.mean(&per_pair)?;
        let metrics = reward_metrics(batch, &(h_c * self.beta), &(h_r * self.beta), policy)?;
        Ok(TermOutput { loss, metrics })
    }
}
