//! The `tokenizer.ggml.*` metadata of a GGUF file, turned into Hugging Face `tokenizer.json`
//! and `tokenizer_config.json`.
//!
//! Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE) with the pre-tokenizers
//! listed in [`SUPPORTED_PRE_TOKENIZERS`]. Tokens marked CONTROL (type 3) become special
//! added tokens, USER_DEFINED (type 4) plain added tokens, as in transformers' own GGUF import.

use serde_json::{json, Map, Value};

use super::error::{GgufError, Result};
use super::reader::{GgufFile, MetadataValue};

/// `tokenizer.ggml.token_type` of a control token (`<|im_start|>`, `<s>`, ...).
pub const TOKEN_TYPE_CONTROL: i32 = 3;
/// `tokenizer.ggml.token_type` of a user-defined token (matched whole, not special).
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Values of `tokenizer.ggml.pre` that the export can express, for messages and docs.
pub const SUPPORTED_PRE_TOKENIZERS: &str =
    "default, gpt-2, gpt2, smollm, starcoder, refact, llama-bpe, llama3, llama-v3";

/// The GPT-2 split pattern is built into the `ByteLevel` pre-tokenizer (`use_regex: true`);
/// Llama 3's pattern, as in its `tokenizer.json` and llama.cpp's `LLAMA_VOCAB_PRE_TYPE_LLAMA3`.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The tokenizer described by a GGUF file's `tokenizer.ggml.*` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTokenizer {
    /// `tokenizer.ggml.model` (only `gpt2` is exported).
    pub model: String,
    /// `tokenizer.ggml.pre`, the pre-tokenizer (`default` when absent).
    pub pre: String,
    /// `tokenizer.ggml.tokens`: token strings by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, by id (1 normal when absent).
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`: `"left right"` pairs, highest priority first.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (false when absent).
    pub add_bos: bool,
    /// `tokenizer.ggml.add_eos_token` (false when absent).
    pub add_eos: bool,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

fn strings(file: &GgufFile, key: &str) -> Result<Option<Vec<String>>> {
    let Some(value) = file.get(key) else { return Ok(None) };
    let bad = |message: String| GgufError::BadValue { key: key.to_string(), message };
    let items =
        value.as_array().ok_or_else(|| bad(format!("expected an array of strings, found {}", value.type_name())))?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| v.as_str().map(str::to_string).ok_or_else(|| bad(format!("element {i} is a {}", v.type_name()))))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn token_id(file: &GgufFile, key: &str, n_tokens: usize) -> Result<Option<u32>> {
    let Some(value) = file.get(key) else { return Ok(None) };
    match value.as_u64() {
        Some(id) if (id as usize) < n_tokens => Ok(Some(id as u32)),
        _ => Err(GgufError::BadValue {
            key: key.to_string(),
            message: format!("expected a token id below the vocabulary size {n_tokens}, found {value:?}"),
        }),
    }
}

fn flag(file: &GgufFile, key: &str) -> Result<bool> {
    match file.get(key) {
        None => Ok(false),
        Some(MetadataValue::Bool(b)) => Ok(*b),
        Some(v) => Err(GgufError::BadValue { key: key.to_string(), message: format!("expected a bool, found {v:?}") }),
    }
}

impl GgufTokenizer {
    /// Reads the tokenizer keys of `file`. Fails when `tokenizer.ggml.tokens` is absent or any
    /// key has the wrong type or an out-of-range id.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let model_key = "tokenizer.ggml.model";
        let model = file.get(model_key).ok_or_else(|| GgufError::MissingKey(model_key.into()))?;
        let model = model.as_str().ok_or_else(|| GgufError::BadValue {
            key: model_key.into(),
            message: format!("expected a string, found {}", model.type_name()),
        })?;
        let tokens = strings(file, "tokenizer.ggml.tokens")?
            .ok_or_else(|| GgufError::MissingKey("tokenizer.ggml.tokens".into()))?;
        let n = tokens.len();
        let token_types = match file.get("tokenizer.ggml.token_type") {
            None => vec![1; n],
            Some(v) => {
                let bad = |message| GgufError::BadValue { key: "tokenizer.ggml.token_type".into(), message };
                let items = v.as_array().ok_or_else(|| bad(format!("expected an array, found {}", v.type_name())))?;
                if items.len() != n {
                    return Err(bad(format!("{} entries for {n} tokens", items.len())));
                }
                items
                    .iter()
                    .map(|t| t.as_i64().map(|t| t as i32).ok_or_else(|| bad(format!("non-integer entry {t:?}"))))
                    .collect::<Result<_>>()?
            }
        };
        let pre = match file.get("tokenizer.ggml.pre") {
            None => "default".to_string(),
            Some(v) => v.as_str().map(str::to_string).ok_or_else(|| GgufError::BadValue {
                key: "tokenizer.ggml.pre".into(),
                message: format!("expected a string, found {}", v.type_name()),
            })?,
        };
        let chat_template = match file.get("tokenizer.chat_template") {
            None => None,
            Some(v) => Some(v.as_str().map(str::to_string).ok_or_else(|| GgufError::BadValue {
                key: "tokenizer.chat_template".into(),
                message: format!("expected a string, found {}", v.type_name()),
            })?),
        };
        Ok(Self {
            model: model.to_string(),
            pre,
            merges: strings(file, "tokenizer.ggml.merges")?.unwrap_or_default(),
            bos_id: token_id(file, "tokenizer.ggml.bos_token_id", n)?,
            eos_id: token_id(file, "tokenizer.ggml.eos_token_id", n)?,
            unk_id: token_id(file, "tokenizer.ggml.unknown_token_id", n)?,
            pad_id: token_id(file, "tokenizer.ggml.padding_token_id", n)?,
            add_bos: flag(file, "tokenizer.ggml.add_bos_token")?,
            add_eos: flag(file, "tokenizer.ggml.add_eos_token")?,
            chat_template,
            tokens,
            token_types,
        })
    }

    fn token(&self, id: Option<u32>) -> Option<&str> {
        id.map(|i| self.tokens[i as usize].as_str())
    }

    /// `(pre_tokenizer JSON, ignore_merges)` for `self.pre`.
    fn pre_tokenizer(&self) -> Result<(Value, bool)> {
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        Ok(match self.pre.as_str() {
            "default" | "gpt-2" | "gpt2" => (byte_level(true), false),
            // llama.cpp splits every digit on its own first ("\p{N}"), then applies the GPT-2 split.
            "smollm" | "starcoder" | "refact" => (
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
                false,
            ),
            "llama-bpe" | "llama3" | "llama-v3" => (
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false},
                    byte_level(false)]}),
                true,
            ),
            other => {
                return Err(GgufError::BadValue {
                    key: "tokenizer.ggml.pre".into(),
                    message: format!(
                        "pre-tokenizer \"{other}\" is not supported (supported: {SUPPORTED_PRE_TOKENIZERS})"
                    ),
                })
            }
        })
    }

    /// The post-processor: byte-level offsets, plus BOS/EOS when the file asks for them.
    fn post_processor(&self) -> Value {
        let byte_level =
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
        let bos = self.token(self.bos_id).filter(|_| self.add_bos);
        let eos = self.token(self.eos_id).filter(|_| self.add_eos);
        if bos.is_none() && eos.is_none() {
            return byte_level;
        }
        let mut special_tokens = Map::new();
        for (t, id) in [(bos, self.bos_id), (eos, self.eos_id)].into_iter().filter_map(|(t, id)| Some((t?, id?))) {
            special_tokens.insert(t.to_string(), json!({"id": t, "ids": [id], "tokens": [t]}));
        }
        let single = template(bos, eos, &["A"]);
        let pair = template(bos, eos, &["A", "B"]);
        json!({"type": "Sequence", "processors": [
            byte_level,
            {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special_tokens}]})
    }

    /// Hugging Face `tokenizer.json` for a byte-level BPE tokenizer.
    pub fn tokenizer_json(&self) -> Result<Value> {
        if self.model != "gpt2" {
            return Err(GgufError::BadValue {
                key: "tokenizer.ggml.model".into(),
                message: format!("tokenizer model \"{}\" cannot be exported yet (supported: gpt2)", self.model),
            });
        }
        let (pre_tokenizer, ignore_merges) = self.pre_tokenizer()?;
        let mut vocab = Map::new();
        for (id, token) in self.tokens.iter().enumerate() {
            vocab.entry(token.clone()).or_insert(json!(id));
        }
        let merges = self
            .merges
            .iter()
            .enumerate()
            .map(|(i, m)| match m.split_once(' ') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => Ok(json!([a, b])),
                _ => Err(GgufError::BadValue {
                    key: "tokenizer.ggml.merges".into(),
                    message: format!("merge #{i} {m:?} is not two tokens separated by one space"),
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        let added_tokens: Vec<Value> = self
            .tokens
            .iter()
            .zip(&self.token_types)
            .enumerate()
            .filter(|(_, (_, &t))| t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED)
            .map(|(id, (token, &t))| {
                json!({"id": id, "content": token, "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": t == TOKEN_TYPE_CONTROL})
            })
            .collect();
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": self.post_processor(),
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": self.token(self.unk_id), "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
                "vocab": vocab, "merges": merges,
            },
        }))
    }

    /// Hugging Face `tokenizer_config.json`: special tokens, BOS/EOS flags, chat template.
    pub fn tokenizer_config_json(&self, model_max_length: Option<u64>) -> Value {
        let mut config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.add_bos,
            "add_eos_token": self.add_eos,
            "clean_up_tokenization_spaces": false,
            "bos_token": self.token(self.bos_id),
            "eos_token": self.token(self.eos_id),
            "unk_token": self.token(self.unk_id),
            "pad_token": self.token(self.pad_id),
        });
        if let Some(n) = model_max_length {
            config["model_max_length"] = json!(n);
        }
        if let Some(template) = &self.chat_template {
            config["chat_template"] = json!(template);
        }
        config
    }
}

/// A `TemplateProcessing` template: `[bos] $seq [eos]` for each sequence, the second with type id 1.
fn template(bos: Option<&str>, eos: Option<&str>, sequences: &[&str]) -> Vec<Value> {
    let mut parts = Vec::new();
    for (type_id, seq) in sequences.iter().enumerate() {
        let special = |t: &str| json!({"SpecialToken": {"id": t, "type_id": type_id}});
        parts.extend(bos.map(special));
        parts.push(json!({"Sequence": {"id": seq, "type_id": type_id}}));
        parts.extend(eos.map(special));
    }
    parts
}
