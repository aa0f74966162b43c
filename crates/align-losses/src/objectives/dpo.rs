//! DPO (Rafailov et al., 2023, arXiv 2305.18290) with cDPO label smoothing.

use crate::check::{check_parameter, check_parameter_where};
use crate::metrics::reward_metrics;
use crate::{objective_term, BatchView, Need, PreferenceObjective, Result, TermOutput};

objective_term! {
    /// Direct Preference Optimisation, sigmoid form, with optional conservative label smoothing
    /// (cDPO, Mitchell 2023).
    ///
    /// With `s_c = logp_pi(y_c) - logp_ref(y_c)`, `s_r` likewise and `D = s_c - s_r` (summed
    /// log-probs, not length-normalised), the per-pair loss is
    ///
    /// `-(1 - eps) log sig(beta D) - eps log sig(-beta D)`
    ///
    /// which is plain DPO at `eps = 0`. Averaged over the pairs of the batch. At policy =
    /// reference every pair's loss is `ln 2`.
    #[derive(Debug, Clone)]
    pub struct Dpo as "dpo" {
        beta: f64,
        label_smoothing: f64,
    }
}

impl Dpo {
    /// DPO with `beta > 0` and `label_smoothing` (cDPO's `eps`) in `[0, 0.5]`.
    pub fn new(beta: f64, label_smoothing: f64) -> Result<Self> {
        check_parameter(Self::KIND, "beta", beta, 0.0, false)?;
        let in_range = |eps: f64| (0.0..=0.5).contains(&eps);
        check_parameter_where(Self::KIND, "label_smoothing", label_smoothing, "must be in [0, 0.5]", in_range)?;
        Ok(Self { name: Self::KIND.into(), beta, label_smoothing })
    }
}

impl PreferenceObjective for Dpo {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PolicyLogps, Need::ReferenceLogps]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let (policy, reference) = batch.require_policy_and_reference(&self.name)?;
        let (s_c, s_r) = policy.log_ratios(reference); // [B] each
        let logits = (&s_c - &s_r) * self.beta; // [B]: beta * D
        let eps = self.label_smoothing;
        let per_pair = -(logits.log_sigmoid() * (1.0 - eps)) - (-&logits).log_sigmoid() * eps; // [B]
        let loss = batch.mean(&per_pair)?;
        let metrics = reward_metrics(batch, &(s_c * self.beta), &(s_r * self.beta), policy)?;
        Ok(TermOutput { loss, metrics })
    }
}
