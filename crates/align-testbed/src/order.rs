//! Word orders: each language rearranges the canonical (gloss-order) word sequence of a
//! sentence with its own fixed permutation, so translation is word-aligned but not monotone.

use serde::Serialize;

/// A rule that rearranges a sentence's canonical word sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// Canonical order: `w0 w1 w2 w3 w4`.
    Identity,
    /// Reversed: `w4 w3 w2 w1 w0`.
    Reversed,
    /// Rotated left by two (for sentences of more than two words): `w2 w3 w4 w0 w1`.
    RotateTwo,
    /// Neighbours swapped: `w1 w0 w3 w2 w4`.
    PairSwap,
    /// The first word moved to the end (a verb-final order for imperatives): `w1 w2 w3 w4 w0`.
    FirstToEnd,
    /// Reversed, then neighbours swapped: `w3 w4 w1 w2 w0`.
    ReversedPairSwap,
}

impl WordOrder {
    /// The orders in the order the world assigns them to `l0`, `l1`, ….
    pub const ALL: [WordOrder; 6] = [
        WordOrder::Identity,
        WordOrder::Reversed,
        WordOrder::RotateTwo,
        WordOrder::PairSwap,
        WordOrder::FirstToEnd,
        WordOrder::ReversedPairSwap,
    ];

    /// The permutation for a sentence of `n` words: output position `i` holds canonical word
    /// `permutation(n)[i]`. This is the word alignment between a sentence and its gloss.
    pub fn permutation(self, n: usize) -> Vec<usize> {
        let canonical: Vec<usize> = (0..n).collect();
        match self {
            WordOrder::Identity => canonical,
            WordOrder::Reversed => canonical.into_iter().rev().collect(),
            WordOrder::RotateTwo => {
                let k = if n > 2 { 2 } else { 0 };
                (0..n).map(|i| (i + k) % n).collect()
            }
            WordOrder::PairSwap => pair_swap(canonical),
            WordOrder::FirstToEnd => (0..n).map(|i| (i + 1) % n).collect(),
            WordOrder::ReversedPairSwap => pair_swap(canonical.into_iter().rev().collect()),
        }
    }

    /// Rearranges `words` (given in canonical order).
    pub fn apply<T: Clone>(self, words: &[T]) -> Vec<T> {
        self.permutation(words.len()).into_iter().map(|i| words[i].clone()).collect()
    }
}

fn pair_swap(mut v: Vec<usize>) -> Vec<usize> {
    for pair in v.chunks_mut(2) {
        pair.reverse();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_order_is_a_permutation_and_the_five_word_examples_hold() {
        for order in WordOrder::ALL {
            for n in 0..12 {
                let mut p = order.permutation(n);
                p.sort_unstable();
                assert_eq!(p, (0..n).collect::<Vec<_>>(), "{order:?} n={n}");
            }
        }
        let w = ["w0", "w1", "w2", "w3", "w4"];
        assert_eq!(WordOrder::Reversed.apply(&w), ["w4", "w3", "w2", "w1", "w0"]);
        assert_eq!(WordOrder::RotateTwo.apply(&w), ["w2", "w3", "w4", "w0", "w1"]);
        assert_eq!(WordOrder::PairSwap.apply(&w), ["w1", "w0", "w3", "w2", "w4"]);
        assert_eq!(WordOrder::FirstToEnd.apply(&w), ["w1", "w2", "w3", "w4", "w0"]);
        assert_eq!(WordOrder::ReversedPairSwap.apply(&w), ["w3", "w4", "w1", "w2", "w0"]);
    }
}
