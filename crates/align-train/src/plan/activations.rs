//! What a step's forward passes keep for the backward pass, counted from what our code
//! actually saves (lm-backend's `norm.rs`, `attention.rs`, `mlp.rs`, `rope.rs`, the
//! architectures' decoder layers and `model/forward.rs`; the trainer's `batch/` and
//! `packing.rs`).
//!
//! # Which passes are alive at once
//!
//! A micro-batch builds all of its passes before the one `backward()` call
//! (`trainer/step.rs`), so their saved tensors add up: the policy pass over the dominant
//! pairs (always), KTO's mismatched pairs, MLC's prompt-variant pass (no logits, it stops at
//! the deepest MLC layer) and MPO's target-language pairs. MPO's retain term adds a pass of
//! the frozen reference without gradient (it keeps only its output states).
//!
//! # Per token and decoder layer (`s` = bytes of the model dtype, `D`, `Q = H hd`, `I`)
//!
//! - each RMSNorm keeps its input in f32 (`4D`: the input itself in f32, an f32 copy in bf16)
//!   and, when its weight trains, the normalised value (`s D`, f32 `4D` for Gemma's `1 + w`);
//!   two norms per layer, four in Gemma 2;
//! - the inputs of the linear projections: the attention norm's output (`s D`, shared by
//!   `q/k/v_proj`), the MLP norm's output (`s D`, shared by `gate/up_proj`), the attention
//!   output (`s Q`, input of `o_proj`) and `act(gate) * up` (`s I`, input of `down_proj`);
//! - rotated queries and keys and the values after the grouped-query repeat, `3 s Q` (the rotary
//!   tables themselves are shared by all layers);
//! - the MLP's `gate` output (the activation's input), `act(gate)` and `up`, `3 s I`;
//! - attention: with `sdpa` (the fused kernel: flash on CPU, memory-efficient on CUDA) its
//!   output `s Q` (the `o_proj` input is a view of it when the row has one attention chunk),
//!   its f32 log-sum-exp `4H`, and per chunk of `n` tokens the boolean mask converted to the
//!   model dtype, `s n^2`; with `eager` (and always for Gemma 2's soft-capped scores) per chunk
//!   the f32 softmax `4 H n^2`, its bf16 copy `2 H n^2` (bf16 models), the soft-cap's tanh
//!   `s H n^2` (Gemma 2) and the inverted mask `n^2` bytes.
//!
//! With `gradient_checkpointing` a layer keeps only its input, `s D` per token, and the
//! backward pass recomputes one layer at a time (one layer's set above, plus its working set).
//!
//! # Logits (`P` = positions that predict a scored token, `V` = vocabulary)
//!
//! The output projection runs at the `P` predicting positions only: it keeps its `[P, D]`
//! input (when the projection trains), the f32 logits `4 P V` the log-softmax reads back (and
//! Gemma 2's soft-cap keeps its tanh, `s P V`), after the final norm's `4D (+ s D)` per token.
//! Its backward holds up to four more f32 `[P, V]` buffers (`16 P V`): the gradient that
//! reaches the logits through the picked targets, and the log-sum-exp's `logits - lse`, its
//! `exp` and their product with the incoming gradient.
//!
//! # LoRA (assumed PEFT-style: f32 adapters, the input cast to f32 per adapter)
//!
//! A frozen projection keeps nothing of its input; each targeted projection of input width
//! `w` keeps its input as f32 (`4w`: a new copy in bf16, the input itself in f32), the
//! `[n, r]` f32 product `4r`, and with dropout its mask (`w` bytes). Frozen norms keep only
//! their f32 input. Adapter parameters and their optimizer state are in [`super::params`].

use super::params::Projection;
use lm_backend::{LayerAttention, ModelConfig};
use serde::Serialize;
use std::collections::BTreeSet;

/// The projections LoRA adapts, as a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TargetSet(u8);

impl TargetSet {
    /// The set of `targets`.
    pub fn new(targets: &[Projection]) -> Self {
        TargetSet(targets.iter().fold(0, |bits, p| bits | (1 << *p as u8)))
    }

    /// Whether `p` is adapted.
    pub fn contains(self, p: Projection) -> bool {
        self.0 & (1 << p as u8) != 0
    }

    /// The adapted projections, in layer order.
    pub fn projections(self) -> Vec<Projection> {
        Projection::ALL.into_iter().filter(|p| self.contains(*p)).collect()
    }
}

/// `[lora]` as the activation count sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoraSettings {
    /// Adapter rank.
    pub r: u64,
    /// Adapted projections.
    pub targets: TargetSet,
    /// Dropout on the adapters' input (> 0 keeps a mask and a copy).
    pub dropout: bool,
}

