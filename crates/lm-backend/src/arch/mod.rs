//! The supported architectures and everything that differs between them.
//!
//! One table, `ARCHITECTURES`, says per architecture: its `model_type` in `config.json`, how
//! it reads the keys of `config.json` that are its own (defaults, soft-caps, biases, which
//! layers slide), how it builds a decoder layer from its weights (which also lists the
//! layer's weights: see [`crate::weights`]), its RMSNorm scale (`w` or `1 + w`) and its
//! embedding scale. Everything else (embedding, final norm, output projection, attention,
//! MLP) is shared.
//!
//! Adding an architecture: a variant of [`Architecture`], a module beside `llama.rs` (its
//! reading of `config.json`, and its decoder layer when no existing one fits) and one entry
//! in the table. Qwen2, Qwen3 and Mistral use Llama's layer, Gemma 3 uses Gemma 2's; what
//! differs (biases, query/key norms, which layers slide, rotary bases) is in their settings.

mod gemma2;
mod gemma3;
mod llama;
mod mistral;
mod qwen2;
mod qwen3;

use std::fmt::Debug;

use tch::Tensor;

use crate::attention::{AttentionContext, LayerCache};
use crate::config::{ModelConfig, RawConfig};
use crate::error::Result;
use crate::norm::NormScale;
use crate::weights::Weights;

/// The supported architectures (`model_type` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `llama`: Llama 2/3 and the many models sharing its layout (SmolLM, TinyLlama, ...).
    Llama,
    /// `qwen2`: Llama with biases on the query/key/value projections.
    Qwen2,
    /// `gemma2`: sandwich norms, `1 + w` RMSNorm, GeGLU, soft-capping, alternating sliding window.
    Gemma2,
    /// `qwen3`: Llama with an RMSNorm over each query and key head, no biases by default and
    /// a head width of its own (`head_dim`).
    Qwen3,
    /// `mistral`: Llama with sliding-window attention in every layer (`sliding_window`).
    Mistral,
    /// `gemma3_text`: Gemma 2's layer with query/key norms and no soft-caps, five sliding-window
    /// layers per global one (by default), and a rotary base of their own on sliding layers.
    Gemma3,
}

impl Architecture {
    /// The `model_type` string of `config.json`.
    pub fn model_type(self) -> &'static str {
        self.entry().model_type
    }

    /// The architecture whose `model_type` is `model_type`, if supported.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        ARCHITECTURES.iter().find(|e| e.model_type == model_type).map(|e| e.architecture)
    }

    /// Every supported architecture, in table order.
    pub fn all() -> impl Iterator<Item = Architecture> {
        ARCHITECTURES.iter().map(|e| e.architecture)
    }

    /// This architecture's entry of the table.
    pub(crate) fn entry(self) -> &'static ArchEntry {
        ARCHITECTURES.iter().find(|e| e.architecture == self).expect("every architecture has a table entry")
    }
}

/// The supported `model_type`s, comma-separated (for error messages).
pub(crate) fn supported_model_types() -> String {
    ARCHITECTURES.iter().map(|e| e.model_type).collect::<Vec<_>>().join(", ")
}

/// One decoder layer of some architecture.
pub(crate) trait DecoderBlock: Debug + Send {
    /// `[B, T, D]` -> `[B, T, D]`.
    fn forward(&self, x: &Tensor, ctx: &AttentionContext, cache: Option<&mut LayerCache>) -> Tensor;
}

/// Builds decoder layer `layer` of a model of config `c` from the weights under `w`
/// (`model.layers.<layer>`), its norms scaled by `norm_scale`.
pub(crate) type BuildBlock =
    fn(w: &Weights, c: &ModelConfig, layer: usize, norm_scale: NormScale) -> Result<Box<dyn DecoderBlock>>;

