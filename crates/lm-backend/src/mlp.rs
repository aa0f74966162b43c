//! The gated MLP of Llama-family models (Shazeer 2020, "GLU Variants Improve Transformer"):
//! `down(act(gate(x)) * up(x))`, SwiGLU with SiLU, GeGLU with (tanh-approximated) GELU.

use tch::Tensor;

use crate::config::{Activation, ModelConfig};
use crate::error::Result;
use crate::linear::Linear;
use crate::weights::{record_specs, TensorSpec, Weights};

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
        record_specs(|w| GatedMlp::load(&w.pushed(prefix), c))
    }

    /// The MLP under `w` (e.g. `model.layers.0.mlp`): `gate_proj` and `up_proj` `[I, D]`,
    /// `down_proj` `[D, I]`, with biases when the config asks for them.
    pub(crate) fn load(w: &Weights, c: &ModelConfig) -> Result<Self> {
        let (d, i) = (c.hidden_size, c.intermediate_size);
        let proj = |name: &str, out, inputs| Linear::load(&w.pushed(name), out, inputs, c.mlp_bias);
        Ok(GatedMlp {
            gate: proj("gate_proj", i, d)?,
            up: proj("up_proj", i, d)?,
            down: proj("down_proj", d, i)?,
            activation: c.activation,
        })
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
