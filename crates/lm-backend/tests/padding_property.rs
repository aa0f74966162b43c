//! Property: appending any amount of right padding, with any token ids in the padded slots,
//! leaves logits and hidden states at the real positions unchanged (up to float rounding),
//! with each attention implementation.

use std::path::Path;

use lm_backend::{AttentionImpl, CausalLm, HfCausalLm, HiddenRequest, LoadOptions};
use proptest::prelude::*;
use tch::{Kind, Tensor};

fn model(name: &str, attention: AttentionImpl) -> HfCausalLm {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    HfCausalLm::load(dir, LoadOptions::cpu_f32().with_attention(attention)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn right_padding_is_invisible(
        tokens in prop::collection::vec(4i64..640, 1..12),
        padding in prop::collection::vec(0i64..640, 1..8),
        gemma in any::<bool>(),
    ) {
        for attention in AttentionImpl::ALL {
            let m = model(if gemma { "gemma2" } else { "llama" }, attention);
            let n = tokens.len() as i64;
            let alone = Tensor::from_slice(&tokens).unsqueeze(0);
            let request = HiddenRequest::layers(0..=m.num_layers());
            let reference = m.forward(&alone, &alone.ones_like(), &request).unwrap();
            let padded: Vec<i64> = tokens.iter().chain(&padding).copied().collect();
            let ids = Tensor::from_slice(&padded).unsqueeze(0);
            let mask = Tensor::cat(&[alone.ones_like(), Tensor::zeros([1, padding.len() as i64], (Kind::Int64, tch::Device::Cpu))], 1);
            let out = m.forward(&ids, &mask, &request).unwrap();
            // A padded batch changes the matmul shapes, so BLAS may sum in another order: allow
            // f32 rounding relative to the values' scale. A leak through the mask moves values by
            // O(0.1), four orders of magnitude above this bound.
            let close = |a: &Tensor, b: &Tensor| {
                let diff = (a - b).abs().max().double_value(&[]);
                let scale = b.abs().max().double_value(&[]).max(1.0);
                (diff, diff <= 1e-5 * scale)
            };
            let (diff, ok) = close(&out.logits.narrow(1, 0, n), &reference.logits);
            prop_assert!(ok, "{}: logits differ by {}", attention, diff);
            for (l, h) in &out.hidden.layers {
                let (d, ok) = close(&h.narrow(1, 0, n), &reference.hidden.layers[l]);
                prop_assert!(ok, "{}: layer {} differs by {}", attention, l, d);
            }
        }
    }
}
