//! A tiny Llama for the world: its `config.json` and a randomly initialised checkpoint with
//! the exact tensor names and shapes of Hugging Face `LlamaForCausalLM` (tied embeddings).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Result, TestbedError};
use crate::folder::{write_bytes, write_json, write_tokenizer};
use crate::rng::SeededRng;
use crate::tokenizer::{Vocabulary, BOS, EOS, PAD};
use crate::world::World;

/// The size of the tiny Llama (the vocabulary size comes from the world).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TinyLlamaConfig {
    /// Model width `D`.
    pub hidden_size: usize,
    /// MLP width `I`.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads `H` (`D` must be a multiple).
    pub num_attention_heads: usize,
    /// Number of key/value heads (`H` must be a multiple).
    pub num_key_value_heads: usize,
    /// Longest sequence (positions).
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Standard deviation of the normal initialisation of every matrix (as in `transformers`).
    pub initializer_range: f64,
}

impl Default for TinyLlamaConfig {
    fn default() -> Self {
        Self {
            hidden_size: 128,
            intermediate_size: 384,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 4,
            max_position_embeddings: crate::tokenizer::MODEL_MAX_LENGTH,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            initializer_range: 0.02,
        }
    }
}

impl TinyLlamaConfig {
    /// Checks that the sizes describe a Llama.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(TestbedError::Config { what });
        let sizes = [
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.num_key_value_heads,
            self.max_position_embeddings,
        ];
        if sizes.contains(&0) {
            return bad(format!("every model size must be positive: {self:?}"));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !(self.initializer_range.is_finite() && self.initializer_range > 0.0) {
            return bad(format!("initializer_range {} must be positive", self.initializer_range));
        }
        Ok(())
    }

    /// The width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The `config.json` document for a vocabulary of `vocab_size` tokens.
    pub fn config_json(&self, vocab: &Vocabulary) -> Value {
        let id = |t: &str| vocab.id(t);
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": vocab.len(),
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim(),
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "initializer_range": self.initializer_range,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": null,
            "attention_bias": false,
            "attention_dropout": 0.0,
            "mlp_bias": false,
            "pretraining_tp": 1,
            "tie_word_embeddings": true,
            "torch_dtype": "float32",
            "use_cache": true,
            "bos_token_id": id(BOS),
            "eos_token_id": id(EOS),
            "pad_token_id": id(PAD)
        })
    }

    /// Every tensor of the checkpoint with its shape, in `transformers` naming. The output
    /// head is tied to `model.embed_tokens.weight` and so is absent.
    pub fn tensor_shapes(&self, vocab_size: usize) -> Vec<(String, Vec<usize>)> {
        let (d, i) = (self.hidden_size, self.intermediate_size);
        let q = self.num_attention_heads * self.head_dim();
        let kv = self.num_key_value_heads * self.head_dim();
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![vocab_size, d])];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.self_attn.q_proj.weight"), vec![q, d]));
            out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, d]));
            out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, d]));
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![d, q]));
            out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, d]));
            out.push((format!("{p}.mlp.up_proj.weight"), vec![i, d]));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![d, i]));
            out.push((format!("{p}.input_layernorm.weight"), vec![d]));
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
        }
        out.push(("model.norm.weight".to_string(), vec![d]));
        out
    }
}

/// What [`write_checkpoint`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointSummary {
    /// Number of parameters.
    pub parameters: usize,
    /// Size of `model.safetensors` in bytes.
    pub safetensors_bytes: usize,
}

/// Writes a randomly initialised model folder for `world` into `dir`: `config.json`,
/// `generation_config.json`, `model.safetensors` (f32) and the tokenizer files.
///
/// Initialisation follows `transformers`' `LlamaPreTrainedModel._init_weights`: every matrix
/// (embeddings included) from N(0, `initializer_range`²), every RMSNorm weight 1. Each tensor
/// draws from its own stream of the world's seed (labelled by its name), so the file is the
/// same, byte for byte, for the same seed and sizes.
pub fn write_checkpoint(world: &World, model: &TinyLlamaConfig, dir: &Path) -> Result<CheckpointSummary> {
    model.validate()?;
    let vocab = Vocabulary::of(world);
    write_tokenizer(&vocab, dir)?;
    write_json(&dir.join("config.json"), &model.config_json(&vocab))?;
    let generation =
        json!({"bos_token_id": vocab.id(BOS), "eos_token_id": vocab.id(EOS), "pad_token_id": vocab.id(PAD)});
    write_json(&dir.join("generation_config.json"), &generation)?;
    let shapes = model.tensor_shapes(vocab.len());
    let data: Vec<Vec<u8>> = shapes.iter().map(|(name, shape)| initial_values(world, model, name, shape)).collect();
    let path = dir.join("model.safetensors");
    let st_err = |why: String| TestbedError::Safetensors { path: path.clone(), why };
    let mut views = Vec::with_capacity(shapes.len());
    for ((name, shape), bytes) in shapes.iter().zip(&data) {
        let view = TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(|e| st_err(e.to_string()))?;
        views.push((name.clone(), view));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| st_err(e.to_string()))?;
    write_bytes(&path, &bytes)?;
    let parameters = shapes.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    Ok(CheckpointSummary { parameters, safetensors_bytes: bytes.len() })
}

/// Little-endian f32 values of one tensor: ones for norms, N(0, σ²) otherwise.
fn initial_values(world: &World, model: &TinyLlamaConfig, name: &str, shape: &[usize]) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let mut rng = SeededRng::derive(world.config().seed, &format!("init/{name}"));
    let is_norm = name.ends_with("norm.weight");
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        let v = if is_norm { 1.0f32 } else { (model.initializer_range * rng.normal()) as f32 };
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
