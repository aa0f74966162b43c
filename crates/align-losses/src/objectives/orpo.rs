//! ORPO (Hong, Lee & Thorne, 2024, arXiv 2403.07691) and the stable `log1mexp` it needs.

use crate::check::{check_float, check_parameter};
use crate::metrics::reward_metrics;
use crate::{objective_term, BatchView, Need, PreferenceObjective, Result, TermOutput};
use std::f64::consts::LN_2;
use tch::Tensor;

/// Largest length-normalised log-prob ORPO evaluates: `avg_logp` is clamped to at most
/// `-1e-6` (every token predicted with probability at most about `1 - 1e-6`) before the odds
/// are taken. At `avg_logp = 0` the odds `p / (1 - p)` are infinite and `log1mexp(0) = -inf`;
/// the clamp keeps loss and gradient finite there (and for the invalid positive values that
/// extreme inputs can produce), and changes nothing for any realistic completion.
pub const ORPO_AVG_LOGP_CEILING: f64 = -1e-6;

/// `log(1 - exp(x))` for `x <= 0`, elementwise and numerically stable (Mächler 2012,
/// *Accurately Computing log(1 - exp(-|a|))*, the `log1mexp` of R's Rmpfr note):
///
/// - `x > -ln 2`: `log(-expm1(x))` (near 0, `1 - exp(x)` would cancel catastrophically);
/// - `x <= -ln 2`: `log1p(-exp(x))` (for very negative `x`, `expm1` would round to `-1`).
///
/// Each branch is evaluated only on inputs clamped to its own side of `-ln 2`, so the branch
/// not taken cannot put an infinite or NaN gradient into the result. Value and gradient are
/// finite for every `x < 0` down to `-inf` (gradient `-exp(x)/(1 - exp(x))`, which is about
/// `1/x` near 0). At `x = 0` exactly the result is `-inf` (mathematically right); for `x > 0`
/// it is NaN (undefined). Keeps the input's float kind. Errors unless `x` is floating-point.
///
/// ```
/// use align_losses::log1mexp;
/// use tch::Tensor;
/// let y = log1mexp(&Tensor::from_slice(&[-1e-20f64, -3.0]))?;
/// assert!((y.double_value(&[0]) - (1e-20f64).ln()).abs() < 1e-9);
/// assert!((y.double_value(&[1]) - (1.0 - (-3.0f64).exp()).ln()).abs() < 1e-12);
/// # Ok::<(), align_losses::LossError>(())
/// ```
pub fn log1mexp(x: &Tensor) -> Result<Tensor> {
    check_float(x, "log1mexp input")?;
    let near_zero = x.gt(-LN_2); // same shape as x, bool
    let via_expm1 = (-x.clamp_min(-LN_2).expm1()).log();
    let via_log1p = (-x.clamp_max(-LN_2).exp()).log1p();
    Ok(via_expm1.where_self(&near_zero, &via_log1p))
}

objective_term! {
    /// Odds Ratio Preference Optimisation, reference-free (Hong, Lee & Thorne 2024, *ORPO:
    /// Monolithic Preference Optimization without Reference Model*, arXiv 2403.07691: the ORPO
    /// objective, `L_SFT + lambda L_OR`).
    ///
    /// With `a = avg_logp(y) = logp_pi(y) / |y|` (length-normalised, clamped to at most
    /// [`ORPO_AVG_LOGP_CEILING`]) and `odds(y) = p / (1 - p)` for `p = exp(a)`, the log odds ratio is
    ///
    /// `log_odds = log odds(y_c) - log odds(y_r) = (a_c - a_r) - (log1mexp(a_c) - log1mexp(a_r))`
    ///
    /// and the loss is
    ///
    /// `NLL(y_c) - lambda * mean_pairs[log sig(log_odds)]`
    ///
    /// where `NLL(y_c)` is the token-level mean negative log-likelihood over all scored *chosen
    /// completion* tokens of the batch ([`SequenceLogps::token_mean_nll`](crate::SequenceLogps::token_mean_nll)).
    /// The config parameter `beta` is the paper's `lambda`. Needs the policy only. Metrics:
    /// implicit rewards `beta * avg_logp(y_c)`, `beta * avg_logp(y_r)`, plus `log_odds_ratio`
    /// (the mean of `log sig(log_odds)`), `log_odds_chosen` (the mean of `log_odds`) and `nll`.
    ///
    /// The reference Python trainer (TRL 1.16) also scores the prompt tokens in its NLL term; we
    /// score the completion only, as the paper defines it.
    #[derive(Debug, Clone)]
    pub struct Orpo as "orpo" {
        beta: f64,
    }
}

impl Orpo {
    /// ORPO with odds-ratio weight `beta` (the paper's `lambda`) `>= 0`.
    pub fn new(beta: f64) -> Result<Self> {
        check_parameter(Self::KIND, "beta", beta, 0.0, true)?;
        Ok(Self { name: Self::KIND.into(), beta })
    }
}

