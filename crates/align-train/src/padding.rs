//! Right-padded token batches, the layout [`lm_backend::CausalLm`] expects, and the two reads
//! every pass makes of them: the summed log-probs of the scored tokens, and the hidden state
//! at one position per row. The trainer and the evaluations share this one module, so the
//! padding rule (the tokenizer's pad id, see [`crate::TextEncoder::pad_id`]) and the
//! log-prob path are the same everywhere.

use crate::{Result, TrainError};
use align_losses::{predicting_positions, scored_sequence_logps, SequenceLogps};
use lm_backend::{CausalLm, HiddenRequest, HiddenStates};
use tch::{Device, Tensor};

/// Right-padded token sequences with their masks.
#[derive(Debug)]
pub struct Padded {
    /// `[N, T]` int64 token ids (padding = the pad id).
    pub ids: Tensor,
    /// `[N, T]` int64: 1 for tokens, 0 for padding.
    pub mask: Tensor,
    /// `[N, T]` float32: 1 for scored (completion) tokens.
    pub scored: Tensor,
    /// Prompt length of each sequence.
    pub prompt_lens: Vec<usize>,
    /// Total length (prompt + completion) of each sequence.
    pub lens: Vec<usize>,
    /// Non-padding tokens in all sequences.
    pub tokens: usize,
}

/// Right-pads `(prompt, completion)` sequences to the longest; the completion tokens are
/// scored.
pub fn pad_pairs(seqs: &[(&[i64], &[i64])], pad_id: i64, device: Device) -> Padded {
    let t = seqs.iter().map(|(p, c)| p.len() + c.len()).max().unwrap_or(1).max(1);
    let n = seqs.len();
    let mut ids = vec![pad_id; n * t];
    let mut mask = vec![0i64; n * t];
    let mut scored = vec![0f32; n * t];
    for (row, (p, c)) in seqs.iter().enumerate() {
        for (j, &id) in p.iter().chain(c.iter()).enumerate() {
            ids[row * t + j] = id;
            mask[row * t + j] = 1;
            if j >= p.len() {
                scored[row * t + j] = 1.0;
            }
        }
    }
    let shape = [n as i64, t as i64];
    let lens: Vec<usize> = seqs.iter().map(|(p, c)| p.len() + c.len()).collect();
    Padded {
        ids: Tensor::from_slice(&ids).reshape(shape).to_device(device),
        mask: Tensor::from_slice(&mask).reshape(shape).to_device(device),
        scored: Tensor::from_slice(&scored).reshape(shape).to_device(device),
        prompt_lens: seqs.iter().map(|(p, _)| p.len()).collect(),
        tokens: lens.iter().sum(),
        lens,
    }
}

/// Right-pads prompts alone (nothing is scored), for prompt-only passes.
pub fn pad_prompts(prompts: &[&[i64]], pad_id: i64, device: Device) -> Padded {
    let seqs: Vec<(&[i64], &[i64])> = prompts.iter().map(|p| (*p, &[][..])).collect();
    pad_pairs(&seqs, pad_id, device)
}

impl Padded {
    /// The summed log-probs of the scored tokens of each sequence under `model`, and the
    /// requested hidden states. Logits are computed only at the positions that predict a
    /// scored token ([`CausalLm::forward_at`]), never `[N, T, V]`: prompt and padding
    /// positions skip the output projection and its backward. `context` names the pass in
    /// errors ("policy forward", ...).
    pub fn scored_logps<M: CausalLm + ?Sized>(
        &self,
        model: &M,
        hidden: &HiddenRequest,
        context: &str,
    ) -> Result<(SequenceLogps, HiddenStates)> {
        let loss_err = || TrainError::loss(format!("{context}: log-probs"));
        let positions = predicting_positions(&self.scored).map_err(loss_err())?;
        let out = model.forward_at(&self.ids, &self.mask, &positions, hidden).map_err(TrainError::model(context))?;
        let logps = scored_sequence_logps(&out.logits, &self.ids, &self.scored).map_err(loss_err())?;
        Ok((logps, out.hidden))
    }

    /// The requested hidden states of a prompt-only pass, which runs the decoder no further
    /// than the deepest layer asked for ([`CausalLm::hidden_states`]).
    pub fn hidden_states<M: CausalLm + ?Sized>(
        &self,
        model: &M,
        hidden: &HiddenRequest,
        context: &str,
    ) -> Result<HiddenStates> {
        model.hidden_states(&self.ids, &self.mask, hidden).map_err(TrainError::model(context))
    }

    /// The position of each row's last token (prompt + completion), for
    /// [`gather_positions`].
    pub fn last_positions(&self) -> Vec<usize> {
        self.lens.iter().map(|l| l.saturating_sub(1)).collect()
    }
}

/// `[N, D]`: the state at each row's position `positions[row]` of `[N, T, D]` states.
pub fn gather_positions(states: &Tensor, positions: &[usize]) -> Tensor {
    let index: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
    let index = Tensor::from_slice(&index)
        .to_device(states.device())
        .view([-1, 1, 1])
        .expand([positions.len() as i64, 1, states.size()[2]], false);
    states.gather(1, &index, false).squeeze_dim(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_right_padded_with_the_completion_scored() {
        let p = pad_pairs(&[(&[5, 6], &[7]), (&[8], &[9, 10, 11])], 0, Device::Cpu);
        assert_eq!(Vec::<i64>::try_from(p.ids.reshape([-1])).unwrap(), vec![5, 6, 7, 0, 8, 9, 10, 11]);
        assert_eq!(Vec::<i64>::try_from(p.mask.reshape([-1])).unwrap(), vec![1, 1, 1, 0, 1, 1, 1, 1]);
        assert_eq!(Vec::<f32>::try_from(p.scored.reshape([-1])).unwrap(), vec![0., 0., 1., 0., 0., 1., 1., 1.]);
        assert_eq!((p.prompt_lens.clone(), p.lens.clone(), p.tokens), (vec![2, 1], vec![3, 4], 7));
        assert_eq!(p.last_positions(), vec![2, 3]);
    }

    #[test]
    fn prompts_score_nothing_and_gather_reads_each_rows_position() {
        let p = pad_prompts(&[&[1, 2, 3], &[4]], 9, Device::Cpu);
        assert_eq!(Vec::<i64>::try_from(p.ids.reshape([-1])).unwrap(), vec![1, 2, 3, 4, 9, 9]);
        assert_eq!(p.scored.sum(tch::Kind::Float).double_value(&[]), 0.0);
        let states = Tensor::arange(12, (tch::Kind::Float, Device::Cpu)).view([2, 3, 2]); // [N, T, D]
        let last = gather_positions(&states, &p.last_positions()); // rows 0 @ 2, 1 @ 0
        assert_eq!(Vec::<f32>::try_from(last.reshape([-1])).unwrap(), vec![4., 5., 6., 7.]);
    }
}
