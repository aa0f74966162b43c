//! The reward gap (MPO eq. 4, 6, 7) and the gap-matching loss `L1` (MPO eq. 5).

use crate::{Mpo, MpoError, Result};
use align_losses::check::{check_device, check_float, check_parameter, check_shape, loss_precision};
use align_losses::PairLogps;
use tch::Tensor;

/// `[N]`: the reward gap of each of `N` preference pairs, MPO eq. (4):
///
/// `RG = logp(y_w|x) / |y_w| - logp(y_l|x) / |y_l|`
///
/// where `logp` is the summed log-probability of the completion tokens and `|y|` their count
/// (SimPO's length-normalised reward, eq. 3). With `length_normalised = false` it is the plain
/// difference of sums `logp(y_w|x) - logp(y_l|x)` (the "w/o LN" ablation of Table 4).
///
/// Computed by the policy it is `RG^t` (eq. 6); computed by the frozen reference on the
/// dominant-language pair it is `RG^d` (eq. 7). The result keeps the pairs' precision (f32,
/// or f64 when the log-probs are f64) and their autograd history.
pub fn reward_gap(pairs: &PairLogps, length_normalised: bool) -> Tensor {
    if length_normalised {
        pairs.chosen.mean() - pairs.rejected.mean() // [N]
    } else {
        &pairs.chosen.sum - &pairs.rejected.sum // [N]
    }
}

/// MPO's gap-matching loss `L1`, eq. (5): `mean_i (beta * RG^t_i - RG^d_i)^2` (a scalar).
///
/// - `policy_target_gap`: `[P]` float, `RG^t` of each target-language pair, computed by the
///   policy (differentiable).
/// - `dominant_gap`: `[P]` float, `RG^d` of the dominant-language pair each target pair belongs
///   to (one record with several target languages repeats its `RG^d`). It is treated as a
///   constant (detached), as in the paper: it comes from the frozen reference, and eq. (10)-(11)
///   differentiate only `RG^t`.
/// - `beta > 0` multiplies only the policy's gap.
///
/// The gradient is eq. (10)-(11) with the `1/P` of the mean:
/// `dL1/dtheta = (2 beta / P) sum_i (beta RG^t_i - RG^d_i) dRG^t_i/dtheta`.
///
/// Computed in float32 (half inputs are promoted; float64 is kept). Errors on empty or
/// mismatched inputs and on a `beta` that is not finite and positive.
///
/// ```
/// use mpo_loss::gap_matching_loss;
/// use tch::Tensor;
///
/// let target = Tensor::from_slice(&[0.5f64, 1.0]).set_requires_grad(true); // RG^t of 2 pairs
/// let dominant = Tensor::from_slice(&[1.5f64, 1.5]); // RG^d of their records
/// let loss = gap_matching_loss(&target, &dominant, 1.0)?; // ((-1)^2 + (-0.5)^2) / 2
/// assert_eq!(loss.double_value(&[]), 0.625);
/// loss.backward(); // eq. (10): 2 beta (beta RG^t - RG^d) / P
/// assert_eq!(Vec::<f64>::try_from(&target.grad())?, [-1.0, -0.5]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn gap_matching_loss(policy_target_gap: &Tensor, dominant_gap: &Tensor, beta: f64) -> Result<Tensor> {
    gap_loss(policy_target_gap, &dominant_gap.detach(), beta)
}

/// Eq. (5) without detaching `dominant_gap`: the gradient flows into both gaps. This is what
/// the paper's "MPO - Policy" ablation (Appendix H.3, eq. 28) differentiates, since there
/// `RG^d` is computed by the policy itself.
pub(crate) fn gap_loss(policy_target_gap: &Tensor, dominant_gap: &Tensor, beta: f64) -> Result<Tensor> {
    let per_pair = gap_squared_residuals(policy_target_gap, dominant_gap, beta)?; // [P]
    Ok(per_pair.mean(per_pair.kind()))
}

/// `[P]`: each pair's `(beta RG^t - RG^d)^2`, the terms [`gap_loss`] averages, after the same
/// checks.
pub(crate) fn gap_squared_residuals(policy_target_gap: &Tensor, dominant_gap: &Tensor, beta: f64) -> Result<Tensor> {
    check_parameter(Mpo::KIND, "beta", beta, 0.0, false)?;
    check_float(policy_target_gap, "policy target gap")?;
    check_shape(policy_target_gap, "policy target gap", &[None], "[P]")?;
    let p = policy_target_gap.size()[0];
    if p == 0 {
        return Err(MpoError::NoTargetPairs);
    }
    check_float(dominant_gap, "dominant gap")?;
    check_shape(dominant_gap, "dominant gap", &[Some(p)], "[P], P = len(policy target gap)")?;
    check_device(dominant_gap, "dominant gap", policy_target_gap.device())?;
    let target = loss_precision(policy_target_gap); // [P]
    let dominant = dominant_gap.f_to_kind(target.kind())?; // [P]
    let residual = target * beta - dominant; // [P]: beta RG^t - RG^d, the w_theta of eq. (10)
    Ok(residual.square()) // [P]
}

#[cfg(test)]
mod tests {
    use super::*;
    use align_losses::LossError;
    use tch::Kind;

    fn t(v: &[f64]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn value_by_hand() {
        // beta = 2: residuals [2 * 1 - 3, 2 * -0.5 - 0] = [-1, -1]; mean of squares 1.
        let loss = gap_matching_loss(&t(&[1.0, -0.5]), &t(&[3.0, 0.0]), 2.0).unwrap();
        assert_eq!(loss.double_value(&[]), 1.0);
        assert_eq!(loss.kind(), Kind::Double);
        let half = gap_matching_loss(&t(&[1.0, -0.5]).to_kind(Kind::Half), &t(&[3.0, 0.0]), 2.0).unwrap();
        assert_eq!(half.kind(), Kind::Float);
        assert_eq!(half.double_value(&[]), 1.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let gap = t(&[1.0, 2.0]);
        for beta in [0.0, -1.0, f64::NAN] {
            let err = gap_matching_loss(&gap, &gap, beta).unwrap_err();
            assert!(
                matches!(err, MpoError::Input(LossError::InvalidParameter { ref parameter, .. }) if parameter == "beta")
            );
        }
        assert!(matches!(gap_matching_loss(&gap, &t(&[1.0]), 1.0), Err(MpoError::Input(LossError::Shape { .. }))));
        assert!(matches!(
            gap_matching_loss(&gap.view([1, 2]), &gap.view([1, 2]), 1.0),
            Err(MpoError::Input(LossError::Shape { .. }))
        ));
        assert!(matches!(gap_matching_loss(&t(&[]), &t(&[]), 1.0), Err(MpoError::NoTargetPairs)));
        let ints = Tensor::from_slice(&[1i64, 2]);
        assert!(matches!(gap_matching_loss(&ints, &gap, 1.0), Err(MpoError::Input(LossError::Kind { .. }))));
        assert!(matches!(gap_matching_loss(&gap, &ints, 1.0), Err(MpoError::Input(LossError::Kind { .. }))));
    }
}