/// What an architecture reads from `config.json` beyond the keys all share, with its
/// defaults for absent keys.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ArchSettings {
    /// The activation when neither `hidden_activation` nor `hidden_act` names one.
    pub(crate) default_activation: &'static str,
    /// The scale of the attention scores; `None`: `head_dim^-0.5`.
    pub(crate) attention_scale: Option<f64>,
    /// Soft-cap of the attention scores.
    pub(crate) attn_logit_softcap: Option<f64>,
    /// Soft-cap of the final logits.
    pub(crate) final_logit_softcap: Option<f64>,
    /// Biases on the query/key/value projections.
    pub(crate) qkv_bias: bool,
    /// Bias on the attention output projection.
    pub(crate) o_bias: bool,
    /// Biases on the MLP projections.
    pub(crate) mlp_bias: bool,
    /// The output projection is the token embedding.
    pub(crate) tie_word_embeddings: bool,
    /// The window of sliding layers: `sliding_window`, or the architecture's default when
    /// the key is absent (`null` is no window).
    pub(crate) sliding_window: Option<usize>,
    /// Without `layer_types`: whether each layer (`num_hidden_layers` entries) slides.
    pub(crate) default_sliding: Vec<bool>,
    /// Whether `layer_types` may name sliding-attention layers.
    pub(crate) sliding_allowed: bool,
    /// Whether `layer_types` is read at all (`transformers`' Mistral ignores it and slides
    /// every layer when `sliding_window` is set).
    pub(crate) reads_layer_types: bool,
    /// RMSNorm over each query and key head before the rotation.
    pub(crate) qk_norm: bool,
    /// The head width when `config.json` has no `head_dim`; `None`: `hidden_size / heads`.
    pub(crate) default_head_dim: Option<usize>,
    /// The rotary base when `config.json` gives none.
    pub(crate) default_rope_theta: f64,
    /// `Some(base)`: sliding-window layers rotate with a base of their own
    /// (`rope_local_base_freq`, or `rope_parameters.sliding_attention`), `base` when absent.
    pub(crate) local_rope_theta: Option<f64>,
}

/// One row of the architecture table.
#[derive(Debug)]
pub(crate) struct ArchEntry {
    /// The architecture.
    pub(crate) architecture: Architecture,
    /// Its `model_type` in `config.json`.
    pub(crate) model_type: &'static str,
    /// Its reading of `config.json`.
    pub(crate) settings: fn(&RawConfig) -> ArchSettings,
    /// Its decoder layer; run over a recording, it lists the layer's weights.
    pub(crate) block: BuildBlock,
    /// The scale of every RMSNorm, the final one included.
    pub(crate) norm_scale: NormScale,
    /// The multiplier of the embedding output, if any.
    pub(crate) embed_scale: Option<fn(&ModelConfig) -> f64>,
}

/// The architecture table.
static ARCHITECTURES: [ArchEntry; 6] = [
    ArchEntry {
        architecture: Architecture::Llama,
        model_type: "llama",
        settings: llama::settings,
        block: llama::block,
        norm_scale: NormScale::Weight,
        embed_scale: None,
    },
    ArchEntry {
        architecture: Architecture::Qwen2,
        model_type: "qwen2",
        settings: qwen2::settings,
        block: llama::block,
        norm_scale: NormScale::Weight,
        embed_scale: None,
    },
    ArchEntry {
        architecture: Architecture::Gemma2,
        model_type: "gemma2",
        settings: gemma2::settings,
        block: gemma2::block,
        norm_scale: NormScale::OnePlusWeight,
        embed_scale: Some(gemma2::embed_scale),
    },
    ArchEntry {
        architecture: Architecture::Qwen3,
        model_type: "qwen3",
        settings: qwen3::settings,
        block: llama::block,
        norm_scale: NormScale::Weight,
        embed_scale: None,
    },
    ArchEntry {
        architecture: Architecture::Mistral,
        model_type: "mistral",
        settings: mistral::settings,
        block: llama::block,
        norm_scale: NormScale::Weight,
        embed_scale: None,
    },
    ArchEntry {
        architecture: Architecture::Gemma3,
        model_type: "gemma3_text",
        settings: gemma3::settings,
        block: gemma2::block,
        norm_scale: NormScale::OnePlusWeight,
        embed_scale: Some(gemma2::embed_scale),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_architecture_has_one_entry_and_names_map_both_ways() {
        let all: Vec<Architecture> = Architecture::all().collect();
        let want = [
            Architecture::Llama,
            Architecture::Qwen2,
            Architecture::Gemma2,
            Architecture::Qwen3,
            Architecture::Mistral,
            Architecture::Gemma3,
        ];
        assert_eq!(all, want);
        for a in all {
            assert_eq!(ARCHITECTURES.iter().filter(|e| e.architecture == a).count(), 1);
            assert_eq!(Architecture::from_model_type(a.model_type()), Some(a));
        }
        assert_eq!(Architecture::from_model_type("mamba"), None);
        assert_eq!(supported_model_types(), "llama, qwen2, gemma2, qwen3, mistral, gemma3_text");
    }
}