/// What decides the bytes a forward pass keeps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ForwardSettings {
    /// Bytes per element of the model dtype (4 f32, 2 bf16).
    pub dtype_bytes: u64,
    /// The fused attention kernel (`attention = "sdpa"` on a model without attention
    /// soft-capping); false: the eager path.
    pub sdpa: bool,
    /// Padding-free packed rows (`packing = true`); false: right-padded rows.
    pub packing: bool,
    /// `gradient_checkpointing`.
    pub checkpointing: bool,
    /// `[lora]`, when present (frozen base, adapters train).
    pub lora: Option<LoraSettings>,
}

impl ForwardSettings {
    /// Whether the base model's weights train (full fine-tuning).
    pub fn base_trains(&self) -> bool {
        self.lora.is_none()
    }
}

/// One run of `count` attention blocks of `len` tokens: a packed row's chunks, or padded rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Block {
    /// How many blocks.
    pub count: u64,
    /// Tokens in each.
    pub len: u64,
}

/// One forward pass of a micro-batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pass {
    /// What it computes, e.g. `policy (chosen + rejected)`.
    pub name: String,
    /// Forward with gradient (kept for backward); false: a frozen-model pass.
    pub grad: bool,
    /// Decoder layers it runs.
    pub layers: u64,
    /// Tokens forwarded (padding included in padded rows).
    pub tokens: u64,
    /// Positions projected to the vocabulary (0: no logits).
    pub predicting: u64,
    /// Attention chunks of a packed row (1 for padded rows, whose batch is one chunk).
    pub chunks: u64,
    /// Its attention blocks (chunks, or rows).
    pub blocks: Vec<Block>,
}

/// The shape of the records a plan assumes, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RecordShape {
    /// The dominant-language prompt (shared by chosen and rejected).
    pub prompt: u64,
    /// Each completion (chosen, rejected, and each target-language one), EOS included.
    pub completion: u64,
    /// Each other language variant's prompt (MLC's prompt-only pass).
    pub variant_prompt: u64,
}

impl RecordShape {
    /// The bound that `max_length` allows: a 1-token prompt with `max_length - 1`-token
    /// completions (the most tokens per pair and the most scored positions) and variant
    /// prompts of `max_length` tokens.
    pub fn worst_case(max_length: u64) -> Self {
        RecordShape { prompt: 1, completion: max_length.saturating_sub(1).max(1), variant_prompt: max_length }
    }

    /// Prompts (every language variant too) of `prompt` tokens and completions filling the
    /// rest of `max_length`; `None` unless `1 <= prompt < max_length`.
    pub fn with_prompt(max_length: u64, prompt: u64) -> Option<Self> {
        (prompt >= 1 && prompt < max_length).then_some(RecordShape {
            prompt,
            completion: max_length - prompt,
            variant_prompt: prompt,
        })
    }
}

/// A pass over `count` trees of one `prompt` and `branches` (completion lengths; none for a
/// prompt alone), packed (chunks by [`crate::packing::Packer`]'s rule) or padded (one row per
/// branch, or per prompt).
pub fn tree_pass(
    name: &str,
    count: u64,
    prompt: u64,
    branches: &[u64],
    layers: u64,
    logits: bool,
    packing: bool,
) -> Pass {
    let predicting_per_tree = match branches {
        [] => 0,
        b => 1 + b.iter().map(|c| c - 1).sum::<u64>(),
    };
    let (tokens, predicting, chunks, blocks) = if packing {
        let tree = prompt + branches.iter().sum::<u64>();
        let chunk = crate::packing::CHUNK_TOKENS as u64;
        let per_chunk = (chunk / tree).max(1);
        let (full, rest) = (count / per_chunk, count % per_chunk);
        let mut blocks = vec![];
        if full > 0 {
            blocks.push(Block { count: full, len: per_chunk * tree });
        }
        if rest > 0 {
            blocks.push(Block { count: 1, len: rest * tree });
        }
        (count * tree, count * predicting_per_tree, full + u64::from(rest > 0), blocks)
    } else {
        let rows = count * branches.len().max(1) as u64;
        let len = prompt + branches.iter().copied().max().unwrap_or(0);
        let scored = count * branches.iter().sum::<u64>();
        (rows * len, scored, 1, vec![Block { count: rows, len }])
    };
    Pass {
        name: name.into(),
        grad: true,
        layers,
        tokens,
        predicting: if logits { predicting } else { 0 },
        chunks,
        blocks,
    }
}

/// Bytes a pass keeps (or, without gradient, holds at its peak).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PassBytes {
    /// Decoder layers, masks and rotary tables kept for backward (0 without gradient).
    pub activations: u64,
    /// Final norm, output-projection input and f32 logits kept for backward.
    pub logits: u64,
    /// One decoder layer's full set (what checkpointing recomputes; also the working set of a
    /// layer's backward).
    pub layer: u64,
    /// The pass's attention masks and rotary tables (shared by its layers).
    pub shared: u64,
    /// Extra bytes while the logits' backward runs.
    pub logits_backward: u64,
}

