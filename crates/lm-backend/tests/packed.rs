//! Packed (padding-free) passes equal separate passes: for every sequence of a packed row
//! (plain sequences, prompts alone, and trees `[prompt | chosen | rejected]`), its logits
//! and hidden states at each of its tokens equal those of the same sequence run alone, and
//! a loss over both branches of a tree has the gradient of the two separate passes. Each
//! test that runs a model runs it with each attention implementation (`sdpa` and `eager`).

mod packing;
mod required_only;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use lm_backend::{AttentionImpl, CausalLm, HfCausalLm, HiddenRequest, LayerAttention, LoadOptions, PackedBatch};
use packing::{model, model_with, pack, packed_vs_alone, relative_diff, tokens, Piece};
use required_only::RequiredOnly;
use tch::{Kind, Tensor};

/// f32 rounding of differently shaped products, relative to the values' scale (the bound of
/// the padding tests). A token seeing a key it should not moves values by O(0.1).
const TOLERANCE: f64 = 1e-5;

/// Trees with branches of different lengths, plain sequences, prompts alone, a single token.
fn mixed_pieces() -> Vec<Piece> {
    vec![
        Piece::Tree { prompt: tokens(1, 6), branches: vec![tokens(2, 7), tokens(3, 3)] },
        Piece::Plain(tokens(4, 9)),
        Piece::Plain(tokens(5, 4)),
        Piece::Tree { prompt: tokens(6, 3), branches: vec![tokens(7, 2), tokens(8, 8)] },
        Piece::Plain(tokens(9, 1)),
    ]
}

fn check_exact(name: &str) {
    for attention in AttentionImpl::ALL {
        check_exact_model(&format!("{name} ({attention})"), &model_with(name, attention));
    }
}

fn check_exact_model(name: &str, m: &HfCausalLm) {
    for chunks in [vec![5], vec![2, 1, 2], vec![1, 1, 1, 1, 1]] {
        let packing = pack(&mixed_pieces(), &chunks);
        let (logits, states) = packed_vs_alone(m, &packing);
        eprintln!("{name} chunks {chunks:?}: relative diff logits {logits:.2e}, hidden {states:.2e}");
        assert!(logits <= TOLERANCE, "{name} {chunks:?}: logits differ by {logits}");
        assert!(states <= TOLERANCE, "{name} {chunks:?}: hidden states differ by {states}");
    }
}

#[test]
fn packed_rows_equal_separate_passes_llama() {
    check_exact("llama");
}

#[test]
fn packed_rows_equal_separate_passes_qwen2() {
    check_exact("qwen2");
}

#[test]
fn packed_rows_equal_separate_passes_gemma2() {
    check_exact("gemma2");
}

/// Without the attention soft-cap, packed chunks take libtorch's fused attention (with
/// `sdpa`): here with Gemma2's sliding windows and attention scale.
#[test]
fn packed_rows_equal_separate_passes_gemma2_fused_attention() {
    for attention in AttentionImpl::ALL {
        let m = gemma2_with(attention, |config| config["attn_logit_softcapping"] = serde_json::Value::Null);
        assert_eq!(m.config().attn_logit_softcap, None);
        check_exact_model(&format!("gemma2 without attention soft-cap ({attention})"), &m);
    }
}

/// `sum_t log p(tokens[t + 1] | ..t)` of one sequence from its log-probabilities `[T, V]`.
fn sequence_logp(logp: &Tensor, tokens: &[i64]) -> Tensor {
    let n = tokens.len() as i64;
    let targets = Tensor::from_slice(&tokens[1..]).unsqueeze(1); // [T - 1, 1]
    logp.narrow(0, 0, n - 1).gather(1, &targets, false).sum(Kind::Float)
}

