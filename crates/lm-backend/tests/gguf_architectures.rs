//! GGUF import beyond Llama: `qwen2`, `qwen3`, `gemma2` and `gemma3` files made from the
//! transformers fixtures the way llama.cpp's converter makes them (its tensor names, q/k rows
//! not permuted, Gemma's norms stored as `1 + w`, 2-D weights in F16, the `<arch>.*`
//! metadata, the fixtures' own tokenizers; see scripts/fixtures/make_gguf_fixtures.py), and a
//! Llama file with a SentencePiece vocabulary. Exported, each must give back the fixture: its
//! weights (rounded to F16 where the file stores F16), its config (except what a GGUF file
//! cannot carry, named in each test), its function, and its tokenizer's ids.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lm_backend::gguf::{convert_to_hf, ConvertOptions, ExportDtype, GgufError, GgufTokenizer};
use lm_backend::{
    CausalLm, ChatMessage, HfCausalLm, HiddenRequest, LayerAttention, LoadOptions, ModelConfig, Tokenizer,
};
use serde_json::Value;
use tch::{Kind, Tensor};

/// (GGUF fixture, transformers fixture it was made from, `architectures[0]` of the export).
const CASES: [(&str, &str, &str); 4] = [
    ("tiny_qwen2.gguf", "qwen2", "Qwen2ForCausalLM"),
    ("tiny_qwen3.gguf", "qwen3", "Qwen3ForCausalLM"),
    ("tiny_gemma2.gguf", "gemma2", "Gemma2ForCausalLM"),
    ("tiny_gemma3.gguf", "gemma3", "Gemma3ForCausalLM"),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn convert(gguf: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    convert_to_hf(
        fixtures().join("gguf").join(gguf),
        &out,
        &ConvertOptions { dtype: ExportDtype::F32, overwrite: false },
    )
    .unwrap();
    (dir, out)
}

fn tensors(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// The fixture's weights as the GGUF file stores them: matrices rounded to f16.
fn as_stored(hf: &BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    hf.iter()
        .map(|(n, t)| {
            let t = if t.dim() == 2 { t.to_kind(Kind::Half).to_kind(Kind::Float) } else { t.copy() };
            (n.clone(), t)
        })
        .collect()
}

/// What a GGUF file cannot carry, so that the export follows llama.cpp instead: Gemma's
/// attention scale (llama.cpp uses `head_dim` below 27B; the fixtures use 24 with head width
/// 16, to prove the scale is read) and Gemma 3's layer pattern (llama.cpp fixes 6 layers per
/// global one; the fixture uses 3 to fit both kinds in 4 layers). Returns the fixture's values.
fn restore_what_gguf_cannot_carry(exported: &mut Value, fixture: &Value) {
    if fixture["model_type"].as_str().is_some_and(|t| t.starts_with("gemma")) {
        for key in ["query_pre_attn_scalar", "layer_types"] {
            if let Some(value) = fixture.get(key) {
                exported[key] = value.clone();
            }
        }
    }
}

#[test]
fn weights_come_back_unpermuted_with_gemma_norms_offset_back() {
    for (gguf, fixture, _) in CASES {
        let (_dir, out) = convert(gguf);
        let exported = tensors(&out.join("model.safetensors"));
        let stored = as_stored(&tensors(&fixtures().join(fixture).join("model.safetensors")));
        assert_eq!(exported.keys().collect::<Vec<_>>(), stored.keys().collect::<Vec<_>>(), "{gguf}");
        for (name, want) in &stored {
            let got = &exported[name];
            assert_eq!(got.size(), want.size(), "{gguf} {name}");
            let diff = (got - want).abs().max().double_value(&[]);
            if fixture.starts_with("gemma") && name.ends_with("norm.weight") {
                // Stored as f32(w + 1), exported as f32(stored - 1): two roundings near 1.
                assert!(diff <= 2.5e-7, "{gguf} {name}: {diff}");
            } else {
                assert_eq!(diff, 0.0, "{gguf} {name}");
            }
        }
    }
}

#[test]
fn configs_describe_the_fixture_models() {
    for (gguf, fixture, class) in CASES {
        let (_dir, out) = convert(gguf);
        let mut exported = read_json(&out.join("config.json"));
        let original = read_json(&fixtures().join(fixture).join("config.json"));
        assert_eq!(exported["architectures"][0], class, "{gguf}");
        assert_eq!(exported["model_type"], original["model_type"], "{gguf}");
        if fixture.starts_with("gemma") {
            // llama.cpp's scale below 27B: head_dim (16); the fixture's 24 is not in the file.
            assert_eq!(exported["query_pre_attn_scalar"].as_f64(), Some(16.0), "{gguf}");
        }
        if fixture == "gemma3" {
            let c = ModelConfig::from_json_str(&exported.to_string(), "config.json").unwrap();
            assert_eq!(c.layers, vec![LayerAttention::Sliding { window: 4 }; 4], "pattern 6: no global layer in 4");
            assert_eq!(c.local_rope.as_ref().map(|r| r.theta), Some(10_000.0));
        }
        restore_what_gguf_cannot_carry(&mut exported, &original);
        let exported = ModelConfig::from_json_str(&exported.to_string(), "exported").unwrap();
        let original = ModelConfig::from_json_str(&original.to_string(), "fixture").unwrap();
        assert_eq!(exported, original, "{gguf}");
    }
}

/// The exported model computes the fixture model's function (with the fixture's weights as
/// the file stores them): logits within f32 rounding at every real position of the fixture
/// batch, and hence transformers' logits within the rounding of the weights to f16.
#[test]
fn exported_models_compute_the_fixture_models() {
    for (gguf, fixture, _) in CASES {
        let (_dir, out) = convert(gguf);
        let mut config = read_json(&out.join("config.json"));
        let original_config = read_json(&fixtures().join(fixture).join("config.json"));
        restore_what_gguf_cannot_carry(&mut config, &original_config);
        std::fs::write(out.join("config.json"), config.to_string()).unwrap();
        let exported = HfCausalLm::load(&out, LoadOptions::cpu_f32()).unwrap();
        let stored = as_stored(&tensors(&fixtures().join(fixture).join("model.safetensors")));
        let reference = HfCausalLm::from_parameters(original_config, stored, LoadOptions::cpu_f32()).unwrap();
        let e = tensors(&fixtures().join(fixture).join("expected.safetensors"));
        let (ids, mask) = (&e["input_ids"], &e["attention_mask"]);
        let a = exported.forward(ids, mask, &HiddenRequest::none()).unwrap().logits;
        let b = reference.forward(ids, mask, &HiddenRequest::none()).unwrap().logits;
        let real = mask.ne(0).unsqueeze(-1).expand_as(&a);
        let diff = (&a - &b).abs().masked_select(&real).max().double_value(&[]);
        let scale = b.abs().max().double_value(&[]).max(1.0);
        assert!(diff <= 1e-5 * scale, "{gguf}: {diff} (scale {scale})");
        let vs_transformers = (&a - &e["logits"]).abs().masked_select(&real).max().double_value(&[]);
        eprintln!("{gguf}: vs fixture model {diff:.2e}, vs transformers (f16 weights) {vs_transformers:.2e}");
        assert!(vs_transformers < 0.05 * scale, "{gguf}: {vs_transformers}");
    }
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Byte-level BPE: the exported tokenizer of a file made from a tokenizer gives that
/// tokenizer's ids. `qwen2`/`gemma2` carry the fixture tokenizer (GPT-2's split, `pre =
/// default`, BOS added); `qwen3` carries Qwen's (`pre = qwen2`), except its NFC normaliser,
/// which GGUF files do not record: only the decomposed-accent string differs.
#[test]
fn byte_level_tokenizers_survive_the_round_trip() {
    for (gguf, expected_file) in [
        ("tiny_qwen2.gguf", "tokenizer/expected.json"),
        ("tiny_gemma2.gguf", "tokenizer/expected.json"),
        ("tiny_qwen3.gguf", "qwen3/tokenizer_expected.json"),
    ] {
        let (_dir, out) = convert(gguf);
        let tokenizer = Tokenizer::from_dir(&out).unwrap();
        let expected = read_json(&fixtures().join(expected_file));
        let mut differing = vec![];
        for case in expected["encodings"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let same = tokenizer.encode(text, true).unwrap() == ids(&case["ids_with_special"])
                && tokenizer.encode(text, false).unwrap() == ids(&case["ids_without_special"]);
            if !same {
                differing.push(text.to_string());
            }
        }
        let want: Vec<String> =
            if gguf == "tiny_qwen3.gguf" { vec!["e\u{301} (decomposed) vs \u{e9} (composed)".into()] } else { vec![] };
        assert_eq!(differing, want, "{gguf}");
    }
    // Qwen's split puts every digit on its own.
    let (_dir, out) = convert("tiny_qwen3.gguf");
    let tokenizer = Tokenizer::from_dir(&out).unwrap();
    let digits = tokenizer.encode("2026", false).unwrap();
    assert_eq!(digits.len(), 4, "{digits:?}");
}

/// SentencePiece with Gemma's layout (`gemma3`): the rebuilt merges, byte fallback, specials
/// and `▁` normalisation give the fixture tokenizer's ids, decodings and rendered chats (the
/// chat template travels in the file).
#[test]
fn gemma_sentencepiece_tokenizer_survives_the_round_trip() {
    let (_dir, out) = convert("tiny_gemma3.gguf");
    let tokenizer = Tokenizer::from_dir(&out).unwrap();
    let expected = read_json(&fixtures().join("gemma3/tokenizer_expected.json"));
    for case in expected["encodings"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tokenizer.encode(text, true).unwrap(), ids(&case["ids_with_special"]), "{text:?}");
        let plain = tokenizer.encode(text, false).unwrap();
        assert_eq!(plain, ids(&case["ids_without_special"]), "{text:?}");
        assert_eq!(tokenizer.decode(&plain, false).unwrap(), case["decoded"].as_str().unwrap(), "{text:?}");
    }
    for case in expected["chat"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let add = case["add_generation_prompt"].as_bool().unwrap();
        let rendered = tokenizer.apply_chat_template_with(&messages, add, case["kwargs"].as_object().unwrap()).unwrap();
        assert_eq!(rendered, case["rendered"].as_str().unwrap());
        assert_eq!(tokenizer.encode(&rendered, false).unwrap(), ids(&case["ids"]));
    }
    let config = read_json(&out.join("tokenizer_config.json"));
    assert_eq!((config["bos_token"].as_str(), config["eos_token"].as_str()), (Some("<bos>"), Some("<eos>")));
    assert_eq!(config["add_bos_token"], true);
}

/// SentencePiece with Llama's layout (a Mistral/Llama 2 style file, `general.architecture =
/// llama`): `Metaspace` with the prefix space, merges by score, byte fallback: the mistral
/// fixture tokenizer's ids and decodings.
#[test]
fn llama_sentencepiece_tokenizer_survives_the_round_trip() {
    let (_dir, out) = convert("tiny_llama_spm.gguf");
    let tokenizer = Tokenizer::from_dir(&out).unwrap();
    let expected = read_json(&fixtures().join("mistral/tokenizer_expected.json"));
    for case in expected["encodings"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tokenizer.encode(text, true).unwrap(), ids(&case["ids_with_special"]), "{text:?}");
        let plain = tokenizer.encode(text, false).unwrap();
        assert_eq!(plain, ids(&case["ids_without_special"]), "{text:?}");
        assert_eq!(tokenizer.decode(&plain, false).unwrap(), case["decoded"].as_str().unwrap(), "{text:?}");
    }
    // The model itself loads (a Llama: q/k rows unpermuted).
    HfCausalLm::load(&out, LoadOptions::cpu_f32()).unwrap();
}

/// Gemma files store whitespace-only pieces with real spaces; the export respells them with
/// `▁` (as the text is normalised), so runs of spaces use them.
#[test]
fn gemma_whitespace_pieces_are_respelled() {
    let pieces = ["<pad>", "<eos>", "<bos>", "<unk>", "a", "b", "\u{2581}", "  ", "   "];
    let tokenizer = GgufTokenizer {
        architecture: "gemma3".into(),
        model: "llama".into(),
        pre: "default".into(),
        tokens: pieces.iter().map(|s| s.to_string()).collect(),
        token_types: vec![3, 3, 3, 3, 1, 1, 1, 1, 1],
        scores: Some(vec![0.0; 9]),
        merges: vec![],
        bos_id: Some(2),
        eos_id: Some(1),
        unk_id: Some(3),
        pad_id: Some(0),
        add_bos: true,
        add_eos: false,
        add_space_prefix: false,
        chat_template: None,
    };
    let json = tokenizer.tokenizer_json().unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    assert_eq!(vocab["\u{2581}\u{2581}"], 7);
    assert_eq!(vocab["\u{2581}\u{2581}\u{2581}"], 8);
    assert!(!vocab.contains_key("  "));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), json.to_string()).unwrap();
    let t = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(t.encode("a  b", true).unwrap(), vec![2, 4, 7, 5]);
    assert_eq!(t.encode("a   b a b", false).unwrap(), vec![4, 8, 5, 6, 4, 6, 5]);
    assert_eq!(t.decode(&[4, 8, 5], false).unwrap(), "a   b");
    // Bytes outside the vocabulary fall back to <0x..> pieces only if those exist: here unknown.
    assert_eq!(t.encode("z", false).unwrap(), vec![3]);
}

