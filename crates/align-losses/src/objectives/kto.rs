//! KTO (Ethayarajh et al., 2024, arXiv 2402.01306), on preference pairs.

use crate::check::{check_device, check_float, check_parameter, check_shape, check_shape_where, loss_precision};
use crate::metrics::reward_metrics;
use crate::{missing, objective_term, BatchView, KlLogps, Need, PreferenceObjective, Result, TermOutput};
use tch::{Kind, Tensor};

objective_term! {
    /// Kahneman-Tversky Optimisation (Ethayarajh et al. 2024, *KTO: Model Alignment as Prospect
    /// Theoretic Optimization*, arXiv 2402.01306: the KTO loss with its value function and
    /// reference point), applied to the chosen completions as desirable and the rejected ones as
    /// undesirable examples.
    ///
    /// With `s = logp_pi(y) - logp_ref(y)` (summed log-probs) and the reference point
    ///
    /// `z = max(0, mean_m(logp_pi(y'_m | x'_m) - logp_ref(y'_m | x'_m)))`
    ///
    /// estimated from mismatched prompt/completion pairs ([`BatchView::kl`], [`Need::KlLogps`])
    /// and detached (no gradient flows through it), the per-example losses are
    ///
    /// - chosen: `desirable_weight * (1 - sig(beta (s_c - z)))`,
    /// - rejected: `undesirable_weight * (1 - sig(beta (z - s_r)))`,
    ///
    /// and the loss is their mean over all `2B` examples. At policy = reference (and `z = 0`) the
    /// loss is 0.5 with unit weights. Metrics: implicit rewards `beta * s_c`, `beta * s_r`, and
    /// `kl` (the reference point `z`).
    #[derive(Debug, Clone)]
    pub struct Kto as "kto" {
        beta: f64,
        desirable_weight: f64,
        undesirable_weight: f64,
    }
}

impl Kto {
    /// KTO with `beta > 0` and example weights `>= 0` (the paper's `lambda_D`, `lambda_U`).
    pub fn new(beta: f64, desirable_weight: f64, undesirable_weight: f64) -> Result<Self> {
        check_parameter(Self::KIND, "beta", beta, 0.0, false)?;
        check_parameter(Self::KIND, "desirable_weight", desirable_weight, 0.0, true)?;
        check_parameter(Self::KIND, "undesirable_weight", undesirable_weight, 0.0, true)?;
        Ok(Self { name: Self::KIND.into(), beta, desirable_weight, undesirable_weight })
    }

    /// `[]`: the detached reference point `z = max(0, mean(kl.policy - kl.reference))`
    /// (the mean over the global batch when `batch` is split across ranks), after checking
    /// that both are non-empty `[M]` float tensors on `device`.
    fn reference_point(batch: &BatchView, kl: &KlLogps, device: tch::Device) -> Result<Tensor> {
        check_float(&kl.policy, "kl.policy")?;
        check_float(&kl.reference, "kl.reference")?;
        check_shape(&kl.policy, "kl.policy", &[None], "[M]")?;
        let m = kl.policy.size()[0];
        check_shape(&kl.reference, "kl.reference", &[Some(m)], "[M], as kl.policy")?;
        check_shape_where(&kl.policy, "kl.policy", "at least one mismatched pair", |s| s[0] > 0)?;
        check_device(&kl.policy, "kl.policy", device)?;
        check_device(&kl.reference, "kl.reference", device)?;
        let diff = loss_precision(&kl.policy) - loss_precision(&kl.reference); // [M]
        let mean = match &batch.ranks {
            None => diff.mean(diff.kind()),
            Some(_) => Tensor::from(batch.global_mean(&diff)?).f_to_kind(diff.kind())?.f_to_device(device)?,
        };
        Ok(mean.clamp_min(0.0).detach())
    }
}

impl PreferenceObjective for Kto {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PolicyLogps, Need::ReferenceLogps, Need::KlLogps]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let (policy, reference) = batch.require_policy_and_reference(&self.name)?;
        let kl = batch.kl.as_ref().ok_or_else(|| {
            missing(&self.name, "policy and reference log-probs of mismatched prompt/completion pairs (batch.kl)")
        })?;
        let z = Self::reference_point(batch, kl, policy.chosen.sum.device())?; // []
        let (s_c, s_r) = policy.log_ratios(reference); // [B] each

        // 1 - sig(u) is written as sig(-u), which keeps its precision when sig(u) is near 1.
        let chosen = ((&z - &s_c) * self.beta).sigmoid() * self.desirable_weight; // [B]
        let rejected = ((&s_r - &z) * self.beta).sigmoid() * self.undesirable_weight; // [B]
        let examples = Tensor::cat(&[chosen, rejected], 0); // [2B]
        let loss = batch.mean(&examples)?;
        let mut metrics = reward_metrics(batch, &(s_c * self.beta), &(s_r * self.beta), policy)?;
        metrics.push_tensor("kl", &z.to_kind(Kind::Double))?;
        Ok(TermOutput { loss, metrics })
    }
}
