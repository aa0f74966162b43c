//! MPO's retain term `L2`, eq. (8): keep the policy's hidden states on dominant-language
//! inputs close to the frozen reference's.

use crate::{MpoError, Result};
use align_losses::check::{check_device, check_float, check_shape, check_shape_where, loss_precision};
use align_losses::DominantStates;
use tch::{Kind, Tensor};

/// Which representation of a dominant-language sequence the retain term compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainForm {
    /// The paper's form (§3.2, eq. 8): the state at the last real token, compared by its
    /// squared L2 norm, see [`retain_last_token`]. Config value `"last_token"`.
    #[default]
    LastToken,
    /// The public code's form, with padding masked out: the states mean-pooled over the real
    /// tokens, compared by the mean squared difference over the hidden dimension, see
    /// [`retain_mean_pool`]. Config value `"mean_pool"`.
    MeanPool,
}

impl RetainForm {
    /// The value of the config key `retain` that selects this form.
    pub fn config_name(self) -> &'static str {
        match self {
            RetainForm::LastToken => "last_token",
            RetainForm::MeanPool => "mean_pool",
        }
    }
}

impl std::fmt::Display for RetainForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.config_name())
    }
}

impl std::str::FromStr for RetainForm {
    type Err = MpoError;

    /// Parses the config value: `"last_token"` or `"mean_pool"`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "last_token" => Ok(RetainForm::LastToken),
            "mean_pool" => Ok(RetainForm::MeanPool),
            _ => Err(MpoError::UnknownOption {
                key: "retain".into(),
                value: s.into(),
                allowed: "\"last_token\" or \"mean_pool\"".into(),
            }),
        }
    }
}

/// The retain term of `form` on `states` (one layer's policy and reference states on the
/// dominant-language sequences): [`retain_last_token`] or [`retain_mean_pool`].
pub fn retain_loss(form: RetainForm, states: &DominantStates) -> Result<Tensor> {
    let items = retain_items(form, states)?;
    Ok(items.mean(None::<Kind>))
}

/// The values whose mean is [`retain_loss`]: `[B]` squared norms at the last token, or
/// `[B, D]` squared differences of the pooled states.
pub(crate) fn retain_items(form: RetainForm, states: &DominantStates) -> Result<Tensor> {
    match form {
        RetainForm::LastToken => last_token_items(&states.policy, &states.reference, &states.attention_mask),
        RetainForm::MeanPool => mean_pool_items(&states.policy, &states.reference, &states.attention_mask),
    }
}

/// The paper's retain term, MPO eq. (8) at the last token (a scalar):
///
/// `L2 = (1/B) sum_b || h_b[l_b] - h_ref,b[l_b] ||_2^2`
///
/// where `l_b` is the position of the last real token of sequence `b` (see
/// [`last_token_positions`]). Eq. (8) writes `E ||h^d - h^d_ref||^2`, a *squared L2 norm*: the
/// squared differences are summed over the hidden dimension (not averaged), then averaged over
/// the sequences. Its scale therefore grows with the hidden size `D`; a run sets the balance
/// with `retain_weight`.
///
/// - `policy`: `[B, T, D]` float, the policy's states at one layer (differentiable).
/// - `reference`: `[B, T, D]` float, the frozen reference's states at the same layer (treated
///   as a constant: detached).
/// - `attention_mask`: `[B, T]` bool, integer or float holding only 0 (padding) and 1 (real
///   token), at least one real token per sequence.
///
/// Computed in float32 (half states are promoted; float64 is kept).
///
/// ```
/// use mpo_loss::retain_last_token;
/// use tch::Tensor;
///
/// // One sequence of 3 positions, the last one padding; D = 2.
/// let reference = Tensor::zeros([1, 3, 2], tch::kind::FLOAT_CPU);
/// let policy = Tensor::from_slice(&[9f32, 9., 3., 4., 7., 7.]).view([1, 3, 2]);
/// let mask = Tensor::from_slice(&[1i64, 1, 0]).view([1, 3]);
/// // Last real token is position 1: ||(3, 4)||^2 = 25.
/// assert_eq!(retain_last_token(&policy, &reference, &mask)?.double_value(&[]), 25.0);
/// # Ok::<(), mpo_loss::MpoError>(())
/// ```
pub fn retain_last_token(policy: &Tensor, reference: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    Ok(last_token_items(policy, reference, attention_mask)?.mean(None::<Kind>))
}

/// `[B]`: the squared norms that [`retain_last_token`] averages.
fn last_token_items(policy: &Tensor, reference: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let (policy, reference, mask) = checked_states(policy, reference, attention_mask)?;
    let (b, _, d) = dims(&policy);
    let last = last_positions_unchecked(&mask)?; // [B] int64
    let index = last.view([b, 1, 1]).expand([b, 1, d], false); // [B, 1, D]
    let h = policy.f_gather(1, &index, false)?.squeeze_dim(1); // [B, D]
    let h_ref = reference.f_gather(1, &index, false)?.squeeze_dim(1); // [B, D]
    Ok((h - h_ref).square().sum_dim_intlist([1i64].as_slice(), false, None::<Kind>))
    // [B]
}

/// The retain term on mean-pooled states, as the public MPO code computes it but with padding
/// masked out (a scalar):
///
/// `L2 = (1/(B D)) sum_b sum_k ( hbar_b[k] - hbar_ref,b[k] )^2`,
/// `hbar_b = (1/n_b) sum_{t: m_bt = 1} h_b[t]`
///
/// with `n_b` the number of real tokens of sequence `b`: a mean squared error over the batch
/// *and the hidden dimension*, as in the public code. The public code pools over every
/// position, padding included, so its value depends on how much padding a batch has; here
/// padded positions do not count (methods.md §2, pitfalls.md "Padding"). Inputs as in
/// [`retain_last_token`].
pub fn retain_mean_pool(policy: &Tensor, reference: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    Ok(mean_pool_items(policy, reference, attention_mask)?.mean(None::<Kind>))
}

