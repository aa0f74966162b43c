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
    epoch: Option<(u64, Vec<usize>)>,
}

impl MicroBatches {
    /// Micro-batches of `batch_size` records, `grad_accum` per optimizer step, from `order`.
    pub fn new(order: DataOrder, batch_size: usize, grad_accum: usize) -> Self {
        Self { order, batch_size, grad_accum, epoch: None }
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
                self.epoch = Some((epoch, self.order.epoch(epoch)));
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
