//! What a GGUF file means in Hugging Face terms, per llama.cpp architecture: `config.json` from
//! the `<arch>.*` metadata, tensor names from llama.cpp's to `transformers`', and the value
//! transforms llama.cpp's converter applied (the q/k row permutation of Llama, the `1 + w` of
//! Gemma's norms) and the export undoes.

use serde_json::{json, Value};

use super::error::{GgufError, Result};
use super::reader::GgufFile;

/// The llama.cpp architectures (`general.architecture`) the export understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufArchitecture {
    /// `llama`: Llama 2/3, SmolLM, TinyLlama, Mistral-style files labelled `llama`.
    Llama,
    /// `qwen2`: q/k/v biases.
    Qwen2,
    /// `qwen3`: per-head q/k norms.
    Qwen3,
    /// `gemma2`: sandwich norms, soft-caps, alternating sliding window.
    Gemma2,
    /// `gemma3`: Gemma 2's layer with q/k norms, five sliding layers per global one.
    Gemma3,
}

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

/// Where a GGUF tensor goes and how its values change on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMapping {
    /// The Hugging Face name, suffix (`.weight`, `.bias`) kept.
    pub hf_name: String,
    /// How the rows are reordered.
    pub row_order: RowOrder,
    /// The stored values are `1 + w` (Gemma's norms in llama.cpp): subtract 1.
    pub subtract_one: bool,
}

/// Sliding-window layers per global one in Gemma 3 (llama.cpp's `set_swa_pattern(6)`; the GGUF
/// file does not store it).
pub const GEMMA3_SLIDING_WINDOW_PATTERN: u64 = 6;
/// The rotary base of Gemma 3's sliding layers (llama.cpp's `rope_freq_base_train_swa`; not
/// stored in the file).
pub const GEMMA3_LOCAL_ROPE_THETA: f64 = 10_000.0;

impl GgufArchitecture {
    /// Every supported architecture.
    pub const ALL: [GgufArchitecture; 5] = [Self::Llama, Self::Qwen2, Self::Qwen3, Self::Gemma2, Self::Gemma3];

