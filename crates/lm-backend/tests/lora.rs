//! LoRA adapters: fresh adapters compute the base model exactly, the update equals its
//! closed form and the merged weights, gradients reach the adapters only and match finite
//! differences, dropout masks are a function of the key, adapter folders round-trip, PEFT's
//! own adapters give PEFT's logits (fixtures made by scripts/fixtures/make_peft_fixtures.sh),
//! ours have PEFT's layout, and bad adapters are clear errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lm_backend::lora::{is_adapter_dir, peft_name, LoraSpec, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, LmError, LoadOptions};
use serde_json::Value;
use tch::{Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn tensors(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// The fixture batch of model `name`: `input_ids`, `attention_mask` `[B, T]`.
fn batch(name: &str) -> (Tensor, Tensor) {
    let e = tensors(&fixture(name).join("expected.safetensors"));
    (e["input_ids"].shallow_clone(), e["attention_mask"].shallow_clone())
}

fn logits(model: &HfCausalLm, name: &str) -> Tensor {
    let (ids, mask) = batch(name);
    model.forward(&ids, &mask, &HiddenRequest::none()).unwrap().logits
}

/// Largest |a - b| over the real positions (`mask` `[B, T]`) of `[B, T, V]` logits.
fn max_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    let m = mask.to_kind(Kind::Bool).unsqueeze(-1).expand_as(a);
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().masked_select(&m).max().double_value(&[])
}

/// Gives every `lora_B` deterministic non-zero values (no random generator), so the
/// adapters change the model.
fn set_b(model: &HfCausalLm, scale: f64) {
    tch::no_grad(|| {
        for (i, (name, p)) in model.adapter_parameters().iter().enumerate() {
            if name.contains("lora_B") {
                let n = p.numel() as i64;
                let v = ((Tensor::arange(n, (Kind::Double, p.device())) * 0.37 + i as f64).sin() * scale)
                    .reshape(p.size())
                    .to_kind(p.kind());
                p.shallow_clone().copy_(&v);
            }
        }
    });
}

fn spec() -> LoraSpec {
    LoraSpec::new(4, 8.0).with_seed(5)
}

#[test]
fn fresh_adapters_compute_the_base_model_exactly() {
    for name in ["llama", "qwen2", "gemma2"] {
        let base = HfCausalLm::load(fixture(name), LoadOptions::cpu_f32()).unwrap();
        let lora = HfCausalLm::load_with_lora(fixture(name), LoadOptions::cpu_f32(), &spec()).unwrap();
        assert!(logits(&lora, name).equal(&logits(&base, name)), "{name}: B = 0 gives the base logits exactly");
        let layers = lora.num_layers();
        assert_eq!(lora.adapter_parameters().len(), layers * 7 * 2, "{name}");
        let c = lora.config();
        let q = (c.num_heads * c.head_dim) as i64;
        let a = &lora.adapter_parameters()[&peft_name("model.layers.0.self_attn.q_proj", "lora_A")];
        let b = &lora.adapter_parameters()[&peft_name("model.layers.0.self_attn.q_proj", "lora_B")];
        assert_eq!((a.size(), b.size()), (vec![4, c.hidden_size as i64], vec![q, 4]), "{name}");
        assert_eq!(b.abs().max().double_value(&[]), 0.0);
        // PEFT's default A: kaiming_uniform(a = sqrt(5)), i.e. uniform in ±1/sqrt(in).
        let bound = 1.0 / (c.hidden_size as f64).sqrt();
        let max = a.abs().max().double_value(&[]);
        assert!(max <= bound && max > 0.8 * bound, "{name}: |A| <= {max}, bound {bound}");
        let std = a.std(false).double_value(&[]);
        assert!((std - bound / 3f64.sqrt()).abs() < 0.25 * bound, "{name}: std {std}");
    }
    // A comes from the spec's seed: the same seed gives the same A, another seed another.
    let again = HfCausalLm::load_with_lora(fixture("llama"), LoadOptions::cpu_f32(), &spec()).unwrap();
    let first = HfCausalLm::load_with_lora(fixture("llama"), LoadOptions::cpu_f32(), &spec()).unwrap();
    let other = HfCausalLm::load_with_lora(fixture("llama"), LoadOptions::cpu_f32(), &spec().with_seed(6)).unwrap();
    let a = |m: &HfCausalLm| m.adapter_parameters()[&peft_name("model.layers.1.mlp.up_proj", "lora_A")].shallow_clone();
    assert!(a(&first).equal(&a(&again)));
    assert!(!a(&first).equal(&a(&other)));
    // Other layers' A differ (each module has its own draw).
    let q0 = &first.adapter_parameters()[&peft_name("model.layers.0.self_attn.q_proj", "lora_A")];
    let q1 = &first.adapter_parameters()[&peft_name("model.layers.1.self_attn.q_proj", "lora_A")];
    assert!(!q0.equal(q1));
}

#[test]
fn targets_select_projections_and_adapters_stay_float32_on_a_bf16_base() {
    let spec = spec().with_targets(["q_proj", "mlp.down_proj"]);
    let model =
        HfCausalLm::load_with_lora(fixture("llama"), LoadOptions::cpu_f32().with_dtype(Kind::BFloat16), &spec).unwrap();
    let mut modules: Vec<String> =
        model.adapter_parameters().keys().filter_map(|n| n.strip_suffix(".lora_A.weight").map(String::from)).collect();
    modules.sort();
    let expected: Vec<String> = (0..3)
        .flat_map(|i| {
            [
                format!("base_model.model.model.layers.{i}.mlp.down_proj"),
                format!("base_model.model.model.layers.{i}.self_attn.q_proj"),
            ]
        })
        .collect();
    assert_eq!(modules, expected);
    assert!(model.adapter_parameters().values().all(|p| p.kind() == Kind::Float));
    assert!(model.parameters().values().all(|p| p.kind() == Kind::BFloat16));
    set_b(&model, 0.2);
    let out = logits(&model, "llama");
    assert_eq!(out.kind(), Kind::BFloat16, "the adapted model keeps the base's dtype");
    // Merged in the base's dtype: W + s B A formed in f32, rounded to bf16 once.
    let merged = model.merged().unwrap();
    let name = "model.layers.1.self_attn.q_proj";
    let (a, b) = (
        &model.adapter_parameters()[&peft_name(name, "lora_A")],
        &model.adapter_parameters()[&peft_name(name, "lora_B")],
    );
    let w = &model.parameters()[&format!("{name}.weight")];
    let by_hand = (w.to_kind(Kind::Float) + b.matmul(a) * spec.scaling()).to_kind(Kind::BFloat16);
    assert!(merged.parameters()[&format!("{name}.weight")].equal(&by_hand));
    assert!(!merged.has_adapters());

    let e = HfCausalLm::load_with_lora(
        fixture("llama"),
        LoadOptions::cpu_f32(),
        &LoraSpec::new(4, 8.0).with_targets(["lm_head"]),
    )
    .unwrap_err();
    assert!(matches!(&e, LmError::Adapter { .. }) && e.to_string().contains("match no projection"), "{e}");
    let e = HfCausalLm::load_with_lora(fixture("llama"), LoadOptions::cpu_f32(), &LoraSpec::new(0, 8.0)).unwrap_err();
    assert!(e.to_string().contains("rank r must be at least 1"), "{e}");
}

/// The adapted model equals the base model whose weights are `W + (alpha / r) B A`, built
/// by hand from the adapters (the closed form of eq. 3), and the library's own merge: in
/// float64 to rounding (1e-9), in float32 within 2e-6 of the logits' scale.
#[test]
fn the_update_equals_its_closed_form_and_the_merged_weights() {
    for (kind, tolerance) in [(Kind::Double, 1e-9), (Kind::Float, 2e-6)] {
        for name in ["llama", "qwen2", "gemma2"] {
            let options = LoadOptions::cpu_f32().with_dtype(kind);
            let lora = HfCausalLm::load_with_lora(fixture(name), options, &spec()).unwrap();
            set_b(&lora, 0.2);
            let adapted = logits(&lora, name);
            let base = logits(&HfCausalLm::load(fixture(name), options).unwrap(), name);
            let (_, mask) = batch(name);
            assert!(max_diff(&adapted, &base, &mask) > 1e-2, "{name}: the adapters change the logits");

            let mut weights: BTreeMap<String, Tensor> =
                lora.parameters().iter().map(|(n, t)| (n.clone(), t.detach().copy())).collect();
            for (n, a) in lora.adapter_parameters() {
                let Some(module) = n.strip_prefix("base_model.model.").and_then(|m| m.strip_suffix(".lora_A.weight"))
                else {
                    continue;
                };
                let b = &lora.adapter_parameters()[&peft_name(module, "lora_B")];
                let w = weights.get_mut(&format!("{module}.weight")).unwrap();
                *w = &*w + b.matmul(a) * (8.0 / 4.0);
            }
            let by_hand = HfCausalLm::from_parameters(lora.source_config().clone(), weights, options).unwrap();
            let scale = adapted.abs().max().double_value(&[]);
            let d_hand = max_diff(&adapted, &logits(&by_hand, name), &mask) / scale;
            let d_merged = max_diff(&adapted, &logits(&lora.merged().unwrap(), name), &mask) / scale;
            eprintln!(
                "{name} {kind:?}: max |logits| {scale:.1}; relative difference of the adapters from W + sBA by hand \
                 {d_hand:.2e}, from merged() {d_merged:.2e}"
            );
            assert!(d_hand < tolerance && d_merged < tolerance, "{name} {kind:?}: {d_hand} {d_merged}");
        }
    }
}

/// In float64, the adapters' gradients equal central finite differences of the loss; the
/// frozen base gets none.
#[test]
fn adapter_gradients_match_finite_differences_and_the_base_gets_none() {
    let options = LoadOptions::cpu_f32().with_dtype(Kind::Double);
    let model = HfCausalLm::load_with_lora(fixture("llama"), options, &LoraSpec::new(2, 3.0).with_seed(9)).unwrap();
    assert!(model.adapter_parameters().values().all(|p| p.kind() == Kind::Double));
    set_b(&model, 0.3);
    model.set_adapters_trainable(true);
    let (ids, mask) = batch("llama");
    let loss = || {
        let out = model.forward(&ids, &mask, &HiddenRequest::none()).unwrap().logits;
        let n = out.numel() as i64;
        let weights = (Tensor::arange(n, (Kind::Double, out.device())) * 0.61).cos().reshape(out.size());
        (out * weights * mask.to_kind(Kind::Double).unsqueeze(-1)).sum(Kind::Double)
    };
    loss().backward();
    for p in model.parameters().values() {
        assert!(!p.grad().defined(), "a frozen base weight got a gradient");
    }
    let checked = [
        (peft_name("model.layers.0.self_attn.q_proj", "lora_A"), [1i64, 5]),
        (peft_name("model.layers.1.self_attn.v_proj", "lora_B"), [3, 1]),
        (peft_name("model.layers.2.mlp.down_proj", "lora_A"), [0, 40]),
        (peft_name("model.layers.2.mlp.gate_proj", "lora_B"), [17, 0]),
    ];
    let eps = 1e-6;
    for (name, [i, j]) in checked {
        let p = model.adapter_parameters()[&name].shallow_clone();
        let analytic = p.grad().double_value(&[i, j]);
        let nudge = |delta: f64| {
            tch::no_grad(|| {
                let _ = p.shallow_clone().get(i).get(j).g_add_scalar_(delta);
            })
        };
        nudge(eps);
        let up = tch::no_grad(|| loss().double_value(&[]));
        nudge(-2.0 * eps);
        let down = tch::no_grad(|| loss().double_value(&[]));
        nudge(eps);
        let numeric = (up - down) / (2.0 * eps);
        assert!(analytic.abs() > 1e-3, "{name}[{i}, {j}]: a gradient worth checking ({analytic})");
        assert!(
            (analytic - numeric).abs() <= 1e-6 * (1.0 + analytic.abs()),
            "{name}[{i}, {j}]: autograd {analytic}, finite differences {numeric}"
        );
    }
}

#[test]
fn adapters_switch_off_and_the_base_model_shares_the_weights() {
    let base_logits = logits(&HfCausalLm::load(fixture("qwen2"), LoadOptions::cpu_f32()).unwrap(), "qwen2");
    let lora = HfCausalLm::load_with_lora(fixture("qwen2"), LoadOptions::cpu_f32(), &spec()).unwrap();
    set_b(&lora, 0.2);
    let adapted = logits(&lora, "qwen2");
    assert!(!adapted.equal(&base_logits));
    assert!(lora.adapters_enabled());
    lora.set_adapters_enabled(false);
    assert!(!lora.adapters_enabled());
    assert!(logits(&lora, "qwen2").equal(&base_logits), "adapters off: the base model");
    lora.set_adapters_enabled(true);
    assert!(logits(&lora, "qwen2").equal(&adapted));

    let base = lora.base_model().unwrap();
    assert!(!base.has_adapters() && base.adapter_parameters().is_empty());
    assert!(logits(&base, "qwen2").equal(&base_logits), "the base model while the adapters are on");
    for (n, p) in lora.parameters() {
        assert_eq!(p.data_ptr(), base.parameters()[n].data_ptr(), "{n}: shared, not copied");
    }
}

#[test]
fn dropout_masks_are_a_function_of_the_key_not_of_the_global_generator() {
    let model =
        HfCausalLm::load_with_lora(fixture("llama"), LoadOptions::cpu_f32(), &spec().with_dropout(0.5)).unwrap();
    set_b(&model, 0.2);
    let eval = logits(&model, "llama");
    assert!(!model.training());
    model.set_training(true);
    model.set_dropout_key(11);
    tch::manual_seed(1);
    let first = logits(&model, "llama");
    tch::manual_seed(2);
    let second = logits(&model, "llama");
    assert!(first.equal(&second), "same key, same masks, whatever the global generator");
    model.set_dropout_key(12);
    let other = logits(&model, "llama");
    assert!(!other.equal(&first), "another key, other masks");
    assert!(!first.equal(&eval), "dropout applies in training mode");
    let replayed = model.with_dropout_key(11, || logits(&model, "llama"));
    assert!(replayed.equal(&first), "a recomputation under the pass's key replays its masks");
    assert_eq!(model.dropout_key(), 12, "with_dropout_key restores the key");
    model.set_training(false);
    assert!(logits(&model, "llama").equal(&eval), "no dropout outside training mode");
}

#[test]
fn saved_adapters_reload_identically() {
    let root = tempfile::tempdir().unwrap();
    let model =
        HfCausalLm::load_with_lora(fixture("gemma2"), LoadOptions::cpu_f32(), &spec().with_dropout(0.1)).unwrap();
    set_b(&model, 0.2);
    let dir = root.path().join("adapter");
    let base = fixture("gemma2");
    let extra = [fixture("tokenizer/tokenizer.json")];
    model.save_adapter(&dir, base.to_str().unwrap(), &extra).unwrap();
    model.save_adapter(&dir, base.to_str().unwrap(), &extra).unwrap(); // replaces the folder
    assert!(is_adapter_dir(&dir));
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, [ADAPTER_CONFIG, ADAPTER_WEIGHTS, "tokenizer.json"]);
    let leftovers = std::fs::read_dir(root.path()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary folder left behind");

    let reloaded = HfCausalLm::load_adapter_folder(&dir, None, LoadOptions::cpu_f32()).unwrap();
    assert_eq!(reloaded.lora_spec().unwrap().r, 4);
    assert_eq!(reloaded.lora_spec().unwrap().dropout, 0.1);
    assert_eq!(model.adapter_parameters().len(), reloaded.adapter_parameters().len());
    for (n, p) in model.adapter_parameters() {
        assert!(p.equal(&reloaded.adapter_parameters()[n]), "{n}");
    }
    assert!(logits(&model, "gemma2").equal(&logits(&reloaded, "gemma2")));
    let explicit = HfCausalLm::load_with_adapter(&base, &dir, LoadOptions::cpu_f32()).unwrap();
    assert!(logits(&explicit, "gemma2").equal(&logits(&reloaded, "gemma2")));

    let e = model.save(root.path().join("model"), &[]).unwrap_err().to_string();
    assert!(e.contains("save_adapter") && e.contains("merged"), "{e}");
    let plain = HfCausalLm::load(fixture("gemma2"), LoadOptions::cpu_f32()).unwrap();
    assert!(plain.save_adapter(root.path().join("none"), "x", &[]).is_err());
}

/// Adapters made and saved by PEFT (fixtures) give PEFT's logits; the base is found through
/// the relative `base_model_name_or_path`.
#[test]
fn peft_made_adapters_give_peft_logits() {
    for name in ["llama", "qwen2"] {
        let dir = fixture(&format!("peft-{name}"));
        let model = HfCausalLm::load_adapter_folder(&dir, None, LoadOptions::cpu_f32()).unwrap();
        let e = tensors(&dir.join("expected.safetensors"));
        let out = model.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap().logits;
        let d = max_diff(&out, &e["logits"], &e["attention_mask"]);
        let base = logits(&HfCausalLm::load(fixture(name), LoadOptions::cpu_f32()).unwrap(), name);
        let moved = max_diff(&base, &e["logits"], &e["attention_mask"]);
        eprintln!("peft-{name}: max |logits diff| vs PEFT {d:.2e} (the adapter moves them by {moved:.2e})");
        assert!(moved > 1e-2, "the fixture's adapter changes the logits");
        assert!(d < 1e-4, "peft-{name}: logits differ from PEFT's by {d}");
    }
}

/// Keys PEFT writes that we leave to PEFT's defaults (the fixture must hold those defaults).
const PEFT_DEFAULT_KEYS: &[&str] = &[
    "alora_invocation_tokens",
    "arrow_config",
    "corda_config",
    "ensure_weight_tying",
    "eva_config",
    "kasa_config",
    "layer_replication",
    "loftq_config",
    "lora_ga_config",
    "megatron_config",
    "megatron_core",
    "monteclora_config",
    "peft_version",
    "qalora_group_size",
    "target_parameters",
    "trainable_token_indices",
    "use_bdlora",
    "use_qalora",
    "velora_config",
];

/// An adapter we save for the spec of the PEFT fixture has the fixture's tensor names,
/// shapes and dtypes, and the same `adapter_config.json` values.
#[test]
fn our_adapter_folder_has_peft_layout() {
    let peft = fixture("peft-llama");
    let peft_config: Value =
        serde_json::from_str(&std::fs::read_to_string(peft.join(ADAPTER_CONFIG)).unwrap()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let model = HfCausalLm::load_with_lora(fixture("llama"), LoadOptions::cpu_f32(), &LoraSpec::new(4, 8.0)).unwrap();
    model.save_adapter(root.path(), "../llama", &[]).unwrap();
    let layout = |dir: &Path| -> Vec<(String, Vec<i64>, Kind)> {
        tensors(&dir.join(ADAPTER_WEIGHTS)).into_iter().map(|(n, t)| (n, t.size(), t.kind())).collect()
    };
    assert_eq!(layout(root.path()), layout(&peft));
    let ours: Value =
        serde_json::from_str(&std::fs::read_to_string(root.path().join(ADAPTER_CONFIG)).unwrap()).unwrap();
    let (ours, theirs) = (ours.as_object().unwrap(), peft_config.as_object().unwrap());
    let sorted = |v: &Value| {
        let mut names: Vec<String> = v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        names.sort();
        names
    };
    for (key, value) in ours {
        let Some(peft_value) = theirs.get(key) else { panic!("PEFT does not write `{key}`") };
        if key == "target_modules" {
            assert_eq!(sorted(value), sorted(peft_value), "target_modules (a set in PEFT)");
        } else {
            assert_eq!(value, peft_value, "`{key}`");
        }
    }
    for (key, value) in theirs.iter().filter(|(k, _)| !ours.contains_key(*k)) {
        assert!(PEFT_DEFAULT_KEYS.contains(&key.as_str()), "PEFT writes `{key}` = {value}, we do not");
        let default = matches!(value, Value::Null | Value::Bool(false))
            || value.as_object().is_some_and(|o| o.is_empty())
            || ["peft_version", "megatron_core", "qalora_group_size"].contains(&key.as_str());
        assert!(default, "`{key}` = {value} is not PEFT's default");
    }
}

/// Tensors in file order.
type NamedTensors = Vec<(String, Tensor)>;

#[test]
fn bad_adapters_are_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let copy = |from: &Path, name: &str| -> PathBuf {
        let dir = root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [ADAPTER_CONFIG, ADAPTER_WEIGHTS] {
            std::fs::copy(from.join(f), dir.join(f)).unwrap();
        }
        // Name no base, so that only the tensors can tell.
        let path = dir.join(ADAPTER_CONFIG);
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["base_model_name_or_path"] = Value::Null;
        std::fs::write(&path, config.to_string()).unwrap();
        dir
    };
    let load =
        |base: &str, adapter: &Path| HfCausalLm::load_with_adapter(fixture(base), adapter, LoadOptions::cpu_f32());
    let rewrite = |dir: &Path, f: &dyn Fn(&mut NamedTensors)| {
        let path = dir.join(ADAPTER_WEIGHTS);
        let mut ts = Tensor::read_safetensors(&path).unwrap();
        f(&mut ts);
        Tensor::write_safetensors(&ts, &path).unwrap();
    };

    // The architecture named by the adapter differs from the base given.
    let e = load("llama", &fixture("peft-qwen2")).unwrap_err().to_string();
    assert!(e.contains("made for a `qwen2` model") && e.contains("`llama` model"), "{e}");
    // Wrong shapes: a llama adapter (attention width 32) on gemma2 (attention width 64; the
    // file's order decides which tensor is reported first).
    let dir = copy(&fixture("peft-llama"), "shapes");
    let e = load("gemma2", &dir).unwrap_err();
    assert!(
        matches!(&e, LmError::TensorShape { name, expected, found, .. } if name.contains("lora_") && expected != found),
        "{e}"
    );
    // A module the base does not have (a fourth layer on a three-layer model).
    let dir = copy(&fixture("peft-llama"), "layers");
    let q0 = peft_name("model.layers.0.self_attn.q_proj", "lora_A");
    rewrite(&dir, &|ts| {
        ts.iter_mut().filter(|(n, _)| *n == q0).for_each(|t| t.0 = t.0.replace("layers.0.", "layers.3."))
    });
    let e = load("llama", &dir).unwrap_err().to_string();
    assert!(e.contains("model.layers.3.") && e.contains("not a projection of the base model"), "{e}");
    // A tensor that is no LoRA matrix.
    let dir = copy(&fixture("peft-llama"), "unexpected");
    rewrite(&dir, &|ts| ts[0].0 = "base_model.model.lm_head.weight".into());
    let e = load("llama", &dir).unwrap_err();
    assert!(matches!(&e, LmError::UnexpectedTensor { name, .. } if name == "base_model.model.lm_head.weight"), "{e}");
    // Half an adapter.
    let dir = copy(&fixture("peft-llama"), "half");
    rewrite(&dir, &|ts| ts.retain(|(n, _)| n != &peft_name("model.layers.1.mlp.up_proj", "lora_B")));
    let e = load("llama", &dir).unwrap_err();
    assert!(matches!(&e, LmError::MissingTensor { name, .. } if name.contains("layers.1.mlp.up_proj.lora_B")), "{e}");
    // Not an adapter folder; no base to find.
    let e = load("llama", &fixture("llama")).unwrap_err().to_string();
    assert!(e.contains("not an adapter folder"), "{e}");
    let e = HfCausalLm::load_adapter_folder(copy(&fixture("peft-llama"), "nobase"), None, LoadOptions::cpu_f32())
        .unwrap_err()
        .to_string();
    assert!(e.contains("base_model_name_or_path") && e.contains("--base"), "{e}");
    // A weights file missing beside the config.
    let dir = copy(&fixture("peft-llama"), "noweights");
    std::fs::remove_file(dir.join(ADAPTER_WEIGHTS)).unwrap();
    let e = load("llama", &dir).unwrap_err().to_string();
    assert!(e.contains(ADAPTER_WEIGHTS), "{e}");
}