impl PreferenceObjective for Orpo {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PolicyLogps]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let policy = batch.require_policy(&self.name)?;
        let a_c = policy.chosen.mean().clamp_max(ORPO_AVG_LOGP_CEILING); // [B]
        let a_r = policy.rejected.mean().clamp_max(ORPO_AVG_LOGP_CEILING); // [B]
        let log_odds = (&a_c - &a_r) - (log1mexp(&a_c)? - log1mexp(&a_r)?); // [B]
        let ratio = log_odds.log_sigmoid(); // [B]
        let nll = batch.token_mean_nll(&policy.chosen)?; // []
        let mean_ratio = batch.mean(&ratio)?; // []
        let loss = &nll - &mean_ratio * self.beta;
        let mut metrics = reward_metrics(batch, &(a_c * self.beta), &(a_r * self.beta), policy)?;
        let (ratio_mean, odds_mean) = match &batch.ranks {
            None => (mean_ratio.f_double_value(&[])?, log_odds.detach().mean(log_odds.kind()).f_double_value(&[])?),
            Some(_) => {
                let means = batch.global_means(&[&ratio.detach(), &log_odds.detach()])?;
                (means[0], means[1])
            }
        };
        metrics.push("log_odds_ratio", ratio_mean);
        metrics.push("log_odds_chosen", odds_mean);
        metrics.push("nll", batch.global_value(&nll.detach())?);
        Ok(TermOutput { loss, metrics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// `log(1 - exp(x))` in plain f64 by the naive formula, accurate where it does not cancel.
    fn naive(x: f64) -> f64 {
        (1.0 - x.exp()).ln()
    }

    fn values_and_grads(xs: &[f64], kind: Kind) -> (Vec<f64>, Vec<f64>) {
        let x = Tensor::from_slice(xs).to_kind(kind).set_requires_grad(true);
        let y = log1mexp(&x).unwrap();
        y.sum(kind).backward();
        let values = Vec::<f64>::try_from(&y.detach().to_kind(Kind::Double)).unwrap();
        let grads = Vec::<f64>::try_from(&x.grad().to_kind(Kind::Double)).unwrap();
        (values, grads)
    }

    #[test]
    fn matches_naive_formula_away_from_zero() {
        let xs = [-0.01, -0.3, -LN_2 + 1e-9, -LN_2 - 1e-9, -1.0, -5.0, -20.0];
        let (values, grads) = values_and_grads(&xs, Kind::Double);
        for ((x, v), g) in xs.iter().zip(&values).zip(&grads) {
            assert!((v - naive(*x)).abs() < 1e-12 * (1.0 + naive(*x).abs()), "x = {x}: {v} vs {}", naive(*x));
            let exact_grad = -x.exp() / (1.0 - x.exp());
            assert!((g - exact_grad).abs() < 1e-9 * (1.0 + exact_grad.abs()), "x = {x}: grad {g} vs {exact_grad}");
        }
    }

    #[test]
    fn accurate_and_finite_near_zero() {
        // log(1 - exp(x)) = log(-x) + log((1 - exp(x)) / -x), the second term = x/2 + x^2/24 + O(x^4).
        for kind in [Kind::Double, Kind::Float] {
            let xs = [-1e-3, -1e-7, -1e-12, -1e-20, -1e-30];
            let (values, grads) = values_and_grads(&xs, kind);
            let tol = if kind == Kind::Double { 1e-12 } else { 1e-5 };
            for ((x, v), g) in xs.iter().zip(&values).zip(&grads) {
                let expected = (-x).ln() + x / 2.0 + x * x / 24.0;
                assert!(v.is_finite() && g.is_finite(), "{kind:?} x = {x}: {v}, grad {g}");
                assert!((v - expected).abs() < tol * expected.abs(), "{kind:?} x = {x}: {v} vs {expected}");
                let expected_grad = 1.0 / x - 0.5; // d/dx [log(-x) + x/2]
                assert!((g - expected_grad).abs() < 1e-3 * expected_grad.abs(), "{kind:?} x = {x}: grad {g}");
            }
        }
    }

    #[test]
    fn finite_and_vanishing_for_very_negative_inputs() {
        for kind in [Kind::Double, Kind::Float] {
            let xs = [-40.0, -600.0, -1e6, f64::NEG_INFINITY];
            let (values, grads) = values_and_grads(&xs, kind);
            for ((x, v), g) in xs.iter().zip(&values).zip(&grads) {
                assert!(v.is_finite() && g.is_finite(), "{kind:?} x = {x}: {v}, grad {g}");
                assert!(v.abs() <= 2.0 * x.exp() + 1e-300 && g.abs() <= 2.0 * x.exp() + 1e-300);
            }
        }
    }

    #[test]
    fn zero_is_minus_infinity_and_positive_is_nan() {
        let y = log1mexp(&Tensor::from_slice(&[0.0f64, 1.0])).unwrap();
        assert_eq!(y.double_value(&[0]), f64::NEG_INFINITY);
        assert!(y.double_value(&[1]).is_nan());
    }

    #[test]
    fn rejects_integer_input() {
        assert!(log1mexp(&Tensor::from_slice(&[-1i64])).is_err());
    }
}