    /// The architecture of a `general.architecture` value, if supported.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.gguf_name() == name)
    }

    /// `general.architecture`, also the prefix of the file's hyper-parameter keys.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma2 => "gemma2",
            Self::Gemma3 => "gemma3",
        }
    }

    /// `model_type` of the exported `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Gemma3 => "gemma3_text",
            other => other.gguf_name(),
        }
    }

    /// The `transformers` class of the exported `config.json` (`architectures`).
    pub fn hf_class(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Qwen3 => "Qwen3ForCausalLM",
            Self::Gemma2 => "Gemma2ForCausalLM",
            Self::Gemma3 => "Gemma3ForCausalLM",
        }
    }

    /// Whether llama.cpp's converter permuted the q/k rows (Llama only: the others rotate
    /// in the half-split, "NEOX", layout that Hugging Face uses).
    pub fn permutes_rotary_rows(self) -> bool {
        self == Self::Llama
    }

    /// Whether norms are stored as `1 + w` (llama.cpp adds Gemma's offset into the weights).
    pub fn stores_norms_plus_one(self) -> bool {
        self.is_gemma()
    }

    /// Gemma 2 or 3.
    pub fn is_gemma(self) -> bool {
        matches!(self, Self::Gemma2 | Self::Gemma3)
    }

    /// Whether the layers have per-head q/k norms.
    fn has_qk_norm(self) -> bool {
        matches!(self, Self::Qwen3 | Self::Gemma3)
    }

    /// The supported `general.architecture` values, comma-separated.
    pub fn supported() -> String {
        Self::ALL.map(Self::gguf_name).join(", ")
    }

    /// The Hugging Face name of a llama.cpp tensor of this architecture and how its values
    /// change; `None` for a name outside the mapping.
    ///
    /// | GGUF | Hugging Face |
    /// | --- | --- |
    /// | `token_embd` / `output_norm` / `output` | `model.embed_tokens` / `model.norm` / `lm_head` |
    /// | `blk.N.attn_norm` | `model.layers.N.input_layernorm` |
    /// | `blk.N.attn_q` / `attn_k` / `attn_v` / `attn_output` | `model.layers.N.self_attn.q_proj` / `k_proj` / `v_proj` / `o_proj` |
    /// | `blk.N.attn_q_norm` / `attn_k_norm` (Qwen3, Gemma 3) | `model.layers.N.self_attn.q_norm` / `k_norm` |
    /// | `blk.N.ffn_norm` | Llama, Qwen: `post_attention_layernorm`; Gemma: `pre_feedforward_layernorm` |
    /// | `blk.N.post_attention_norm` / `post_ffw_norm` (Gemma) | `post_attention_layernorm` / `post_feedforward_layernorm` |
    /// | `blk.N.ffn_gate` / `ffn_up` / `ffn_down` | `model.layers.N.mlp.gate_proj` / `up_proj` / `down_proj` |
    pub fn hf_tensor_name(self, gguf_name: &str) -> Option<TensorMapping> {
        let (stem, suffix) = gguf_name.rsplit_once('.')?;
        if suffix != "weight" && suffix != "bias" {
            return None;
        }
        let (name, row_order) = match stem {
            "token_embd" => ("model.embed_tokens".to_string(), RowOrder::AsStored),
            "output_norm" => ("model.norm".to_string(), RowOrder::AsStored),
            "output" => ("lm_head".to_string(), RowOrder::AsStored),
            _ => {
                let rest = stem.strip_prefix("blk.")?;
                let (layer, part) = rest.split_once('.')?;
                let layer: usize = layer.parse().ok()?;
                let gemma = self.is_gemma();
                let rotary = |order| if self.permutes_rotary_rows() { order } else { RowOrder::AsStored };
                let (module, order) = match part {
                    "attn_norm" => ("input_layernorm", RowOrder::AsStored),
                    "attn_q" => ("self_attn.q_proj", rotary(RowOrder::Query)),
                    "attn_k" => ("self_attn.k_proj", rotary(RowOrder::Key)),
                    "attn_v" => ("self_attn.v_proj", RowOrder::AsStored),
                    "attn_output" => ("self_attn.o_proj", RowOrder::AsStored),
                    "attn_q_norm" if self.has_qk_norm() => ("self_attn.q_norm", RowOrder::AsStored),
                    "attn_k_norm" if self.has_qk_norm() => ("self_attn.k_norm", RowOrder::AsStored),
                    "ffn_norm" if gemma => ("pre_feedforward_layernorm", RowOrder::AsStored),
                    "ffn_norm" => ("post_attention_layernorm", RowOrder::AsStored),
                    "post_attention_norm" if gemma => ("post_attention_layernorm", RowOrder::AsStored),
                    "post_ffw_norm" if gemma => ("post_feedforward_layernorm", RowOrder::AsStored),
                    "ffn_gate" => ("mlp.gate_proj", RowOrder::AsStored),
                    "ffn_up" => ("mlp.up_proj", RowOrder::AsStored),
                    "ffn_down" => ("mlp.down_proj", RowOrder::AsStored),
                    _ => return None,
                };
                (format!("model.layers.{layer}.{module}"), order)
            }
        };
        let subtract_one = self.stores_norms_plus_one() && stem.ends_with("norm") && suffix == "weight";
        Some(TensorMapping { hf_name: format!("{name}.{suffix}"), row_order, subtract_one })
    }
}

/// The hyper-parameters of a GGUF file, read from its `<arch>.*` keys and tensor shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHparams {
    /// `general.architecture`.
    pub architecture: GgufArchitecture,
    /// `<arch>.embedding_length`.
    pub hidden_size: u64,
    /// `<arch>.feed_forward_length`.
    pub intermediate_size: u64,
    /// `<arch>.block_count`.
    pub num_hidden_layers: u64,
    /// `<arch>.attention.head_count`.
    pub num_attention_heads: u64,
    /// `<arch>.attention.head_count_kv` (= heads when absent).
    pub num_key_value_heads: u64,
    /// `<arch>.attention.key_length`, else hidden size / heads.
    pub head_dim: u64,
    /// `<arch>.rope.freq_base` (10000 when absent, llama.cpp's default).
    pub rope_theta: f64,
    /// `<arch>.attention.layer_norm_rms_epsilon`.
    pub rms_norm_eps: f64,
    /// `<arch>.context_length`.
    pub max_position_embeddings: u64,
    /// Rows of `token_embd.weight`.
    pub vocab_size: u64,
    /// `<arch>.rope.scaling.factor` when `<arch>.rope.scaling.type` is `linear`.
    pub linear_rope_factor: Option<f64>,
    /// `<arch>.attention.sliding_window` (Gemma).
    pub sliding_window: Option<u64>,
    /// `<arch>.attn_logit_softcapping` (Gemma 2).
    pub attn_logit_softcapping: Option<f64>,
    /// `<arch>.final_logit_softcapping` (Gemma).
    pub final_logit_softcapping: Option<f64>,
    /// Gemma's attention scale is `query_pre_attn_scalar^-0.5`; the file does not store it, and
    /// llama.cpp uses `head_dim` except for the 27B models (`hidden / heads`), which it
    /// recognises by their layer count (46 for Gemma 2, 62 for Gemma 3). `None` for others.
    pub query_pre_attn_scalar: Option<u64>,
    /// Biases on the query/key/value projections (`blk.0.attn_q.bias` present).
    pub attention_bias: bool,
}

