//! The checkpoint writer produces the Hugging Face Llama tensor names and shapes, initialised
//! like `transformers` (normal with std 0.02, norms at 1).

use std::collections::BTreeMap;

use align_testbed::{write_checkpoint, TestbedError, TinyLlamaConfig, Vocabulary, World, WorldConfig};
use safetensors::{Dtype, SafeTensors};

fn floats(bytes: &[u8]) -> Vec<f64> {
    bytes.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect()
}

#[test]
fn tensors_have_exact_llama_names_shapes_and_initialisation() {
    let world = World::generate(&WorldConfig { seed: 51, ..WorldConfig::default() }).unwrap();
    let model = TinyLlamaConfig { num_key_value_heads: 2, ..TinyLlamaConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let summary = write_checkpoint(&world, &model, dir.path()).unwrap();
    let v = Vocabulary::of(&world).len();
    let (d, i, hd) = (128, 384, 32);
    let mut expected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    expected.insert("model.embed_tokens.weight".into(), vec![v, d]);
    expected.insert("model.norm.weight".into(), vec![d]);
    for l in 0..4 {
        let p = format!("model.layers.{l}.");
        expected.insert(format!("{p}self_attn.q_proj.weight"), vec![4 * hd, d]);
        expected.insert(format!("{p}self_attn.k_proj.weight"), vec![2 * hd, d]);
        expected.insert(format!("{p}self_attn.v_proj.weight"), vec![2 * hd, d]);
        expected.insert(format!("{p}self_attn.o_proj.weight"), vec![d, 4 * hd]);
        expected.insert(format!("{p}mlp.gate_proj.weight"), vec![i, d]);
        expected.insert(format!("{p}mlp.up_proj.weight"), vec![i, d]);
        expected.insert(format!("{p}mlp.down_proj.weight"), vec![d, i]);
        expected.insert(format!("{p}input_layernorm.weight"), vec![d]);
        expected.insert(format!("{p}post_attention_layernorm.weight"), vec![d]);
    }
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    assert_eq!(bytes.len(), summary.safetensors_bytes);
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(metadata.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let got: BTreeMap<String, Vec<usize>> = st.tensors().into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
    assert_eq!(got, expected);
    assert_eq!(summary.parameters, expected.values().map(|s| s.iter().product::<usize>()).sum::<usize>());
    for (name, _) in st.tensors() {
        let t = st.tensor(&name).unwrap();
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        let x = floats(t.data());
        if name.ends_with("norm.weight") {
            assert!(x.iter().all(|&v| v == 1.0), "{name} must be ones");
            continue;
        }
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let std = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        // Tolerances of about five standard errors for the smallest matrix (8,192 values).
        assert!(mean.abs() < 5.0 * 0.02 / n.sqrt(), "{name}: mean {mean}");
        assert!((std - 0.02).abs() < 0.02 * 5.0 / (2.0 * n).sqrt(), "{name}: std {std}");
    }
    let q = st.tensor("model.layers.0.self_attn.q_proj.weight").unwrap().data().to_vec();
    let o = st.tensor("model.layers.0.self_attn.o_proj.weight").unwrap().data().to_vec();
    assert_ne!(q, o, "tensors draw from different streams");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["tie_word_embeddings"], true);
    assert_eq!(config["vocab_size"].as_u64(), Some(v as u64));
    assert_eq!(config["num_key_value_heads"].as_u64(), Some(2));
    assert_eq!(config["head_dim"].as_u64(), Some(hd as u64));
    for file in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
}

#[test]
fn invalid_model_sizes_are_errors() {
    let world = World::generate(&WorldConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for model in [
        TinyLlamaConfig { num_attention_heads: 3, ..TinyLlamaConfig::default() },
        TinyLlamaConfig { num_key_value_heads: 3, ..TinyLlamaConfig::default() },
        TinyLlamaConfig { num_hidden_layers: 0, ..TinyLlamaConfig::default() },
        TinyLlamaConfig { initializer_range: -1.0, ..TinyLlamaConfig::default() },
    ] {
        assert!(matches!(write_checkpoint(&world, &model, dir.path()), Err(TestbedError::Config { .. })), "{model:?}");
    }
    assert!(!dir.path().join("model.safetensors").exists(), "nothing written for an invalid model");
}
