//! The two attention implementations (`sdpa`: libtorch's fused kernel, `eager`: separate
//! ops) agree on every kind of input the model takes: right- and left-padded batches with a
//! row of padding only, unpadded batches (the fused kernel's mask-free causal path), sliding
//! windows, packed rows and cached generation. Values at real positions and parameter
//! gradients agree within f32 rounding (1e-5 of their scale); every output and gradient is
//! finite, those of the padding-only row included.

mod packing;

use std::collections::BTreeMap;
use std::path::Path;

use lm_backend::{AttentionImpl, CausalLm, GenerationConfig, HfCausalLm, HiddenRequest, LoadOptions, PackedBatch};
use packing::{pack, relative_diff, tokens, Piece};
use tch::{Kind, Tensor};

const TOLERANCE: f64 = 1e-5;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The fixture `name` with `attention`; `"gemma2-nocap"` is Gemma2 without the attention
/// soft-cap, so that its sliding-window layers take the fused kernel under `sdpa`.
fn load(name: &str, attention: AttentionImpl) -> HfCausalLm {
    let options = LoadOptions::cpu_f32().with_attention(attention);
    if name != "gemma2-nocap" {
        return HfCausalLm::load(fixture(name), options).unwrap();
    }
    let dir = fixture("gemma2");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    config["attn_logit_softcapping"] = serde_json::Value::Null;
    let tensors = Tensor::read_safetensors(dir.join("model.safetensors")).unwrap().into_iter().collect();
    HfCausalLm::from_parameters(config, tensors, options).unwrap()
}

const MODELS: [&str; 4] = ["llama", "qwen2", "gemma2", "gemma2-nocap"];

/// The pair (sdpa, eager) of one fixture, trainable.
fn pair(name: &str) -> (HfCausalLm, HfCausalLm) {
    let (sdpa, eager) = (load(name, AttentionImpl::Sdpa), load(name, AttentionImpl::Eager));
    assert_eq!(sdpa.load_options().attention, AttentionImpl::Sdpa);
    assert_eq!(eager.load_options().attention, AttentionImpl::Eager);
    sdpa.set_trainable(true);
    eager.set_trainable(true);
    (sdpa, eager)
}

fn all_states(m: &HfCausalLm) -> HiddenRequest {
    HiddenRequest::layers(0..=m.num_layers()).with_last_pre_norm()
}

/// Deterministic weights in [-1, 1) of `shape` (not libtorch's global generator, which the
/// tests running at once share).
fn weights(shape: &[i64], seed: u64) -> Tensor {
    let n: i64 = shape.iter().product();
    let values: Vec<f32> = tokens(seed, n as usize).iter().map(|&t| (t as f32 - 322.0) / 318.0).collect();
    Tensor::from_slice(&values).view(shape)
}

