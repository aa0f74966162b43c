//! A dense projection `y = x W^T + b` with a Hugging Face `[out, in]` weight.

use tch::Tensor;

use crate::error::Result;
use crate::weights::Weights;

/// A linear layer.
#[derive(Debug)]
pub struct Linear {
    weight: Tensor,       // [out, in]
    bias: Option<Tensor>, // [out]
}

impl Linear {
    /// A layer with this weight `[out, in]` and optional bias `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias }
    }

    /// The layer under `w`: `weight` `[out, in]` and, when `bias`, `bias` `[out]`.
    pub(crate) fn load(w: &Weights, out: usize, inputs: usize, bias: bool) -> Result<Self> {
        let weight = w.get("weight", &[out, inputs])?;
        let bias = if bias { Some(w.get("bias", &[out])?) } else { None };
        Ok(Linear { weight, bias })
    }

    /// `[.., in]` -> `[.., out]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}
