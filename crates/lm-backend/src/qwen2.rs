//! Qwen2 (Yang et al. 2024): the Llama layer with biases on the query, key and value
//! projections (none on the output projection), usually tied embeddings and a large rope
//! theta. `config.json` decides the rest; the layer itself is [`crate::llama`]'s.

use crate::config::ModelConfig;
use crate::llama::{layer_specs as llama_layer_specs, LlamaBlock};
use crate::weights::{TensorSpec, WeightSet};

/// The tensors of decoder layer `i` (the config sets `qkv_bias` for Qwen2).
pub(crate) fn layer_specs(c: &ModelConfig, i: usize) -> Vec<TensorSpec> {
    debug_assert!(c.qkv_bias && !c.o_bias);
    llama_layer_specs(c, i)
}

/// Decoder layer `i`.
pub(crate) fn load_block(c: &ModelConfig, i: usize, w: &WeightSet) -> LlamaBlock {
    LlamaBlock::load(c, i, w)
}
