//! Gemma 2 (Gemma Team 2024): "sandwich" decoder layers
//! `x + post_norm(attn(pre_norm(x)))`, then `x + post_ff_norm(mlp(pre_ff_norm(x)))`,
//! RMSNorm scale `1 + w`, GeGLU (tanh GELU) MLP, embeddings multiplied by `sqrt(D)`,
//! attention scale `query_pre_attn_scalar^-0.5`, soft-capped attention scores and final
//! logits, and sliding-window layers alternating with global ones (from `layer_types`).

use tch::Tensor;

use crate::attention::{Attention, AttentionContext, LayerCache};
use crate::config::ModelConfig;
use crate::mlp::GatedMlp;
use crate::model::DecoderBlock;
use crate::norm::{NormScale, RmsNorm};
use crate::weights::{TensorSpec, WeightSet};

const NORMS: [&str; 4] =
    ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"];

/// The tensors of decoder layer `i`.
pub(crate) fn layer_specs(c: &ModelConfig, i: usize) -> Vec<TensorSpec> {
    let p = format!("model.layers.{i}");
    let mut specs = Attention::specs(&format!("{p}.self_attn"), c);
    specs.extend(GatedMlp::specs(&format!("{p}.mlp"), c));
    specs.extend(NORMS.iter().map(|n| TensorSpec::new(format!("{p}.{n}.weight"), &[c.hidden_size])));
    specs
}

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
    pub(crate) fn load(c: &ModelConfig, i: usize, w: &WeightSet) -> Self {
        let p = format!("model.layers.{i}");
        let norm = |n: &str| RmsNorm::new(w.get(&format!("{p}.{n}.weight")), c.rms_norm_eps, NormScale::OnePlusWeight);
        Gemma2Block {
            input_norm: norm(NORMS[0]),
            attention: Attention::load(&format!("{p}.self_attn"), c, i, w),
            post_attention_norm: norm(NORMS[1]),
            pre_feedforward_norm: norm(NORMS[2]),
            mlp: GatedMlp::load(&format!("{p}.mlp"), c, w),
            post_feedforward_norm: norm(NORMS[3]),
        }
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
