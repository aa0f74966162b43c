//! The gated MLP of Llama-family models (Shazeer 2020, "GLU Variants Improve Transformer"):
//! `down(act(gate(x)) * up(x))`, SwiGLU with SiLU, GeGLU with (tanh-approximated) GELU.

use tch::Tensor;

use crate::config::{Activation, ModelConfig};
use crate::linear::Linear;
use crate::weights::{TensorSpec, WeightSet};

/// A gated MLP block.
#[derive(Debug)]
pub struct GatedMlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    activation: Activation,
}

impl GatedMlp {
    /// The tensors under `prefix` (e.g. `model.layers.0.mlp`).
    pub fn specs(prefix: &str, c: &ModelConfig) -> Vec<TensorSpec> {
        let (d, i) = (c.hidden_size, c.intermediate_size);
        let mut specs = vec![
            TensorSpec::new(format!("{prefix}.gate_proj.weight"), &[i, d]),
            TensorSpec::new(format!("{prefix}.up_proj.weight"), &[i, d]),
            TensorSpec::new(format!("{prefix}.down_proj.weight"), &[d, i]),
        ];
        if c.mlp_bias {
            specs.push(TensorSpec::new(format!("{prefix}.gate_proj.bias"), &[i]));
            specs.push(TensorSpec::new(format!("{prefix}.up_proj.bias"), &[i]));
            specs.push(TensorSpec::new(format!("{prefix}.down_proj.bias"), &[d]));
        }
        specs
    }

    pub(crate) fn load(prefix: &str, c: &ModelConfig, w: &WeightSet) -> Self {
        let lin =
            |n: &str| Linear::new(w.get(&format!("{prefix}.{n}.weight")), w.get_opt(&format!("{prefix}.{n}.bias")));
        GatedMlp { gate: lin("gate_proj"), up: lin("up_proj"), down: lin("down_proj"), activation: c.activation }
    }

    /// `[B, T, D]` -> `[B, T, D]`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let g = self.gate.forward(x);
        let g = match self.activation {
            Activation::Silu => g.silu(),
            Activation::GeluTanh => g.gelu("tanh"),
            Activation::Gelu => g.gelu("none"),
        };
        self.down.forward(&(g * self.up.forward(x)))
    }
}
