//! Robust DPO (rDPO; Chowdhury et al., 2024, arXiv 2403.00409).

use crate::check::{check_parameter, check_parameter_where};
use crate::metrics::reward_metrics;
use crate::{objective_term, BatchView, Need, PreferenceObjective, Result, TermOutput};

objective_term! {
    /// Provably robust DPO for noisy preference labels (rDPO; Chowdhury, Kini & Natarajan 2024,
    /// *Provably Robust DPO: Aligning Language Models with Noisy Feedback*, arXiv 2403.00409:
    /// the rDPO loss).
    ///
    /// With `s_c = logp_pi(y_c) - logp_ref(y_c)`, `s_r` likewise and `D = s_c - s_r` (summed
    /// log-probs), and `eps` the assumed rate at which preference labels are flipped, the per-pair
    /// loss is the unbiased de-noised DPO loss
    ///
    /// `[-(1 - eps) log sig(beta D) + eps log sig(-beta D)] / (1 - 2 eps)`
    ///
    /// averaged over the pairs of the batch. It equals DPO at `eps = 0` and can be negative for
    /// `eps > 0`. Implicit rewards (metrics): `beta * s_c`, `beta * s_r`.
    #[derive(Debug, Clone)]
    pub struct RobustDpo as "robust_dpo" {
        beta: f64,
        label_smoothing: f64,
    }
}

impl RobustDpo {
    /// rDPO with `beta > 0` and flip rate `label_smoothing` (the paper's `eps`) in `[0, 0.5)`.
    pub fn new(beta: f64, label_smoothing: f64) -> Result<Self> {
        check_parameter(Self::KIND, "beta", beta, 0.0, false)?;
        let why = "must be in [0, 0.5) (the loss divides by 1 - 2 eps)";
        let in_range = |eps: f64| (0.0..0.5).contains(&eps);
        check_parameter_where(Self::KIND, "label_smoothing", label_smoothing, why, in_range)?;
        Ok(Self { name: Self::KIND.into(), beta, label_smoothing })
    }
}

impl PreferenceObjective for RobustDpo {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PolicyLogps, Need::ReferenceLogps]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let (policy, reference) = batch.require_policy_and_reference(&self.name)?;
        let (s_c, s_r) = policy.log_ratios(reference); // [B] each
        let logits = (&s_c - &s_r) * self.beta; // [B]: beta * D
        let eps = self.label_smoothing;
        let unnormalised = -(logits.log_sigmoid() * (1.0 - eps)) + (-&logits).log_sigmoid() * eps; // [B]
        let per_pair = unnormalised / (1.0 - 2.0 * eps); // [B]
        let loss = batch.mean(&per_pair)?;
        let metrics = reward_metrics(batch, &(s_c * self.beta), &(s_r * self.beta), policy)?;
        Ok(TermOutput { loss, metrics })
    }
}
