//! What a llama-architecture GGUF file means in Hugging Face terms: `config.json` from the
//! `llama.*` metadata, and tensor names from llama.cpp's to `LlamaForCausalLM`'s.

use serde_json::{json, Value};

use super::error::{GgufError, Result};
use super::reader::GgufFile;

/// How a tensor's rows must be reordered on export (see [`super::unpermute_rotary_rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// Rows are kept as stored.
    AsStored,
    /// A query projection (or bias): undo llama.cpp's rotary permutation with `n_head`.
    Query,
    /// A key projection (or bias): undo it with `n_head_kv`.
    Key,
}

/// The Hugging Face name of a llama.cpp tensor, and whether its rows need reordering.
/// `None` for a name outside the llama mapping.
///
/// | GGUF | Hugging Face |
/// | --- | --- |
/// | `token_embd` | `model.embed_tokens` |
/// | `output_norm` | `model.norm` |
/// | `output` | `lm_head` |
/// | `blk.N.attn_norm` | `model.layers.N.input_layernorm` |
/// | `blk.N.attn_q` / `attn_k` / `attn_v` / `attn_output` | `model.layers.N.self_attn.q_proj` / `k_proj` / `v_proj` / `o_proj` |
/// | `blk.N.ffn_norm` | `model.layers.N.post_attention_layernorm` |
/// | `blk.N.ffn_gate` / `ffn_up` / `ffn_down` | `model.layers.N.mlp.gate_proj` / `up_proj` / `down_proj` |
///
/// The suffix (`.weight`, `.bias`) is kept.
pub fn hf_tensor_name(gguf_name: &str) -> Option<(String, RowOrder)> {
    let (stem, suffix) = gguf_name.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let (name, order) = match stem {
        "token_embd" => ("model.embed_tokens".to_string(), RowOrder::AsStored),
        "output_norm" => ("model.norm".to_string(), RowOrder::AsStored),
        "output" => ("lm_head".to_string(), RowOrder::AsStored),
        _ => {
            let rest = stem.strip_prefix("blk.")?;
            let (layer, part) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let (module, order) = match part {
                "attn_norm" => ("input_layernorm", RowOrder::AsStored),
                "attn_q" => ("self_attn.q_proj", RowOrder::Query),
                "attn_k" => ("self_attn.k_proj", RowOrder::Key),
                "attn_v" => ("self_attn.v_proj", RowOrder::AsStored),
                "attn_output" => ("self_attn.o_proj", RowOrder::AsStored),
                "ffn_norm" => ("post_attention_layernorm", RowOrder::AsStored),
                "ffn_gate" => ("mlp.gate_proj", RowOrder::AsStored),
                "ffn_up" => ("mlp.up_proj", RowOrder::AsStored),
                "ffn_down" => ("mlp.down_proj", RowOrder::AsStored),
                _ => return None,
            };
            (format!("model.layers.{layer}.{module}"), order)
        }
    };
    Some((format!("{name}.{suffix}"), order))
}

/// The hyper-parameters of a llama-architecture GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaHparams {
    /// `llama.embedding_length`.
    pub hidden_size: u64,
    /// `llama.feed_forward_length`.
    pub intermediate_size: u64,
    /// `llama.block_count`.
    pub num_hidden_layers: u64,
    /// `llama.attention.head_count`.
    pub num_attention_heads: u64,
    /// `llama.attention.head_count_kv` (= heads when absent).
    pub num_key_value_heads: u64,
    /// `llama.attention.key_length`, else hidden size / heads.
    pub head_dim: u64,
    /// `llama.rope.freq_base` (10000 when absent, llama.cpp's default).
    pub rope_theta: f64,
    /// `llama.attention.layer_norm_rms_epsilon`.
    pub rms_norm_eps: f64,
    /// `llama.context_length`.
    pub max_position_embeddings: u64,
    /// Rows of `token_embd.weight`.
    pub vocab_size: u64,
    /// `llama.rope.scaling.factor` when `llama.rope.scaling.type` is `linear`.
    pub linear_rope_factor: Option<f64>,
}

fn required_u64(file: &GgufFile, key: &str) -> Result<u64> {
    let v = file.get(key).ok_or_else(|| GgufError::MissingKey(key.to_string()))?;
    v.as_u64().ok_or_else(|| GgufError::BadValue {
        key: key.to_string(),
        message: format!("expected a non-negative integer, found {v:?}"),
    })
}

fn optional_f64(file: &GgufFile, key: &str) -> Result<Option<f64>> {
    file.get(key)
        .map(|v| {
            v.as_f64().ok_or_else(|| GgufError::BadValue {
                key: key.to_string(),
                message: format!("expected a number, found {v:?}"),
            })
        })
        .transpose()
}