fn zero_grads(m: &HfCausalLm) {
    for p in m.parameters().values() {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

fn grads(m: &HfCausalLm) -> BTreeMap<String, Tensor> {
    m.parameters().iter().map(|(n, p)| (n.clone(), p.grad().copy())).collect()
}

/// `max |a - b|` relative to `b`'s largest entry (a gradient's own scale).
fn grad_diff(a: &Tensor, b: &Tensor) -> f64 {
    let scale = b.abs().max().double_value(&[]).max(1e-6);
    (a - b).abs().max().double_value(&[]) / scale
}

fn all_finite(t: &Tensor) -> bool {
    t.isfinite().all().int64_value(&[]) == 1
}

/// `max |a - b|` at the real positions (`mask` `[B, T]`) of `[B, T, X]` tensors, relative to
/// `b`'s scale there.
fn diff_at_real(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    let m = mask.ne(0).unsqueeze(-1).expand_as(a);
    relative_diff(&a.masked_select(&m), &b.masked_select(&m))
}

/// Forward values, gradients of a loss over the real positions and gradients of a loss over
/// every position (padding included) agree between the implementations; all are finite.
fn check_padded(name: &str, ids: &Tensor, mask: &Tensor, what: &str) {
    let (sdpa, eager) = pair(name);
    let run = |m: &HfCausalLm, every_position: bool| {
        zero_grads(m);
        let out = m.forward(ids, mask, &all_states(m)).unwrap();
        let w = weights(&out.logits.size(), 3);
        let keep = if every_position { mask.ones_like() } else { mask.shallow_clone() };
        let loss = (&out.logits * w * keep.unsqueeze(-1)).sum(Kind::Float);
        loss.backward();
        (out, grads(m))
    };
    let ((s, s_grads), (e, e_grads)) = (run(&sdpa, false), run(&eager, false));
    let label = format!("{name}, {what}");
    assert!(all_finite(&s.logits) && all_finite(&e.logits), "{label}: non-finite logits");
    let d = diff_at_real(&s.logits, &e.logits, mask);
    assert!(d <= TOLERANCE, "{label}: logits differ by {d}");
    for (l, h) in &e.hidden.layers {
        assert!(all_finite(&s.hidden.layers[l]), "{label}: non-finite state {l}");
        let d = diff_at_real(&s.hidden.layers[l], h, mask);
        assert!(d <= TOLERANCE, "{label}: hidden state {l} differs by {d}");
    }
    let pre = diff_at_real(s.hidden.last_pre_norm.as_ref().unwrap(), e.hidden.last_pre_norm.as_ref().unwrap(), mask);
    assert!(pre <= TOLERANCE, "{label}: last pre-norm state differs by {pre}");
    let mut worst: f64 = 0.0;
    for (n, g) in &e_grads {
        assert!(all_finite(&s_grads[n]), "{label}: non-finite gradient of {n}");
        let d = grad_diff(&s_grads[n], g);
        assert!(d <= TOLERANCE, "{label}: gradient of {n} differs by {d}");
        worst = worst.max(d);
    }
    // A loss reading the padding positions too: gradients stay finite in both.
    let (_, s_all) = run(&sdpa, true);
    let (_, e_all) = run(&eager, true);
    for (n, g) in &s_all {
        assert!(all_finite(g) && all_finite(&e_all[n]), "{label}: non-finite gradient of {n} through padding");
    }
    eprintln!("{label}: logits {d:.2e}, gradients {worst:.2e}");
}

/// The fixture batch (right padding), plus a row of padding only.
fn padded_batch(name: &str) -> (Tensor, Tensor) {
    let file = if name == "gemma2-nocap" { "gemma2" } else { name };
    let e: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture(file).join("expected.safetensors")).unwrap().into_iter().collect();
    let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
    let t = ids.size()[1];
    let empty_ids = Tensor::full([1, t], 0, (Kind::Int64, tch::Device::Cpu));
    (Tensor::cat(&[ids, &empty_ids], 0), Tensor::cat(&[mask, &empty_ids.zeros_like()], 0))
}

/// Each row's padding moved to its start.
fn left_padded(ids: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    let t = ids.size()[1];
    let lengths = Vec::<i64>::try_from(mask.sum_dim_intlist(1, false, Kind::Int64)).unwrap();
    let shift = |x: &Tensor| {
        let rows: Vec<Tensor> = lengths.iter().enumerate().map(|(b, &n)| x.get(b as i64).roll([t - n], [0])).collect();
        Tensor::stack(&rows, 0)
    };
    (shift(ids), shift(mask))
}

#[test]
fn padded_batches_with_an_empty_row_agree() {
    for name in MODELS {
        let (ids, mask) = padded_batch(name);
        assert_eq!(mask.get(-1).sum(Kind::Int64).int64_value(&[]), 0, "the last row is padding only");
        check_padded(name, &ids, &mask, "right padding");
        let (left_ids, left_mask) = left_padded(&ids, &mask);
        check_padded(name, &left_ids, &left_mask, "left padding");
    }
}

/// Without padding the fused kernel runs causal without a mask (and, in Gemma2's sliding
/// layers, with the window's mask: the sequences are longer than the window of 4).
#[test]
fn unpadded_batches_agree() {
    for name in MODELS {
        let rows: Vec<Tensor> = (0..3).map(|s| Tensor::from_slice(&tokens(40 + s, 11))).collect();
        let ids = Tensor::stack(&rows, 0);
        check_padded(name, &ids, &ids.ones_like(), "no padding");
    }
}

/// Packed rows (trees, plain sequences, several chunks): logits, every hidden state and the
/// gradients of a loss over every token agree.
#[test]
fn packed_rows_agree() {
    let pieces = [
        Piece::Tree { prompt: tokens(1, 6), branches: vec![tokens(2, 7), tokens(3, 3)] },
        Piece::Plain(tokens(4, 9)),
        Piece::Tree { prompt: tokens(6, 3), branches: vec![tokens(7, 2), tokens(8, 8)] },
    ];
    for name in MODELS {
        let (sdpa, eager) = pair(name);
        for chunks in [vec![3], vec![1, 2]] {
            let packing = pack(&pieces, &chunks);
            let batch: &PackedBatch = &packing.batch;
            let every = batch.input_ids().ones_like().to_kind(Kind::Bool);
            let run = |m: &HfCausalLm| {
                zero_grads(m);
                let out = m.forward_packed_at(batch, &every, &all_states(m)).unwrap();
                (&out.logits * weights(&out.logits.size(), 5)).sum(Kind::Float).backward();
                (out, grads(m))
            };
            let ((s, s_grads), (e, e_grads)) = (run(&sdpa), run(&eager));
            let d = relative_diff(&s.logits, &e.logits);
            assert!(d <= TOLERANCE, "{name} {chunks:?}: packed logits differ by {d}");
            for (l, h) in &e.hidden.layers {
                let d = relative_diff(&s.hidden.layers[l], h);
                assert!(d <= TOLERANCE, "{name} {chunks:?}: packed state {l} differs by {d}");
            }
            for (n, g) in &e_grads {
                let d = grad_diff(&s_grads[n], g);
                assert!(all_finite(&s_grads[n]) && d <= TOLERANCE, "{name} {chunks:?}: gradient of {n}: {d}");
            }
        }
    }
}

/// Cached generation over left-padded prompts of different lengths (Gemma2's windows
/// included): the same tokens.
#[test]
fn cached_generation_agrees() {
    for name in MODELS {
        let (sdpa, eager) = pair(name);
        let prompts = vec![tokens(60, 3), tokens(61, 9), tokens(62, 6)];
        let mut config = GenerationConfig::greedy(&sdpa, 10);
        config.eos_token_ids.clear();
        let a = sdpa.generate(&prompts, &config).unwrap();
        let b = eager.generate(&prompts, &config).unwrap();
        assert_eq!(a, b, "{name}");
        assert!(a.iter().all(|row| row.len() == 10));
    }
}
