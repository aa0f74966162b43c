//! llama.cpp's q/k row permutation and its inverse, against an independent implementation:
//! a literal transcription of the NumPy `reshape(...).swapaxes(1, 2).reshape(...)` of
//! llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel.permute`) as a generic 4-D axis swap.

use lm_backend::gguf::{permute_rotary_rows, unpermute_rotary_rows};
use proptest::prelude::*;

/// Views `data` as a C-order array of shape `dims` and returns it with axes 1 and 2 swapped
/// (C order again), like NumPy's `swapaxes(1, 2)` followed by a copy.
fn swap_axes_1_2(data: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let [a, b, c, d] = dims;
    let mut out = Vec::with_capacity(data.len());
    for i in 0..a {
        for k in 0..c {
            for j in 0..b {
                for l in 0..d {
                    out.push(data[((i * b + j) * c + k) * d + l]);
                }
            }
        }
    }
    out
}

/// `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(w.shape)`.
fn numpy_permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    swap_axes_1_2(w, [n_head, 2, rows / n_head / 2, cols])
}

/// transformers' `reverse_permute_weights`: `w.reshape(n_head, dim, 2, cols).swapaxes(2, 1)`.
fn numpy_unpermute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    swap_axes_1_2(w, [n_head, rows / n_head / 2, 2, cols])
}

#[test]
fn small_known_case() {
    // 1 head of 4 rows, 1 column: HF rows [r0, r1, r2, r3] pair (r0, r2) and (r1, r3) under
    // rotate_half; llama.cpp stores the pairs adjacent: [r0, r2, r1, r3].
    let hf = [0.0, 1.0, 2.0, 3.0];
    assert_eq!(permute_rotary_rows("q", &hf, 4, 1, 1).unwrap(), vec![0.0, 2.0, 1.0, 3.0]);
    assert_eq!(unpermute_rotary_rows("q", &[0.0, 2.0, 1.0, 3.0], 4, 1, 1).unwrap(), hf.to_vec());
}

#[test]
fn shape_errors_name_the_tensor() {
    let err = unpermute_rotary_rows("blk.0.attn_q.weight", &[0.0; 12], 6, 2, 2).unwrap_err().to_string();
    assert!(err.contains("blk.0.attn_q.weight") && err.contains("heads"), "{err}");
    let err = unpermute_rotary_rows("k", &[0.0; 7], 4, 2, 1).unwrap_err().to_string();
    assert!(err.contains("\"k\"") && err.contains("[4, 2]"), "{err}");
    assert!(unpermute_rotary_rows("k", &[0.0; 8], 4, 2, 0).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matches_numpy_transcription_and_round_trips(
        n_head in 1usize..5, half in 1usize..5, cols in 1usize..6, seed in any::<u32>()
    ) {
        let rows = n_head * 2 * half;
        let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32) * 0.5 + seed as f32 * 1e-3).collect();
        let p = permute_rotary_rows("t", &w, rows, cols, n_head).unwrap();
        prop_assert_eq!(&p, &numpy_permute(&w, rows, cols, n_head));
        let back = unpermute_rotary_rows("t", &p, rows, cols, n_head).unwrap();
        prop_assert_eq!(&back, &w);
        prop_assert_eq!(&unpermute_rotary_rows("t", &w, rows, cols, n_head).unwrap(), &numpy_unpermute(&w, rows, cols, n_head));
    }
}
