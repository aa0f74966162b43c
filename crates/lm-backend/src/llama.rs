//! Llama (Touvron et al. 2023): pre-norm decoder layers
//! `x + attn(norm(x))`, then `x + mlp(norm(x))`, RMSNorm scale `w`, SwiGLU MLP, untied or tied
//! output projection. Qwen2 shares this layer (see [`crate::qwen2`]).

use tch::Tensor;

use crate::attention::{Attention, AttentionContext, LayerCache};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::mlp::GatedMlp;
use crate::model::DecoderBlock;
use crate::norm::{NormScale, RmsNorm};
use crate::weights::Weights;

/// One Llama decoder layer.
#[derive(Debug)]
pub(crate) struct LlamaBlock {
    input_norm: RmsNorm,
    attention: Attention,
    post_attention_norm: RmsNorm,
    mlp: GatedMlp,
}

impl LlamaBlock {
    /// Decoder layer `layer` from the weights under `w` (`model.layers.<layer>`).
    pub(crate) fn load(w: &Weights, c: &ModelConfig, layer: usize, scale: NormScale) -> Result<Self> {
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
