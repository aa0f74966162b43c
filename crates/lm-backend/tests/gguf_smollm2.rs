//! Conversion of the real SmolLM2-135M-Instruct Q4_1 GGUF file, when present.
//!
//! The file is not in the repository (93 MB); `scripts/fixtures/get_smollm2.sh` puts it in
//! `.models/`. Without it this test prints how to get it and passes. The comparison with
//! transformers' own GGUF loading is `scripts/fixtures/check_smollm2_gguf.py` (docs/gguf.md).

use std::path::PathBuf;

use half::bf16;
use lm_backend::gguf::{convert_to_hf, ConvertOptions, ExportDtype, GgufFile};
use safetensors::SafeTensors;
use serde_json::Value;

const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn model_path() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.models").join(FILE_NAME);
    path.exists().then_some(path)
}

#[test]
fn smollm2_converts_to_a_complete_llama_folder() {
    let Some(path) = model_path() else {
        println!("skipped: .models/{FILE_NAME} is absent; run scripts/fixtures/get_smollm2.sh to fetch it");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2");
    let options = ConvertOptions { dtype: ExportDtype::BF16, overwrite: false };
    let report = convert_to_hf(&path, &out, &options).unwrap();
    assert_eq!(report.tensors, 272);
    assert!(report.tied_embeddings);
    assert_eq!(report.source_types.get("Q4_1"), Some(&210));
    assert_eq!(report.source_types.get("Q8_0"), Some(&1));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    let config: Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    for (key, want) in [
        ("hidden_size", 576),
        ("intermediate_size", 1536),
        ("num_hidden_layers", 30),
        ("num_attention_heads", 9),
        ("num_key_value_heads", 3),
        ("vocab_size", 49152),
        ("max_position_embeddings", 8192),
    ] {
        assert_eq!(config[key].as_u64(), Some(want), "{key}");
    }
    assert_eq!(config["rope_theta"].as_f64(), Some(100000.0));
    assert_eq!(config["rms_norm_eps"].as_f64(), Some(1e-5));

    let tokenizer: Value = serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer.json")).unwrap()).unwrap();
    assert_eq!(tokenizer["model"]["vocab"].as_object().unwrap().len(), 49152);
    assert_eq!(tokenizer["model"]["merges"].as_array().unwrap().len(), 48900);
    assert_eq!(tokenizer["added_tokens"].as_array().unwrap().len(), 17);

    // The embedding (Q8_0) and layer 0's key projection (Q4_1, permuted by llama.cpp) as written,
    // against the dequantised GGUF rows reordered here with the transformers formula.
    let gguf = GgufFile::open(&path).unwrap();
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), 272);
    let as_f32 = |name: &str| -> Vec<f32> {
        let view = st.tensor(name).unwrap();
        view.data().chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
    };
    let embd = gguf.tensor_f32("token_embd.weight").unwrap();
    let want: Vec<f32> = embd.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    assert_eq!(as_f32("model.embed_tokens.weight"), want);

    let k = gguf.tensor_f32("blk.0.attn_k.weight").unwrap(); // [192, 576], 3 heads of 64
    let (cols, head_dim) = (576, 64);
    let got = as_f32("model.layers.0.self_attn.k_proj.weight");
    for hf_row in 0..192 {
        let (h, r) = (hf_row / head_dim, hf_row % head_dim);
        let (s, i) = (r / (head_dim / 2), r % (head_dim / 2));
        let gguf_row = h * head_dim + 2 * i + s;
        for c in (0..cols).step_by(97) {
            assert_eq!(got[hf_row * cols + c], bf16::from_f32(k[gguf_row * cols + c]).to_f32(), "row {hf_row}");
        }
    }
}
