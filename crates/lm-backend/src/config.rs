//! `config.json` of a Hugging Face checkpoint, read with serde and normalised into one
//! [`ModelConfig`] for all supported architectures.
//!
//! Two forms are accepted: the one most published checkpoints use (`rope_theta`,
//! `rope_scaling`, no `layer_types`) and the newer one `transformers` 5.x writes
//! (`rope_parameters`, `layer_types`). Unknown keys are ignored (checkpoints carry many keys
//! that do not change the forward pass); unknown values of keys that do matter
//! (`model_type`, `rope_type`, activation, layer type) are errors naming the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{LmError, Result};

/// The supported architectures (`model_type` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `llama`: Llama 2/3 and the many models sharing its layout (SmolLM, TinyLlama, ...).
    Llama,
    /// `qwen2`: Llama with biases on the query/key/value projections.
    Qwen2,
    /// `gemma2`: sandwich norms, `1 + w` RMSNorm, GeGLU, soft-capping, alternating sliding window.
    Gemma2,
}

impl Architecture {
    /// The `model_type` string of `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Gemma2 => "gemma2",
        }
    }
}

/// Rotary position embedding parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    /// The base `theta` of the inverse frequencies `theta^(-2i/d)`.
    pub theta: f64,
    /// Frequency scaling, if any.
    pub scaling: RopeScaling,
}

/// How the rotary frequencies are rescaled (`rope_type`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// `default`: no scaling.
    None,
    /// `linear`: positions divided by `factor` (all frequencies divided by `factor`).
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// `llama3`: the Llama 3.1 frequency-dependent scaling (low frequencies divided by
    /// `factor`, high ones kept, a smooth blend between).
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths above `original_max_position_embeddings / low_freq_factor` are scaled.
        low_freq_factor: f64,
        /// Wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context length of pre-training.
        original_max_position_embeddings: f64,
    },
}

/// The attention span of one decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerAttention {
    /// Causal attention over all earlier positions.
    Full,
    /// Causal attention over the last `window` positions, the query's own included
    /// (`q - k < window`, as in `transformers`).
    Sliding {
        /// The window length.
        window: usize,
    },
}

/// The MLP activation of the gate projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu` (SwiGLU).
    Silu,
    /// `gelu_pytorch_tanh` / `gelu_new` (GeGLU with the tanh approximation).
    GeluTanh,
    /// `gelu` (exact erf GELU).
    Gelu,
}

/// The normalised model configuration every architecture is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which architecture.
    pub architecture: Architecture,
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Residual width `D`.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of decoder layers `L`.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (`< num_heads`: grouped-query attention).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary embedding parameters.
    pub rope: RopeConfig,
    /// Attention span of each layer (`num_layers` entries).
    pub layers: Vec<LayerAttention>,
    /// Scale of the attention scores (`head_dim^-0.5`, Gemma2: `query_pre_attn_scalar^-0.5`).
    pub attention_scale: f64,
    /// Soft-cap of the attention scores, `cap * tanh(s / cap)` (Gemma2).
    pub attn_logit_softcap: Option<f64>,
    /// Soft-cap of the final logits (Gemma2).
    pub final_logit_softcap: Option<f64>,
    /// Biases on the query/key/value projections.
    pub qkv_bias: bool,
    /// Bias on the attention output projection.
    pub o_bias: bool,
    /// Biases on the MLP projections.
    pub mlp_bias: bool,
    /// MLP activation.
    pub activation: Activation,
    /// The output projection is the token embedding (no `lm_head.weight`).
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token, if configured.
    pub bos_token_id: Option<i64>,
    /// End-of-sequence tokens (generation stops at any of them).
    pub eos_token_ids: Vec<i64>,
    /// Padding token, if configured.
    pub pad_token_id: Option<i64>,
    /// The `max_position_embeddings` of the config.
    pub max_position_embeddings: usize,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(i64),
    Many(Vec<i64>),
}

#[derive(Debug, Clone, Deserialize)]
struct RawRope {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    rope_theta: Option<f64>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<RawRope>,
    rope_parameters: Option<RawRope>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    hidden_activation: Option<String>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
    layer_types: Option<Vec<String>>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    bos_token_id: Option<OneOrMany>,
    eos_token_id: Option<OneOrMany>,
    pad_token_id: Option<i64>,
}

impl ModelConfig {
    /// Reads `dir/config.json`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join("config.json"))
    }

    /// Reads a `config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| LmError::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parses the text of a `config.json`; `path` only names the source in errors.
    pub fn from_json_str(text: &str, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|source| LmError::Json { path: path.clone(), source })?;
        raw.normalise(path)
    }

    /// Number of query heads per key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }
}

fn config_error(path: &Path, key: &str, message: impl Into<String>) -> LmError {
    LmError::Config { path: path.to_path_buf(), key: key.to_string(), message: message.into() }
}