/// Bytes an input of width `w` shared by `consumers` costs: kept once by trained projections;
/// under LoRA as f32 per adapted consumer (see the module documentation). `already_kept`: the
/// tensor is kept by another op anyway (the fused attention's output).
fn projection_input(w: u64, consumers: &[Projection], set: &ForwardSettings, already_kept: bool) -> u64 {
    let s = set.dtype_bytes;
    let Some(lora) = set.lora else { return if already_kept { 0 } else { s * w } };
    let k = consumers.iter().filter(|p| lora.targets.contains(**p)).count() as u64;
    if k == 0 {
        return 0;
    }
    if lora.dropout {
        return k * (5 * w + 4 * lora.r);
    }
    if s == 4 {
        (if already_kept { 0 } else { 4 * w }) + k * 4 * lora.r
    } else {
        k * (4 * w + 4 * lora.r)
    }
}

/// Bytes one decoder layer keeps per token of `pass`.
pub fn layer_bytes_per_token(m: &ModelConfig, set: &ForwardSettings, pass: &Pass) -> u64 {
    use Projection::*;
    let s = set.dtype_bytes;
    let (d, i) = (m.hidden_size as u64, m.intermediate_size as u64);
    let (h, q) = (m.num_heads as u64, (m.num_heads * m.head_dim) as u64);
    let normed = match m.architecture {
        lm_backend::Architecture::Gemma2 | lm_backend::Architecture::Gemma3 => 4 * d,
        _ => s * d,
    };
    let norm = 4 * d + if set.base_trains() { normed } else { 0 };
    // The per-head q/k norms (Qwen3, Gemma 3) keep their input and its f32 form, as a norm does.
    let kv = (m.num_kv_heads * m.head_dim) as u64;
    let qk_norms = if m.qk_norm { (4 + s) * (q + kv) } else { 0 };
    let norms = super::params::norms_per_layer(m) * norm + qk_norms;
    let sdpa_single = set.sdpa && pass.chunks == 1;
    let attention = 3 * s * q
        + if set.sdpa { s * q + 4 * h } else { 0 }
        + projection_input(d, &[QProj, KProj, VProj], set, false)
        + projection_input(q, &[OProj], set, sdpa_single);
    let mlp =
        3 * s * i + projection_input(d, &[GateProj, UpProj], set, false) + projection_input(i, &[DownProj], set, false);
    norms + attention + mlp
}

/// Bytes one decoder layer keeps per attention block of `len` tokens.
pub fn layer_bytes_per_block(m: &ModelConfig, set: &ForwardSettings, len: u64) -> u64 {
    let s = set.dtype_bytes;
    let sq = len * len;
    if set.sdpa {
        return s * sq;
    }
    let h = m.num_heads as u64;
    let bf16_copy = if s == 2 { 2 } else { 0 };
    let softcap = if m.attn_logit_softcap.is_some() { s } else { 0 };
    h * sq * (4 + bf16_copy + softcap) + sq
}

/// The distinct attention windows of the model's layers (one boolean mask each per block).
fn windows(m: &ModelConfig) -> u64 {
    m.layers
        .iter()
        .map(|l| match l {
            LayerAttention::Full => None,
            LayerAttention::Sliding { window } => Some(*window),
        })
        .collect::<BTreeSet<_>>()
        .len()
        .max(1) as u64
}

/// What `pass` keeps for backward, its per-layer set and its logits' backward (formulas in the
/// module documentation).
pub fn pass_bytes(m: &ModelConfig, set: &ForwardSettings, pass: &Pass) -> PassBytes {
    let s = set.dtype_bytes;
    let (d, v) = (m.hidden_size as u64, m.vocab_size as u64);
    let blocks: u64 = pass.blocks.iter().map(|b| b.count * layer_bytes_per_block(m, set, b.len)).sum();
    let layer = pass.tokens * layer_bytes_per_token(m, set, pass) + blocks;
    let squares: u64 = pass.blocks.iter().map(|b| b.count * b.len * b.len).sum();
    let shared = windows(m) * squares + 2 * pass.tokens * m.head_dim as u64 * s;
    if !pass.grad {
        return PassBytes { activations: 0, logits: 0, layer, shared, logits_backward: 0 };
    }
    let decoder = if set.checkpointing { pass.layers * pass.tokens * s * d } else { pass.layers * layer };
    let p = pass.predicting;
    let (logits, logits_backward) = if p == 0 {
        (0, 0)
    } else {
        let normed = match m.architecture {
            lm_backend::Architecture::Gemma2 | lm_backend::Architecture::Gemma3 => 4 * d,
            _ => s * d,
        };
        let final_norm = pass.tokens * (4 * d + if set.base_trains() { normed } else { 0 });
        let projection_input = if set.base_trains() { s * d * p } else { 0 };
        let softcap = if m.final_logit_softcap.is_some() { s * p * v } else { 0 };
        let head_grad = if set.base_trains() { s * v * d } else { 0 };
        let backward = (16 * p * v).max((s * p * v + head_grad).saturating_sub(4 * p * v));
        (final_norm + projection_input + 4 * p * v + softcap, backward)
    };
    PassBytes { activations: decoder + shared, logits, layer, shared, logits_backward }
}
