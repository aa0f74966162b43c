//! The reward metrics users of the Python trainers expect, shared by the DPO family.

use crate::{BatchView, Metrics, PairLogps, Result};
use tch::{Kind, Tensor};

/// `rewards/chosen`, `rewards/rejected`, `rewards/margins`, `rewards/accuracies` (strict `>`),
/// `logps/chosen`, `logps/rejected`: means over the batch (the global batch when `batch` is
/// split across ranks, [`BatchView::ranks`]), computed without gradient.
///
/// `chosen_reward` and `rejected_reward` are `[B]` implicit rewards (for DPO,
/// `beta * (logp_pi - logp_ref)`); `policy` gives the log-probs.
pub fn reward_metrics(
    batch: &BatchView,
    chosen_reward: &Tensor,
    rejected_reward: &Tensor,
    policy: &PairLogps,
) -> Result<Metrics> {
    let _guard = tch::no_grad_guard();
    let margins = chosen_reward - rejected_reward;
    let accuracies = chosen_reward.gt_tensor(rejected_reward).to_kind(Kind::Float);
    let names = [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    ];
    let rows = [chosen_reward, rejected_reward, &margins, &accuracies, &policy.chosen.sum, &policy.rejected.sum];
    let values = match &batch.ranks {
        // One process: the float32 means of the Python trainers, value for value.
        None => rows.iter().map(|r| r.f_mean(Kind::Float)?.f_double_value(&[])).collect::<Result<Vec<_>, _>>()?,
        Some(_) => batch.global_means(&rows)?,
    };
    let mut m = Metrics::new();
    for (name, value) in names.into_iter().zip(values) {
        m.push(name, value);
    }
    Ok(m)
}
