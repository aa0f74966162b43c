//! Qwen2 (Yang et al. 2024): the Llama layer with biases on the query, key and value
//! projections (none on the output projection), usually tied embeddings and a large rope
//! theta. `config.json` decides the rest; the layer itself is [`crate::llama`]'s.

use crate::config::ModelConfig;
use crate::error::Result;
use crate::llama::LlamaBlock;
use crate::norm::NormScale;
use crate::weights::Weights;

/// Decoder layer `layer` (the config sets `qkv_bias` for Qwen2).
pub(crate) fn load_block(w: &Weights, c: &ModelConfig, layer: usize) -> Result<LlamaBlock> {
    debug_assert!(c.qkv_bias && !c.o_bias);
    LlamaBlock::load(w, c, layer, NormScale::Weight)
}
