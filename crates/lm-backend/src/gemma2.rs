//! Gemma 2 (Gemma Team 2024): "sandwich" decoder layers
//! `x + post_norm(attn(pre_norm(x)))`, then `x + post_ff_norm(mlp(pre_ff_norm(x)))`,
//! RMSNorm scale `1 + w`, GeGLU (tanh GELU) MLP, embeddings multiplied by `sqrt(D)`,
//! attention scale `query_pre_attn_scalar^-0.5`, soft-capped attention scores and final
//! logits, and sliding-window layers alternating with global ones (from `layer_types`).

use tch::Tensor;

use crate::attention::{Attention, AttentionContext, LayerCache};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::mlp::GatedMlp;
use crate::model::DecoderBlock;
use crate::norm::{NormScale, RmsNorm};
use crate::weights::Weights;

/// One Gemma2 decoder layer.
#[derive(Debug)]
pub(crate) struct Gemma2Block {
    input_norm: RmsNorm,
    attention: Attention,
    post_attention_norm: RmsNorm,
    pre_feedforward_norm: RmsNorm,
    mlp: GatedMlp,
    post_feedforward_norm: RmsNorm,
}

impl Gemma2Block {
    /// Decoder layer `layer` from the weights under `w` (`model.layers.<layer>`).
    pub(crate) fn load(w: &Weights, c: &ModelConfig, layer: usize, scale: NormScale) -> Result<Self> {
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