/// A file whose tensors do not form the model its metadata describes is refused before
/// anything is written, naming what is wrong: a qwen2 file relabelled qwen3 lacks the q/k
/// norms; a qwen3 file relabelled qwen2 has tensors qwen2 does not know.
#[test]
fn files_that_do_not_form_their_model_are_refused() {
    let relabel = |gguf: &str, from: &str, to: &str| {
        let bytes = std::fs::read(fixtures().join("gguf").join(gguf)).unwrap();
        assert_eq!(from.len(), to.len());
        let mut out = bytes.clone();
        let mut i = 0;
        while i + from.len() <= out.len() {
            if &bytes[i..i + from.len()] == from.as_bytes() {
                out[i..i + to.len()].copy_from_slice(to.as_bytes());
                i += from.len();
            } else {
                i += 1;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relabelled.gguf");
        std::fs::write(&path, out).unwrap();
        let result = convert_to_hf(&path, dir.path().join("hf"), &ConvertOptions::default());
        assert!(!dir.path().join("hf").exists());
        result.unwrap_err()
    };
    let err = relabel("tiny_qwen2.gguf", "qwen2", "qwen3");
    let msg = err.to_string();
    assert!(matches!(err, GgufError::ModelMismatch { .. }), "{msg}");
    assert!(msg.contains("qwen3") && msg.contains("self_attn.q_norm.weight"), "{msg}");
    let err = relabel("tiny_qwen3.gguf", "qwen3", "qwen2");
    let msg = err.to_string();
    assert!(
        matches!(&err, GgufError::UnmappedTensor { tensor, architecture } if tensor.contains("norm") && architecture == "qwen2"),
        "{msg}"
    );
    let err = relabel("tiny_gemma3.gguf", "gemma3", "gemma2");
    assert!(err.to_string().contains("gemma2"), "{err}");
}
