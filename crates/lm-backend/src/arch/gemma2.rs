//! Gemma 2 (Gemma Team 2024): "sandwich" decoder layers
//! `x + post_norm(attn(pre_norm(x)))`, then `x + post_ff_norm(mlp(pre_ff_norm(x)))`,
//! RMSNorm scale `1 + w`, GeGLU (tanh GELU) MLP, embeddings multiplied by `sqrt(D)`,
//! attention scale `query_pre_attn_scalar^-0.5`, soft-capped attention scores and final
//! logits, tied embeddings by default, and sliding-window layers alternating with global
//! ones (from `layer_types`, else starting with a sliding one).

use tch::Tensor;

use super::{llama, ArchSettings, DecoderBlock};
use crate::attention::{Attention, AttentionContext, LayerCache};
use crate::config::{ModelConfig, RawConfig};
use crate::error::Result;
use crate::mlp::GatedMlp;
use crate::norm::{NormScale, RmsNorm};
use crate::weights::Weights;

/// The window of sliding layers when `config.json` omits `sliding_window` (Gemma 2 and 3).
pub(super) const DEFAULT_SLIDING_WINDOW: usize = 4096;

/// The attention scale's `query_pre_attn_scalar` when `config.json` omits it.
const DEFAULT_QUERY_PRE_ATTN_SCALAR: f64 = 256.0;

/// Gemma2's reading of `config.json`: tanh GELU and tied embeddings unless told, attention
/// scale `query_pre_attn_scalar^-0.5` (not `head_dim^-0.5`), the two soft-caps, no MLP
/// biases and, without `layer_types`, sliding layers at even indices (0, 2, ...).
pub(super) fn settings(raw: &RawConfig) -> ArchSettings {
    let query_pre_attn_scalar = raw.query_pre_attn_scalar.unwrap_or(DEFAULT_QUERY_PRE_ATTN_SCALAR);
    ArchSettings {
        default_activation: "gelu_pytorch_tanh",
        attention_scale: Some(query_pre_attn_scalar.powf(-0.5)),
        attn_logit_softcap: raw.attn_logit_softcapping,
        final_logit_softcap: raw.final_logit_softcapping,
        mlp_bias: false,
        tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(true),
        sliding_window: raw.sliding_window.unwrap_or(Some(DEFAULT_SLIDING_WINDOW)),
        default_sliding: (0..raw.num_hidden_layers).map(|i| i % 2 == 0).collect(),
        sliding_allowed: true,
        ..llama::settings(raw)
    }
}

/// The embedding multiplier `sqrt(D)` (the model rounds it to the weights' dtype, as
/// `transformers` does).
pub(super) fn embed_scale(c: &ModelConfig) -> f64 {
    (c.hidden_size as f64).sqrt()
}

/// Decoder layer `layer` from the weights under `w` (`model.layers.<layer>`).
pub(super) fn block(w: &Weights, c: &ModelConfig, layer: usize, scale: NormScale) -> Result<Box<dyn DecoderBlock>> {
    Ok(Box::new(Gemma2Block::load(w, c, layer, scale)?))
}

/// One Gemma2 decoder layer.
#[derive(Debug)]
struct Gemma2Block {
    input_norm: RmsNorm,
    attention: Attention,
    post_attention_norm: RmsNorm,
    pre_feedforward_norm: RmsNorm,
    mlp: GatedMlp,
    post_feedforward_norm: RmsNorm,
}

impl Gemma2Block {
    fn load(w: &Weights, c: &ModelConfig, layer: usize, scale: NormScale) -> Result<Self> {
        let norm = |name: &str| RmsNorm::load(&w.pushed(name), c.hidden_size, c.rms_norm_eps, scale);
        Ok(Gemma2Block {
            input_norm: norm("input_layernorm")?,
            attention: Attention::load(&w.pushed("self_attn"), c, c.layers[layer])?,
            post_attention_norm: norm("post_attention_layernorm")?,
            pre_feedforward_norm: norm("pre_feedforward_layernorm")?,
            mlp: GatedMlp::load(&w.pushed("mlp"), c)?,
            post_feedforward_norm: norm("post_feedforward_layernorm")?,
        })
    }
}

impl DecoderBlock for Gemma2Block {
    fn forward(&self, x: &Tensor, ctx: &AttentionContext, cache: Option<&mut LayerCache>) -> Tensor {
        let a = self.attention.forward(&self.input_norm.forward(x), ctx, cache);
        let h = x + self.post_attention_norm.forward(&a);
        let m = self.mlp.forward(&self.pre_feedforward_norm.forward(&h));
        &h + self.post_feedforward_norm.forward(&m)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Activation, LayerAttention, ModelConfig};

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
}
