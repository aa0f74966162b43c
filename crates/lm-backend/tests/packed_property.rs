//! Property: any packing of plain sequences and prompt-sharing trees (any number of
//! segments and branches, any lengths, any grouping into attention chunks) gives every
//! sequence, at each of its tokens, the logits and hidden states it has alone (up to float
//! rounding), with each attention implementation.

mod packing;

use lm_backend::AttentionImpl;
use packing::{model_with, pack, packed_vs_alone, Piece};
use proptest::prelude::*;

/// A plain sequence of 1..10 tokens, or a tree: a prompt of 1..6 tokens and 1..=3 branches of
/// 1..6 tokens.
fn piece() -> impl Strategy<Value = Piece> {
    let ids = |n: std::ops::Range<usize>| prop::collection::vec(4i64..640, n);
    prop_oneof![
        ids(1..10).prop_map(Piece::Plain),
        (ids(1..6), prop::collection::vec(ids(1..6), 1..4))
            .prop_map(|(prompt, branches)| Piece::Tree { prompt, branches }),
    ]
}

/// Groups `n` pieces into chunks, cutting after piece `i` when `cuts[i]`.
fn chunking(n: usize, cuts: &[bool]) -> Vec<usize> {
    let mut chunks = vec![1];
    for &cut in &cuts[..n - 1] {
        if cut {
            chunks.push(0);
        }
        *chunks.last_mut().unwrap() += 1;
    }
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn packing_is_invisible(
        pieces in prop::collection::vec(piece(), 1..6),
        cuts in prop::collection::vec(any::<bool>(), 5),
    ) {
        let chunks = chunking(pieces.len(), &cuts);
        let packing = pack(&pieces, &chunks);
        for attention in AttentionImpl::ALL {
            let (logits, states) = packed_vs_alone(&model_with("llama", attention), &packing);
            // The bound of the padding property (f32 rounding relative to the values' scale); a
            // token seeing a key it should not moves values by O(0.1).
            prop_assert!(logits <= 1e-5, "{}: logits differ by {} (chunks {:?})", attention, logits, chunks);
            prop_assert!(states <= 1e-5, "{}: hidden states differ by {} (chunks {:?})", attention, states, chunks);
        }
    }
}
