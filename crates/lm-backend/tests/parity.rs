//! Parity with Python `transformers` 5.23.0 on the committed fixtures (see
//! tests/fixtures/README.md): logits at every real (non-padding) position and every hidden
//! state at real positions agree within 1e-4 in float32. Padding positions are not compared:
//! their values are defined by neither implementation's contract. Every test that runs the
//! model runs it with each attention implementation (`sdpa` and `eager`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lm_backend::{AttentionImpl, CausalLm, HfCausalLm, HiddenRequest, LmError, LoadOptions};
use tch::{Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Float32 on the CPU with each attention implementation.
fn each_attention() -> impl Iterator<Item = LoadOptions> {
    AttentionImpl::ALL.into_iter().map(|a| LoadOptions::cpu_f32().with_attention(a))
}

/// Each of `items` with each attention implementation.
fn with_each_attention<T: Copy>(items: impl IntoIterator<Item = T>) -> impl Iterator<Item = (T, LoadOptions)> {
    items.into_iter().flat_map(|item| each_attention().map(move |o| (item, o)))
}

fn expected(name: &str) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(fixture(name).join("expected.safetensors")).unwrap().into_iter().collect()
}

/// Largest |a - b| over the real positions (`mask` `[B, T]`), `a`, `b` `[B, T, X]`.
fn max_diff_at_real_positions(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    let m = mask.to_kind(Kind::Bool).unsqueeze(-1).expand_as(a);
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().masked_select(&m).max().double_value(&[])
}

/// Checks logits and all hidden states of `model_dir` against `reference`'s fixture, with
/// each attention implementation.
fn check_parity(model_dir: &str, reference: &str) {
    for options in each_attention() {
        check_parity_with(model_dir, reference, options);
    }
}

fn check_parity_with(model_dir: &str, reference: &str, options: LoadOptions) {
    let model = HfCausalLm::load(fixture(model_dir), options).unwrap();
    let model_dir = format!("{model_dir} ({})", options.attention);
    let e = expected(reference);
    let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
    assert!(mask.eq(0).any().int64_value(&[]) == 1, "the fixture batch must contain padding");
    let layers: Vec<usize> = (0..=model.num_layers()).collect();
    let out = model.forward(ids, mask, &HiddenRequest::layers(layers.clone()).with_last_pre_norm()).unwrap();
    let logits_diff = max_diff_at_real_positions(&out.logits, &e["logits"], mask);
    assert!(logits_diff < TOLERANCE, "{model_dir}: logits differ by {logits_diff}");
    let reference_states = &e["hidden_states"]; // [L+1, B, T, D]
    assert_eq!(reference_states.size()[0] as usize, layers.len());
    let mut states_diff: f64 = 0.0;
    for &l in &layers {
        let d = max_diff_at_real_positions(&out.hidden.layers[&l], &reference_states.get(l as i64), mask);
        assert!(d < TOLERANCE, "{model_dir}: hidden state {l} differs by {d}");
        states_diff = states_diff.max(d);
    }
    eprintln!("{model_dir}: max |logits diff| {logits_diff:.3e}, max |hidden diff| {states_diff:.3e}");
}

#[test]
fn llama_matches_transformers() {
    check_parity("llama", "llama");
}

#[test]
fn qwen2_matches_transformers() {
    check_parity("qwen2", "qwen2");
}

#[test]
fn gemma2_matches_transformers() {
    check_parity("gemma2", "gemma2");
}

#[test]
fn sharded_checkpoint_gives_the_same_outputs() {
    let shards = lm_backend::Checkpoint::open(fixture("llama-sharded")).unwrap();
    assert!(shards.files().len() > 1);
    check_parity("llama-sharded", "llama");
}

/// Completion log-probs computed from our logits equal the reference sums, and the
/// completions were scored at the positions the fixture says (count check).
#[test]
fn completion_log_probs_match() {
    for (name, options) in with_each_attention(["llama", "qwen2", "gemma2"]) {
        let model = HfCausalLm::load(fixture(name), options).unwrap();
        let e = expected(name);
        let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
        let logp = model.forward(ids, mask, &HiddenRequest::none()).unwrap().logits.log_softmax(-1, Kind::Double);
        let lengths = Vec::<i64>::try_from(mask.sum_dim_intlist(1, false, Kind::Int64)).unwrap();
        let prompts = Vec::<i64>::try_from(&e["prompt_lengths"]).unwrap();
        let sums = Vec::<f64>::try_from(&e["completion_logp_sum"]).unwrap();
        let counts = Vec::<i64>::try_from(&e["completion_token_count"]).unwrap();
        for b in 0..lengths.len() {
            let mut total = 0.0;
            for t in prompts[b]..lengths[b] {
                let token = ids.int64_value(&[b as i64, t]);
                total += logp.double_value(&[b as i64, t - 1, token]);
            }
            assert_eq!(lengths[b] - prompts[b], counts[b]);
            assert!((total - sums[b]).abs() < 1e-3, "{name}[{b}] ({}): {total} vs {}", options.attention, sums[b]);
        }
    }
}

