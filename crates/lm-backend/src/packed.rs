//! Padding-free ("packed") batches: several sequences laid end to end in one row `[1, N]`,
//! each token carrying its own position and the set of tokens it may attend to.
//!
//! Two shapes of content share a row:
//!
//! - **plain sequences** (a prompt and its completion, or a prompt alone): branch 0,
//!   positions `0..T` restarting for each;
//! - **trees** sharing a prompt, `[prompt | chosen | rejected]`: the prompt is the trunk
//!   (branch 0), chosen branch 1, rejected branch 2. Every branch's positions continue from
//!   the trunk's end (chosen and rejected both start at the prompt length `p`), and a branch
//!   sees the trunk and itself, never another branch. The prompt is then computed once per
//!   pair, and its states are exactly those of each separate `prompt + branch` sequence.
//!
//! # Visibility rule
//!
//! Query token `q` may attend to key token `k` iff
//!
//! - they are in the same attention chunk ([`PackedBatch::chunk_lens`]),
//! - `segment(k) == segment(q)`,
//! - `branch(k) == 0 || branch(k) == branch(q)`,
//! - `pos(k) <= pos(q)`, and
//! - in a sliding-window layer of window `w`, `pos(q) - pos(k) < w`.
//!
//! With one segment, branch 0 and positions `0..T` this is exactly the causal mask of an
//! unpadded row, so a packed sequence computes what it computes alone (up to float rounding
//! of differently shaped products). Chunks bound the cost of attention: scores are computed
//! per chunk, `[n_c, n_c]` each, instead of `[N, N]`.
//!
//! ```
//! use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, LoadOptions, PackedBatch};
//! use tch::Tensor;
//!
//! let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
//! let model = HfCausalLm::load(format!("{fixtures}/llama"), LoadOptions::cpu_f32())?;
//! // A tree (prompt [5, 6], chosen [7, 8], rejected [9]) and a plain sequence [10, 11, 12].
//! let row = |v: &[i64]| Tensor::from_slice(v).unsqueeze(0); // [1, N]
//! let batch = PackedBatch::new(
//!     row(&[5, 6, 7, 8, 9, 10, 11, 12]),
//!     row(&[0, 1, 2, 3, 2, 0, 1, 2]), // positions
//!     row(&[0, 0, 0, 0, 0, 1, 1, 1]), // segments
//!     row(&[0, 0, 1, 1, 2, 0, 0, 0]), // branches
//!     vec![5, 3],                     // two attention chunks
//! )?;
//! let every = batch.input_ids().ones_like().to_kind(tch::Kind::Bool);
//! let out = model.forward_packed_at(&batch, &every, &HiddenRequest::none())?;
//! assert_eq!(out.logits.size(), [8, model.config().vocab_size as i64]);
//! # Ok::<(), lm_backend::LmError>(())
//! ```

use tch::{Device, Kind, Tensor};

use crate::error::{LmError, Result};

/// Sequences packed into one row: `[1, N]` tokens, no padding.
///
/// See the [module documentation](self) for the visibility rule the model applies. The
/// fields are read-only: [`PackedBatch::new`] checks them once, so a model need not check
/// them again on every pass.
#[derive(Debug)]
pub struct PackedBatch {
    input_ids: Tensor,
    position_ids: Tensor,
    segment_ids: Tensor,
    branch_ids: Tensor,
    chunk_lens: Vec<usize>,
}

impl PackedBatch {
    /// A packed batch, after checking that the four tensors are `[1, N]` int64 with `N >= 1`
    /// on one device, that positions, segments and branches are `>= 0`, and that
    /// `chunk_lens` has no zero entry, sums to `N` and splits no segment.
    pub fn new(
        input_ids: Tensor,
        position_ids: Tensor,
        segment_ids: Tensor,
        branch_ids: Tensor,
        chunk_lens: Vec<usize>,
    ) -> Result<Self> {
        let batch = PackedBatch { input_ids, position_ids, segment_ids, branch_ids, chunk_lens };
        batch.check()?;
        Ok(batch)
    }

    /// `[1, N]` int64: the token ids.
    pub fn input_ids(&self) -> &Tensor {
        &self.input_ids
    }

    /// `[1, N]` int64 `>= 0`: the rotary position of each token.
    pub fn position_ids(&self) -> &Tensor {
        &self.position_ids
    }