/// `[B, D]`: the squared differences of pooled states that [`retain_mean_pool`] averages.
fn mean_pool_items(policy: &Tensor, reference: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let (policy, reference, mask) = checked_states(policy, reference, attention_mask)?;
    let weights = mask.unsqueeze(1); // [B, 1, T]
    let counts = mask.sum_dim_intlist([1i64].as_slice(), true, None::<Kind>); // [B, 1]
                                                                              // A batched product sums the real positions without a [B, T, D] temporary.
    let pool = |h: &Tensor| -> Result<Tensor> { Ok(weights.f_bmm(h)?.squeeze_dim(1) / &counts) }; // [B, D]
    let diff = pool(&policy)? - pool(&reference)?; // [B, D]
    Ok(diff.square())
}

/// `[B]` int64: the position of the last real token (the last 1) of each row of
/// `attention_mask` (`[B, T]`, only 0 and 1, at least one 1 per row). For right-padded
/// sequences this is `length - 1`; for left-padded ones it is `T - 1`.
pub fn last_token_positions(attention_mask: &Tensor) -> Result<Tensor> {
    check_shape(attention_mask, "attention mask", &[None, None], "[B, T]")?;
    let mask = checked_mask(attention_mask, Kind::Float)?;
    last_positions_unchecked(&mask)
}

/// `[B]` int64 last-1 positions of a checked 0/1 mask.
fn last_positions_unchecked(mask: &Tensor) -> Result<Tensor> {
    let t = mask.size()[1];
    let positions = Tensor::f_arange(t, (Kind::Int64, mask.device()))? + 1; // [T]: 1..=T
    let marked = mask.f_to_kind(Kind::Int64)? * positions.unsqueeze(0); // [B, T]: position + 1 where real
    Ok(marked.f_amax([1i64].as_slice(), false)? - 1) // [B]
}

/// Checks the three inputs of a retain term and returns policy `[B, T, D]` in loss precision,
/// the detached reference in the same kind, and the mask `[B, T]` as 0/1 of that kind.
fn checked_states(policy: &Tensor, reference: &Tensor, attention_mask: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    check_float(policy, "policy hidden states")?;
    check_shape(policy, "policy hidden states", &[None, None, None], "[B, T, D]")?;
    let (b, t, d) = dims(policy);
    let words = "[B, T, D] with B > 0 (at least one dominant-language sequence)";
    check_shape_where(policy, "policy hidden states", words, |s| s[0] > 0)?;
    check_float(reference, "reference hidden states")?;
    check_shape(reference, "reference hidden states", &[Some(b), Some(t), Some(d)], "[B, T, D] as the policy's")?;
    check_device(reference, "reference hidden states", policy.device())?;
    check_shape(attention_mask, "attention mask", &[Some(b), Some(t)], "[B, T] matching the hidden states")?;
    check_device(attention_mask, "attention mask", policy.device())?;
    let policy = loss_precision(policy); // [B, T, D]
    let reference = reference.f_to_kind(policy.kind())?.detach(); // [B, T, D]
    let mask = checked_mask(attention_mask, policy.kind())?; // [B, T]
    Ok((policy, reference, mask))
}

/// `attention_mask` as `kind` after checking that it holds only 0 and 1 and that every row
/// has a real token.
fn checked_mask(attention_mask: &Tensor, kind: Kind) -> Result<Tensor> {
    let mask = attention_mask.f_to_kind(kind)?; // [B, T]
    let invalid = mask.f_ne(0.0)?.f_logical_and(&mask.f_ne(1.0)?)?; // [B, T]
    if invalid.f_any()?.f_int64_value(&[])? != 0 {
        let value = mask.f_masked_select(&invalid)?.f_double_value(&[0])?;
        return Err(MpoError::MaskValue { value });
    }
    let counts = mask.sum_dim_intlist([1i64].as_slice(), false, Kind::Float); // [B]
    if counts.numel() > 0 && counts.f_min()?.f_double_value(&[])? < 1.0 {
        let row = counts.f_argmin(0, false)?.f_int64_value(&[])?;
        return Err(MpoError::EmptySequence { row: row as usize });
    }
    Ok(mask)
}

/// `(B, T, D)` of a 3-D tensor.
fn dims(t: &Tensor) -> (i64, i64, i64) {
    let s = t.size();
    (s[0], s[1], s[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_form_parses_its_config_names() {
        for form in [RetainForm::LastToken, RetainForm::MeanPool] {
            assert_eq!(form.config_name().parse::<RetainForm>().unwrap(), form);
            assert_eq!(form.to_string(), form.config_name());
        }
        assert_eq!(RetainForm::default(), RetainForm::LastToken);
        let err = "last".parse::<RetainForm>().unwrap_err();
        assert!(matches!(err, MpoError::UnknownOption { ref key, .. } if key == "retain"));
    }

    #[test]
    fn mask_checks() {
        let nan = Tensor::from_slice(&[1.0f32, f32::NAN]).view([1, 2]);
        assert!(matches!(checked_mask(&nan, Kind::Float), Err(MpoError::MaskValue { .. })));
        let ok = Tensor::from_slice(&[true, false, true, true]).view([2, 2]);
        let mask = checked_mask(&ok, Kind::Double).unwrap();
        assert_eq!(mask.kind(), Kind::Double);
        assert_eq!(
            Vec::<f64>::try_from(&last_positions_unchecked(&mask).unwrap().to_kind(Kind::Double)).unwrap(),
            [0.0, 1.0]
        );
    }
}
