//! Length-regularised DPO (R-DPO; Park et al., 2024, arXiv 2403.19159).

use crate::check::check_parameter;
use crate::metrics::reward_metrics;
use crate::{objective_term, BatchView, Need, PreferenceObjective, Result, TermOutput};

objective_term! {
    /// Length-regularised DPO (Park, Rafailov, Ermon & Finn 2024, *Disentangling Length from
    /// Quality in Direct Preference Optimization*, arXiv 2403.19159, the R-DPO objective of §4).
    ///
    /// The paper adds a length penalty `alpha |y|` to the RLHF objective
    /// (`max E[r(x, y)] - alpha |y| - beta KL`); re-deriving DPO from it gives the implicit reward
    /// `beta log(pi/pi_ref) + alpha |y|`, hence, with `s_c = logp_pi(y_c) - logp_ref(y_c)`, `s_r`
    /// likewise, `D = s_c - s_r` (summed log-probs) and `|y|` the number of scored completion
    /// tokens, the per-pair loss
    ///
    /// `-log sig(beta D + alpha (|y_c| - |y_r|))`
    ///
    /// averaged over the pairs of the batch. Sign: the length margin enters the logit with a
    /// plus, as in the paper. A pair whose chosen completion is *longer* already has a larger
    /// logit, so its gradient is smaller: the policy is not rewarded for preferring length, and
    /// pairs whose chosen completion is shorter are up-weighted. (Writing the margin with a minus
    /// sign would do the opposite and amplify the length bias.) `alpha = 0` is DPO.
    ///
    /// Implicit rewards (metrics): `beta * s_c`, `beta * s_r` (the DPO part, without the length
    /// term).
    #[derive(Debug, Clone)]
    pub struct RDpo as "r_dpo" {
        beta: f64,
        alpha: f64,
    }
}

impl RDpo {
    /// R-DPO with `beta > 0` and length weight `alpha >= 0`.
    pub fn new(beta: f64, alpha: f64) -> Result<Self> {
        check_parameter(Self::KIND, "beta", beta, 0.0, false)?;
        check_parameter(Self::KIND, "alpha", alpha, 0.0, true)?;
        Ok(Self { name: Self::KIND.into(), beta, alpha })
    }
}

impl PreferenceObjective for RDpo {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PolicyLogps, Need::ReferenceLogps]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let (policy, reference) = batch.require_policy_and_reference(&self.name)?;
        let (s_c, s_r) = policy.log_ratios(reference); // [B] each
        let length_margin = (&policy.chosen.count - &policy.rejected.count) * self.alpha; // [B]
        let logits = (&s_c - &s_r) * self.beta + length_margin; // [B]
        let per_pair = -logits.log_sigmoid(); // [B]
        let loss = batch.mean(&per_pair)?;
        let metrics = reward_metrics(batch, &(s_c * self.beta), &(s_r * self.beta), policy)?;
        Ok(TermOutput { loss, metrics })
    }
}
