//! The families added to Llama, Qwen2 and Gemma2 — Qwen3 (q/k norm, its own head width),
//! Mistral (a sliding window in every layer), Gemma 3 (sliding/global pattern, two rotary
//! bases, q/k norm) and a Llama 3.2 style model (tied embeddings, `llama3` rope scaling) —
//! against `transformers` 5.23.0 on their fixtures (tests/fixtures/README.md): logits and
//! hidden states through every attention path, selected positions, completion log-probs,
//! greedy generation, the cache, saving, gradients, and each fixture's own tokenizer and chat
//! template.
//!
//! The attention paths are listed in [`PATHS`]; a new one (e.g. a user-chosen kernel) is one
//! more variant of [`AttentionPath`] and one arm of [`run_path`].

mod common;
use common::gradient_entry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lm_backend::{
    CausalLm, ChatMessage, GenerationConfig, HfCausalLm, HiddenRequest, LmOutput, LoadOptions, PackedBatch, Tokenizer,
};
use serde_json::Value;
use tch::{Kind, Tensor};

const FAMILIES: [&str; 4] = ["qwen3", "mistral", "gemma3", "llama-tied"];
const TOLERANCE: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn load(name: &str) -> HfCausalLm {
    HfCausalLm::load(fixture(name), LoadOptions::cpu_f32()).unwrap()
}

fn expected(name: &str) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(fixture(name).join("expected.safetensors")).unwrap().into_iter().collect()
}

/// How a forward pass computes attention.
#[derive(Debug, Clone, Copy)]
enum AttentionPath {
    /// A right-padded batch `[B, T]`: the eager computation (scores, mask, f32 softmax).
    PaddedEager,
    /// The batch's sequences laid end to end in one packed row `[1, N]`, each its own segment
    /// and chunk: libtorch's fused `scaled_dot_product_attention` (no soft-cap in these
    /// families).
    PackedFused,
}

const PATHS: [AttentionPath; 2] = [AttentionPath::PaddedEager, AttentionPath::PackedFused];

