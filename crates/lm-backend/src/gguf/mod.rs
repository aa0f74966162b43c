//! Import of llama.cpp GGUF files.
//!
//! Many models are published only as GGUF files. This module reads them and turns a file of
//! the `llama`, `qwen2`, `qwen3`, `gemma2` or `gemma3` architecture into a Hugging Face folder
//! that `transformers` (and this crate) load like any other checkpoint:
//!
//! - [`GgufFile`]: the container (versions 2 and 3): metadata ([`MetadataValue`]), tensor
//!   infos ([`TensorInfo`]), memory-mapped data. Malformed files give a [`GgufError`] naming
//!   the key, tensor or byte offset.
//! - [`dequantize`]: GGML blocks to f32 for F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//!   Q2_K, Q3_K, Q4_K, Q5_K and Q6_K, bit-identical to gguf-py.
//! - [`unpermute_rotary_rows`]: undoes the q/k row permutation of llama.cpp's converter (Llama).
//! - [`GgufArchitecture`], [`GgufHparams`]: tensor names, value transforms (Gemma's `1 + w`
//!   norms) and `config.json` per architecture.
//! - [`GgufTokenizer`]: `tokenizer.json` (byte-level BPE or SentencePiece) and
//!   `tokenizer_config.json`.
//! - [`convert_to_hf`]: all of the above, written atomically into a folder.
//!
//! ```
//! use lm_backend::gguf::{convert_to_hf, ConvertOptions, ExportDtype, GgufFile};
//!
//! let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gguf/tiny_llama.gguf");
//! let file = GgufFile::open(path)?;
//! assert_eq!(file.get("general.architecture").and_then(|v| v.as_str()), Some("llama"));
//! let q = file.tensor_f32("blk.0.attn_q.weight")?; // dequantised, row-major [32, 32]
//! assert_eq!(q.len(), 32 * 32);
//!
//! let out = std::env::temp_dir().join(format!("gguf-doc-{}", std::process::id()));
//! let options = ConvertOptions { dtype: ExportDtype::F32, overwrite: true };
//! let report = convert_to_hf(path, &out, &options)?; // config.json, model.safetensors, tokenizer*.json
//! assert!(out.join("model.safetensors").exists() && !report.tied_embeddings);
//! # std::fs::remove_dir_all(&out).unwrap();
//! # Ok::<(), lm_backend::gguf::GgufError>(())
//! ```
//!
//! Reading a file without converting it:
//!
//! ```no_run
//! use lm_backend::gguf::GgufFile;
//!
//! let file = GgufFile::open("model.gguf")?;
//! let arch = file.get("general.architecture").and_then(|v| v.as_str());
//! let embedding = file.tensor_f32("token_embd.weight")?; // row-major, shape tensor(..).shape()
//! # Ok::<(), lm_backend::gguf::GgufError>(())
//! ```

mod arch_mapping;
mod error;
mod export;
mod ggml_type;
mod permute;
mod quant;
mod reader;
mod tokenizer;

pub use arch_mapping::{
    GgufArchitecture, GgufHparams, RowOrder, TensorMapping, GEMMA3_LOCAL_ROPE_THETA, GEMMA3_SLIDING_WINDOW_PATTERN,
};
pub use error::{GgufError, Result};
pub use export::{convert_file_to_hf, convert_to_hf, ConvertOptions, ConvertReport, ExportDtype};
pub use ggml_type::GgmlType;
pub use permute::{permute_rotary_rows, unpermute_rotary_rows};
pub use quant::{dequantize, SUPPORTED_TYPES};
pub use reader::{GgufFile, MetadataValue, TensorInfo, DEFAULT_ALIGNMENT, MAX_DIMS};
pub use tokenizer::{GgufTokenizer, SUPPORTED_PRE_TOKENIZERS, TOKEN_TYPE_CONTROL, TOKEN_TYPE_USER_DEFINED};