fn required_u64(file: &GgufFile, key: &str) -> Result<u64> {
    let v = file.get(key).ok_or_else(|| GgufError::MissingKey(key.to_string()))?;
    v.as_u64().ok_or_else(|| GgufError::BadValue {
        key: key.to_string(),
        message: format!("expected a non-negative integer, found {v:?}"),
    })
}

fn optional_u64(file: &GgufFile, key: &str) -> Result<Option<u64>> {
    file.get(key).map(|_| required_u64(file, key)).transpose()
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

/// The largest dimension or count the export accepts (a damaged file must not make the
/// shape arithmetic overflow).
const MAX_DIMENSION: u64 = 1 << 24;

fn bounded(key: &str, value: u64) -> Result<u64> {
    if value == 0 || value > MAX_DIMENSION {
        return Err(GgufError::BadValue { key: key.to_string(), message: format!("{value} is out of range") });
    }
    Ok(value)
}

impl GgufHparams {
    /// Reads `general.architecture`, its `<arch>.*` keys and the embedding shape of `file`.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch_key = "general.architecture";
        let arch = file.get(arch_key).ok_or_else(|| GgufError::MissingKey(arch_key.into()))?;
        let arch = arch.as_str().unwrap_or("(not a string)");
        let architecture = GgufArchitecture::from_gguf_name(arch)
            .ok_or_else(|| GgufError::UnsupportedArchitecture(arch.to_string()))?;
        let key = |name: &str| format!("{arch}.{name}");
        let hidden_size = bounded(&key("embedding_length"), required_u64(file, &key("embedding_length"))?)?;
        let heads_key = key("attention.head_count");
        let heads = bounded(&heads_key, required_u64(file, &heads_key)?)?;
        let kv_key = key("attention.head_count_kv");
        let kv_heads = bounded(&kv_key, optional_u64(file, &kv_key)?.unwrap_or(heads))?;
        if heads % kv_heads != 0 {
            return Err(GgufError::BadValue {
                key: kv_key,
                message: format!("{kv_heads} key/value heads do not divide the {heads} query heads"),
            });
        }
        let head_dim = match optional_u64(file, &key("attention.key_length"))? {
            Some(d) => bounded(&key("attention.key_length"), d)?,
            None if hidden_size % heads == 0 => hidden_size / heads,
            None => {
                return Err(GgufError::BadValue {
                    key: heads_key,
                    message: format!("{heads} heads do not divide the hidden size {hidden_size}"),
                })
            }
        };
        if let Some(v) = optional_u64(file, &key("attention.value_length"))? {
            if v != head_dim {
                return Err(GgufError::BadValue {
                    key: key("attention.value_length"),
                    message: format!("{v} differs from the key length {head_dim}; Hugging Face models need them equal"),
                });
            }
        }
        let embd =
            file.tensor("token_embd.weight").ok_or_else(|| GgufError::MissingTensor("token_embd.weight".into()))?;
        let shape = embd.shape();
        if shape.len() != 2 || shape[1] as u64 != hidden_size {
            return Err(GgufError::Shape {
                tensor: embd.name.clone(),
                message: format!("expected [vocab, {hidden_size}], found {shape:?}"),
            });
        }
        let scaling_key = key("rope.scaling.type");
        let linear_rope_factor = match file.get(&scaling_key).and_then(|v| v.as_str()) {
            None | Some("none") => None,
            Some("linear") => optional_f64(file, &key("rope.scaling.factor"))?.filter(|f| *f != 1.0),
            Some(other) => {
                return Err(GgufError::BadValue {
                    key: scaling_key,
                    message: format!("rope scaling \"{other}\" cannot be exported yet (supported: none, linear)"),
                })
            }
        };
        let num_hidden_layers = bounded(&key("block_count"), required_u64(file, &key("block_count"))?)?;
        let sliding_window = optional_u64(file, &key("attention.sliding_window"))?.filter(|w| *w > 0);
        if architecture == GgufArchitecture::Gemma2 && sliding_window.is_none() {
            return Err(GgufError::MissingKey(key("attention.sliding_window")));
        }
        let large = match architecture {
            GgufArchitecture::Gemma2 => num_hidden_layers == 46,
            GgufArchitecture::Gemma3 => num_hidden_layers == 62,
            _ => false,
        };
        let query_pre_attn_scalar = architecture.is_gemma().then(|| if large { hidden_size / heads } else { head_dim });
        Ok(Self {
            architecture,
            hidden_size,
            intermediate_size: bounded(&key("feed_forward_length"), required_u64(file, &key("feed_forward_length"))?)?,
            num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rope_theta: optional_f64(file, &key("rope.freq_base"))?.unwrap_or(10_000.0),
            rms_norm_eps: optional_f64(file, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
            max_position_embeddings: required_u64(file, &key("context_length"))?,
            vocab_size: shape[0] as u64,
            linear_rope_factor,
            sliding_window,
            attn_logit_softcapping: optional_f64(file, &key("attn_logit_softcapping"))?.filter(|c| *c > 0.0),
            final_logit_softcapping: optional_f64(file, &key("final_logit_softcapping"))?.filter(|c| *c > 0.0),
            query_pre_attn_scalar,
            attention_bias: file.tensor("blk.0.attn_q.bias").is_some(),
        })
    }

    /// The exported `config.json`, for the architecture's `transformers` class.
    /// `torch_dtype` names the exported dtype; special token ids come from the tokenizer
    /// metadata.
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
        let arch = self.architecture;
        let mut config = json!({
            "architectures": [arch.hf_class()],
            "model_type": arch.model_type(),
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": short(self.rms_norm_eps),
            "rope_theta": short(self.rope_theta),
            "rope_scaling": rope_scaling,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": tie_word_embeddings,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "use_cache": true,
            "bos_token_id": bos_token_id,
            "eos_token_id": eos_token_id,
            "pad_token_id": pad_token_id,
            "torch_dtype": torch_dtype,
        });
        let extra = match arch {
            GgufArchitecture::Llama => json!({
                "hidden_act": "silu", "attention_bias": false, "mlp_bias": false, "pretraining_tp": 1,
            }),
            GgufArchitecture::Qwen2 => json!({
                "hidden_act": "silu", "use_sliding_window": false, "sliding_window": null,
                "max_window_layers": self.num_hidden_layers,
            }),
            GgufArchitecture::Qwen3 => json!({
                "hidden_act": "silu", "attention_bias": self.attention_bias, "use_sliding_window": false,
                "sliding_window": null, "max_window_layers": self.num_hidden_layers,
            }),
            GgufArchitecture::Gemma2 => json!({
                "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "attention_bias": false,
                "query_pre_attn_scalar": self.query_pre_attn_scalar, "sliding_window": self.sliding_window,
                "attn_logit_softcapping": self.attn_logit_softcapping.map(short),
                "final_logit_softcapping": self.final_logit_softcapping.map(short),
            }),
            GgufArchitecture::Gemma3 => {
                let pattern = GEMMA3_SLIDING_WINDOW_PATTERN;
                let layer_types: Vec<&str> = (0..self.num_hidden_layers)
                    .map(|i| {
                        let sliding = self.sliding_window.is_some() && (i + 1) % pattern != 0;
                        if sliding {
                            "sliding_attention"
                        } else {
                            "full_attention"
                        }
                    })
                    .collect();
                json!({
                    "hidden_activation": "gelu_pytorch_tanh", "attention_bias": false,
                    "query_pre_attn_scalar": self.query_pre_attn_scalar, "sliding_window": self.sliding_window,
                    "sliding_window_pattern": pattern, "layer_types": layer_types,
                    "rope_local_base_freq": GEMMA3_LOCAL_ROPE_THETA,
                    "attn_logit_softcapping": null, "final_logit_softcapping": self.final_logit_softcapping.map(short),
                })
            }
        };
        if let (Value::Object(c), Value::Object(e)) = (&mut config, extra) {
            c.extend(e);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(arch: GgufArchitecture, name: &str) -> (String, RowOrder, bool) {
        let m = arch.hf_tensor_name(name).unwrap();
        (m.hf_name, m.row_order, m.subtract_one)
    }

    #[test]
    fn names_map_with_suffix_and_row_order() {
        let llama = GgufArchitecture::Llama;
        let q = mapping(llama, "blk.12.attn_q.weight");
        assert_eq!(q, ("model.layers.12.self_attn.q_proj.weight".to_string(), RowOrder::Query, false));
        let k = mapping(llama, "blk.0.attn_k.bias");
        assert_eq!(k, ("model.layers.0.self_attn.k_proj.bias".to_string(), RowOrder::Key, false));
        assert_eq!(mapping(llama, "token_embd.weight").0, "model.embed_tokens.weight");
        assert_eq!(mapping(llama, "output.weight").0, "lm_head.weight");
        assert_eq!(mapping(llama, "blk.3.ffn_down.weight").0, "model.layers.3.mlp.down_proj.weight");
        assert_eq!(mapping(llama, "blk.3.ffn_norm.weight").0, "model.layers.3.post_attention_layernorm.weight");
        assert!(llama.hf_tensor_name("rope_freqs.weight").is_none());
        assert!(llama.hf_tensor_name("blk.x.attn_q.weight").is_none());
        assert!(llama.hf_tensor_name("blk.0.attn_q.scale").is_none());
        assert!(llama.hf_tensor_name("blk.0.attn_q_norm.weight").is_none());
        assert!(llama.hf_tensor_name("blk.0.post_ffw_norm.weight").is_none());
    }

    #[test]
    fn only_llama_is_permuted_and_only_gemma_norms_are_offset() {
        for arch in
            [GgufArchitecture::Qwen2, GgufArchitecture::Qwen3, GgufArchitecture::Gemma2, GgufArchitecture::Gemma3]
        {
            assert_eq!(mapping(arch, "blk.1.attn_q.weight").1, RowOrder::AsStored, "{arch:?}");
            assert_eq!(mapping(arch, "blk.1.attn_k.bias").1, RowOrder::AsStored, "{arch:?}");
            assert!(!mapping(arch, "blk.1.attn_q.weight").2);
            assert_eq!(mapping(arch, "output_norm.weight").2, arch.is_gemma(), "{arch:?}");
            assert_eq!(mapping(arch, "blk.0.attn_norm.weight").2, arch.is_gemma(), "{arch:?}");
        }
        let gemma3 = GgufArchitecture::Gemma3;
        assert_eq!(
            mapping(gemma3, "blk.2.ffn_norm.weight"),
            ("model.layers.2.pre_feedforward_layernorm.weight".to_string(), RowOrder::AsStored, true)
        );
        assert_eq!(mapping(gemma3, "blk.2.post_ffw_norm.weight").0, "model.layers.2.post_feedforward_layernorm.weight");
        assert_eq!(
            mapping(gemma3, "blk.2.post_attention_norm.weight").0,
            "model.layers.2.post_attention_layernorm.weight"
        );
        assert_eq!(
            mapping(gemma3, "blk.0.attn_k_norm.weight"),
            ("model.layers.0.self_attn.k_norm.weight".to_string(), RowOrder::AsStored, true)
        );
        let qwen3 = GgufArchitecture::Qwen3;
        assert_eq!(
            mapping(qwen3, "blk.0.attn_q_norm.weight"),
            ("model.layers.0.self_attn.q_norm.weight".to_string(), RowOrder::AsStored, false)
        );
        assert!(GgufArchitecture::Qwen2.hf_tensor_name("blk.0.attn_q_norm.weight").is_none());
        assert!(GgufArchitecture::Gemma2.hf_tensor_name("blk.0.attn_q_norm.weight").is_none());
        assert_eq!(GgufArchitecture::supported(), "llama, qwen2, qwen3, gemma2, gemma3");
        assert_eq!(GgufArchitecture::from_gguf_name("gemma3"), Some(gemma3));
        assert_eq!(GgufArchitecture::from_gguf_name("phi3"), None);
    }
}
