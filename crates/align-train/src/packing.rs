//! Padding-free batches: a micro-batch's sequences packed into one row (no pad token ever
//! reaches a linear layer, norm or MLP), each with its own positions and attention, and the
//! two reads every pass makes of them — the summed log-probs of each completion, and the
//! hidden state at a chosen token — as [`crate::padding`] does for right-padded batches.
//!
//! A preference pair is one tree `[prompt | chosen | rejected]`: the prompt (the trunk) is
//! forwarded once, chosen and rejected are branches that each attend to the prompt and to
//! themselves, with positions continuing from the prompt's end. Their log-probs and
//! gradients equal those of the two padded sequences `prompt ++ chosen` and
//! `prompt ++ rejected` (the gradients of both flow into the shared prompt states).
//! Trees are grouped into attention chunks of about [`CHUNK_TOKENS`] tokens: attention is
//! computed per chunk, so its cost grows with the chunk, not with the whole micro-batch.

use crate::encode::Encoded;
use crate::{Result, TrainError};
use align_losses::SequenceLogps;
use lm_backend::{CausalLm, HiddenRequest, HiddenStates, PackedBatch};
use tch::{Device, Kind, Tensor};

/// Tokens per attention chunk (a tree longer than this gets a chunk of its own). Attention
/// inside a chunk is computed for every pair of its tokens and masked, so a chunk of `n`
/// tokens costs `n^2`; at 1024 that is about 1% of a small model's linear layers per token.
pub const CHUNK_TOKENS: usize = 1024;

/// Builds a packed row from trees and prompts.
#[derive(Debug, Default)]
pub struct Packer {
    ids: Vec<i64>,
    positions: Vec<i64>,
    segments: Vec<i64>,
    branches: Vec<i64>,
    chunk_lens: Vec<usize>,
    /// Row index of the token that predicts each scored token.
    predictors: Vec<usize>,
    /// Each scored token's id.
    targets: Vec<i64>,
    /// Each scored token's completion (sequence) index.
    owners: Vec<usize>,
    /// Scored tokens per completion.
    counts: Vec<usize>,
    /// Row indices of each completion's whole sequence (trunk, then its branch).
    sequences: Vec<Vec<usize>>,
}

/// What [`Packer::pair`] added: where to read the pair's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairSlots {
    /// The completion index of the chosen completion.
    pub chosen: usize,
    /// The completion index of the rejected completion, when one was given.
    pub rejected: Option<usize>,
    /// The row index of the chosen prompt's last token.
    pub prompt_last: usize,
}

/// What [`Packer::tree`] added: where to read the results of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSlots {
    /// The completion index of each branch, in the order given (for
    /// [`Packed::scored_logps`]'s output and [`Packed::sequence_rows`]).
    pub completions: Vec<usize>,
    /// The row index of the prompt's last token (its state is the prompt's last-token state).
    pub prompt_last: usize,
}

impl Packer {
    /// An empty packer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one tree: `prompt` (non-empty) as the trunk and each completion as a branch whose
    /// tokens are scored. With no completion it is a prompt alone.
    pub fn tree(&mut self, prompt: &[i64], completions: &[&[i64]]) -> TreeSlots {
        assert!(!prompt.is_empty(), "a packed tree needs a non-empty prompt");
        let size = prompt.len() + completions.iter().map(|c| c.len()).sum::<usize>();
        self.open_chunk(size);
        let segment = self.segments.last().map_or(0, |s| s + 1);
        let trunk: Vec<usize> = (0..prompt.len()).map(|j| self.push(prompt[j], j, segment, 0)).collect();
        let prompt_last = *trunk.last().expect("non-empty prompt");
        let mut slots = Vec::with_capacity(completions.len());
        for (b, completion) in completions.iter().enumerate() {
            let index = self.counts.len();
            let mut rows = trunk.clone();
            let mut predictor = prompt_last;
            for (j, &id) in completion.iter().enumerate() {
                let row = self.push(id, prompt.len() + j, segment, b as i64 + 1);
                self.predictors.push(predictor);
                self.targets.push(id);
                self.owners.push(index);
                rows.push(row);
                predictor = row;
            }
            self.counts.push(completion.len());
            self.sequences.push(rows);
            slots.push(index);
        }
        *self.chunk_lens.last_mut().expect("chunk opened") += size;
        TreeSlots { completions: slots, prompt_last }
    }