/// Each sequence alone (no padding) gives the logits it has inside the padded batch: an
/// independent check of the padding mask.
#[test]
fn padding_does_not_change_real_positions() {
    for (name, options) in with_each_attention(["llama", "gemma2"]) {
        let model = HfCausalLm::load(fixture(name), options).unwrap();
        let e = expected(name);
        let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
        let batched = model.forward(ids, mask, &HiddenRequest::none()).unwrap().logits;
        for b in 0..ids.size()[0] {
            let n = mask.get(b).sum(Kind::Int64).int64_value(&[]);
            let single = ids.get(b).narrow(0, 0, n).unsqueeze(0);
            let alone = model.forward(&single, &single.ones_like(), &HiddenRequest::none()).unwrap().logits;
            let diff = (alone.get(0) - batched.get(b).narrow(0, 0, n)).abs().max().double_value(&[]);
            // f32 rounding of differently shaped matmuls, relative to the logits' scale.
            let scale = alone.abs().max().double_value(&[]).max(1.0);
            assert!(diff <= 1e-5 * scale, "{name}[{b}] ({}): {diff} (scale {scale})", options.attention);
        }
    }
}

/// The early-stopping pass returns exactly the requested states, equal to the full pass.
#[test]
fn hidden_states_stop_early_and_agree_with_forward() {
    for options in each_attention() {
        hidden_states_stop_early_with(options);
    }
}