/// The parameters' gradients after `loss()`'s backward, from zero.
fn gradients(m: &HfCausalLm, loss: impl FnOnce() -> Tensor) -> Vec<Tensor> {
    for p in m.parameters().values() {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    loss().backward();
    m.parameters().values().map(|p| p.grad().copy()).collect()
}

/// The gradient of the summed sequence log-probabilities of a tree (both branches) and a
/// plain sequence: packed (prompt once) against a right-padded batch of the three
/// sequences (prompt twice).
fn check_gradients(name: &str, attention: AttentionImpl) -> f64 {
    let m = model_with(name, attention);
    let pieces = [
        Piece::Tree { prompt: tokens(11, 5), branches: vec![tokens(12, 4), tokens(13, 7)] },
        Piece::Plain(tokens(14, 6)),
    ];
    let packing = pack(&pieces, &[1, 1]);
    m.set_trainable(true);
    let packed = gradients(&m, || {
        let every = packing.batch.input_ids().ones_like().to_kind(Kind::Bool);
        let out = m.forward_packed_at(&packing.batch, &every, &HiddenRequest::none()).unwrap();
        let logp = out.logits.log_softmax(-1, Kind::Float); // [N, V]
        let per_sequence = packing
            .sequences
            .iter()
            .map(|(tokens, rows)| sequence_logp(&logp.index_select(0, &Tensor::from_slice(rows)), tokens));
        per_sequence.fold(Tensor::from(0f32), |a, b| a + b)
    });
    let padded = gradients(&m, || {
        let longest = packing.sequences.iter().map(|(t, _)| t.len()).max().unwrap();
        let row = |t: &[i64], fill: i64| [t.to_vec(), vec![fill; longest - t.len()]].concat();
        let ids: Vec<Tensor> = packing.sequences.iter().map(|(t, _)| Tensor::from_slice(&row(t, 0))).collect();
        let mask: Vec<Tensor> =
            packing.sequences.iter().map(|(t, _)| Tensor::from_slice(&row(&vec![1; t.len()], 0))).collect();
        let out = m.forward(&Tensor::stack(&ids, 0), &Tensor::stack(&mask, 0), &HiddenRequest::none()).unwrap();
        let logp = out.logits.log_softmax(-1, Kind::Float); // [S, T, V]
        let per_sequence =
            packing.sequences.iter().enumerate().map(|(s, (t, _))| sequence_logp(&logp.get(s as i64), t));
        per_sequence.fold(Tensor::from(0f32), |a, b| a + b)
    });
    m.set_trainable(false);
    assert_eq!(packed.len(), padded.len());
    let mut worst: f64 = 0.0;
    for ((name, _), (a, b)) in m.parameters().iter().zip(packed.iter().zip(&padded)) {
        let scale = b.abs().max().double_value(&[]).max(1e-6);
        let diff = (a - b).abs().max().double_value(&[]) / scale;
        assert!(diff <= TOLERANCE, "{name} ({attention}): gradient differs by {diff} of its scale {scale}");
        worst = worst.max(diff);
    }
    worst
}

#[test]
fn packed_tree_gradients_equal_the_separate_passes() {
    for name in ["llama", "gemma2"] {
        for attention in AttentionImpl::ALL {
            let worst = check_gradients(name, attention);
            eprintln!("{name} ({attention}): gradients, largest relative diff {worst:.2e}");
        }
    }
}

/// Gemma2's sliding window counts positions, not offsets in the row: the rejected branch
/// starts 7 tokens after the trunk's end in the row but right after it in positions, and
/// every sequence is longer than twice the window.
#[test]
fn gemma2_window_counts_positions_within_the_row() {
    for attention in AttentionImpl::ALL {
        gemma2_window_counts_positions_with(attention);
    }
}

fn gemma2_window_counts_positions_with(attention: AttentionImpl) {
    let m = model_with("gemma2", attention);
    let window = m.config().layers.iter().find_map(|l| match l {
        LayerAttention::Sliding { window } => Some(*window),
        LayerAttention::Full => None,
    });
    assert_eq!(window, Some(4), "the fixture's sliding window");
    let pieces = [
        Piece::Tree { prompt: tokens(21, 6), branches: vec![tokens(22, 7), tokens(23, 5)] },
        Piece::Plain(tokens(24, 11)),
    ];
    for chunks in [vec![2], vec![1, 1]] {
        let packing = pack(&pieces, &chunks);
        assert!(packing.sequences.iter().all(|(t, _)| t.len() > 8));
        let (logits, states) = packed_vs_alone(&m, &packing);
        eprintln!(
            "gemma2 window ({attention}), chunks {chunks:?}: relative diff logits {logits:.2e}, hidden {states:.2e}"
        );
        assert!(logits <= TOLERANCE && states <= TOLERANCE, "{logits} / {states}");
    }
    // The window matters for these sequences: without it the rejected sequence changes.
    let full = gemma2_with(attention, |c| {
        c["layer_types"] = serde_json::json!(["full_attention", "full_attention", "full_attention"])
    });
    let (rejected, _) = &pack(&pieces, &[2]).sequences[1];
    let ids = Tensor::from_slice(rejected).unsqueeze(0);
    let with = m.forward(&ids, &ids.ones_like(), &HiddenRequest::none()).unwrap().logits;
    let without = full.forward(&ids, &ids.ones_like(), &HiddenRequest::none()).unwrap().logits;
    assert!(relative_diff(&without, &with) > 1e-3);
}

/// The gemma2 fixture with its `config.json` edited, with `attention`.
fn gemma2_with(attention: AttentionImpl, edit: impl FnOnce(&mut serde_json::Value)) -> HfCausalLm {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma2");
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut config);
    let tensors = Tensor::read_safetensors(dir.join("model.safetensors")).unwrap().into_iter().collect();
    HfCausalLm::from_parameters(config, tensors, LoadOptions::cpu_f32().with_attention(attention)).unwrap()
}

