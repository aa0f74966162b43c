//! Per-token and per-sequence log-probabilities from logits, in float32.

use crate::check::{check_device, check_float, check_shape, loss_precision};
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
    if targets.kind() != Kind::Int64 {
        return Err(LossError::Kind { what: "targets".into(), expected: "int64".into(), got: targets.kind() });
    }
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
    let scored = scored.to_kind(loss_precision(logits).kind()); // [B, T]
    if t == 0 || scored.select(1, 0).sum(Kind::Float).double_value(&[]) != 0.0 {
        return Err(LossError::Shape {
            what: "scored mask".into(),
            expected: "position 0 unscored (no logits predict the first token)".into(),
            got: scored.size(),
        });
    }
    let count = scored.sum_dim_intlist([1i64].as_slice(), false, scored.kind()); // [B]
    if b > 0 && count.min().double_value(&[]) <= 0.0 {
        return Err(LossError::Shape {
            what: "scored mask".into(),
            expected: "at least one scored token per sequence".into(),
            got: scored.size(),
        });
    }
    let logits = logits.narrow(1, 0, t - 1); // [B, T-1, V]: predictions of tokens 1..T
    let targets = input_ids.narrow(1, 1, t - 1); // [B, T-1]
    let per_token = token_logps(&logits, &targets)?; // [B, T-1]
    let mask = scored.narrow(1, 1, t - 1); // [B, T-1]
    let sum = (per_token * mask).sum_dim_intlist([1i64].as_slice(), false, scored.kind()); // [B]
    SequenceLogps::new(sum, count)
}