impl RawConfig {
    fn normalise(self, path: PathBuf) -> Result<ModelConfig> {
        let architecture = match self.model_type.as_str() {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "gemma2" => Architecture::Gemma2,
            other => return Err(LmError::UnsupportedModel { path, model_type: other.to_string() }),
        };
        let gemma = architecture == Architecture::Gemma2;
        let num_kv_heads = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        if self.num_attention_heads == 0 || num_kv_heads == 0 || self.num_attention_heads % num_kv_heads != 0 {
            return Err(config_error(
                &path,
                "num_key_value_heads",
                format!("{num_kv_heads} does not divide num_attention_heads = {}", self.num_attention_heads),
            ));
        }
        let head_dim = match self.head_dim {
            Some(d) => d,
            None if self.hidden_size % self.num_attention_heads == 0 => self.hidden_size / self.num_attention_heads,
            None => return Err(config_error(&path, "head_dim", "absent and hidden_size is not a multiple of heads")),
        };
        if head_dim % 2 != 0 {
            return Err(config_error(&path, "head_dim", format!("{head_dim} is odd; rotary embeddings need it even")));
        }
        let rope = self.rope(&path)?;
        let layers = self.layers(&path, architecture)?;
        let activation_key = if self.hidden_activation.is_some() { "hidden_activation" } else { "hidden_act" };
        let activation_name = self
            .hidden_activation
            .clone()
            .or(self.hidden_act.clone())
            .unwrap_or_else(|| if gemma { "gelu_pytorch_tanh" } else { "silu" }.to_string());
        let activation = match activation_name.as_str() {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
            "gelu" => Activation::Gelu,
            other => return Err(config_error(&path, activation_key, format!("unsupported activation \"{other}\""))),
        };
        let attention_scale = match (gemma, self.query_pre_attn_scalar) {
            (true, Some(s)) => s.powf(-0.5),
            (true, None) => 256f64.powf(-0.5),
            (false, _) => (head_dim as f64).powf(-0.5),
        };
        let (qkv_bias, o_bias) = match architecture {
            Architecture::Qwen2 => (true, false),
            _ => {
                let b = self.attention_bias.unwrap_or(false);
                (b, b)
            }
        };
        let first = |v: Option<OneOrMany>| match v {
            Some(OneOrMany::One(x)) => vec![x],
            Some(OneOrMany::Many(xs)) => xs,
            None => vec![],
        };
        Ok(ModelConfig {
            architecture,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6),
            rope,
            layers,
            attention_scale,
            attn_logit_softcap: if gemma { self.attn_logit_softcapping } else { None },
            final_logit_softcap: if gemma { self.final_logit_softcapping } else { None },
            qkv_bias,
            o_bias,
            mlp_bias: self.mlp_bias.unwrap_or(false) && architecture == Architecture::Llama,
            activation,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(gemma),
            bos_token_id: first(self.bos_token_id).first().copied(),
            eos_token_ids: first(self.eos_token_id),
            pad_token_id: self.pad_token_id,
            max_position_embeddings: self.max_position_embeddings.unwrap_or(4096),
        })
    }

    /// `rope_parameters` (new form) or `rope_theta` + `rope_scaling` (published form).
    fn rope(&self, path: &Path) -> Result<RopeConfig> {
        let (key, params) = match (&self.rope_parameters, &self.rope_scaling) {
            (Some(p), _) => ("rope_parameters", Some(p.clone())),
            (None, s) => ("rope_scaling", s.clone()),
        };
        let theta = params.as_ref().and_then(|p| p.rope_theta).or(self.rope_theta).unwrap_or(10_000.0);
        let Some(p) = params else {
            return Ok(RopeConfig { theta, scaling: RopeScaling::None });
        };
        let need = |v: Option<f64>, name: &str| {
            v.ok_or_else(|| config_error(path, &format!("{key}.{name}"), "required by this rope_type"))
        };
        let scaling = match p.rope_type.as_deref().unwrap_or("default") {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear { factor: need(p.factor, "factor")? },
            "llama3" => RopeScaling::Llama3 {
                factor: need(p.factor, "factor")?,
                low_freq_factor: need(p.low_freq_factor, "low_freq_factor")?,
                high_freq_factor: need(p.high_freq_factor, "high_freq_factor")?,
                original_max_position_embeddings: p
                    .original_max_position_embeddings
                    .or(self.max_position_embeddings.map(|m| m as f64))
                    .ok_or_else(|| config_error(path, &format!("{key}.original_max_position_embeddings"), "absent"))?,
            },
            other => {
                return Err(config_error(
                    path,
                    &format!("{key}.rope_type"),
                    format!("unsupported rope type \"{other}\""),
                ))
            }
        };
        Ok(RopeConfig { theta, scaling })
    }

    /// `layer_types` if present, else the architecture's rule (Gemma2: sliding on even layers;
    /// Qwen2: sliding from `max_window_layers` on when `use_sliding_window`).
    fn layers(&self, path: &Path, architecture: Architecture) -> Result<Vec<LayerAttention>> {
        let sliding = || {
            self.sliding_window.filter(|w| *w > 0).map(|window| LayerAttention::Sliding { window }).ok_or_else(|| {
                config_error(path, "sliding_window", "a sliding-attention layer needs a positive window")
            })
        };
        if let Some(types) = &self.layer_types {
            if types.len() != self.num_hidden_layers {
                return Err(config_error(
                    path,
                    "layer_types",
                    format!("{} entries for {} layers", types.len(), self.num_hidden_layers),
                ));
            }
            if architecture == Architecture::Llama && types.iter().any(|t| t != "full_attention") {
                return Err(config_error(path, "layer_types", "llama layers are all full_attention"));
            }
            return types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(LayerAttention::Full),
                    "sliding_attention" => sliding(),
                    other => Err(config_error(path, "layer_types", format!("unsupported layer type \"{other}\""))),
                })
                .collect();
        }
        (0..self.num_hidden_layers)
            .map(|i| match architecture {
                Architecture::Llama => Ok(LayerAttention::Full),
                Architecture::Gemma2 if (i + 1) % 2 == 1 => sliding(),
                Architecture::Gemma2 => Ok(LayerAttention::Full),
                Architecture::Qwen2
                    if self.use_sliding_window.unwrap_or(false) && i >= self.max_window_layers.unwrap_or(0) =>
                {
                    sliding()
                }
                Architecture::Qwen2 => Ok(LayerAttention::Full),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY_LLAMA3: &str = r#"{
        "model_type": "llama", "vocab_size": 128, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 500000.0, "tie_word_embeddings": false, "eos_token_id": [7, 9],
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    }"#;

    #[test]
    fn legacy_and_new_rope_forms_agree() {
        let legacy = ModelConfig::from_json_str(LEGACY_LLAMA3, "legacy.json").unwrap();
        let new = LEGACY_LLAMA3
            .replace(r#""rope_theta": 500000.0,"#, "")
            .replace("rope_scaling", "rope_parameters")
            .replace(r#""factor": 8.0"#, r#""factor": 8.0, "rope_theta": 500000.0"#);
        let new = ModelConfig::from_json_str(&new, "new.json").unwrap();
        assert_eq!(legacy, new);
        assert_eq!(legacy.rope.theta, 500000.0);
        assert!(matches!(legacy.rope.scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
        assert_eq!(legacy.head_dim, 16);
        assert_eq!(legacy.eos_token_ids, vec![7, 9]);
    }

    #[test]
    fn gemma2_without_layer_types_alternates_sliding_and_full() {
        let text = r#"{"model_type": "gemma2", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 4, "num_attention_heads": 2, "head_dim": 4, "sliding_window": 16,
            "query_pre_attn_scalar": 9, "rope_theta": 10000.0}"#;
        let c = ModelConfig::from_json_str(text, "c.json").unwrap();
        let s = LayerAttention::Sliding { window: 16 };
        assert_eq!(c.layers, vec![s, LayerAttention::Full, s, LayerAttention::Full]);
        assert!((c.attention_scale - 1.0 / 3.0).abs() < 1e-12);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.activation, Activation::GeluTanh);
    }

    #[test]
    fn unknown_model_type_and_rope_type_are_named() {
        let text = LEGACY_LLAMA3.replace(r#""model_type": "llama""#, r#""model_type": "mamba""#);
        let e = ModelConfig::from_json_str(&text, "c.json").unwrap_err().to_string();
        assert!(e.contains("mamba") && e.contains("model_type"), "{e}");
        let text = LEGACY_LLAMA3.replace(r#""rope_type": "llama3""#, r#""rope_type": "yarn""#);
        let e = ModelConfig::from_json_str(&text, "c.json").unwrap_err().to_string();
        assert!(e.contains("rope_scaling.rope_type") && e.contains("yarn"), "{e}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let text = LEGACY_LLAMA3.replace(r#""hidden_size": 64,"#, "");
        let e = ModelConfig::from_json_str(&text, "c.json").unwrap_err().to_string();
        assert!(e.contains("hidden_size"), "{e}");
    }

    #[test]
    fn qwen2_sliding_layers_follow_max_window_layers_and_layer_types_are_checked() {
        let base = r#"{"model_type": "qwen2", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1,
            "sliding_window": 32, "max_window_layers": 1, "use_sliding_window": USE, "rope_scaling": null}"#;
        let off = ModelConfig::from_json_str(&base.replace("USE", "false"), "c.json").unwrap();
        assert_eq!(off.layers, vec![LayerAttention::Full; 3]);
        assert!(off.qkv_bias && !off.o_bias && !off.tie_word_embeddings);
        let on = ModelConfig::from_json_str(&base.replace("USE", "true"), "c.json").unwrap();
        let s = LayerAttention::Sliding { window: 32 };
        assert_eq!(on.layers, vec![LayerAttention::Full, s, s]);
        let short =
            base.replace("USE", "false").replace("\"rope_scaling\": null", "\"layer_types\": [\"full_attention\"]");
        let e = ModelConfig::from_json_str(&short, "c.json").unwrap_err().to_string();
        assert!(e.contains("layer_types") && e.contains("1 entries for 3 layers"), "{e}");
    }
}
