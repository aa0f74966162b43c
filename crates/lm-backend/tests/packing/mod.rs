//! Test support for packed batches: lays plain sequences and prompt-sharing trees out in one
//! row, and compares each sequence's packed values with the same sequence run alone.

// Shared by several test crates, each using a part.
#![allow(dead_code)]

use std::path::Path;

use lm_backend::{AttentionImpl, CausalLm, HfCausalLm, HiddenRequest, LoadOptions, PackedBatch};
use tch::{Kind, Tensor};

/// A fixture model, f32 on the CPU, with the default attention.
pub fn model(name: &str) -> HfCausalLm {
    model_with(name, AttentionImpl::default())
}

/// A fixture model, f32 on the CPU, with `attention`.
pub fn model_with(name: &str, attention: AttentionImpl) -> HfCausalLm {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    HfCausalLm::load(dir, LoadOptions::cpu_f32().with_attention(attention)).unwrap()
}

/// One segment of a packed row.
#[derive(Debug, Clone)]
pub enum Piece {
    /// A plain sequence: a prompt and its completion, or a prompt alone.
    Plain(Vec<i64>),
    /// A prompt (the trunk) shared by branches (chosen, rejected, ...).
    Tree { prompt: Vec<i64>, branches: Vec<Vec<i64>> },
}

/// A packed row and the ordinary sequences it holds.
pub struct Packing {
    pub batch: PackedBatch,
    /// Each ordinary sequence (a plain sequence, or a tree's trunk + one branch): its tokens
    /// as run alone and, token by token, its index in the row.
    pub sequences: Vec<(Vec<i64>, Vec<i64>)>,
}

/// Builds the row's four columns and the sequences' row indices, piece by piece.
#[derive(Default)]
struct Columns {
    ids: Vec<i64>,
    positions: Vec<i64>,
    segments: Vec<i64>,
    branches: Vec<i64>,
}

impl Columns {
    /// Appends `tokens` of `segment`/`branch` at positions from `first`; their row indices.
    fn push(&mut self, tokens: &[i64], segment: i64, branch: i64, first: i64) -> Vec<i64> {
        let start = self.ids.len() as i64;
        for (i, &t) in tokens.iter().enumerate() {
            self.ids.push(t);
            self.positions.push(first + i as i64);
            self.segments.push(segment);
            self.branches.push(branch);
        }
        (start..self.ids.len() as i64).collect()
    }
}

/// Packs `pieces` in order, piece `i` as segment `i`; `pieces_per_chunk` (summing to the
/// number of pieces) groups consecutive pieces into attention chunks.
pub fn pack(pieces: &[Piece], pieces_per_chunk: &[usize]) -> Packing {
    assert_eq!(pieces_per_chunk.iter().sum::<usize>(), pieces.len());
    let mut columns = Columns::default();
    let mut sequences = Vec::new();
    let mut piece_ends = Vec::new();
    for (segment, piece) in pieces.iter().enumerate() {
        let segment = segment as i64;
        match piece {
            Piece::Plain(tokens) => {
                let rows = columns.push(tokens, segment, 0, 0);
                sequences.push((tokens.clone(), rows));
            }
            Piece::Tree { prompt, branches } => {
                let trunk = columns.push(prompt, segment, 0, 0);
                for (b, branch) in branches.iter().enumerate() {
                    let rows = columns.push(branch, segment, b as i64 + 1, prompt.len() as i64);
                    sequences.push(([&prompt[..], branch].concat(), [&trunk[..], &rows].concat()));
                }
            }
        }
        piece_ends.push(columns.ids.len());
    }
    let mut chunk_lens = Vec::new();
    let (mut done, mut start) = (0, 0);
    for &n in pieces_per_chunk {
        done += n;
        chunk_lens.push(piece_ends[done - 1] - start);
        start = piece_ends[done - 1];
    }
    let row = |v: &[i64]| Tensor::from_slice(v).unsqueeze(0);
    let Columns { ids, positions, segments, branches } = columns;
    let batch = PackedBatch::new(row(&ids), row(&positions), row(&segments), row(&branches), chunk_lens).unwrap();
    Packing { batch, sequences }
}

/// Deterministic token ids in `4..640` (the fixtures' vocabulary without special tokens).
pub fn tokens(seed: u64, n: usize) -> Vec<i64> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            4 + ((state >> 33) % 636) as i64
        })
        .collect()
}

/// `|a - b|` relative to `b`'s scale: `max |a - b| / max(max |b|, 1)`, the bound the padding
/// tests use for f32 rounding of differently shaped products.
pub fn relative_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    let diff = (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[]);
    diff / b.abs().max().double_value(&[]).max(1.0)
}

/// Every hidden state (`0..=L` and the last pre-norm one).
pub fn all_states(m: &HfCausalLm) -> HiddenRequest {
    HiddenRequest::layers(0..=m.num_layers()).with_last_pre_norm()
}

/// The largest relative differences (logits, hidden states) between the packed pass over
/// `packing` (every token selected) and each of its sequences run alone through `forward`,
/// at each of the sequence's tokens.
pub fn packed_vs_alone(m: &HfCausalLm, packing: &Packing) -> (f64, f64) {
    let request = all_states(m);
    let every = packing.batch.input_ids().ones_like().to_kind(Kind::Bool);
    let packed = m.forward_packed_at(&packing.batch, &every, &request).unwrap();
    assert_eq!(packed.logits.size()[0], packing.batch.len() as i64);
    let (mut logits, mut states) = (0.0f64, 0.0f64);
    for (tokens, rows) in &packing.sequences {
        let ids = Tensor::from_slice(tokens).unsqueeze(0);
        let alone = m.forward(&ids, &ids.ones_like(), &request).unwrap();
        let rows = Tensor::from_slice(rows);
        logits = logits.max(relative_diff(&packed.logits.index_select(0, &rows), &alone.logits.get(0)));
        for (l, h) in &alone.hidden.layers {
            states = states.max(relative_diff(&packed.hidden.layers[l].index_select(1, &rows), h));
        }
        let pre = packed.hidden.last_pre_norm.as_ref().unwrap().index_select(1, &rows);
        states = states.max(relative_diff(&pre, alone.hidden.last_pre_norm.as_ref().unwrap()));
    }
    (logits, states)
}