fn hidden_states_stop_early_with(options: LoadOptions) {
    let model = HfCausalLm::load(fixture("gemma2"), options).unwrap();
    let e = expected("gemma2");
    let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
    let full = model.forward(ids, mask, &HiddenRequest::layers(0..=3).with_last_pre_norm()).unwrap();
    let early = model.hidden_states(ids, mask, &HiddenRequest::layers([2, 1])).unwrap();
    assert_eq!(early.layers.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert!(early.last_pre_norm.is_none());
    for (l, h) in &early.layers {
        let d = max_diff_at_real_positions(h, &full.hidden.layers[l], mask);
        assert!(d == 0.0, "layer {l}: {d}");
    }
    let last = model.hidden_states(ids, mask, &HiddenRequest::layers([3]).with_last_pre_norm()).unwrap();
    assert_eq!(max_diff_at_real_positions(&last.layers[&3], &full.hidden.layers[&3], mask), 0.0);
    // The pre-norm last state differs from the normed index L and is what index L normalises.
    let pre = last.last_pre_norm.unwrap();
    assert!(max_diff_at_real_positions(&pre, &last.layers[&3], mask) > 1e-2);
    let pre_full = full.hidden.last_pre_norm.unwrap();
    assert_eq!(max_diff_at_real_positions(&pre, &pre_full, mask), 0.0);
}

/// The pre-norm output of the last layer, normalised by hand with the checkpoint's final norm
/// (Llama: `w * x / rms(x)`, f64 loops), equals transformers' hidden state L.
#[test]
fn last_pre_norm_state_normalises_to_the_reference() {
    for options in each_attention() {
        last_pre_norm_state_with(options);
    }
}

fn last_pre_norm_state_with(options: LoadOptions) {
    let model = HfCausalLm::load(fixture("llama"), options).unwrap();
    let e = expected("llama");
    let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
    let pre = model.hidden_states(ids, mask, &HiddenRequest::none().with_last_pre_norm()).unwrap();
    let pre = pre.last_pre_norm.unwrap(); // [B, T, D]
    let w = Vec::<f64>::try_from(model.parameters()["model.norm.weight"].to_kind(Kind::Double)).unwrap();
    let reference = e["hidden_states"].get(3);
    let (b, t, d) = (pre.size()[0], pre.size()[1], pre.size()[2]);
    for bi in 0..b {
        for ti in 0..t {
            if mask.int64_value(&[bi, ti]) == 0 {
                continue;
            }
            let x: Vec<f64> = (0..d).map(|k| pre.double_value(&[bi, ti, k])).collect();
            let rms = (x.iter().map(|v| v * v).sum::<f64>() / d as f64 + 1e-6).sqrt();
            for k in 0..d as usize {
                let want = reference.double_value(&[bi, ti, k as i64]);
                assert!((w[k] * x[k] / rms - want).abs() < 1e-4, "[{bi}, {ti}, {k}]");
            }
        }
    }
}

#[test]
fn bf16_weights_stay_close() {
    for options in each_attention() {
        bf16_weights_with(options.with_dtype(Kind::BFloat16));
    }
}

fn bf16_weights_with(options: LoadOptions) {
    let model = HfCausalLm::load(fixture("qwen2"), options).unwrap();
    assert_eq!(model.kind(), Kind::BFloat16);
    assert!(model.parameters().values().all(|p| p.kind() == Kind::BFloat16));
    let e = expected("qwen2");
    let out = model.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap();
    assert_eq!(out.logits.kind(), Kind::BFloat16);
    let diff = max_diff_at_real_positions(&out.logits, &e["logits"], &e["attention_mask"]);
    let scale = e["logits"].abs().max().double_value(&[]);
    eprintln!("qwen2 bf16 ({}): max |logits diff| {diff:.3e} (max |logit| {scale:.2})", options.attention);
    assert!(diff < 0.1 * scale, "{diff}");
}

#[test]
fn legacy_config_form_gives_the_same_outputs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("llama/model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("llama/config.json")).unwrap()).unwrap();
    let obj = config.as_object_mut().unwrap();
    let mut rope = obj.remove("rope_parameters").unwrap();
    let theta = rope.as_object_mut().unwrap().remove("rope_theta").unwrap();
    obj.insert("rope_theta".into(), theta);
    obj.insert("rope_scaling".into(), rope);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    for options in each_attention() {
        let legacy = HfCausalLm::load(dir.path(), options).unwrap();
        let new = HfCausalLm::load(fixture("llama"), options).unwrap();
        assert_eq!(legacy.config(), new.config());
        let e = expected("llama");
        let a = legacy.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap().logits;
        let b = new.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap().logits;
        assert_eq!((a - b).abs().max().double_value(&[]), 0.0, "{}", options.attention);
    }
}

/// A copy of the llama fixture whose weights are `edit`ed before writing.
fn edited_llama(edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("llama/config.json"), dir.path().join("config.json")).unwrap();
    let mut tensors = Tensor::read_safetensors(fixture("llama/model.safetensors")).unwrap();
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, dir.path().join("model.safetensors")).unwrap();
    dir
}

#[test]
fn missing_tensor_is_named() {
    let name = "model.layers.1.self_attn.k_proj.weight";
    let dir = edited_llama(|t| t.retain(|(n, _)| n != name));
    let err = HfCausalLm::load(dir.path(), LoadOptions::cpu_f32()).unwrap_err();
    assert!(matches!(&err, LmError::MissingTensor { name: n, .. } if n == name), "{err}");
    assert!(err.to_string().contains(name));
}

#[test]
fn wrong_shape_is_named() {
    let name = "model.layers.2.mlp.up_proj.weight";
    let dir = edited_llama(|t| {
        let entry = t.iter_mut().find(|(n, _)| n == name).unwrap();
        entry.1 = entry.1.narrow(0, 0, 10);
    });
    let err = HfCausalLm::load(dir.path(), LoadOptions::cpu_f32()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LmError::TensorShape { .. }), "{msg}");
    assert!(msg.contains(name) && msg.contains("[10, 32]") && msg.contains("[64, 32]"), "{msg}");
}

#[test]
fn unexpected_tensor_is_named() {
    let dir =
        edited_llama(|t| t.push(("model.layers.0.extra.weight".into(), Tensor::zeros([2], tch::kind::FLOAT_CPU))));
    let msg = HfCausalLm::load(dir.path(), LoadOptions::cpu_f32()).unwrap_err().to_string();
    assert!(msg.contains("unexpected tensor `model.layers.0.extra.weight`"), "{msg}");
}

#[test]
fn unknown_model_type_is_named() {
    let dir = edited_llama(|_| {});
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(dir.path().join("config.json"), config.replace("\"llama\"", "\"falcon\"")).unwrap();
    let err = HfCausalLm::load(dir.path(), LoadOptions::cpu_f32()).unwrap_err();
    assert!(matches!(&err, LmError::UnsupportedModel { model_type, .. } if model_type == "falcon"), "{err}");
}

