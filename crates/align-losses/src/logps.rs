//! Per-token and per-sequence log-probabilities from logits, in float32.

use crate::check::{check_device, check_float, check_kind, check_shape, loss_precision};
use crate::{LossError, Result, SequenceLogps};
use tch::{Kind, Tensor};

/// `[B, T]` float32: `log p(targets[b, t] | logits[b, t])`, i.e. logits and targets already
/// aligned (position `t`'s logits score `targets[b, t]`).
///
/// `logits` may be any float dtype (`[B, T, V]`); the log-softmax normaliser is computed in
/// float32 so bf16/fp16 models do not lose precision (or produce NaN) in the loss.
pub fn token_logps(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check_float(logits, "logits")?;
    check_shape(logits, "logits", &[None, None, None], "[B, T, V]")?;
    let (b, t) = (logits.size()[0], logits.size()[1]);
    check_shape(targets, "targets", &[Some(b), Some(t)], "[B, T] matching logits")?;
    check_device(targets, "targets", logits.device())?;
    check_kind(targets, "targets", Kind::Int64)?;
    let logits = loss_precision(logits); // [B, T, V] f32 (f64 kept; no copy when already f32)
    let picked = logits.f_gather(2, &targets.unsqueeze(-1), false)?.squeeze_dim(-1); // [B, T]
    let normaliser = logits.f_logsumexp([-1], false)?; // [B, T]
    Ok(picked - normaliser)
}

/// Summed log-probabilities of the scored tokens of each sequence, and their count.
///
/// - `logits`: `[B, T, V]` (any float dtype): position `t` predicts token `t + 1`.
/// - `input_ids`: `[B, T]` int64.
/// - `scored`: `[B, T]` bool (or 0/1): which tokens of `input_ids` are scored (the completion
///   and its EOS; prompt and padding are not). Position 0 cannot be scored (nothing predicts
///   it) and must be false; every sequence must score at least one token.
///
/// Returns float32 `sum` and `count` of shape `[B]`.
pub fn sequence_logps(logits: &Tensor, input_ids: &Tensor, scored: &Tensor) -> Result<SequenceLogps> {
    check_shape(logits, "logits", &[None, None, None], "[B, T, V]")?;
    let (b, t) = (logits.size()[0], logits.size()[1]);
    check_shape(input_ids, "input_ids", &[Some(b), Some(t)], "[B, T] matching logits")?;
    check_shape(scored, "scored mask", &[Some(b), Some(t)], "[B, T] matching logits")?;
    check_device(scored, "scored mask", logits.device())?;
    let (scored, count) = scored_counts(scored, loss_precision(logits).kind())?;
    let logits = logits.narrow(1, 0, t - 1); // [B, T-1, V]: predictions of tokens 1..T
    let targets = input_ids.narrow(1, 1, t - 1); // [B, T-1]
    let per_token = token_logps(&logits, &targets)?; // [B, T-1]
    let mask = scored.narrow(1, 1, t - 1); // [B, T-1]
    let sum = (per_token * mask).sum_dim_intlist([1i64].as_slice(), false, scored.kind()); // [B]
    SequenceLogps::new(sum, count)
}

/// `[B, T]` bool: the positions whose logits predict a scored token, `scored` shifted left
/// by one (`positions[b, t] = scored[b, t + 1]`, false at `T - 1`).
///
/// A model that computes logits only where asked (lm-backend's `CausalLm::forward_at`) needs
/// only these; its `[N, V]` logits then go to [`scored_sequence_logps`].
pub fn predicting_positions(scored: &Tensor) -> Result<Tensor> {
    check_shape(scored, "scored mask", &[None, None], "[B, T]")?;
    let (b, t) = (scored.size()[0], scored.size()[1]);
    let scored = scored.ne(0);
    if t == 0 {
        return Ok(scored);
    }
    let last = Tensor::zeros([b, 1], (Kind::Bool, scored.device()));
    Ok(Tensor::cat(&[scored.narrow(1, 1, t - 1), last], 1))
}

/// [`sequence_logps`] from logits computed at the predicting positions only.
///
/// - `logits`: `[N, V]` (any float dtype): row `n` predicts the `n`-th scored token of
///   `input_ids` in row-major order (sequence by sequence, left to right), i.e. the logits at
///   the true entries of [`predicting_positions`]`(scored)`, in that order.
/// - `input_ids`, `scored`: as for [`sequence_logps`] (`scored` is bool or 0/1).
///
/// Returns the same float32 `sum` and `count` `[B]` as [`sequence_logps`] on the full logits,
/// without a `[B, T, V]` tensor.
pub fn scored_sequence_logps(logits: &Tensor, input_ids: &Tensor, scored: &Tensor) -> Result<SequenceLogps> {
    check_float(logits, "logits")?;
    check_shape(logits, "logits", &[None, None], "[N, V], N = scored tokens")?;
    check_shape(input_ids, "input_ids", &[None, None], "[B, T]")?;
    let (b, t) = (input_ids.size()[0], input_ids.size()[1]);
    check_shape(scored, "scored mask", &[Some(b), Some(t)], "[B, T] matching input_ids")?;
    check_device(input_ids, "input_ids", logits.device())?;
    check_device(scored, "scored mask", logits.device())?;
    check_kind(input_ids, "input_ids", Kind::Int64)?;
    let kind = loss_precision(logits).kind();
    let (_, count) = scored_counts(scored, kind)?;
    let flat = scored.ne(0).reshape([-1]).nonzero().squeeze_dim(1); // [N]: b * T + t
    let n = flat.size()[0];
    check_shape(logits, "logits", &[Some(n), None], &format!("[{n}, V]: one row per scored token"))?;
    let targets = input_ids.reshape([-1]).index_select(0, &flat); // [N]
    let per_token = token_logps(&logits.unsqueeze(0), &targets.unsqueeze(0))?.squeeze_dim(0); // [N]
    let rows = flat.floor_divide_scalar(t); // [N]: the sequence of each token
    let sum = Tensor::zeros([b], (kind, logits.device())).index_add(0, &rows, &per_token); // [B]
    SequenceLogps::new(sum, count)
}

/// `scored` as `kind` and its per-sequence count `[B]`, after checking that position 0 is
/// unscored and that every sequence scores at least one token.
fn scored_counts(scored: &Tensor, kind: Kind) -> Result<(Tensor, Tensor)> {
    let t = scored.size()[1];
    let scored = scored.to_kind(kind); // [B, T]
    if t == 0 || scored.select(1, 0).sum(Kind::Float).double_value(&[]) != 0.0 {
        return Err(LossError::Shape {
            what: "scored mask".into(),
            expected: "position 0 unscored (no logits predict the first token)".into(),
            got: scored.size(),
        });
    }
    let count = scored.sum_dim_intlist([1i64].as_slice(), false, kind); // [B]
    if scored.size()[0] > 0 && count.min().double_value(&[]) <= 0.0 {
        return Err(LossError::Shape {
            what: "scored mask".into(),
            expected: "at least one scored token per sequence".into(),
            got: scored.size(),
        });
    }
    Ok((scored, count))
}
