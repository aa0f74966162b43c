//! Export of the tiny Llama fixture to a Hugging Face folder: every tensor must equal the
//! weights the fixture script started from (before llama.cpp's permutation), config and
//! tokenizer files must carry the GGUF metadata, and the folder must appear atomically.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use lm_backend::gguf::{convert_to_hf, ConvertOptions, ExportDtype, GgufError, GgufFile};
use proptest::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(hf name, shape, values)` the export must produce, from the fixture script.
fn expected_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let manifest = read_json(&fixture("tiny_llama.expected.json"));
    let raw = std::fs::read(fixture("tiny_llama.expected.f32")).unwrap();
    let all: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    manifest["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let (offset, count) = (t["offset"].as_u64().unwrap() as usize, t["count"].as_u64().unwrap() as usize);
            let shape = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            (t["name"].as_str().unwrap().to_string(), shape, all[offset..offset + count].to_vec())
        })
        .collect()
}

fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn convert(name: &str, dtype: ExportDtype) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    let report = convert_to_hf(fixture(name), &out, &ConvertOptions { dtype, overwrite: false }).unwrap();
    assert_eq!(report.out_dir, out);
    (dir, out)
}

#[test]
fn weights_equal_the_unpermuted_originals() {
    let (_dir, out) = convert("tiny_llama.gguf", ExportDtype::F32);
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let expected = expected_tensors();
    let names: BTreeSet<String> = st.names().into_iter().map(str::to_string).collect();
    let want_names: BTreeSet<String> = expected.iter().map(|(n, _, _)| n.clone()).collect();
    assert_eq!(names, want_names);
    assert!(names.contains("lm_head.weight") && names.contains("model.layers.1.self_attn.k_proj.weight"));
    for (name, shape, want) in expected {
        let view = st.tensor(&name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        assert_eq!(view.shape(), shape.as_slice(), "{name}");
        assert_eq!(f32_values(view.data()), want, "{name}");
    }
}

#[test]
fn bf16_export_rounds_the_f32_values() {
    let (_dir, out) = convert("tiny_llama.gguf", ExportDtype::BF16);
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for (name, _, want) in expected_tensors() {
        let view = st.tensor(&name).unwrap();
        assert_eq!(view.dtype(), Dtype::BF16);
        let got: Vec<u16> = view.data().chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
        // Round to nearest even on the upper 16 bits, written out independently of `half`.
        let rne = |x: f32| {
            let bits = x.to_bits();
            (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
        };
        let want: Vec<u16> = want.iter().map(|&x| rne(x)).collect();
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(read_json(&out.join("config.json"))["torch_dtype"], "bfloat16");
}

#[test]
fn config_carries_the_llama_metadata() {
    let (_dir, out) = convert("tiny_llama.gguf", ExportDtype::F32);
    let c = read_json(&out.join("config.json"));
    let file = GgufFile::open(fixture("tiny_llama.gguf")).unwrap();
    let n_tokens = file.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap().len() as u64;
    assert_eq!(c["architectures"][0], "LlamaForCausalLM");
    assert_eq!(c["model_type"], "llama");
    for (key, want) in [
        ("hidden_size", 32),
        ("intermediate_size", 64),
        ("num_hidden_layers", 2),
        ("num_attention_heads", 4),
        ("num_key_value_heads", 2),
        ("head_dim", 8),
        ("max_position_embeddings", 256),
    ] {
        assert_eq!(c[key].as_u64(), Some(want), "{key}");
    }
    assert_eq!(c["vocab_size"].as_u64(), Some(n_tokens));
    assert_eq!(c["rope_theta"].as_f64(), Some(50000.0));
    assert_eq!(c["rms_norm_eps"].as_f64(), Some(1e-6));
    assert_eq!(c["tie_word_embeddings"], false);
    assert_eq!((c["bos_token_id"].as_u64(), c["eos_token_id"].as_u64()), (Some(1), Some(2)));
}

#[test]
fn tied_embeddings_when_output_weight_is_absent() {
    let (_dir, out) = convert("tiny_llama_tied.gguf", ExportDtype::F32);
    let c = read_json(&out.join("config.json"));
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(c["num_hidden_layers"].as_u64(), Some(1));
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.tensor("lm_head.weight").is_err());
    assert!(st.tensor("model.embed_tokens.weight").is_ok());
}

#[test]
fn tokenizer_files_carry_vocab_merges_and_specials() {
    let (_dir, out) = convert("tiny_llama.gguf", ExportDtype::F32);
    let file = GgufFile::open(fixture("tiny_llama.gguf")).unwrap();
    let tokens: Vec<&str> =
        file.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let t = read_json(&out.join("tokenizer.json"));
    let vocab = t["model"]["vocab"].as_object().unwrap();
    assert_eq!(vocab.len(), tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        assert_eq!(vocab[*token].as_u64(), Some(id as u64), "{token}");
    }
    assert_eq!(t["model"]["type"], "BPE");
    let merges = t["model"]["merges"].as_array().unwrap();
    assert_eq!(merges.len(), 6);
    assert_eq!(merges[2], serde_json::json!(["Ġt", "he"]));
    let added = t["added_tokens"].as_array().unwrap();
    let specials: Vec<(&str, bool)> =
        added.iter().map(|a| (a["content"].as_str().unwrap(), a["special"].as_bool().unwrap())).collect();
    assert_eq!(
        specials,
        vec![("<|endoftext|>", true), ("<|im_start|>", true), ("<|im_end|>", true), ("<think>", false)]
    );
    // tokenizer.ggml.pre = "smollm": digits split one by one, then GPT-2 byte-level splitting.
    let pre = &t["pre_tokenizer"]["pretokenizers"];
    assert_eq!(pre[0]["type"], "Digits");
    assert_eq!(pre[0]["individual_digits"], true);
    assert_eq!(pre[1]["type"], "ByteLevel");
    assert_eq!(t["decoder"]["type"], "ByteLevel");

    let tc = read_json(&out.join("tokenizer_config.json"));
    assert_eq!(tc["bos_token"], "<|im_start|>");
    assert_eq!(tc["eos_token"], "<|im_end|>");
    assert_eq!(tc["pad_token"], "<|im_end|>");
    assert_eq!(tc["unk_token"], "<|endoftext|>");
    assert_eq!(tc["add_bos_token"], false);
    assert_eq!(tc["chat_template"].as_str(), file.get("tokenizer.chat_template").unwrap().as_str());
}

#[test]
fn output_folder_is_replaced_only_when_asked_and_no_temp_folder_remains() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "old").unwrap();
    let err = convert_to_hf(fixture("tiny_llama.gguf"), &out, &ConvertOptions::default()).unwrap_err();
    assert!(matches!(err, GgufError::OutputExists(_)), "{err}");
    assert!(out.join("keep.txt").exists());

    let options = ConvertOptions { overwrite: true, ..ConvertOptions::default() };
    let report = convert_to_hf(fixture("tiny_llama.gguf"), &out, &options).unwrap();
    assert!(!out.join("keep.txt").exists());
    assert!(out.join("model.safetensors").exists());
    assert_eq!(report.tensors, expected_tensors().len());
    assert!(!report.tied_embeddings);
    let entries: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(entries, vec!["hf".to_string()]);
}

#[test]
fn an_output_path_holding_a_file_is_replaced_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    std::fs::write(&out, "not a folder").unwrap();
    let options = ConvertOptions { overwrite: true, ..ConvertOptions::default() };
    convert_to_hf(fixture("tiny_llama_tied.gguf"), &out, &options).unwrap();
    assert!(out.join("config.json").exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn failed_conversion_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    let err = convert_to_hf(fixture("quant_types.gguf"), &out, &ConvertOptions::default()).unwrap_err();
    assert!(matches!(&err, GgufError::UnsupportedArchitecture(a) if a == "fixture"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let err = convert_to_hf(fixture("missing.gguf"), &out, &ConvertOptions::default()).unwrap_err();
    assert!(err.to_string().contains("missing.gguf"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Damaged model files give an error or a folder, never a panic, and never leave a
    /// temporary folder behind.
    #[test]
    fn corrupted_models_never_panic(flips in proptest::collection::vec((0usize..44_480, any::<u8>()), 1..6)) {
        let mut bytes = std::fs::read(fixture("tiny_llama.gguf")).unwrap();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let dir = tempfile::tempdir().unwrap();
        let damaged = dir.path().join("damaged.gguf");
        std::fs::write(&damaged, bytes).unwrap();
        let out = dir.path().join("hf");
        let result = convert_to_hf(&damaged, &out, &ConvertOptions::default());
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        let want = if result.is_ok() { 2 } else { 1 };
        prop_assert_eq!(names.len(), want, "{:?}", names);
    }
}
