//! The keys of `config.json`, deserialised as written: no defaults applied, nothing checked.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A token id or a list of them (`eos_token_id: 2` or `[2, 7]`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(i64),
    Many(Vec<i64>),
}

impl OneOrMany {
    /// The ids as a list.
    pub(crate) fn into_vec(self) -> Vec<i64> {
        match self {
            OneOrMany::One(id) => vec![id],
            OneOrMany::Many(ids) => ids,
        }
    }
}

/// Deserialises a key that is present (possibly `null`) as `Some(value)`; with
/// `#[serde(default)]`, an absent key stays `None`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// `rope_scaling` or `rope_parameters` as written.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RawRope {
    #[serde(alias = "type")]
    pub(crate) rope_type: Option<String>,
    pub(crate) rope_theta: Option<f64>,
    pub(crate) factor: Option<f64>,
    pub(crate) low_freq_factor: Option<f64>,
    pub(crate) high_freq_factor: Option<f64>,
    pub(crate) original_max_position_embeddings: Option<f64>,
}

/// `rope_parameters` as written: one set for every layer, or (Gemma 3 in the form
/// `transformers` 5.x writes) one set per layer type (`full_attention`, `sliding_attention`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawRopeParameters {
    /// `{"full_attention": {...}, "sliding_attention": {...}}`.
    PerLayerType(BTreeMap<String, RawRope>),
    /// `{"rope_type": ..., "rope_theta": ..., ...}`.
    Shared(RawRope),
}

/// The keys of `config.json` this crate reads, as written (absent keys are `None`). The
/// shared keys are normalised in `normalise.rs`; an architecture reads its own in its
/// module of [`crate::arch`].
#[derive(Debug, Deserialize)]
pub(crate) struct RawConfig {
    pub(crate) model_type: String,
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) num_key_value_heads: Option<usize>,
    pub(crate) head_dim: Option<usize>,
    pub(crate) rms_norm_eps: Option<f64>,
    pub(crate) rope_theta: Option<f64>,
    pub(crate) rope_scaling: Option<RawRope>,
    pub(crate) rope_parameters: Option<RawRopeParameters>,
    pub(crate) rope_local_base_freq: Option<f64>,
    pub(crate) max_position_embeddings: Option<usize>,
    pub(crate) tie_word_embeddings: Option<bool>,
    pub(crate) attention_bias: Option<bool>,
    pub(crate) mlp_bias: Option<bool>,
    pub(crate) hidden_act: Option<String>,
    pub(crate) hidden_activation: Option<String>,
    /// `None`: absent; `Some(None)`: `null`.
    #[serde(default, deserialize_with = "present")]
    pub(crate) sliding_window: Option<Option<usize>>,
    pub(crate) use_sliding_window: Option<bool>,
    pub(crate) max_window_layers: Option<usize>,
    pub(crate) layer_types: Option<Vec<String>>,
    pub(crate) sliding_window_pattern: Option<usize>,
    #[serde(rename = "_sliding_window_pattern")]
    pub(crate) private_sliding_window_pattern: Option<usize>,
    pub(crate) use_bidirectional_attention: Option<bool>,
    pub(crate) query_pre_attn_scalar: Option<f64>,
    pub(crate) attn_logit_softcapping: Option<f64>,
    pub(crate) final_logit_softcapping: Option<f64>,
    pub(crate) bos_token_id: Option<OneOrMany>,
    pub(crate) eos_token_id: Option<OneOrMany>,
    pub(crate) pad_token_id: Option<i64>,
}
