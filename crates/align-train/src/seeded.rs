//! Seeded randomness and hashing whose output depends on the seed and input alone, never on
//! the version of a third-party crate: the data order of a run, the reference cache's
//! fingerprint and the testbed's generated world all rest on them.

/// A SplitMix64 stream (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014). Not cryptographic: used for shuffles and generated data.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A stream started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// An independent stream for one purpose (`label`, e.g. `"words/l3"`) of one seed, so that
    /// changing how one part of a computation draws does not change any other part.
    pub fn derive(seed: u64, label: &str) -> Self {
        // FNV-1a over the label, mixed with the seed through one SplitMix64 step.
        let mut h = Fnv1a::new();
        h.write_bytes(label.as_bytes());
        let mut mix = Self::new(seed ^ h.finish().rotate_left(17));
        Self::new(mix.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index in `0..n`, `n > 0` (Lemire's multiply-shift with rejection, so exactly
    /// uniform; a draw is rejected with probability below `n / 2^64`).
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0, "below(0)");
        let bound = n as u64;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(bound);
            if (m as u64) >= bound.wrapping_neg() % bound {
                return (m >> 64) as usize;
            }
        }
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal draw (Box–Muller transform).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: the logarithm stays finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Shuffles `items` in place (Fisher–Yates, from the last item down).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// The 64-bit FNV-1a hash (Fowler, Noll, Vo): a fast, stable fingerprint, not a
/// cryptographic one.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv1a {
    /// The hash of nothing (the FNV offset basis).
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    /// Feeds `bytes`, one at a time.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Feeds the 8 little-endian bytes of `x`.
    pub fn write_u64(&mut self, x: u64) {
        self.write_bytes(&x.to_le_bytes());
    }

    /// The hash of everything fed so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(mut r: SeededRng) -> Vec<u64> {
        (0..4).map(|_| r.next_u64()).collect()
    }

    #[test]
    fn streams_are_reproducible_and_labels_differ() {
        assert_eq!(draws(SeededRng::derive(7, "x")), draws(SeededRng::derive(7, "x")));
        assert_ne!(draws(SeededRng::derive(7, "x")), draws(SeededRng::derive(7, "y")));
    }

    #[test]
    fn splitmix64_matches_its_published_first_outputs() {
        // The reference C implementation seeded with 0 yields these first two values.
        assert_eq!(draws(SeededRng::new(0))[..2], [0xe220_a839_7b1d_cdaf, 0x6e78_9e6a_a1b9_65f4]);
    }

    #[test]
    fn fnv1a_matches_its_published_test_vectors() {
        let hash = |s: &str| {
            let mut h = Fnv1a::new();
            h.write_bytes(s.as_bytes());
            h.finish()
        };
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SeededRng::new(11);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[r.below(7)] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }

    #[test]
    fn normal_draws_have_unit_variance() {
        let mut r = SeededRng::new(3);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, var {var}");
    }
}
