//! Model weights: where they live ([`LoadOptions`], [`Dtype`]), which tensors a model
//! expects ([`TensorSpec`]), how a checkpoint folder is read ([`Checkpoint`]) and how a
//! model's construction code asks for each tensor by name and shape (once, where it is used).
//!
//! Every tensor the config implies is checked by name and shape; a missing, misshaped or
//! unexpected tensor is an error naming it. `nn::VarStore::load` is not used: it reads one
//! file only, fails on tied embeddings and changes dtypes to the file's.

mod checkpoint;
mod options;
mod scope;

pub(crate) use checkpoint::safetensors_kind;
pub use checkpoint::{Checkpoint, INDEX_FILE, SINGLE_FILE};
pub use options::{AttentionImpl, Dtype, LoadOptions};
pub(crate) use scope::{record_specs, WeightSource, Weights};

/// A tensor a model expects: its Hugging Face name and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// e.g. `[num_heads * head_dim, hidden_size]`.
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// A spec from a name and a shape.
    pub fn new(name: impl Into<String>, shape: &[usize]) -> Self {
        TensorSpec { name: name.into(), shape: shape.iter().map(|&d| d as i64).collect() }
    }
}
