//! A model that implements only the required methods of `CausalLm`, delegating to a loaded
//! model: every provided method (`forward_at`, the packed passes) keeps its default.

use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, HiddenStates, LmOutput, ModelConfig};
use tch::{Device, Kind, Tensor};

/// `CausalLm` with only its required methods, over a loaded model.
pub struct RequiredOnly<'a>(pub &'a HfCausalLm);

impl CausalLm for RequiredOnly<'_> {
    fn config(&self) -> &ModelConfig {
        self.0.config()
    }
    fn device(&self) -> Device {
        self.0.device()
    }
    fn kind(&self) -> Kind {
        self.0.kind()
    }
    fn forward(&self, ids: &Tensor, mask: &Tensor, hidden: &HiddenRequest) -> lm_backend::Result<LmOutput> {
        self.0.forward(ids, mask, hidden)
    }
    fn hidden_states(&self, ids: &Tensor, mask: &Tensor, hidden: &HiddenRequest) -> lm_backend::Result<HiddenStates> {
        self.0.hidden_states(ids, mask, hidden)
    }
}
