//! The model shared by all architectures: token embedding, the architecture's decoder
//! layers, final norm and output projection, behind the [`CausalLm`] interface a trainer
//! uses.
//!
//! - `api.rs`: the interface ([`CausalLm`], [`HiddenRequest`], [`HiddenStates`],
//!   [`LmOutput`]);
//! - `load.rs`: building an [`HfCausalLm`] from a checkpoint folder or named tensors, and
//!   [`tensor_specs`];
//! - `adapters.rs`: LoRA adapters on a loaded model ([`crate::lora`]): loading, switches,
//!   saving in PEFT's layout, merging;
//! - `forward.rs`: the forward pass (embedding -> blocks -> norm -> output projection), with
//!   hidden states, selected positions, packed rows ([`crate::packed`]) and the key/value
//!   cache of generation;
//! - [`checkpointed`]: activation checkpointing ([`Checkpointed`]), passes that keep only
//!   each block's input and recompute the blocks in a layer-wise reverse pass.

mod adapters;
mod api;
pub mod checkpointed;
mod forward;
mod load;

use std::collections::BTreeMap;

use tch::Tensor;

pub use api::{CausalLm, HiddenRequest, HiddenStates, LmOutput};
pub use checkpointed::Checkpointed;
pub use load::tensor_specs;

use crate::arch::DecoderBlock;
use crate::config::ModelConfig;
use crate::norm::RmsNorm;
use crate::rope::Rope;
use crate::weights::LoadOptions;
use adapters::Adapters;

/// Name of the token embedding.
pub const EMBED_TOKENS: &str = "model.embed_tokens.weight";
/// Name of the final norm.
pub const FINAL_NORM: &str = "model.norm.weight";
/// Name of the output projection (absent with tied embeddings).
pub const LM_HEAD: &str = "lm_head.weight";

/// A Hugging Face causal LM of any supported [`Architecture`](crate::Architecture), loaded
/// from a checkpoint folder.
#[derive(Debug)]
pub struct HfCausalLm {
    config: ModelConfig,
    source_config: serde_json::Value,
    options: LoadOptions,
    parameters: BTreeMap<String, Tensor>,
    embed: Tensor, // [V, D]
    embed_scale: Option<Tensor>,
    blocks: Vec<Box<dyn DecoderBlock>>,
    norm: RmsNorm,
    lm_head: Tensor, // [V, D], the embedding when tied
    rope: Rope,
    adapters: Adapters,
}

impl HfCausalLm {
    /// The parameters by their checkpoint names (a tied output projection appears once, as
    /// the embedding). The tensors share storage with the model: setting `requires_grad`
    /// or updating them in place changes the model.
    pub fn parameters(&self) -> &BTreeMap<String, Tensor> {
        &self.parameters
    }

    /// Turns gradient tracking of every parameter on or off (off after loading). LoRA
    /// adapters have their own switch ([`HfCausalLm::set_adapters_trainable`]).
    pub fn set_trainable(&self, trainable: bool) {
        for p in self.parameters.values() {
            let _ = p.shallow_clone().set_requires_grad(trainable);
        }
    }

    /// The number of decoder layers `L` (the last hidden-state index).
    pub fn num_layers(&self) -> usize {
        self.config.num_layers
    }

    /// The `config.json` the model was loaded from, as JSON (all keys kept).
    pub fn source_config(&self) -> &serde_json::Value {
        &self.source_config
    }

    /// The dtype, device and attention implementation the model was loaded with.
    pub fn load_options(&self) -> LoadOptions {
        self.options
    }

    pub(crate) fn rope(&self) -> &Rope {
        &self.rope
    }
}