impl LlamaHparams {
    /// Reads the `llama.*` keys and the embedding shape of `file`.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch_key = "general.architecture";
        let arch = file.get(arch_key).ok_or_else(|| GgufError::MissingKey(arch_key.into()))?;
        let arch = arch.as_str().unwrap_or("(not a string)");
        if arch != "llama" {
            return Err(GgufError::UnsupportedArchitecture(arch.to_string()));
        }
        let hidden_size = required_u64(file, "llama.embedding_length")?;
        let heads = required_u64(file, "llama.attention.head_count")?;
        if heads == 0 || hidden_size % heads != 0 {
            return Err(GgufError::BadValue {
                key: "llama.attention.head_count".into(),
                message: format!("{heads} heads do not divide the hidden size {hidden_size}"),
            });
        }
        let kv_heads = match file.get("llama.attention.head_count_kv") {
            None => heads,
            Some(_) => required_u64(file, "llama.attention.head_count_kv")?,
        };
        if kv_heads == 0 || heads % kv_heads != 0 {
            return Err(GgufError::BadValue {
                key: "llama.attention.head_count_kv".into(),
                message: format!("{kv_heads} key/value heads do not divide the {heads} query heads"),
            });
        }
        let head_dim = match file.get("llama.attention.key_length") {
            None => hidden_size / heads,
            Some(_) => required_u64(file, "llama.attention.key_length")?,
        };
        let embd =
            file.tensor("token_embd.weight").ok_or_else(|| GgufError::MissingTensor("token_embd.weight".into()))?;
        let shape = embd.shape();
        if shape.len() != 2 || shape[1] as u64 != hidden_size {
            return Err(GgufError::Shape {
                tensor: embd.name.clone(),
                message: format!("expected [vocab, {hidden_size}], found {shape:?}"),
            });
        }
        let linear_rope_factor = match file.get("llama.rope.scaling.type").and_then(|v| v.as_str()) {
            None | Some("none") => None,
            Some("linear") => optional_f64(file, "llama.rope.scaling.factor")?,
            Some(other) => {
                return Err(GgufError::BadValue {
                    key: "llama.rope.scaling.type".into(),
                    message: format!("rope scaling \"{other}\" cannot be exported yet (supported: none, linear)"),
                })
            }
        };
        Ok(Self {
            hidden_size,
            intermediate_size: required_u64(file, "llama.feed_forward_length")?,
            num_hidden_layers: required_u64(file, "llama.block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rope_theta: optional_f64(file, "llama.rope.freq_base")?.unwrap_or(10_000.0),
            rms_norm_eps: optional_f64(file, "llama.attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
            max_position_embeddings: required_u64(file, "llama.context_length")?,
            vocab_size: shape[0] as u64,
            linear_rope_factor,
        })
    }

    /// `config.json` of `LlamaForCausalLM`. `torch_dtype` names the exported dtype; special
    /// token ids come from the tokenizer metadata.
    pub fn config_json(
        &self,
        tie_word_embeddings: bool,
        torch_dtype: &str,
        bos_token_id: Option<u32>,
        eos_token_id: Option<u32>,
        pad_token_id: Option<u32>,
    ) -> Value {
        // f32 metadata (e.g. 1e-5 stored as 9.99999974738e-06) is printed at f32 precision.
        let short = |x: f64| format!("{}", x as f32).parse::<f64>().unwrap_or(x);
        let rope_scaling = self.linear_rope_factor.map(|f| json!({"rope_type": "linear", "factor": f}));
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": short(self.rms_norm_eps),
            "rope_theta": short(self.rope_theta),
            "rope_scaling": rope_scaling,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": tie_word_embeddings,
            "attention_bias": false,
            "attention_dropout": 0.0,
            "mlp_bias": false,
            "initializer_range": 0.02,
            "pretraining_tp": 1,
            "use_cache": true,
            "bos_token_id": bos_token_id,
            "eos_token_id": eos_token_id,
            "pad_token_id": pad_token_id,
            "torch_dtype": torch_dtype,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_with_suffix_and_row_order() {
        let q = hf_tensor_name("blk.12.attn_q.weight").unwrap();
        assert_eq!(q, ("model.layers.12.self_attn.q_proj.weight".to_string(), RowOrder::Query));
        let k = hf_tensor_name("blk.0.attn_k.bias").unwrap();
        assert_eq!(k, ("model.layers.0.self_attn.k_proj.bias".to_string(), RowOrder::Key));
        assert_eq!(hf_tensor_name("token_embd.weight").unwrap().0, "model.embed_tokens.weight");
        assert_eq!(hf_tensor_name("output.weight").unwrap().0, "lm_head.weight");
        assert_eq!(hf_tensor_name("blk.3.ffn_down.weight").unwrap().0, "model.layers.3.mlp.down_proj.weight");
        assert!(hf_tensor_name("rope_freqs.weight").is_none());
        assert!(hf_tensor_name("blk.x.attn_q.weight").is_none());
        assert!(hf_tensor_name("blk.0.attn_q.scale").is_none());
    }
}
