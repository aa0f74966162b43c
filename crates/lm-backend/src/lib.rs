//! # lm-backend
//!
//! Causal language models for polyalign. The [`gguf`] module imports llama.cpp GGUF files:
//! it reads them (memory-mapped), dequantises their tensors to f32 and exports a Hugging Face
//! folder (`config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`).

pub mod gguf;
