//! The reward metrics users of the Python trainers expect, shared by the DPO family.

use crate::{Metrics, PairLogps, Result};
use tch::{Kind, Tensor};

/// `rewards/chosen`, `rewards/rejected`, `rewards/margins`, `rewards/accuracies` (strict `>`),
/// `logps/chosen`, `logps/rejected`: batch means, computed without gradient.
///
/// `chosen_reward` and `rejected_reward` are `[B]` implicit rewards (for DPO,
/// `beta * (logp_pi - logp_ref)`); `policy` gives the log-probs.
pub fn reward_metrics(chosen_reward: &Tensor, rejected_reward: &Tensor, policy: &PairLogps) -> Result<Metrics> {
    let _guard = tch::no_grad_guard();
    let mut m = Metrics::new();
    m.push_tensor("rewards/chosen", &chosen_reward.mean(Kind::Float))?;
    m.push_tensor("rewards/rejected", &rejected_reward.mean(Kind::Float))?;
    m.push_tensor("rewards/margins", &(chosen_reward - rejected_reward).mean(Kind::Float))?;
    m.push_tensor(
        "rewards/accuracies",
        &chosen_reward.gt_tensor(rejected_reward).to_kind(Kind::Float).mean(Kind::Float),
    )?;
    m.push_tensor("logps/chosen", &policy.chosen.sum.mean(Kind::Float))?;
    m.push_tensor("logps/rejected", &policy.rejected.sum.mean(Kind::Float))?;
    Ok(m)
}