#[test]
fn bad_inputs_are_errors() {
    let model = HfCausalLm::load(fixture("qwen2"), LoadOptions::cpu_f32()).unwrap();
    let ids = Tensor::from_slice(&[1i64, 5, 9]).unsqueeze(0);
    let too_big = Tensor::from_slice(&[1i64, 5, 640]).unsqueeze(0);
    let msg = |r: lm_backend::Result<_>| r.map(|_: lm_backend::LmOutput| ()).unwrap_err().to_string();
    assert!(msg(model.forward(&too_big, &too_big.ones_like(), &HiddenRequest::none())).contains("input_ids"));
    assert!(
        msg(model.forward(&ids, &ids.ones_like().narrow(1, 0, 2), &HiddenRequest::none())).contains("attention_mask")
    );
    assert!(msg(model.forward(&ids.to_kind(Kind::Int), &ids.ones_like(), &HiddenRequest::none())).contains("int64"));
    assert!(msg(model.forward(&ids, &ids.ones_like(), &HiddenRequest::layers([3]))).contains("layers"));
    assert!(model.hidden_states(&ids, &ids.ones_like(), &HiddenRequest::layers([4])).is_err());
}

/// The fixtures exercise each architecture feature: turning one off in the config moves the
/// logits far beyond the tolerance (so the parity tests above would catch its absence).
#[test]
fn fixtures_are_sensitive_to_each_feature() {
    type ConfigEdit = fn(&mut serde_json::Map<String, serde_json::Value>);
    let variants: [(&str, ConfigEdit); 5] = [
        ("llama", |c| {
            c.insert("rope_parameters".into(), serde_json::json!({"rope_type": "default", "rope_theta": 10000.0}));
        }),
        ("gemma2", |c| {
            c.insert("attn_logit_softcapping".into(), serde_json::Value::Null);
        }),
        ("gemma2", |c| {
            c.insert("final_logit_softcapping".into(), serde_json::Value::Null);
        }),
        ("gemma2", |c| {
            c.insert("layer_types".into(), serde_json::json!(["full_attention", "full_attention", "full_attention"]));
        }),
        ("gemma2", |c| {
            c.insert("query_pre_attn_scalar".into(), serde_json::json!(16));
        }),
    ];
    for ((i, (name, edit)), options) in with_each_attention(variants.into_iter().enumerate()) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(fixture(name).join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(name).join("config.json")).unwrap()).unwrap();
        edit(config.as_object_mut().unwrap());
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let model = HfCausalLm::load(dir.path(), options).unwrap();
        let e = expected(name);
        let logits = model.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap().logits;
        let diff = max_diff_at_real_positions(&logits, &e["logits"], &e["attention_mask"]);
        assert!(diff > 100.0 * TOLERANCE, "variant {i} of {name} ({}): only {diff}", options.attention);
    }
}

/// The same batch left-padded gives the right-padded values at every real position.
#[test]
fn left_padding_gives_the_same_real_positions() {
    for (name, options) in with_each_attention(["qwen2", "gemma2"]) {
        let model = HfCausalLm::load(fixture(name), options).unwrap();
        let e = expected(name);
        let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
        let t = ids.size()[1];
        let right = model.forward(ids, mask, &HiddenRequest::none()).unwrap().logits;
        // Shift each row so that its padding comes first.
        let lengths = Vec::<i64>::try_from(mask.sum_dim_intlist(1, false, Kind::Int64)).unwrap();
        let shift = |x: &Tensor, b: usize| x.get(b as i64).roll([t - lengths[b]], [0]);
        let left_ids = Tensor::stack(&(0..lengths.len()).map(|b| shift(ids, b)).collect::<Vec<_>>(), 0);
        let left_mask = Tensor::stack(&(0..lengths.len()).map(|b| shift(mask, b)).collect::<Vec<_>>(), 0);
        assert_eq!(left_mask.get(1).int64_value(&[0]), 0, "row 1 must start with padding");
        let left = model.forward(&left_ids, &left_mask, &HiddenRequest::none()).unwrap().logits;
        for (b, &n) in lengths.iter().enumerate() {
            let r = right.get(b as i64).narrow(0, 0, n);
            let l = left.get(b as i64).narrow(0, t - n, n);
            let d = (r - l).abs().max().double_value(&[]);
            assert!(d < 1e-5, "{name}[{b}] ({}): {d}", options.attention);
        }
    }
}
