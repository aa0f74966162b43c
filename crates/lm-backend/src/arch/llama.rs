//! Llama (Touvron et al. 2023): pre-norm decoder layers
//! `x + attn(norm(x))`, then `x + mlp(norm(x))`, RMSNorm scale `w`, SwiGLU MLP, untied or tied
//! output projection. Qwen2 shares this layer (see `qwen2.rs`).

use tch::Tensor;

use super::{ArchSettings, DecoderBlock};
use crate::attention::{Attention, AttentionContext, LayerCache};
use crate::config::{ModelConfig, RawConfig};
use crate::error::Result;
use crate::mlp::GatedMlp;
use crate::norm::{NormScale, RmsNorm};
use crate::weights::Weights;

/// The rotary base when `config.json` gives none (as `transformers`).
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

/// Llama's reading of `config.json`: SiLU unless told, untied unless told, biases from
/// `attention_bias` (all four projections) and `mlp_bias`, every layer full attention.
pub(super) fn settings(raw: &RawConfig) -> ArchSettings {
    let attention_bias = raw.attention_bias.unwrap_or(false);
    ArchSettings {
        default_activation: "silu",
        attention_scale: None,
        attn_logit_softcap: None,
        final_logit_softcap: None,
        qkv_bias: attention_bias,
        o_bias: attention_bias,
        mlp_bias: raw.mlp_bias.unwrap_or(false),
        tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
        sliding_window: raw.sliding_window.flatten(),
        default_sliding: vec![false; raw.num_hidden_layers],
        sliding_allowed: false,
        reads_layer_types: true,
        qk_norm: false,
        default_head_dim: None,
        default_rope_theta: DEFAULT_ROPE_THETA,
        local_rope_theta: None,
    }
}

/// Decoder layer `layer` from the weights under `w` (`model.layers.<layer>`).
pub(super) fn block(w: &Weights, c: &ModelConfig, layer: usize, scale: NormScale) -> Result<Box<dyn DecoderBlock>> {
    Ok(Box::new(LlamaBlock::load(w, c, layer, scale)?))
}

/// One Llama decoder layer.
#[derive(Debug)]
struct LlamaBlock {
    input_norm: RmsNorm,
    attention: Attention,
    post_attention_norm: RmsNorm,
    mlp: GatedMlp,
}

impl LlamaBlock {
    fn load(w: &Weights, c: &ModelConfig, layer: usize, scale: NormScale) -> Result<Self> {
        let norm = |name: &str| RmsNorm::load(&w.pushed(name), c.hidden_size, c.rms_norm_eps, scale);
        Ok(LlamaBlock {
            input_norm: norm("input_layernorm")?,
            attention: Attention::load(&w.pushed("self_attn"), c, c.layers[layer])?,
            post_attention_norm: norm("post_attention_layernorm")?,
            mlp: GatedMlp::load(&w.pushed("mlp"), c)?,
        })
    }
}

impl DecoderBlock for LlamaBlock {
    fn forward(&self, x: &Tensor, ctx: &AttentionContext, cache: Option<&mut LayerCache>) -> Tensor {
        let h = x + self.attention.forward(&self.input_norm.forward(x), ctx, cache);
        &h + self.mlp.forward(&self.post_attention_norm.forward(&h))
    }
}
