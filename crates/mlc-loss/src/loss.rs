//! The MLC loss (methods.md §1, step 5) and the pairwise-cosine ablation baseline.

use crate::groups::Groups;
use crate::{Mlc, Result};
use align_losses::check::check_parameter_where;
use tch::Tensor;

/// The MLC multilingual consistency loss of Bu et al. (ICLR 2026, arXiv 2602.16660;
/// methods.md §1):
///
/// `L = (1/B') sum_g -log( exp(s_1/tau) / sum_{j<=k_g} exp(s_j/tau) )`
///
/// where `s_1 >= .. >= s_{k_g}` are the singular values of the `D x k_g` matrix `Z_g` whose
/// columns are the unit-normalised states `z_j = h_j / ||h_j||` of the `k_g` present
/// variants of group `g` (zeros when `k_g > D`), and the mean runs over the `B'` groups
/// with `k_g >= 2`.
///
/// - `states`: `[G, K, D]`, any float dtype; half types are computed in f32, f64 stays f64.
/// - `mask`: `[G, K]` bool, `true` where the variant exists (`None`: all exist). A masked-out
///   variant is exactly as if it were absent; its row may hold anything (even NaN) and gets a
///   zero gradient.
/// - `tau > 0`: the softmax temperature. With unit columns `s_j` lies in `[0, sqrt(k)]`, so
///   `tau` around 1 keeps the softmax from saturating.
///
/// Returns a scalar (f32, or f64 for f64 input) connected to the graph. Groups with fewer
/// than 2 present variants contribute nothing; if no group has 2, the loss is a zero that is
/// still connected to `states` (so `backward` works and gives zero gradients).
///
/// The minimum, `log(1 + (k-1) exp(-sqrt(k)/tau))`, is reached exactly when all variants of
/// a group are parallel *or antiparallel*: the rank-1 form cannot tell `z` from `-z`.
///
/// Cost: one SVD of a `D x K` matrix per group (`O(K^2 D)`), tiny next to the model.
///
/// ```
/// use tch::{Kind, Tensor};
/// let states = Tensor::randn([4, 3, 16], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
/// let loss = mlc_loss::mlc_loss(&states, None, 1.0)?;
/// loss.backward();
/// assert!(loss.double_value(&[]) > 0.0);
/// # Ok::<(), mlc_loss::MlcError>(())
/// ```
pub fn mlc_loss(states: &Tensor, mask: Option<&Tensor>, tau: f64) -> Result<Tensor> {
    check_tau(tau)?;
    let groups = Groups::new(states, mask)?;
    let s = groups.singular_values()?; // [G, K]
    let per_group = mlc_per_group(&groups, &s, tau)?; // [G]
    groups.mean_over_counted(&per_group)
}

/// `[G]`: `-log softmax(s / tau)[0]` over the present positions of each group's spectrum,
/// written as `log sum_{j<k_g} exp((s_j - s_1)/tau)`: every exponent is `<= 0` and the sum is
/// `>= 1`, so it neither overflows nor takes the log of zero.
pub(crate) fn mlc_per_group(groups: &Groups, s: &Tensor, tau: f64) -> Result<Tensor> {
    let positions = groups.spectrum_positions()?.f_to_kind(s.kind())?; // [G, K]
    let top = s.f_narrow(1, 0, 1)?; // [G, 1]
    let terms = s.f_sub(&top)?.f_div_scalar(tau)?.f_exp()?.f_mul(&positions)?; // [G, K]
    Ok(terms.f_sum_dim_intlist(&[1i64][..], false, s.kind())?.f_log()?)
}

/// The ablation baseline of the MLC paper: `1 - mean pairwise cosine similarity` of each
/// group's present variants, averaged over the groups with at least 2 (methods.md §1,
/// "Ablation baseline"). Stricter than MLC: it asks the variants to be *equal* directions,
/// so opposite vectors are penalised (cosine `-1`), unlike MLC.
///
/// `states` and `mask` as in [`mlc_loss`]; the same zero-loss rule when no group counts.
///
/// ```
/// use tch::{Kind, Tensor};
/// let same = Tensor::ones([1, 3, 8], (Kind::Float, tch::Device::Cpu));
/// let loss = mlc_loss::pairwise_cosine_loss(&same, None)?;
/// assert!(loss.double_value(&[]).abs() < 1e-6);
/// # Ok::<(), mlc_loss::MlcError>(())
/// ```
pub fn pairwise_cosine_loss(states: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let groups = Groups::new(states, mask)?;
    let cosine = pairwise_cosine_sums(&groups)?; // [G]
    let per_group = cosine.f_neg()?.f_add_scalar(1.0)?;
    groups.mean_over_counted(&per_group)
}

/// `[G]`: mean of `z_i . z_j` over the ordered pairs `i != j` of present variants; `0` for
/// groups with fewer than 2 (finite, so it can be masked out of a mean).
pub(crate) fn pairwise_cosine_sums(groups: &Groups) -> Result<Tensor> {
    let z = &groups.z; // [G, K, D]
    let gram = z.f_matmul(&z.f_transpose(1, 2)?)?; // [G, K, K]
    let kind = gram.kind();
    let total = gram.f_sum_dim_intlist(&[1i64, 2][..], false, kind)?; // [G]
    let diagonal = gram.f_diagonal(0, 1, 2)?.f_sum_dim_intlist(&[1i64][..], false, kind)?; // [G]
    let k = groups.counts.f_to_kind(kind)?; // [G]
    let pairs = k.f_mul(&k.f_sub_scalar(1.0)?)?.f_clamp_min(1.0)?;
    Ok(total.f_sub(&diagonal)?.f_div(&pairs)?)
}

/// Fails unless `tau` is finite and `> 0` (an error of the kind `mlc`).
pub(crate) fn check_tau(tau: f64) -> align_losses::Result<()> {
    let why = "the temperature must be finite and > 0 (around 1 for unit-normalised states)";
    check_parameter_where(Mlc::KIND, "tau", tau, why, |tau| tau.is_finite() && tau > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MlcError;
    use align_losses::LossError;
    use tch::{Device, Kind};

    #[test]
    fn tau_must_be_finite_and_positive() {
        let x = Tensor::randn([2, 3, 4], (Kind::Float, Device::Cpu));
        for tau in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = mlc_loss(&x, None, tau).unwrap_err();
            assert!(
                matches!(err, MlcError::Input(LossError::InvalidParameter { ref parameter, .. }) if parameter == "tau"),
                "{tau}"
            );
        }
        assert!(mlc_loss(&x, None, 1e-3).is_ok());
    }

    #[test]
    fn small_tau_saturates_without_overflow() {
        // With tau = 1e-3 the logits s/tau reach thousands; the stable form stays finite.
        let x = Tensor::randn([4, 5, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let loss = mlc_loss(&x, None, 1e-3).unwrap();
        assert!(loss.double_value(&[]).is_finite());
        loss.backward();
        assert!(bool::try_from(x.grad().isfinite().all()).unwrap());
    }
}