    /// `[1, N]` int64 `>= 0`: which sequence or tree each token belongs to.
    pub fn segment_ids(&self) -> &Tensor {
        &self.segment_ids
    }

    /// `[1, N]` int64 `>= 0`: 0 = trunk of a tree (or a plain sequence), `b > 0` = branch `b`
    /// of its tree.
    pub fn branch_ids(&self) -> &Tensor {
        &self.branch_ids
    }

    /// Attention chunks: lengths of consecutive token ranges summing to `N`, each made of
    /// whole segments (no segment has tokens in two chunks).
    pub fn chunk_lens(&self) -> &[usize] {
        &self.chunk_lens
    }

    /// The number of tokens `N`.
    #[allow(clippy::len_without_is_empty)] // a packed batch holds at least one token
    pub fn len(&self) -> usize {
        self.input_ids.size().get(1).copied().unwrap_or(0) as usize
    }

    /// The chunks as `(start, length)` token ranges of the row.
    pub(crate) fn chunk_ranges(&self) -> Vec<(i64, i64)> {
        let mut start = 0;
        self.chunk_lens
            .iter()
            .map(|&n| {
                let range = (start, n as i64);
                start += n as i64;
                range
            })
            .collect()
    }

    /// The checks of [`PackedBatch::new`].
    fn check(&self) -> Result<()> {
        let size = self.input_ids.size();
        if size.len() != 2 || size[0] != 1 || size[1] == 0 {
            return Err(LmError::input("input_ids", format!("expected shape [1, N] with N > 0, got {size:?}")));
        }
        let device = self.input_ids.device();
        for (name, t) in self.tensors() {
            if t.size() != size {
                return Err(LmError::input(name, format!("shape {:?} differs from input_ids {size:?}", t.size())));
            }
            if t.kind() != Kind::Int64 {
                return Err(LmError::input(name, format!("expected int64, got {:?}", t.kind())));
            }
            if t.device() != device {
                return Err(LmError::input(name, format!("on {:?}, input_ids are on {device:?}", t.device())));
            }
        }
        for (name, t) in &self.tensors()[1..] {
            let lowest = t.min().int64_value(&[]);
            if lowest < 0 {
                return Err(LmError::input(name, format!("expected values >= 0, found {lowest}")));
            }
        }
        self.check_chunks(size[1] as usize)
    }

