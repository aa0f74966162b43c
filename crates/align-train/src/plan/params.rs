//! Parameter counts from a model's `config.json` alone, by the shapes each architecture's
//! layers declare (lm-backend's `attention.rs`, `mlp.rs`, `arch/`), and the adapter counts of
//! `[lora]`.
//!
//! With `D` = hidden size, `V` = vocabulary, `I` = MLP width, `Q = heads * head_dim`,
//! `K = kv_heads * head_dim`:
//!
//! - embedding `V D`; output projection `V D` unless tied; final norm `D`;
//! - per decoder layer: `q_proj` `Q D` (+ `Q` bias), `k_proj` and `v_proj` `K D` each (+ `K`
//!   bias each), `o_proj` `D Q` (+ `D` bias), `gate_proj` and `up_proj` `I D` each,
//!   `down_proj` `D I` (+ `I`, `I`, `D` biases with `mlp_bias`), and `D` per RMSNorm (two in
//!   Llama and Qwen2, four in Gemma 2's sandwich layers).
//!
//! The plan's tests check these sums against `lm_backend::tensor_specs` (the list of tensors a
//! loaded checkpoint must hold) for every architecture.

use lm_backend::{Architecture, ModelConfig};
use serde::Serialize;

/// The linear projections of one decoder layer (the names `[lora] target_modules` uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Projection {
    /// `self_attn.q_proj`: `D -> Q`.
    QProj,
    /// `self_attn.k_proj`: `D -> K`.
    KProj,
    /// `self_attn.v_proj`: `D -> K`.
    VProj,
    /// `self_attn.o_proj`: `Q -> D`.
    OProj,
    /// `mlp.gate_proj`: `D -> I`.
    GateProj,
    /// `mlp.up_proj`: `D -> I`.
    UpProj,
    /// `mlp.down_proj`: `I -> D`.
    DownProj,
}

impl Projection {
    /// Every projection, in layer order.
    pub const ALL: [Projection; 7] = [
        Projection::QProj,
        Projection::KProj,
        Projection::VProj,
        Projection::OProj,
        Projection::GateProj,
        Projection::UpProj,
        Projection::DownProj,
    ];

    /// The name in `[lora] target_modules` (and in checkpoint tensor names).
    pub fn name(self) -> &'static str {
        match self {
            Projection::QProj => "q_proj",
            Projection::KProj => "k_proj",
            Projection::VProj => "v_proj",
            Projection::OProj => "o_proj",
            Projection::GateProj => "gate_proj",
            Projection::UpProj => "up_proj",
            Projection::DownProj => "down_proj",
        }
    }

    /// The projection named `name`, if any.
    pub fn from_name(name: &str) -> Option<Projection> {
        Projection::ALL.into_iter().find(|p| p.name() == name)
    }

    /// `(in, out)` widths of this projection under `c`.
    pub fn widths(self, c: &ModelConfig) -> (u64, u64) {
        let (d, i) = (c.hidden_size as u64, c.intermediate_size as u64);
        let (q, k) = ((c.num_heads * c.head_dim) as u64, (c.num_kv_heads * c.head_dim) as u64);
        match self {
            Projection::QProj => (d, q),
            Projection::KProj | Projection::VProj => (d, k),
            Projection::OProj => (q, d),
            Projection::GateProj | Projection::UpProj => (d, i),
            Projection::DownProj => (i, d),
        }
    }

    /// Whether this projection has a bias under `c`.
    pub fn has_bias(self, c: &ModelConfig) -> bool {
        match self {
            Projection::QProj | Projection::KProj | Projection::VProj => c.qkv_bias,
            Projection::OProj => c.o_bias,
            Projection::GateProj | Projection::UpProj | Projection::DownProj => c.mlp_bias,
        }
    }
}

/// RMSNorms of width `D` per decoder layer: Gemma 2's and Gemma 3's sandwich layers have
/// four, the others two (Qwen3's and Gemma 3's per-head q/k norms are counted apart).
pub fn norms_per_layer(c: &ModelConfig) -> u64 {
    match c.architecture {
        Architecture::Gemma2 | Architecture::Gemma3 => 4,
        Architecture::Llama | Architecture::Qwen2 | Architecture::Qwen3 | Architecture::Mistral => 2,
    }
}

/// Parameters of the per-head q/k norms of one layer (`q_norm`, `k_norm`: `head_dim` each).
pub fn qk_norm_params(c: &ModelConfig) -> u64 {
    if c.qk_norm {
        2 * c.head_dim as u64
    } else {
        0
    }
}

/// The parameters of a model, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ParamCounts {
    /// Every parameter (a tied output projection counted once).
    pub total: u64,
    /// The token embedding, `V D`.
    pub embedding: u64,
    /// The output projection, `V D`; 0 when tied to the embedding.
    pub output: u64,
    /// One decoder layer.
    pub per_layer: u64,
    /// The number of decoder layers.
    pub layers: u64,
    /// The final norm, `D`.
    pub final_norm: u64,
    /// The largest single tensor (elements): the embedding for every supported model.
    pub largest_tensor: u64,
    /// The largest tensor inside a decoder layer (elements).
    pub largest_layer_tensor: u64,
}

/// The parameter counts of `c` (formulas in the module documentation).
pub fn param_counts(c: &ModelConfig) -> ParamCounts {
    let (v, d) = (c.vocab_size as u64, c.hidden_size as u64);
    let projections: u64 = Projection::ALL
        .iter()
        .map(|p| {
            let (i, o) = p.widths(c);
            i * o + if p.has_bias(c) { o } else { 0 }
        })
        .sum();
    let per_layer = projections + norms_per_layer(c) * d + qk_norm_params(c);
    let largest_layer_tensor = Projection::ALL.iter().map(|p| p.widths(c).0 * p.widths(c).1).max().unwrap_or(0);
    let embedding = v * d;
    let output = if c.tie_word_embeddings { 0 } else { v * d };
    let layers = c.num_layers as u64;
    ParamCounts {
        total: embedding + output + layers * per_layer + d,
        embedding,
        output,
        per_layer,
        layers,
        final_norm: d,
        largest_tensor: embedding.max(largest_layer_tensor),
        largest_layer_tensor,
    }
}

/// LoRA adapter parameters of `c` with rank `r` on `targets`: `r (in + out)` per targeted
/// projection per layer (A `[r, in]`, B `[out, r]`, no biases).
pub fn lora_params(c: &ModelConfig, r: u64, targets: &[Projection]) -> u64 {
    let per_layer: u64 = targets
        .iter()
        .map(|p| {
            let (i, o) = p.widths(c);
            r * (i + o)
        })
        .sum();
    per_layer * c.num_layers as u64
}

/// The largest adapter tensor (elements) of rank `r` on `targets`: `r * max(in, out)`.
pub fn lora_largest_tensor(c: &ModelConfig, r: u64, targets: &[Projection]) -> u64 {
    targets.iter().map(|p| r * p.widths(c).0.max(p.widths(c).1)).max().unwrap_or(0)
}
