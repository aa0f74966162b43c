//! A dense projection `y = x W^T + b` with a Hugging Face `[out, in]` weight, plus a LoRA
//! update when the model was built with adapters ([`crate::lora`]).

use tch::Tensor;

use crate::error::Result;
use crate::lora::LoraLinear;
use crate::weights::Weights;

/// A linear layer.
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,       // [out, in]
    bias: Option<Tensor>, // [out]
    lora: Option<LoraLinear>,
}

impl Linear {
    /// A layer with this weight `[out, in]` and optional bias `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias, lora: None }
    }

    /// The layer under `w`: `weight` `[out, in]` and, when `bias`, `bias` `[out]`; with its
    /// LoRA adapter when the model is built with one for this module.
    pub(crate) fn load(w: &Weights, out: usize, inputs: usize, bias: bool) -> Result<Self> {
        let weight = w.get("weight", &[out, inputs])?;
        let bias = if bias { Some(w.get("bias", &[out])?) } else { None };
        Ok(Linear { weight, bias, lora: w.adapter() })
    }

    /// `[.., in]` -> `[.., out]`: `x W^T + b`, plus `(alpha / r) dropout(x) A^T B^T` when the
    /// layer has an adapter and adapters are on.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        match &self.lora {
            Some(lora) => lora.add_update(y, x),
            None => y,
        }
    }
}
