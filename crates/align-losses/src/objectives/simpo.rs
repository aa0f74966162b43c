//! SimPO (Meng, Xia & Chen, 2024, arXiv 2405.14734).

use crate::check::check_parameter;
use crate::metrics::reward_metrics;
use crate::{objective_term, BatchView, Need, PreferenceObjective, Result, TermOutput};

objective_term! {
    /// Simple Preference Optimisation, reference-free (Meng, Xia & Chen 2024, *SimPO: Simple
    /// Preference Optimization with a Reference-Free Reward*, arXiv 2405.14734: the SimPO objective).
    ///
    /// Length-normalised: with `avg_logp(y) = logp_pi(y) / |y|` (summed log-prob of the scored
    /// completion tokens over their count), the per-pair loss is
    ///
    /// `-log sig(beta (avg_logp(y_c) - avg_logp(y_r)) - gamma)`
    ///
    /// averaged over the pairs of the batch. `gamma` is the target reward margin itself (not the
    /// `gamma / beta` ratio some configs use). Needs the policy only. Implicit rewards (metrics):
    /// `beta * avg_logp(y_c)`, `beta * avg_logp(y_r)`.
    #[derive(Debug, Clone)]
    pub struct SimPo as "simpo" {
        beta: f64,
        gamma: f64,
    }
}

impl SimPo {
    /// SimPO with `beta > 0` and margin `gamma >= 0`.
    pub fn new(beta: f64, gamma: f64) -> Result<Self> {
        check_parameter(Self::KIND, "beta", beta, 0.0, false)?;
        check_parameter(Self::KIND, "gamma", gamma, 0.0, true)?;
        Ok(Self { name: Self::KIND.into(), beta, gamma })
    }
}

impl PreferenceObjective for SimPo {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PolicyLogps]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let policy = batch.require_policy(&self.name)?;
        let reward_c = policy.chosen.mean() * self.beta; // [B]: beta * avg_logp(y_c)
        let reward_r = policy.rejected.mean() * self.beta; // [B]
        let per_pair = -(&reward_c - &reward_r - self.gamma).log_sigmoid(); // [B]
        let loss = batch.mean(&per_pair)?;
        let metrics = reward_metrics(batch, &reward_c, &reward_r, policy)?;
        Ok(TermOutput { loss, metrics })
    }
}