    /// Adds a preference pair: one tree `[prompt | chosen | rejected]` when the two share
    /// their prompt (as a record's pairs do), two trees when they do not, and a one-branch
    /// tree without a rejected completion.
    pub fn pair(&mut self, chosen: &Encoded, rejected: Option<&Encoded>) -> PairSlots {
        match rejected {
            Some(r) if r.prompt == chosen.prompt => {
                let t = self.tree(&chosen.prompt, &[&chosen.completion, &r.completion]);
                PairSlots { chosen: t.completions[0], rejected: Some(t.completions[1]), prompt_last: t.prompt_last }
            }
            _ => {
                let t = self.tree(&chosen.prompt, &[&chosen.completion]);
                let rejected = rejected.map(|r| self.tree(&r.prompt, &[&r.completion]).completions[0]);
                PairSlots { chosen: t.completions[0], rejected, prompt_last: t.prompt_last }
            }
        }
    }

    /// Starts a new attention chunk unless `size` more tokens fit in the current one.
    fn open_chunk(&mut self, size: usize) {
        match self.chunk_lens.last() {
            Some(&n) if n + size <= CHUNK_TOKENS => {}
            _ => self.chunk_lens.push(0),
        }
    }

    fn push(&mut self, id: i64, position: usize, segment: i64, branch: i64) -> usize {
        self.ids.push(id);
        self.positions.push(position as i64);
        self.segments.push(segment);
        self.branches.push(branch);
        self.ids.len() - 1
    }

    /// Tokens packed so far.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when nothing was packed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The packed row on `device`.
    pub fn finish(self, device: Device) -> Result<Packed> {
        let n = self.ids.len() as i64;
        let row = |v: &[i64]| Tensor::from_slice(v).view([1, n]).to_device(device);
        let batch = PackedBatch::new(
            row(&self.ids),
            row(&self.positions),
            row(&self.segments),
            row(&self.branches),
            self.chunk_lens.clone(),
        )
        .map_err(TrainError::model("packing a batch"))?;
        // Logits are computed once per predicting token, even when it predicts the first
        // token of several branches (the prompt's last token).
        let mut is_predictor = vec![false; self.ids.len()];
        for &p in &self.predictors {
            is_predictor[p] = true;
        }
        let mut logits_row = vec![-1i64; self.ids.len()];
        let mut next = 0;
        for (r, &p) in is_predictor.iter().enumerate() {
            if p {
                logits_row[r] = next;
                next += 1;
            }
        }
        let rows: Vec<i64> = self.predictors.iter().map(|&p| logits_row[p]).collect();
        Ok(Packed {
            predictor_mask: Tensor::from_slice(&is_predictor).view([1, n]).to_device(device),
            logits_rows: Tensor::from_slice(&rows).to_device(device),
            targets: Tensor::from_slice(&self.targets).to_device(device),
            owners: Tensor::from_slice(&self.owners.iter().map(|&o| o as i64).collect::<Vec<_>>()).to_device(device),
            counts: self.counts,
            sequences: self.sequences,
            tokens: self.ids.len(),
            batch,
        })
    }
}

/// A packed row ready for a model, with the maps from its results back to sequences.
#[derive(Debug)]
pub struct Packed {
    /// The row.
    pub batch: PackedBatch,
    /// `[1, N]` bool: the tokens whose logits are needed.
    predictor_mask: Tensor,
    /// `[M]`: for each scored token, its predictor's row in the selected logits.
    logits_rows: Tensor,
    /// `[M]`: each scored token's id.
    targets: Tensor,
    /// `[M]`: each scored token's completion index.
    owners: Tensor,
    /// Scored tokens of each completion.
    counts: Vec<usize>,
    /// Row indices of each completion's sequence (prompt, then completion).
    sequences: Vec<Vec<usize>>,
    /// Tokens in the row (all real).
    pub tokens: usize,
}