/// Logits `[N, V]` and hidden states `[N, D]` (indices `0..=L`) at the real positions of the
/// padded batch `ids`, `mask` `[B, T]`, in row-major order, computed along `path`.
fn run_path(model: &HfCausalLm, path: AttentionPath, ids: &Tensor, mask: &Tensor) -> (Tensor, Vec<Tensor>) {
    let request = HiddenRequest::layers(0..=model.num_layers());
    let real = mask.ne(0).view([-1]).nonzero().squeeze_dim(1); // [N]
    let d = model.config().hidden_size as i64;
    match path {
        AttentionPath::PaddedEager => {
            let out = model.forward(ids, mask, &request).unwrap();
            let v = out.logits.size()[2];
            let logits = out.logits.view([-1, v]).index_select(0, &real);
            let states = out.hidden.layers.values().map(|h| h.reshape([-1, d]).index_select(0, &real)).collect();
            (logits, states)
        }
        AttentionPath::PackedFused => {
            let lengths = Vec::<i64>::try_from(mask.sum_dim_intlist(1, false, Kind::Int64)).unwrap();
            let row = |v: Vec<i64>| Tensor::from_slice(&v).unsqueeze(0);
            let (mut tokens, mut positions, mut segments) = (vec![], vec![], vec![]);
            for (b, &n) in lengths.iter().enumerate() {
                tokens.extend(Vec::<i64>::try_from(ids.get(b as i64).narrow(0, 0, n)).unwrap());
                positions.extend(0..n);
                segments.extend(std::iter::repeat_n(b as i64, n as usize));
            }
            let branches = vec![0i64; tokens.len()];
            let chunks = lengths.iter().map(|&n| n as usize).collect();
            let batch = PackedBatch::new(row(tokens), row(positions), row(segments), row(branches), chunks).unwrap();
            let every = batch.input_ids().ones_like().to_kind(Kind::Bool);
            let out: LmOutput = model.forward_packed_at(&batch, &every, &request).unwrap();
            let states = out.hidden.layers.values().map(|h| h.reshape([-1, d])).collect();
            (out.logits, states)
        }
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

#[test]
fn logits_and_hidden_states_match_transformers_on_every_attention_path() {
    for name in FAMILIES {
        let model = load(name);
        let e = expected(name);
        let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
        assert!(mask.eq(0).any().int64_value(&[]) == 1, "{name}: the fixture batch must contain padding");
        let real = mask.ne(0).view([-1]).nonzero().squeeze_dim(1);
        let v = e["logits"].size()[2];
        let want_logits = e["logits"].view([-1, v]).index_select(0, &real);
        let want_states = &e["hidden_states"]; // [L+1, B, T, D]
        for path in PATHS {
            let (logits, states) = run_path(&model, path, ids, mask);
            let logits_diff = max_abs_diff(&logits, &want_logits);
            assert!(logits_diff < TOLERANCE, "{name} {path:?}: logits differ by {logits_diff}");
            assert_eq!(states.len() as i64, want_states.size()[0]);
            let mut states_diff: f64 = 0.0;
            for (l, h) in states.iter().enumerate() {
                let want = want_states.get(l as i64).reshape([-1, h.size()[1]]).index_select(0, &real);
                states_diff = states_diff.max(max_abs_diff(h, &want));
            }
            assert!(states_diff < TOLERANCE, "{name} {path:?}: hidden states differ by {states_diff}");
            eprintln!("{name} {path:?}: max |logits diff| {logits_diff:.2e}, max |hidden diff| {states_diff:.2e}");
        }
    }
}

/// `forward_at` at the completion positions (what a trainer scores) equals transformers'
/// logits there, and the completion log-prob sums equal the reference sums.
#[test]
fn forward_at_and_completion_log_probs_match_transformers() {
    for name in FAMILIES {
        let model = load(name);
        let e = expected(name);
        let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let prompts = Vec::<i64>::try_from(&e["prompt_lengths"]).unwrap();
        // Positions predicting a completion token: prompt_len - 1 ..= len - 2.
        let lengths = Vec::<i64>::try_from(mask.sum_dim_intlist(1, false, Kind::Int64)).unwrap();
        let mut selected = vec![false; (b * t) as usize];
        for r in 0..b as usize {
            for p in prompts[r] - 1..lengths[r] - 1 {
                selected[r * t as usize + p as usize] = true;
            }
        }
        let positions = Tensor::from_slice(&selected).view([b, t]);
        let out = model.forward_at(ids, mask, &positions, &HiddenRequest::none()).unwrap();
        let rows = positions.view([-1]).nonzero().squeeze_dim(1);
        let v = e["logits"].size()[2];
        let want = e["logits"].view([-1, v]).index_select(0, &rows);
        let diff = max_abs_diff(&out.logits, &want);
        assert!(diff < TOLERANCE, "{name}: forward_at logits differ by {diff}");
        // Completion log-prob sums from the selected logits.
        let logp = out.logits.log_softmax(-1, Kind::Double);
        let sums = Vec::<f64>::try_from(&e["completion_logp_sum"]).unwrap();
        let mut row = 0;
        for r in 0..b as usize {
            let mut total = 0.0;
            for p in prompts[r] - 1..lengths[r] - 1 {
                total += logp.double_value(&[row, ids.int64_value(&[r as i64, p + 1])]);
                row += 1;
            }
            assert!((total - sums[r]).abs() < 1e-3, "{name}[{r}]: {total} vs {}", sums[r]);
        }
    }
}

fn generation_cases(e: &BTreeMap<String, Tensor>) -> Vec<(Vec<i64>, Vec<i64>)> {
    let ids = |t: &Tensor| Vec::<i64>::try_from(t).unwrap();
    (0..2).map(|i| (ids(&e[&format!("generation_{i}_prompt")]), ids(&e[&format!("generation_{i}_output")]))).collect()
}

/// Greedy decoding with the key/value cache equals transformers' `generate(do_sample=False)`
/// token for token, one prompt at a time and batched with left padding; and it equals a
/// recomputation without cache (one full pass per new token).
#[test]
fn generation_matches_transformers_and_uncached_recomputation() {
    for name in FAMILIES {
        let model = load(name);
        let e = expected(name);
        let cases = generation_cases(&e);
        let config = GenerationConfig::greedy(&model, 12);
        for (prompt, want) in &cases {
            let got = model.generate(std::slice::from_ref(prompt), &config).unwrap();
            assert_eq!(&got[0], want, "{name}: alone");
        }
        assert_ne!(cases[0].0.len(), cases[1].0.len(), "{name}: the prompts must differ in length");
        let prompts: Vec<Vec<i64>> = cases.iter().map(|c| c.0.clone()).collect();
        let batched = model.generate(&prompts, &config).unwrap();
        for (r, (_, want)) in cases.iter().enumerate() {
            assert_eq!(&batched[r], want, "{name}: batched row {r}");
        }
        let mut seq = cases[1].0.clone();
        let steps = 10;
        let cached = model.generate(std::slice::from_ref(&seq), &GenerationConfig::greedy(&model, steps)).unwrap();
        for _ in 0..steps {
            let input = Tensor::from_slice(&seq).unsqueeze(0);
            let logits = model.forward(&input, &input.ones_like(), &HiddenRequest::none()).unwrap().logits;
            seq.push(logits.get(0).get(seq.len() as i64 - 1).argmax(-1, false).int64_value(&[]));
        }
        // A sliding window shorter than the sequence: the cache must drop keys by position.
        assert!(seq.len() > 4, "{name}");
        let stop = cached[0].len();
        assert_eq!(cached[0], seq[seq.len() - steps..][..stop].to_vec(), "{name}: cached vs recomputed");
    }
}

/// Save, reload: identical parameters and logits; a tied model stores no `lm_head`; the
/// tokenizer files travel with the weights.
#[test]
fn saved_folders_reload_identically() {
    let root = tempfile::tempdir().unwrap();
    for name in FAMILIES {
        let model = load(name);
        let target = root.path().join(name);
        let extra = [fixture(name).join("tokenizer.json"), fixture(name).join("tokenizer_config.json")];
        model.save(&target, &extra).unwrap();
        let reloaded = HfCausalLm::load(&target, LoadOptions::cpu_f32()).unwrap();
        assert_eq!(model.config(), reloaded.config(), "{name}");
        assert_eq!(model.parameters().len(), reloaded.parameters().len());
        for (n, p) in model.parameters() {
            assert!(p.equal(&reloaded.parameters()[n]), "{name}: {n}");
        }
        let names: Vec<String> =
            Tensor::read_safetensors(target.join("model.safetensors")).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.contains(&"lm_head.weight".to_string()), !model.config().tie_word_embeddings, "{name}");
        let e = expected(name);
        let a = model.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap().logits;
        let b = reloaded.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap().logits;
        assert!(a.equal(&b), "{name}");
        let tokenizer = Tokenizer::from_dir(&target).unwrap();
        assert!(tokenizer.chat_template().is_some(), "{name}");
    }
}

/// Gradients through the new parts (q/k norms, Gemma 3's two rotary tables, the window)
/// equal central finite differences, in float64.
#[test]
fn gradients_match_finite_differences() {
    for name in ["qwen3", "gemma3", "mistral"] {
        let model = HfCausalLm::load(fixture(name), LoadOptions::cpu_f32().with_dtype(Kind::Double)).unwrap();
        let e = expected(name);
        let (ids, mask) = (e["input_ids"].narrow(1, 0, 12), e["attention_mask"].narrow(1, 0, 12));
        let vocab = model.config().vocab_size as i64;
        // Fixed weights of the objective, from a closed-form pattern (no global RNG).
        let weights = Tensor::arange(3 * 12 * vocab, (Kind::Double, tch::Device::Cpu)).view([3, 12, vocab]).sin();
        let objective = |m: &HfCausalLm| {
            let logits = m.forward(&ids, &mask, &HiddenRequest::none()).unwrap().logits;
            (logits * &weights * mask.unsqueeze(-1)).sum(Kind::Double)
        };
        model.set_trainable(true);
        objective(&model).backward();
        let mut probes = vec![
            ("model.layers.1.self_attn.q_proj.weight", vec![3, 5]),
            ("model.layers.0.self_attn.k_proj.weight", vec![2, 7]),
            ("model.layers.1.mlp.down_proj.weight", vec![4, 9]),
        ];
        if model.config().qk_norm {
            probes.push(("model.layers.0.self_attn.q_norm.weight", vec![3]));
            probes.push(("model.layers.1.self_attn.k_norm.weight", vec![5]));
        }
        if name == "gemma3" {
            // Layer 2 is the global layer (its own rotary table), layer 3 a sliding one.
            probes.push(("model.layers.2.self_attn.k_norm.weight", vec![1]));
            probes.push(("model.layers.3.self_attn.q_proj.weight", vec![7, 2]));
        }
        for (param, index) in probes {
            let (analytic, numeric) = gradient_entry(&model, param, &index, objective);
            let err = (analytic - numeric).abs() / numeric.abs().max(1e-3);
            assert!(err < 1e-5, "{name} {param}{index:?}: {analytic} vs {numeric}");
        }
    }
}

/// A copy of fixture `name` with its `config.json` edited.
fn edited(name: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> HfCausalLm {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(name).join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("config.json")).unwrap()).unwrap();
    edit(config.as_object_mut().unwrap());
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    HfCausalLm::load(dir.path(), LoadOptions::cpu_f32()).unwrap()
}

