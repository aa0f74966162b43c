"""The order in which `align train` visits its records, recomputed in Python so that the TRL
side of scripts/bench/dpo_vs_trl.sh trains on the same 4 pairs at every step.

A copy of crates/align-train/src/order.rs (`DataOrder`, `MicroBatches`) and the parts of
crates/align-train/src/seeded.rs it uses (SplitMix64, Lemire's bounded draw, Fisher-Yates).
If those change, this copy is wrong; dpo_vs_trl_summary.py detects it by checking that the
per-step token counts predicted from this order equal the `tokens` of `metrics.jsonl`.
"""

MASK = (1 << 64) - 1


class SplitMix64:
    """`SeededRng` of seeded.rs."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        """Uniform in 0..n (Lemire's multiply-shift with rejection)."""
        threshold = ((-n) & MASK) % n
        while True:
            m = self.next_u64() * n
            if (m & MASK) >= threshold:
                return m >> 64

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def epoch_order(n, seed, epoch):
    """`DataOrder::epoch`: the record indices of epoch `epoch`, in visiting order."""
    rng = SplitMix64(seed ^ (((epoch + 1) * 0x9E3779B97F4A7C15) & MASK))
    order = list(range(n))
    rng.shuffle(order)
    return order


def step_records(n, seed, batch_size, grad_accum, steps):
    """The record indices of each optimizer step (`MicroBatches`, micro-batches concatenated):
    the run reads epoch 0, epoch 1, ... in consecutive slices."""
    per_step = batch_size * grad_accum
    epochs = {}
    out = []
    for step in range(steps):
        indices = []
        for position in range(step * per_step, (step + 1) * per_step):
            epoch = position // n
            if epoch not in epochs:
                epochs[epoch] = epoch_order(n, seed, epoch)
            indices.append(epochs[epoch][position % n])
        out.append(indices)
    return out