/// Asking for hidden state 1 runs decoder layer 0 only: with the later layers' weights
/// broken (any product with them fails), the packed states-only pass still returns it,
/// equal to the full packed pass's, while a full pass fails.
#[test]
fn hidden_states_packed_stops_at_the_deepest_requested_layer() {
    for attention in AttentionImpl::ALL {
        hidden_states_packed_stops_with(attention);
    }
}

fn hidden_states_packed_stops_with(attention: AttentionImpl) {
    let m = model_with("gemma2", attention);
    let packing = pack(&mixed_pieces(), &[2, 3]);
    let every = packing.batch.input_ids().ones_like().to_kind(Kind::Bool);
    let full = m.forward_packed_at(&packing.batch, &every, &packing::all_states(&m)).unwrap();
    for (name, p) in m.parameters() {
        if name.starts_with("model.layers.1.") || name.starts_with("model.layers.2.") {
            let _ = p.shallow_clone().resize_([1]);
        }
    }
    let broken = catch_unwind(AssertUnwindSafe(|| m.forward_packed_at(&packing.batch, &every, &HiddenRequest::none())));
    assert!(broken.is_err(), "the later layers must be unusable");
    let early = m.hidden_states_packed(&packing.batch, &HiddenRequest::layers([1, 0])).unwrap();
    assert_eq!(early.layers.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    assert!(early.last_pre_norm.is_none());
    for (l, h) in &early.layers {
        assert_eq!(h.size(), [1, packing.batch.len() as i64, m.config().hidden_size as i64]);
        assert!(h.equal(&full.hidden.layers[l]), "layer {l}");
    }
}

/// The same hidden state 1 as each sequence alone through `forward`.
#[test]
fn hidden_states_packed_agree_with_forward() {
    for attention in AttentionImpl::ALL {
        let m = model_with("qwen2", attention);
        let packing = pack(&mixed_pieces(), &[3, 2]);
        let states = m.hidden_states_packed(&packing.batch, &HiddenRequest::layers([1])).unwrap();
        for (tokens, rows) in &packing.sequences {
            let ids = Tensor::from_slice(tokens).unsqueeze(0);
            let alone = m.forward(&ids, &ids.ones_like(), &HiddenRequest::layers([1])).unwrap();
            let packed = states.layers[&1].index_select(1, &Tensor::from_slice(rows));
            assert!(relative_diff(&packed, &alone.hidden.layers[&1]) <= TOLERANCE, "{attention}");
        }
    }
}

/// A batch of these rows, as `PackedBatch::new` makes (and checks) it.
fn raw(
    ids: &[i64],
    positions: &[i64],
    segments: &[i64],
    branches: &[i64],
    chunks: Vec<usize>,
) -> lm_backend::Result<PackedBatch> {
    let row = |v: &[i64]| Tensor::from_slice(v).unsqueeze(0);
    PackedBatch::new(row(ids), row(positions), row(segments), row(branches), chunks)
}

#[test]
fn bad_packed_inputs_are_named() {
    let m = model("llama");
    let none = HiddenRequest::none();
    // A bad batch is refused where it is made, or (ids outside the vocabulary) by the model.
    let err = |b: lm_backend::Result<PackedBatch>| {
        b.and_then(|b| m.hidden_states_packed(&b, &none).map(|_| ())).unwrap_err().to_string()
    };
    let (ids, zeros) = ([5i64, 6, 7], [0i64, 0, 0]);
    assert!(err(raw(&ids, &[0, 1], &zeros, &zeros, vec![3])).contains("position_ids"));
    assert!(err(raw(&ids, &[0, 1, 2], &zeros, &zeros, vec![2])).contains("chunk_lens"));
    assert!(err(raw(&ids, &[0, 1, 2], &[0, 0, 1], &zeros, vec![1, 2])).contains("chunk_lens"));
    assert!(err(raw(&[5, 6, 640], &[0, 1, 2], &zeros, &zeros, vec![3])).contains("input_ids"));
    let row = |v: &[i64]| Tensor::from_slice(v).unsqueeze(0);
    let wrong_kind = PackedBatch::new(row(&ids), row(&[0, 1, 2]), row(&zeros), row(&zeros).to_kind(Kind::Int), vec![3]);
    let msg = err(wrong_kind);
    assert!(msg.contains("branch_ids") && msg.contains("int64"), "{msg}");
    let flat = Tensor::from_slice(&ids);
    let new = PackedBatch::new(flat.copy(), flat.zeros_like(), flat.zeros_like(), flat.zeros_like(), vec![3]);
    assert!(new.map(|_| ()).unwrap_err().to_string().contains("input_ids"));
    // Through the model: the positions' shape and the hidden-state indices.
    let ok = raw(&ids, &[0, 1, 2], &zeros, &zeros, vec![3]).unwrap();
    let wrong = Tensor::ones([1, 2], (Kind::Bool, tch::Device::Cpu));
    let msg = m.forward_packed_at(&ok, &wrong, &none).map(|_| ()).unwrap_err().to_string();
    assert!(msg.contains("positions"), "{msg}");
    let msg = m.hidden_states_packed(&ok, &HiddenRequest::layers([4])).map(|_| ()).unwrap_err().to_string();
    assert!(msg.contains("hidden.layers"), "{msg}");
    // No token selected: an empty [0, V] result.
    let nothing = Tensor::zeros([1, 3], (Kind::Bool, tch::Device::Cpu));
    let out = m.forward_packed_at(&ok, &nothing, &none).unwrap();
    assert_eq!(out.logits.size(), [0, m.config().vocab_size as i64]);
}

#[test]
fn models_without_packed_passes_say_so() {
    let m = model("llama");
    let packing = pack(&[Piece::Plain(tokens(31, 3))], &[1]);
    let every = packing.batch.input_ids().ones_like();
    let err = RequiredOnly(&m).forward_packed_at(&packing.batch, &every, &HiddenRequest::none()).unwrap_err();
    assert!(err.to_string().contains("does not support packed batches"), "{err}");
    let err = RequiredOnly(&m).hidden_states_packed(&packing.batch, &HiddenRequest::none()).unwrap_err();
    assert!(err.to_string().contains("packed"), "{err}");
}
