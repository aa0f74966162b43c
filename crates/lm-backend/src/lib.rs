//! # lm-backend
//!
//! Hugging Face causal language models over [`tch`] (libtorch): Llama (incl. Llama 3 rope
//! scaling), Qwen2, Qwen3, Mistral, Gemma 2 and Gemma 3 (text), loaded from a model folder (`config.json`, one or several
//! `*.safetensors`, tokenizer files) and checked against the Python `transformers` library
//! with committed fixtures (logits and every hidden state within 1e-4 in float32).
//!
//! A forward pass takes a right-padded batch `[B, T]` with its attention mask and returns
//! logits at every position `[B, T, V]` plus the hidden states a caller asks for; a
//! prompt-only pass ([`CausalLm::hidden_states`]) stops at the deepest layer asked for. A
//! [`PackedBatch`] lays several sequences (and prompt-sharing trees `[prompt | chosen |
//! rejected]`) end to end in one row without padding ([`CausalLm::forward_packed_at`],
//! [`CausalLm::hidden_states_packed`]; see [`packed`]).
//!
//! ```
//! use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, LoadOptions, Tokenizer};
//! use tch::Tensor;
//!
//! let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
//! let model = HfCausalLm::load(format!("{fixtures}/llama"), LoadOptions::cpu_f32())?;
//! let tokenizer = Tokenizer::from_dir(format!("{fixtures}/tokenizer"))?;
//! let ids: Vec<i64> = tokenizer.encode("Hello world!", true)?.iter().map(|&i| i as i64).collect();
//! let input_ids = Tensor::from_slice(&ids).unsqueeze(0); // [1, T]
//! let out = model.forward(&input_ids, &input_ids.ones_like(), &HiddenRequest::layers([0, 2]))?;
//! assert_eq!(out.logits.size(), [1, ids.len() as i64, model.config().vocab_size as i64]);
//! assert_eq!(out.hidden.layers[&2].size(), [1, ids.len() as i64, 32]);
//! # Ok::<(), lm_backend::LmError>(())
//! ```
//!
//! Main types: [`HfCausalLm`] (a loaded model: forward, [`HfCausalLm::generate`],
//! [`HfCausalLm::save`]) behind the [`CausalLm`] trait, [`Checkpointed`] (the same model with
//! activation checkpointing, [`HfCausalLm::checkpointed`]), [`HiddenRequest`] /
//! [`HiddenStates`] (which hidden states a pass returns), [`ModelConfig`] (a normalised
//! `config.json`), [`PackedBatch`] (a padding-free row), [`LoadOptions`] (dtype and device, chosen at run time) with [`Dtype`] (the
//! precision a user chooses), [`Checkpoint`] (single or sharded safetensors),
//! [`GenerationConfig`], [`Tokenizer`] (with chat templates) and [`LmError`]. The [`lora`]
//! module gives a model LoRA adapters in PEFT's layout ([`HfCausalLm::load_with_lora`],
//! [`HfCausalLm::load_with_adapter`], [`HfCausalLm::save_adapter`], [`HfCausalLm::merged`]).
//! The [`atomic`]
//! module writes files and folders that never appear half-written. The [`gguf`] module
//! imports llama.cpp GGUF files: it reads them (memory-mapped), dequantises their tensors and
//! exports a Hugging Face folder. The user guides are `docs/lm-backend.md` and `docs/gguf.md`.
//!
//! Source layout: `arch/` holds what differs between architectures (one module each, and the
//! one table that lists them: `model_type`, reading of `config.json`, decoder layer, norm and
//! embedding scales); [`model`] the stack they share (interface, building, forward pass);
//! [`attention`], [`mlp`], [`norm`], [`rope`] and [`linear`] the layers; [`config`] the
//! normalised `config.json`; [`weights`] checkpoints and the by-name-and-shape weight
//! requests from which both loading and [`tensor_specs`] follow.

#![warn(missing_docs)]

mod arch;
pub mod atomic;
pub mod attention;
pub mod config;
mod error;
pub mod generate;
pub mod gguf;
pub mod linear;
pub mod lora;
pub mod mlp;
pub mod model;
pub mod norm;
pub mod packed;
pub mod rope;
mod save;
pub mod tokenizer;
pub mod weights;

pub use config::{Activation, Architecture, LayerAttention, ModelConfig, RopeConfig, RopeScaling};
pub use error::{LmError, Result};
pub use generate::{GenerationConfig, Sampling};
pub use model::{tensor_specs, CausalLm, Checkpointed, HfCausalLm, HiddenRequest, HiddenStates, LmOutput};
pub use packed::PackedBatch;
pub use tokenizer::{ChatMessage, Tokenizer};
pub use weights::{AttentionImpl, Checkpoint, Dtype, LoadOptions, TensorSpec};
