//! Data order: a seeded shuffle per epoch, so a resumed run visits records in the same order
//! as an uninterrupted one.

use crate::seeded::SeededRng;

/// The order in which a run visits its records: epoch `e` is a permutation of `0..n` drawn
/// from `(seed, e)` alone, so any position of any epoch can be recomputed on resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOrder {
    /// Number of records.
    pub n: usize,
    /// The run's seed.
    pub seed: u64,
}

impl DataOrder {
    /// The order of `n` records under `seed`.
    pub fn new(n: usize, seed: u64) -> Self {
        Self { n, seed }
    }

    /// The record indices of epoch `epoch`, in visiting order (a Fisher–Yates shuffle driven by
    /// [`SeededRng`] seeded from `seed` and `epoch`).
    pub fn epoch(&self, epoch: u64) -> Vec<usize> {
        let mut rng = SeededRng::new(self.seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut order: Vec<usize> = (0..self.n).collect();
        rng.shuffle(&mut order);
        order
    }
}

/// The records of each micro-batch of a run: the run reads the endless sequence epoch 0,
/// epoch 1, ... of [`DataOrder`] in consecutive micro-batches of `batch_size`. Each epoch's
/// order is computed once, when the run first reaches it, not once per record.
#[derive(Debug, Clone)]
pub struct MicroBatches {
    order: DataOrder,
    batch_size: usize,
    grad_accum: usize,
    /// Record lengths, when micro-batches group records of similar length.
    lengths: Option<Vec<usize>>,
    epoch: Option<(u64, Vec<usize>)>,
}

/// Micro-batches per window of [`MicroBatches::group_by_length`].
pub const LENGTH_WINDOW_BATCHES: usize = 50;

impl MicroBatches {
    /// Micro-batches of `batch_size` records, `grad_accum` per optimizer step, from `order`.
    pub fn new(order: DataOrder, batch_size: usize, grad_accum: usize) -> Self {
        Self { order, batch_size, grad_accum, lengths: None, epoch: None }
    }

    /// Groups records of similar length (`lengths[i]` for record `i`) into micro-batches:
    /// each epoch's order is cut into windows of [`LENGTH_WINDOW_BATCHES`] micro-batches and
    /// each window is sorted by length, longest first. The order stays a function of the seed
    /// and the epoch, so a resumed run sees the same batches.
    pub fn group_by_length(mut self, lengths: Vec<usize>) -> Self {
        assert_eq!(lengths.len(), self.order.n, "one length per record");
        self.lengths = Some(lengths);
        self.epoch = None;
        self
    }

    /// The visiting order of epoch `epoch`, grouped by length when asked.
    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order = self.order.epoch(epoch);
        if let Some(lengths) = &self.lengths {
            for window in order.chunks_mut(LENGTH_WINDOW_BATCHES * self.batch_size) {
                window.sort_by_key(|&i| std::cmp::Reverse(lengths[i])); // stable: ties keep the seeded order
            }
        }
        order
    }

    /// The record indices of micro-batch `micro` (`< grad_accum`) of optimizer step `step`
    /// (0-based). A micro-batch that crosses an epoch boundary takes the end of one epoch and
    /// the start of the next.
    pub fn indices(&mut self, step: u64, micro: usize) -> Vec<usize> {
        let n = self.order.n;
        let first = (step as usize * self.grad_accum + micro) * self.batch_size;
        let mut out = Vec::with_capacity(self.batch_size);
        for position in first..first + self.batch_size {
            let epoch = (position / n) as u64;
            if self.epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
                self.epoch = Some((epoch, self.epoch_order(epoch)));
            }
            let (_, order) = self.epoch.as_ref().expect("set above");
            out.push(order[position % n]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_micro_batches_hold_similar_lengths_and_cover_each_epoch() {
        let n = 1000;
        let lengths: Vec<usize> = (0..n).map(|i| (i * 7919) % 613).collect();
        let order = DataOrder::new(n, 5);
        let mut grouped = MicroBatches::new(order, 4, 1).group_by_length(lengths.clone());
        let mut plain = MicroBatches::new(order, 4, 1);
        let spread = |b: &[usize]| {
            let l: Vec<usize> = b.iter().map(|&i| lengths[i]).collect();
            l.iter().max().unwrap() - l.iter().min().unwrap()
        };
        let (mut seen, mut grouped_spread, mut plain_spread) = (Vec::new(), 0, 0);
        for step in 0..250 {
            let b = grouped.indices(step, 0);
            grouped_spread += spread(&b);
            plain_spread += spread(&plain.indices(step, 0));
            seen.extend(b);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>(), "one epoch visits every record once");
        assert!(grouped_spread * 10 < plain_spread, "grouped {grouped_spread} vs plain {plain_spread}");
        let again = MicroBatches::new(order, 4, 1).group_by_length(lengths).indices(123, 0);
        assert_eq!(again, grouped.indices(123, 0), "reproducible for resume");
    }

    #[test]
    fn micro_batches_read_the_epochs_in_sequence() {
        let order = DataOrder::new(5, 3);
        let mut batches = MicroBatches::new(order, 2, 3);
        let mut seen = Vec::new();
        for step in 0..4 {
            for micro in 0..3 {
                seen.extend(batches.indices(step, micro));
            }
        }
        let expected: Vec<usize> = (0..24).map(|p| order.epoch((p / 5) as u64)[p % 5]).collect();
        assert_eq!(seen, expected);
        assert_eq!(batches.indices(1, 1), expected[8..10], "any step can be asked again (resume)");
    }

    #[test]
    fn each_epoch_is_a_permutation_and_reproducible() {
        let order = DataOrder::new(100, 7);
        for e in 0..3 {
            let mut p = order.epoch(e);
            assert_eq!(p, order.epoch(e), "same (seed, epoch), same order");
            p.sort_unstable();
            assert_eq!(p, (0..100).collect::<Vec<_>>());
        }
        assert_ne!(order.epoch(0), order.epoch(1), "epochs differ");
        assert_ne!(order.epoch(0), DataOrder::new(100, 8).epoch(0), "seeds differ");
        assert_ne!(order.epoch(0), (0..100).collect::<Vec<_>>(), "actually shuffled");
    }

    #[test]
    fn positions_are_roughly_uniform() {
        // Over many seeds, record 0 lands in each of 4 quarters about equally often.
        let mut quarters = [0usize; 4];
        for seed in 0..4000 {
            let pos = DataOrder::new(8, seed).epoch(0).iter().position(|&i| i == 0).unwrap();
            quarters[pos / 2] += 1;
        }
        assert!(quarters.iter().all(|&q| (800..1200).contains(&q)), "{quarters:?}");
    }

    #[test]
    fn tiny_sets() {
        assert_eq!(DataOrder::new(0, 1).epoch(0), Vec::<usize>::new());
        assert_eq!(DataOrder::new(1, 1).epoch(5), vec![0]);
    }
}
