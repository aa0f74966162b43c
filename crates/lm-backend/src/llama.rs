//! Llama (Touvron et al. 2023): pre-norm decoder layers
//! `x + attn(norm(x))`, then `x + mlp(norm(x))`, RMSNorm scale `w`, SwiGLU MLP, untied or tied
//! output projection. Qwen2 shares this layer (see [`crate::qwen2`]).

use tch::Tensor;

use crate::attention::{Attention, AttentionContext, LayerCache};
use crate::config::ModelConfig;
use crate::mlp::GatedMlp;
use crate::model::DecoderBlock;
use crate::norm::{NormScale, RmsNorm};
use crate::weights::{TensorSpec, WeightSet};

/// The tensors of decoder layer `i`.
pub(crate) fn layer_specs(c: &ModelConfig, i: usize) -> Vec<TensorSpec> {
    let p = format!("model.layers.{i}");
    let mut specs = Attention::specs(&format!("{p}.self_attn"), c);
    specs.extend(GatedMlp::specs(&format!("{p}.mlp"), c));
    specs.push(TensorSpec::new(format!("{p}.input_layernorm.weight"), &[c.hidden_size]));
    specs.push(TensorSpec::new(format!("{p}.post_attention_layernorm.weight"), &[c.hidden_size]));
    specs
}

/// One Llama decoder layer.
#[derive(Debug)]
pub(crate) struct LlamaBlock {
    input_norm: RmsNorm,
    attention: Attention,
    post_attention_norm: RmsNorm,
    mlp: GatedMlp,
}

impl LlamaBlock {
    pub(crate) fn load(c: &ModelConfig, i: usize, w: &WeightSet) -> Self {
        let p = format!("model.layers.{i}");
        let norm = |n: &str| RmsNorm::new(w.get(&format!("{p}.{n}.weight")), c.rms_norm_eps, NormScale::Weight);
        LlamaBlock {
            input_norm: norm("input_layernorm"),
            attention: Attention::load(&format!("{p}.self_attn"), c, i, w),
            post_attention_norm: norm("post_attention_layernorm"),
            mlp: GatedMlp::load(&format!("{p}.mlp"), c, w),
        }
    }
}

impl DecoderBlock for LlamaBlock {
    fn forward(&self, x: &Tensor, ctx: &AttentionContext, cache: Option<&mut LayerCache>) -> Tensor {
        let h = x + self.attention.forward(&self.input_norm.forward(x), ctx, cache);
        &h + self.mlp.forward(&self.post_attention_norm.forward(&h))
    }
}
