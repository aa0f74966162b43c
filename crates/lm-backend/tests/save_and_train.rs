//! Saving a model and gradients through it.

mod common;
use common::gradient_entry;

use std::path::{Path, PathBuf};

use lm_backend::{AttentionImpl, CausalLm, HfCausalLm, HiddenRequest, LoadOptions};
use tch::{Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn batch(name: &str) -> (Tensor, Tensor) {
    let e: std::collections::BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture(name).join("expected.safetensors")).unwrap().into_iter().collect();
    (e["input_ids"].shallow_clone(), e["attention_mask"].shallow_clone())
}

/// Save, reload: identical parameters and logits; the tied model stores one embedding; an
/// existing folder is replaced and no temporary folder is left behind.
#[test]
fn saved_folder_reloads_identically() {
    let root = tempfile::tempdir().unwrap();
    for name in ["llama", "gemma2"] {
        let model = HfCausalLm::load(fixture(name), LoadOptions::cpu_f32()).unwrap();
        let target = root.path().join(format!("{name}-saved"));
        let extra = [fixture("tokenizer/tokenizer.json"), fixture("tokenizer/tokenizer_config.json")];
        model.save(&target, &extra).unwrap();
        model.save(&target, &extra).unwrap(); // replacing an existing folder
        let reloaded = HfCausalLm::load(&target, LoadOptions::cpu_f32()).unwrap();
        assert_eq!(model.parameters().len(), reloaded.parameters().len());
        for (n, p) in model.parameters() {
            assert!(p.equal(&reloaded.parameters()[n]), "{name}: {n}");
        }
        let names: Vec<String> =
            Tensor::read_safetensors(target.join("model.safetensors")).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.contains(&"lm_head.weight".to_string()), name == "llama");
        let (ids, mask) = batch(name);
        let a = model.forward(&ids, &mask, &HiddenRequest::none()).unwrap().logits;
        let b = reloaded.forward(&ids, &mask, &HiddenRequest::none()).unwrap().logits;
        assert!(a.equal(&b));
        assert!(target.join("tokenizer.json").is_file() && target.join("tokenizer_config.json").is_file());
    }
    let leftovers: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bf16_save_writes_bf16_and_config_dtype() {
    let root = tempfile::tempdir().unwrap();
    let model = HfCausalLm::load(fixture("qwen2"), LoadOptions::cpu_f32().with_dtype(Kind::BFloat16)).unwrap();
    model.save(root.path().join("m"), &[]).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.path().join("m/config.json")).unwrap()).unwrap();
    assert_eq!(config["dtype"], "bfloat16");
    let saved = Tensor::read_safetensors(root.path().join("m/model.safetensors")).unwrap();
    assert!(saved.iter().all(|(_, t)| t.kind() == Kind::BFloat16));
}

/// Gradients of a scalar of the logits with respect to parameters of every kind equal
/// central finite differences, in float64, with each attention implementation.
#[test]
fn gradients_match_finite_differences() {
    for (name, attention) in ["qwen2", "gemma2"].into_iter().flat_map(|n| AttentionImpl::ALL.map(|a| (n, a))) {
        let options = LoadOptions::cpu_f32().with_dtype(Kind::Double).with_attention(attention);
        let model = HfCausalLm::load(fixture(name), options).unwrap();
        let (ids, mask) = batch(name);
        let (ids, mask) = (ids.narrow(1, 0, 12), mask.narrow(1, 0, 12));
        let weights = Tensor::randn([3, 12, model.config().vocab_size as i64], (Kind::Double, tch::Device::Cpu));
        let objective = |m: &HfCausalLm| {
            let logits = m.forward(&ids, &mask, &HiddenRequest::none()).unwrap().logits;
            (logits * &weights * mask.unsqueeze(-1)).sum(Kind::Double)
        };
        model.set_trainable(true);
        objective(&model).backward();
        let probes = [
            ("model.embed_tokens.weight", vec![ids.int64_value(&[1, 3]), 2]),
            ("model.layers.0.self_attn.q_proj.weight", vec![3, 5]),
            ("model.layers.1.self_attn.v_proj.weight", vec![1, 7]),
            ("model.layers.1.mlp.down_proj.weight", vec![4, 9]),
            ("model.layers.0.input_layernorm.weight", vec![6]),
            ("model.norm.weight", vec![2]),
        ];
        for (param, index) in probes {
            let (analytic, numeric) = gradient_entry(&model, param, &index, objective);
            let err = (analytic - numeric).abs() / numeric.abs().max(1e-3);
            assert!(err < 1e-5, "{name} ({attention}) {param}{index:?}: {analytic} vs {numeric}");
        }
    }
}

/// A model built in memory from named tensors equals the loaded one; its names and shapes
/// are checked like a checkpoint's.
#[test]
fn from_parameters_checks_names_and_shapes() {
    let loaded = HfCausalLm::load(fixture("qwen2"), LoadOptions::cpu_f32()).unwrap();
    let config = loaded.source_config().clone();
    let tensors = || -> std::collections::BTreeMap<String, Tensor> {
        loaded.parameters().iter().map(|(n, t)| (n.clone(), t.copy())).collect()
    };
    let built = HfCausalLm::from_parameters(config.clone(), tensors(), LoadOptions::cpu_f32()).unwrap();
    let (ids, mask) = batch("qwen2");
    let a = loaded.forward(&ids, &mask, &lm_backend::HiddenRequest::none()).unwrap().logits;
    let b = built.forward(&ids, &mask, &lm_backend::HiddenRequest::none()).unwrap().logits;
    assert!(a.equal(&b));
    let mut missing = tensors();
    missing.remove("model.norm.weight");
    let err = HfCausalLm::from_parameters(config.clone(), missing, LoadOptions::cpu_f32()).unwrap_err();
    assert!(err.to_string().contains("missing tensor `model.norm.weight`"), "{err}");
    let mut wrong = tensors();
    wrong.insert("model.layers.0.self_attn.q_proj.bias".into(), Tensor::zeros([3], tch::kind::FLOAT_CPU));
    let err = HfCausalLm::from_parameters(config, wrong, LoadOptions::cpu_f32()).unwrap_err();
    assert!(err.to_string().contains("model.layers.0.self_attn.q_proj.bias"), "{err}");
}