    /// The four `[1, N]` tensors with their names.
    fn tensors(&self) -> [(&'static str, &Tensor); 4] {
        [
            ("input_ids", &self.input_ids),
            ("position_ids", &self.position_ids),
            ("segment_ids", &self.segment_ids),
            ("branch_ids", &self.branch_ids),
        ]
    }

    /// `chunk_lens`: no zero entry, sum `n`, no segment in two chunks.
    fn check_chunks(&self, n: usize) -> Result<()> {
        if let Some(i) = self.chunk_lens.iter().position(|&c| c == 0) {
            return Err(LmError::input("chunk_lens", format!("entry {i} is 0; every chunk needs a token")));
        }
        let total: usize = self.chunk_lens.iter().sum();
        if total != n {
            let msg = format!("{:?} sums to {total}, the batch has N = {n} tokens", self.chunk_lens);
            return Err(LmError::input("chunk_lens", msg));
        }
        let segments = Vec::<i64>::try_from(self.segment_ids.reshape([-1]).to_device(Device::Cpu))?;
        let mut chunk_of = std::collections::BTreeMap::new();
        for (chunk, (start, len)) in self.chunk_ranges().into_iter().enumerate() {
            for &segment in &segments[start as usize..(start + len) as usize] {
                let first = *chunk_of.entry(segment).or_insert(chunk);
                if first != chunk {
                    let msg = format!(
                        "segment {segment} has tokens in chunks {first} and {chunk}; a chunk holds whole segments"
                    );
                    return Err(LmError::input("chunk_lens", msg));
                }
            }
        }
        Ok(())
    }
}

/// The visibility of one chunk's tokens to each other, `[1, 1, n, n]` bool (query, key), from
/// their positions, segments and branches `[1, n]` each (the rule of the module
/// documentation), for a layer with sliding `window` or full attention (`None`).
pub(crate) fn chunk_visibility(position: &Tensor, segment: &Tensor, branch: &Tensor, window: Option<usize>) -> Tensor {
    let (qp, kp) = (position.unsqueeze(2), position.unsqueeze(1)); // [1, n, 1], [1, 1, n]
    let same_segment = segment.unsqueeze(2).eq_tensor(&segment.unsqueeze(1));
    let (qb, kb) = (branch.unsqueeze(2), branch.unsqueeze(1));
    let same_branch = kb.eq(0).logical_or(&kb.eq_tensor(&qb));
    let mut allowed = same_segment.logical_and(&same_branch).logical_and(&kp.le_tensor(&qp)); // [1, n, n]
    if let Some(w) = window {
        allowed = allowed.logical_and(&(&qp - &kp).lt(w as i64));
    }
    allowed.unsqueeze(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &[i64]) -> Tensor {
        Tensor::from_slice(v).unsqueeze(0)
    }

    fn allowed(position: &[i64], segment: &[i64], branch: &[i64], window: Option<usize>) -> Vec<Vec<bool>> {
        let m = chunk_visibility(&row(position), &row(segment), &row(branch), window).squeeze();
        let n = position.len() as i64;
        (0..n).map(|q| (0..n).map(|k| m.int64_value(&[q, k]) != 0).collect()).collect()
    }

    #[test]
    fn one_plain_sequence_is_causal() {
        let m = allowed(&[0, 1, 2, 3], &[0; 4], &[0; 4], None);
        for (q, row) in m.iter().enumerate() {
            for (k, &a) in row.iter().enumerate() {
                assert_eq!(a, k <= q, "q {q} k {k}");
            }
        }
    }

    #[test]
    fn branches_see_the_trunk_and_themselves_only() {
        // [prompt 0 1 | chosen 2 3 | rejected 2] then a plain sequence [0 1].
        let m = allowed(&[0, 1, 2, 3, 2, 0, 1], &[0, 0, 0, 0, 0, 1, 1], &[0, 0, 1, 1, 2, 0, 0], None);
        assert_eq!(m[4], [true, true, false, false, true, false, false]); // rejected
        assert_eq!(m[3], [true, true, true, true, false, false, false]); // chosen, second token
        assert_eq!(m[1], [true, true, false, false, false, false, false]); // trunk
        assert_eq!(m[6], [false, false, false, false, false, true, true]); // other segment
    }

    #[test]
    fn the_window_counts_positions() {
        // Rejected (position 3) sits at offset 5, but its distance to the trunk is positional.
        let m = allowed(&[0, 1, 2, 3, 4, 3], &[0; 6], &[0, 0, 0, 1, 1, 2], Some(2));
        assert_eq!(m[5], [false, false, true, false, false, true]);
        assert_eq!(m[4], [false, false, false, true, true, false]);
    }

    #[test]
    fn new_checks_its_inputs() {
        let ids = row(&[1, 2, 3]);
        let make = |p: Tensor, s: Tensor, b: Tensor, c: Vec<usize>| {
            PackedBatch::new(ids.copy(), p, s, b, c).map(|_| ()).unwrap_err().to_string()
        };
        let zeros = || row(&[0, 0, 0]);
        assert!(make(row(&[0, 1]), zeros(), zeros(), vec![3]).contains("position_ids"));
        assert!(make(zeros(), zeros().to_kind(Kind::Int), zeros(), vec![3]).contains("segment_ids"));
        assert!(make(zeros(), zeros(), row(&[0, -1, 0]), vec![3]).contains("branch_ids"));
        assert!(make(zeros(), zeros(), zeros(), vec![2]).contains("chunk_lens"));
        assert!(make(zeros(), zeros(), zeros(), vec![3, 0]).contains("chunk_lens"));
        assert!(make(zeros(), row(&[0, 0, 1]), zeros(), vec![1, 2]).contains("segment 0"));
        let ok = PackedBatch::new(ids.copy(), zeros(), row(&[0, 0, 1]), zeros(), vec![2, 1]).unwrap();
        assert_eq!((ok.len(), ok.chunk_ranges()), (3, vec![(0, 2), (2, 1)]));
        let empty = Tensor::zeros([1, 0], (Kind::Int64, Device::Cpu));
        let err = PackedBatch::new(empty.copy(), empty.copy(), empty.copy(), empty, vec![]).unwrap_err();
        assert!(err.to_string().contains("input_ids"), "{err}");
    }
}
