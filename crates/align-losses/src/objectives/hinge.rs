//! Hinge loss on the DPO margin (SLiC; Zhao et al., 2023, arXiv 2305.10425).

use crate::check::check_parameter;
use crate::metrics::reward_metrics;
use crate::{objective_term, BatchView, Need, PreferenceObjective, Result, TermOutput};

objective_term! {
    /// The hinge (SLiC-HF calibration) loss on the DPO log-ratio margin (Zhao et al. 2023,
    /// *SLiC-HF: Sequence Likelihood Calibration with Human Feedback*, arXiv 2305.10425: the
    /// rank-calibration hinge, here on the policy/reference log-ratio margin as the Python
    /// trainers apply it).
    ///
    /// With `s_c = logp_pi(y_c) - logp_ref(y_c)`, `s_r` likewise and `D = s_c - s_r` (summed
    /// log-probs), the per-pair loss is
    ///
    /// `relu(1 - beta D)`
    ///
    /// averaged over the pairs of the batch: `1/beta` is the margin `D` must reach. At policy =
    /// reference every pair's loss is 1. Implicit rewards (metrics): `beta * s_c`, `beta * s_r`.
    #[derive(Debug, Clone)]
    pub struct Hinge as "hinge" {
        beta: f64,
    }
}

impl Hinge {
    /// Hinge loss with `beta > 0`.
    pub fn new(beta: f64) -> Result<Self> {
        check_parameter(Self::KIND, "beta", beta, 0.0, false)?;
        Ok(Self { name: Self::KIND.into(), beta })
    }
}

impl PreferenceObjective for Hinge {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PolicyLogps, Need::ReferenceLogps]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let (policy, reference) = batch.require_policy_and_reference(&self.name)?;
        let (s_c, s_r) = policy.log_ratios(reference); // [B] each
        let per_pair = ((&s_r - &s_c) * self.beta + 1.0).relu(); // [B]: relu(1 - beta D)
        let loss = batch.mean(&per_pair)?;
        let metrics = reward_metrics(batch, &(s_c * self.beta), &(s_r * self.beta), policy)?;
        Ok(TermOutput { loss, metrics })
    }
}