impl Packed {
    /// The summed log-probs `[S]` of each completion's tokens under `model` (completion
    /// order: the order of [`Packer::tree`]'s branches), and the requested hidden states
    /// `[1, N, D]`. Logits are computed only at predicting tokens; log-softmax is float32.
    /// `context` names the pass in errors.
    pub fn scored_logps<M: CausalLm + ?Sized>(
        &self,
        model: &M,
        hidden: &HiddenRequest,
        context: &str,
    ) -> Result<(SequenceLogps, HiddenStates)> {
        let out =
            model.forward_packed_at(&self.batch, &self.predictor_mask, hidden).map_err(TrainError::model(context))?;
        let logits = if out.logits.kind() == Kind::Double { out.logits } else { out.logits.to_kind(Kind::Float) }; // [P, V]
        let vocab = logits.size()[1];
        let normaliser = logits.logsumexp([-1], false).index_select(0, &self.logits_rows); // [M]
        let flat = &self.logits_rows * vocab + &self.targets; // [M]
        let per_token = logits.reshape([-1]).index_select(0, &flat) - normaliser; // [M]
        let s = self.counts.len() as i64;
        let sum = Tensor::zeros([s], (per_token.kind(), per_token.device())).index_add(0, &self.owners, &per_token);
        let counts: Vec<f64> = self.counts.iter().map(|&c| c as f64).collect();
        let count = Tensor::from_slice(&counts).to_kind(sum.kind()).to_device(sum.device());
        let logps = SequenceLogps::new(sum, count).map_err(TrainError::loss(format!("{context}: log-probs")))?;
        Ok((logps, out.hidden))
    }

    /// The requested hidden states `[1, N, D]` of a pass that runs the decoder no further
    /// than the deepest layer asked for.
    pub fn hidden_states<M: CausalLm + ?Sized>(
        &self,
        model: &M,
        hidden: &HiddenRequest,
        context: &str,
    ) -> Result<HiddenStates> {
        model.hidden_states_packed(&self.batch, hidden).map_err(TrainError::model(context))
    }

    /// The row indices of completion `index`'s whole sequence (its prompt, then itself).
    pub fn sequence_rows(&self, index: usize) -> &[usize] {
        &self.sequences[index]
    }
}

/// `[K]` log-probs of completions `indices` (in that order) of a packed pass's `[S]`.
pub fn select(logps: &SequenceLogps, indices: &[usize]) -> SequenceLogps {
    let idx = Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(logps.sum.device());
    SequenceLogps { sum: logps.sum.index_select(0, &idx), count: logps.count.index_select(0, &idx) }
}

/// `[K, D]`: rows `rows` of packed states `[1, N, D]`.
pub fn gather_rows(states: &Tensor, rows: &[usize]) -> Tensor {
    let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
    states.squeeze_dim(0).index_select(0, &Tensor::from_slice(&index).to_device(states.device()))
}