/// Each feature shapes the fixture's output: without it the logits move far beyond the
/// tolerance, so the parity tests above would catch its absence.
#[test]
fn fixtures_are_sensitive_to_each_feature() {
    type Edit = fn(&mut serde_json::Map<String, Value>);
    let variants: [(&str, &str, Edit); 7] = [
        ("mistral", "no sliding window", |c| {
            c.insert("sliding_window".into(), Value::Null);
        }),
        ("gemma3", "sliding layers on the global rotary base", |c| {
            c["rope_parameters"]["sliding_attention"]["rope_theta"] = serde_json::json!(100000.0);
        }),
        ("gemma3", "no linear scaling on global layers", |c| {
            c["rope_parameters"]["full_attention"] =
                serde_json::json!({"rope_type": "default", "rope_theta": 100000.0});
        }),
        ("gemma3", "every layer global", |c| {
            c.insert(
                "layer_types".into(),
                serde_json::json!(["full_attention", "full_attention", "full_attention", "full_attention"]),
            );
        }),
        ("gemma3", "head_dim^-0.5 as attention scale", |c| {
            c.insert("query_pre_attn_scalar".into(), serde_json::json!(16));
        }),
        ("llama-tied", "no llama3 rope scaling", |c| {
            c.insert("rope_parameters".into(), serde_json::json!({"rope_type": "default", "rope_theta": 500000.0}));
        }),
        ("qwen3", "head_dim = hidden / heads", |c| {
            // The weights no longer fit: loading must fail on the shapes.
            c.insert("head_dim".into(), serde_json::json!(8));
        }),
    ];
    for (name, what, edit) in variants {
        let e = expected(name);
        if name == "qwen3" {
            let dir = tempfile::tempdir().unwrap();
            std::fs::copy(fixture(name).join("model.safetensors"), dir.path().join("model.safetensors")).unwrap();
            let mut config: Value =
                serde_json::from_str(&std::fs::read_to_string(fixture(name).join("config.json")).unwrap()).unwrap();
            edit(config.as_object_mut().unwrap());
            std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
            let err = HfCausalLm::load(dir.path(), LoadOptions::cpu_f32()).unwrap_err().to_string();
            assert!(err.contains("self_attn") && err.contains("the config implies"), "{name} {what}: {err}");
            continue;
        }
        let model = edited(name, edit);
        let logits = model.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap().logits;
        let real = e["attention_mask"].ne(0).unsqueeze(-1).expand_as(&logits);
        let diff = (logits - &e["logits"]).abs().masked_select(&real).max().double_value(&[]);
        assert!(diff > 100.0 * TOLERANCE, "{name} with {what}: only {diff}");
    }
    // The q/k norms' weights matter: setting them to ones (Qwen3's neutral scale) moves the logits.
    let mut model = load("qwen3");
    let e = expected("qwen3");
    let before = model.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap().logits;
    tch::no_grad(|| {
        for (n, p) in model.parameters() {
            if n.ends_with("q_norm.weight") || n.ends_with("k_norm.weight") {
                let _ = p.shallow_clone().fill_(1.0);
            }
        }
    });
    let after = model.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap().logits;
    let real = e["attention_mask"].ne(0).unsqueeze(-1).expand_as(&before);
    let diff = (after - before).abs().masked_select(&real).max().double_value(&[]);
    assert!(diff > 100.0 * TOLERANCE, "qwen3 q/k norm weights: only {diff}");
    model = load("qwen3");
    assert!(model.config().qk_norm);
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Each fixture's own `tokenizer.json` gives transformers' ids, with and without special
/// tokens, and decodes as transformers decodes.
#[test]
fn tokenizers_follow_their_own_tokenizer_json() {
    for name in FAMILIES {
        let tokenizer = Tokenizer::from_dir(fixture(name)).unwrap();
        let expected = read_json(&fixture(name).join("tokenizer_expected.json"));
        assert_eq!(tokenizer.vocab_size() as u64, expected["vocab_size"].as_u64().unwrap(), "{name}");
        for case in expected["encodings"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let ids =
                |v: &Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
            assert_eq!(tokenizer.encode(text, true).unwrap(), ids(&case["ids_with_special"]), "{name}: {text:?}");
            let plain = tokenizer.encode(text, false).unwrap();
            assert_eq!(plain, ids(&case["ids_without_special"]), "{name}: {text:?}");
            assert_eq!(tokenizer.decode(&plain, false).unwrap(), case["decoded"].as_str().unwrap(), "{name}: {text:?}");
        }
    }
}

/// The families' real chat templates render as transformers renders them, and the rendered
/// text tokenises (without added specials, as `apply_chat_template(tokenize=True)`) to the
/// same ids.
#[test]
fn chat_templates_render_and_tokenise_as_transformers() {
    for name in FAMILIES {
        let tokenizer = Tokenizer::from_dir(fixture(name)).unwrap();
        let expected = read_json(&fixture(name).join("tokenizer_expected.json"));
        let chats = expected["chat"].as_array().unwrap();
        assert_eq!(chats.len(), 6, "{name}");
        for case in chats {
            let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
            let variables = case["kwargs"].as_object().unwrap();
            let add = case["add_generation_prompt"].as_bool().unwrap();
            let rendered = tokenizer.apply_chat_template_with(&messages, add, variables).unwrap();
            assert_eq!(rendered, case["rendered"].as_str().unwrap(), "{name}: {messages:?} (generation prompt {add})");
            let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
            assert_eq!(tokenizer.encode(&rendered, false).unwrap(), ids, "{name}: ids of {rendered:?}");
        }
    }
}

/// Template rules reach the user as errors: Gemma 3 and Mistral refuse roles that do not
/// alternate, with the template's own message.
#[test]
fn chat_template_exceptions_carry_the_templates_message() {
    let two_users = [ChatMessage::new("user", "a"), ChatMessage::new("user", "b")];
    for (name, message) in [("gemma3", "Conversation roles must alternate"), ("mistral", "roles must alternate")] {
        let tokenizer = Tokenizer::from_dir(fixture(name)).unwrap();
        let err = tokenizer.apply_chat_template(&two_users, true).unwrap_err().to_string();
        assert!(err.contains(message), "{name}: {err}");
    }
}

/// The published config form (`rope_theta`, `rope_scaling`, Gemma 3's `rope_local_base_freq`
/// and `sliding_window_pattern`, no `layer_types`), which most checkpoints on the hub carry,
/// gives the same model as the form transformers 5.x wrote for the fixtures.
#[test]
fn published_config_forms_give_the_same_models() {
    type Edit = fn(&mut serde_json::Map<String, Value>);
    let published: [(&str, Edit); 4] = [
        ("qwen3", |c| {
            c.remove("rope_parameters");
            c.remove("layer_types");
            c.insert("rope_theta".into(), serde_json::json!(1000000.0));
        }),
        ("mistral", |c| {
            c.remove("rope_parameters");
            c.insert("rope_theta".into(), serde_json::json!(1000000.0));
        }),
        ("gemma3", |c| {
            c.remove("rope_parameters");
            c.remove("layer_types");
            c.remove("_sliding_window_pattern");
            c.insert("rope_theta".into(), serde_json::json!(100000.0));
            c.insert("rope_scaling".into(), serde_json::json!({"rope_type": "linear", "factor": 4.0}));
            c.insert("rope_local_base_freq".into(), serde_json::json!(10000.0));
            c.insert("sliding_window_pattern".into(), serde_json::json!(3));
        }),
        ("llama-tied", |c| {
            let mut rope = c.remove("rope_parameters").unwrap();
            let theta = rope.as_object_mut().unwrap().remove("rope_theta").unwrap();
            c.insert("rope_theta".into(), theta);
            c.insert("rope_scaling".into(), rope);
        }),
    ];
    for (name, edit) in published {
        let original = load(name);
        let model = edited(name, edit);
        assert_eq!(model.config(), original.config(), "{name}");
        let e = expected(name);
        let a = model.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap().logits;
        let b = original.forward(&e["input_ids"], &e["attention_mask"], &HiddenRequest::none()).unwrap().logits;
        assert!(a.equal(&b), "{name}");
    }
}
