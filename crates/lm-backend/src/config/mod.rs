//! `config.json` of a Hugging Face checkpoint, read with serde and normalised into one
//! [`ModelConfig`] for all supported architectures.
//!
//! Two forms are accepted: the one most published checkpoints use (`rope_theta`,
//! `rope_scaling`, no `layer_types`) and the newer one `transformers` 5.x writes
//! (`rope_parameters`, `layer_types`). Unknown keys are ignored (checkpoints carry many keys
//! that do not change the forward pass); unknown values of keys that do matter
//! (`model_type`, `rope_type`, activation, layer type) are errors naming the key.
//!
//! The keys all architectures share are normalised here; each architecture reads its own
//! (defaults, soft-caps, biases, which layers slide) in its module of `arch`.

mod normalise;
mod raw;

use std::path::Path;

pub use crate::arch::Architecture;
use crate::error::{LmError, Result};
use normalise::normalise;
pub(crate) use raw::RawConfig;

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
    /// Rotary embedding parameters (of every layer, or of the full-attention layers when
    /// `local_rope` is set).
    pub rope: RopeConfig,
    /// Rotary parameters of the sliding-window layers when they have their own (Gemma 3:
    /// `rope_local_base_freq`, or `rope_parameters.sliding_attention`); `None`: `rope`.
    pub local_rope: Option<RopeConfig>,
    /// Attention span of each layer (`num_layers` entries).
    pub layers: Vec<LayerAttention>,
    /// Scale of the attention scores (`head_dim^-0.5`, Gemma: `query_pre_attn_scalar^-0.5`).
    pub attention_scale: f64,
    /// Soft-cap of the attention scores, `cap * tanh(s / cap)` (Gemma 2).
    pub attn_logit_softcap: Option<f64>,
    /// Soft-cap of the final logits (Gemma 2).
    pub final_logit_softcap: Option<f64>,
    /// RMSNorm over each query and key head (`q_norm`, `k_norm`, width `head_dim`) after the
    /// projections and before the rotation (Qwen3, Gemma 3).
    pub qk_norm: bool,
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
        normalise(raw, path)
    }

    /// The rotary parameters of a layer spanning `span`: `local_rope` for a sliding-window
    /// layer when there is one, else `rope`.
    pub fn rope_for(&self, span: LayerAttention) -> &RopeConfig {
        match (span, &self.local_rope) {
            (LayerAttention::Sliding { .. }, Some(local)) => local,
            _ => &self.rope,
        }
    }

    /// Number of query heads per key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }
}