/// The sequences `sequences` (row indices each) of packed states `[1, N, D]`, right-padded
/// to `[B, T, D]`, with their `[B, T]` int64 attention mask (1 = token). Padding slots hold
/// an arbitrary row's state and are masked.
pub fn unpack(states: &Tensor, sequences: &[&[usize]]) -> (Tensor, Tensor) {
    let t = sequences.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let b = sequences.len();
    let mut index = vec![0i64; b * t];
    let mut mask = vec![0i64; b * t];
    for (i, rows) in sequences.iter().enumerate() {
        for (j, &r) in rows.iter().enumerate() {
            index[i * t + j] = r as i64;
            mask[i * t + j] = 1;
        }
    }
    let device = states.device();
    let d = states.size()[2];
    let flat = states.squeeze_dim(0).index_select(0, &Tensor::from_slice(&index).to_device(device)); // [B T, D]
    let mask = Tensor::from_slice(&mask).view([b as i64, t as i64]).to_device(device);
    (flat.view([b as i64, t as i64, d]), mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_one_tree_whose_branches_continue_the_prompt() {
        let mut p = Packer::new();
        let slots = p.tree(&[1, 2, 3], &[&[4, 5], &[6]]);
        let alone = p.tree(&[7, 8], &[]);
        assert_eq!(slots, TreeSlots { completions: vec![0, 1], prompt_last: 2 });
        assert_eq!(alone, TreeSlots { completions: vec![], prompt_last: 7 });
        assert_eq!(p.ids, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p.positions, [0, 1, 2, 3, 4, 3, 0, 1], "branches continue from the prompt's end");
        assert_eq!(p.segments, [0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(p.branches, [0, 0, 0, 1, 1, 2, 0, 0]);
        assert_eq!(p.predictors, [2, 3, 2], "the prompt's last token predicts both branches' first token");
        assert_eq!((p.targets.clone(), p.owners.clone(), p.counts.clone()), (vec![4, 5, 6], vec![0, 0, 1], vec![2, 1]));
        assert_eq!(p.sequences, [vec![0, 1, 2, 3, 4], vec![0, 1, 2, 5]]);
        assert_eq!(p.chunk_lens, [8]);
    }

    #[test]
    fn a_pair_shares_its_prompt_only_when_both_have_the_same_one() {
        let e =
            |prompt: &[i64], completion: &[i64]| Encoded { prompt: prompt.to_vec(), completion: completion.to_vec() };
        let mut p = Packer::new();
        let shared = p.pair(&e(&[1, 2], &[3]), Some(&e(&[1, 2], &[4, 5])));
        assert_eq!(shared, PairSlots { chosen: 0, rejected: Some(1), prompt_last: 1 });
        let apart = p.pair(&e(&[6], &[7]), Some(&e(&[8, 9], &[10])));
        assert_eq!(apart, PairSlots { chosen: 2, rejected: Some(3), prompt_last: 5 });
        let alone = p.pair(&e(&[11], &[12]), None);
        assert_eq!(alone, PairSlots { chosen: 4, rejected: None, prompt_last: 10 });
        assert_eq!(p.segments, [0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3]);
    }

    #[test]
    fn chunks_hold_whole_trees_up_to_the_budget() {
        let mut p = Packer::new();
        let long = vec![1i64; CHUNK_TOKENS - 10];
        p.tree(&long, &[&[2; 5]]);
        p.tree(&[3; 4], &[&[4]]); // fits: 1019 + 5 <= 1024
        p.tree(&[5; 2], &[&[6]]); // does not: a new chunk
        p.tree(&vec![7; CHUNK_TOKENS + 1], &[]); // longer than the budget: a chunk of its own
        assert_eq!(p.chunk_lens, [CHUNK_TOKENS, 3, CHUNK_TOKENS + 1]);
        assert_eq!(p.chunk_lens.iter().sum::<usize>(), p.len());
    }

    #[test]
    fn unpack_restores_right_padded_sequences() {
        let states = Tensor::arange(12, (Kind::Float, Device::Cpu)).view([1, 6, 2]); // [1, N, D]
        let (padded, mask) = unpack(&states, &[&[0, 1, 2], &[0, 4]]);
        assert_eq!(
            Vec::<f32>::try_from(padded.reshape([-1])).unwrap(),
            [0., 1., 2., 3., 4., 5., 0., 1., 8., 9., 0., 1.]
        );
        assert_eq!(Vec::<i64>::try_from(mask.reshape([-1])).unwrap(), [1, 1, 1, 1, 1, 0]);
        assert_eq!(Vec::<f32>::try_from(gather_rows(&states, &[5, 0]).reshape([-1])).unwrap(), [10., 11., 0., 1.]);
    }
}
