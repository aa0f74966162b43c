//! The `tokenizer.ggml.*` metadata of a GGUF file, turned into Hugging Face `tokenizer.json`
//! and `tokenizer_config.json`, as `transformers`' own GGUF import builds them.
//!
//! Supported:
//! - `tokenizer.ggml.model = "gpt2"` (byte-level BPE) with the pre-tokenizers listed in
//!   [`SUPPORTED_PRE_TOKENIZERS`];
//! - `tokenizer.ggml.model = "llama"` (SentencePiece BPE with byte fallback): the merges the
//!   file does not store are rebuilt from the vocabulary (every split of a piece into two
//!   pieces, best first: by `tokenizer.ggml.scores`, or for Gemma by vocabulary order), with
//!   Gemma's layout (spaces normalised to `▁`, whitespace-only pieces respelled with `▁`) for
//!   `gemma*` architectures and Llama's (`Metaspace`, prefix space from
//!   `tokenizer.ggml.add_space_prefix`) otherwise.
//!
//! Tokens marked CONTROL (type 3) become special added tokens, USER_DEFINED (type 4) plain
//! added tokens, and the BOS/EOS/UNK/PAD tokens special ones.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::error::{GgufError, Result};
use super::reader::{GgufFile, MetadataValue};

/// `tokenizer.ggml.token_type` of a control token (`<|im_start|>`, `<s>`, ...).
pub const TOKEN_TYPE_CONTROL: i32 = 3;
/// `tokenizer.ggml.token_type` of a user-defined token (matched whole, not special).
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Values of `tokenizer.ggml.pre` that the export can express for byte-level BPE, for
/// messages and docs.
pub const SUPPORTED_PRE_TOKENIZERS: &str =
    "default, gpt-2, gpt2, smollm, starcoder, refact, llama-bpe, llama3, llama-v3, qwen2, deepseek-r1-qwen";

/// The GPT-2 split pattern is built into the `ByteLevel` pre-tokenizer (`use_regex: true`);
/// Llama 3's pattern, as in its `tokenizer.json` and llama.cpp's `LLAMA_VOCAB_PRE_TYPE_LLAMA3`.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's (and Qwen3's) pattern: Llama 3's with every digit on its own.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// SentencePiece's word-boundary mark.
const SPIECE_UNDERLINE: &str = "\u{2581}";

/// The tokenizer described by a GGUF file's `tokenizer.ggml.*` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTokenizer {
    /// `general.architecture` (chooses Gemma's or Llama's SentencePiece layout).
    pub architecture: String,
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`, the pre-tokenizer (`default` when absent).
    pub pre: String,
    /// `tokenizer.ggml.tokens`: token strings by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, by id (1 normal when absent).
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.scores`, by id (SentencePiece), if present.
    pub scores: Option<Vec<f64>>,
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
    /// `tokenizer.ggml.add_bos_token`; absent: true for SentencePiece (as llama.cpp and
    /// transformers), false otherwise.
    pub add_bos: bool,
    /// `tokenizer.ggml.add_eos_token` (false when absent).
    pub add_eos: bool,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece, Llama layout; true when absent).
    pub add_space_prefix: bool,
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

/// An array of `n` entries (one per token) of `key`, each converted by `item`.
fn per_token<T>(
    file: &GgufFile,
    key: &str,
    n: usize,
    item: impl Fn(&MetadataValue) -> Option<T>,
) -> Result<Option<Vec<T>>> {
    let Some(v) = file.get(key) else { return Ok(None) };
    let bad = |message| GgufError::BadValue { key: key.to_string(), message };
    let items = v.as_array().ok_or_else(|| bad(format!("expected an array, found {}", v.type_name())))?;
    if items.len() != n {
        return Err(bad(format!("{} entries for {n} tokens", items.len())));
    }
    items
        .iter()
        .map(|t| item(t).ok_or_else(|| bad(format!("entry {t:?} has the wrong type"))))
        .collect::<Result<_>>()
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

fn flag(file: &GgufFile, key: &str) -> Result<Option<bool>> {
    match file.get(key) {
        None => Ok(None),
        Some(MetadataValue::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(GgufError::BadValue { key: key.to_string(), message: format!("expected a bool, found {v:?}") }),
    }
}

fn optional_string(file: &GgufFile, key: &str) -> Result<Option<String>> {
    file.get(key)
        .map(|v| {
            v.as_str().map(str::to_string).ok_or_else(|| GgufError::BadValue {
                key: key.to_string(),
                message: format!("expected a string, found {}", v.type_name()),
            })
        })
        .transpose()
}

/// Python's `str.isspace` of one character (Unicode whitespace, plus the four ASCII
/// separators U+001C..U+001F that Python also counts).
fn python_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// GPT-2's byte-to-character table of byte-level BPE (the characters a byte-level vocabulary
/// is spelled in).
fn byte_level_alphabet() -> Vec<char> {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut next = 256;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).expect("a Latin-1 code point")
            } else {
                next += 1;
                char::from_u32(next - 1).expect("a code point below 0x200")
            }
        })
        .collect()
}

impl GgufTokenizer {
    /// Reads the tokenizer keys of `file`. Fails when `tokenizer.ggml.tokens` is absent or any
    /// key has the wrong type or an out-of-range id.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let model_key = "tokenizer.ggml.model";
        let model = optional_string(file, model_key)?.ok_or_else(|| GgufError::MissingKey(model_key.into()))?;
        let tokens = strings(file, "tokenizer.ggml.tokens")?
            .ok_or_else(|| GgufError::MissingKey("tokenizer.ggml.tokens".into()))?;
        let n = tokens.len();
        let token_types = per_token(file, "tokenizer.ggml.token_type", n, |t| t.as_i64().map(|t| t as i32))?
            .unwrap_or_else(|| vec![1; n]);
        let scores = per_token(file, "tokenizer.ggml.scores", n, MetadataValue::as_f64)?;
        let sentencepiece = model == "llama";
        Ok(Self {
            architecture: optional_string(file, "general.architecture")?.unwrap_or_default(),
            pre: optional_string(file, "tokenizer.ggml.pre")?.unwrap_or_else(|| "default".to_string()),
            merges: strings(file, "tokenizer.ggml.merges")?.unwrap_or_default(),
            bos_id: token_id(file, "tokenizer.ggml.bos_token_id", n)?,
            eos_id: token_id(file, "tokenizer.ggml.eos_token_id", n)?,
            unk_id: token_id(file, "tokenizer.ggml.unknown_token_id", n)?,
            pad_id: token_id(file, "tokenizer.ggml.padding_token_id", n)?,
            add_bos: flag(file, "tokenizer.ggml.add_bos_token")?.unwrap_or(sentencepiece),
            add_eos: flag(file, "tokenizer.ggml.add_eos_token")?.unwrap_or(false),
            add_space_prefix: flag(file, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true),
            chat_template: optional_string(file, "tokenizer.chat_template")?,
            model,
            tokens,
            token_types,
            scores,
        })
    }

    fn token(&self, id: Option<u32>) -> Option<&str> {
        id.map(|i| self.tokens[i as usize].as_str())
    }

    /// Whether the SentencePiece vocabulary is laid out as Gemma's (by architecture).
    fn gemma_layout(&self) -> bool {
        self.architecture.starts_with("gemma")
    }

    /// `(pre_tokenizer JSON, ignore_merges)` of a byte-level BPE for `self.pre`.
    fn pre_tokenizer(&self) -> Result<(Value, bool)> {
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let split = |pattern: &str| {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
                byte_level(false)]})
        };
        Ok(match self.pre.as_str() {
            "default" | "gpt-2" | "gpt2" => (byte_level(true), false),
            // llama.cpp splits every digit on its own first ("\p{N}"), then applies the GPT-2 split.
            "smollm" | "starcoder" | "refact" => (
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
                false,
            ),
            "llama-bpe" | "llama3" | "llama-v3" => (split(LLAMA3_SPLIT), true),
            "qwen2" | "deepseek-r1-qwen" => (split(QWEN2_SPLIT), false),
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

    /// The BOS/EOS template (as transformers writes it), or `None` when neither is added.
    fn special_template(&self) -> Option<Value> {
        let bos = self.token(self.bos_id).filter(|_| self.add_bos);
        let eos = self.token(self.eos_id).filter(|_| self.add_eos);
        if bos.is_none() && eos.is_none() {
            return None;
        }
        let mut special_tokens = Map::new();
        for (t, id) in [(bos, self.bos_id), (eos, self.eos_id)].into_iter().filter_map(|(t, id)| Some((t?, id?))) {
            special_tokens.insert(t.to_string(), json!({"id": t, "ids": [id], "tokens": [t]}));
        }
        let single = template(bos, eos, &["A"]);
        let pair = template(bos, eos, &["A", "B"]);
        Some(json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special_tokens}))
    }

    /// The byte-level post-processor: byte-level offsets, plus BOS/EOS when the file asks.
    fn byte_level_post_processor(&self) -> Value {
        let byte_level =
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
        match self.special_template() {
            None => byte_level,
            Some(t) => json!({"type": "Sequence", "processors": [byte_level, t]}),
        }
    }

    /// `added_tokens` of `tokenizer.json`: CONTROL tokens (special), USER_DEFINED tokens (not
    /// special) and the BOS/EOS/UNK/PAD tokens (special), by id. `keep(token, type)` says
    /// whether a typed token is added at all.
    fn added_tokens(&self, keep: impl Fn(&str, i32) -> bool) -> Vec<Value> {
        let mut added: BTreeMap<usize, bool> = BTreeMap::new();
        for (id, (token, &t)) in self.tokens.iter().zip(&self.token_types).enumerate() {
            if (t == TOKEN_TYPE_CONTROL || t == TOKEN_TYPE_USER_DEFINED) && keep(token, t) {
                added.insert(id, t == TOKEN_TYPE_CONTROL);
            }
        }
        for id in [self.bos_id, self.eos_id, self.unk_id, self.pad_id].into_iter().flatten() {
            added.insert(id as usize, true);
        }
        added
            .into_iter()
            .map(|(id, special)| {
                json!({"id": id, "content": self.tokens[id], "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": special})
            })
            .collect()
    }

    /// Hugging Face `tokenizer.json` of this tokenizer (byte-level BPE or SentencePiece).
    pub fn tokenizer_json(&self) -> Result<Value> {
        match self.model.as_str() {
            "gpt2" => self.byte_level_json(),
            "llama" => self.sentencepiece_json(),
            other => Err(GgufError::BadValue {
                key: "tokenizer.ggml.model".into(),
                message: format!("tokenizer model \"{other}\" cannot be exported yet (supported: gpt2, llama)"),
            }),
        }
    }

    /// A byte-level BPE: the file's vocabulary (tokens spelled outside the byte alphabet are
    /// respelled byte by byte, as transformers does) and merges.
    fn byte_level_json(&self) -> Result<Value> {
        let (pre_tokenizer, ignore_merges) = self.pre_tokenizer()?;
        let alphabet = byte_level_alphabet();
        let spelled = |token: &str| token.chars().all(|c| alphabet.contains(&c));
        let mut vocab = Map::new();
        for (id, token) in self.tokens.iter().enumerate() {
            let key =
                if spelled(token) { token.clone() } else { token.bytes().map(|b| alphabet[b as usize]).collect() };
            vocab.entry(key).or_insert(json!(id));
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
        // A CONTROL token spelled outside the byte alphabet is a llama.cpp mislabel, and such a
        // USER_DEFINED token is not in the (respelled) vocabulary: transformers skips both.
        let added_tokens = self.added_tokens(|token, _| spelled(token));
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": self.byte_level_post_processor(),
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": self.token(self.unk_id), "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
                "vocab": vocab, "merges": merges,
            },
        }))
    }

    /// A SentencePiece BPE with byte fallback. Gemma layout: whitespace-only pieces stored
    /// with real spaces are respelled with `▁` (the file keeps them as the text has them),
    /// spaces are normalised to `▁`, merges follow vocabulary order (Gemma's scores do not
    /// follow its merges), and the unknown token is `tokenizer.ggml.unknown_token_id`'s. Llama
    /// layout: a `Metaspace` pre-tokenizer (prefix space when `add_space_prefix`), merges by
    /// score, no unknown token (bytes fall back).
    fn sentencepiece_json(&self) -> Result<Value> {
        let gemma = self.gemma_layout();
        let tokens: Vec<String> = if gemma {
            self.tokens
                .iter()
                .map(|t| {
                    if t.contains(' ') && t.chars().all(python_isspace) {
                        SPIECE_UNDERLINE.repeat(t.chars().count())
                    } else {
                        t.clone()
                    }
                })
                .collect()
        } else {
            self.tokens.clone()
        };
        let scores: Vec<f64> = if gemma {
            (0..tokens.len()).map(|i| -(i as f64)).collect()
        } else {
            self.scores.clone().ok_or_else(|| GgufError::MissingKey("tokenizer.ggml.scores".into()))?
        };
        // Later duplicates win, as in a Python dict built in id order.
        let index: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        let merges: Vec<Value> = if self.merges.is_empty() {
            implied_merges(&tokens, &index, &scores).into_iter().map(|(l, r)| json!([l, r])).collect()
        } else {
            self.merges.iter().map(|m| json!(m.split(' ').collect::<Vec<_>>())).collect()
        };
        let vocab: Map<String, Value> = index.iter().map(|(t, &i)| (t.to_string(), json!(i))).collect();
        let added_tokens = self.added_tokens(|token, t| t == TOKEN_TYPE_CONTROL || index.contains_key(token));
        let replace = json!({"type": "Replace", "pattern": {"String": SPIECE_UNDERLINE}, "content": " "});
        let mut decoders = vec![replace, json!({"type": "ByteFallback"}), json!({"type": "Fuse"})];
        let (normalizer, pre_tokenizer, unk) = if gemma {
            (
                json!({"type": "Replace", "pattern": {"String": " "}, "content": SPIECE_UNDERLINE}),
                json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false}),
                json!(self.token(self.unk_id)),
            )
        } else {
            if self.add_space_prefix {
                decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            let prepend = if self.add_space_prefix { "first" } else { "never" };
            (
                Value::Null,
                json!({"type": "Metaspace", "replacement": SPIECE_UNDERLINE, "prepend_scheme": prepend, "split": false}),
                Value::Null,
            )
        };
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": self.special_template(),
            "decoder": {"type": "Sequence", "decoders": decoders},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
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

/// The merges a SentencePiece vocabulary implies, as `transformers`' `generate_merges` with
/// scores: every split `l + r` of a piece into two pieces of the vocabulary, ordered by the
/// piece's score (highest first), then by longer `l`, then longer `r`; ties keep the order of
/// the pieces and, within a piece, of `(id(l), id(r))`. Lengths count characters.
fn implied_merges<'a>(tokens: &'a [String], index: &HashMap<&str, usize>, scores: &[f64]) -> Vec<(&'a str, &'a str)> {
    // Each distinct piece once, in order of first appearance, with its last score.
    let mut order: Vec<&str> = Vec::new();
    let mut score: HashMap<&str, f64> = HashMap::new();
    for (token, &s) in tokens.iter().zip(scores) {
        if score.insert(token.as_str(), s).is_none() {
            order.push(token);
        }
    }
    let mut merges: Vec<(&str, &str, f64, usize, usize)> = Vec::new();
    for piece in order {
        let s = score[piece];
        let mut local: Vec<(usize, usize, &str, &str)> = piece
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (l, r) = piece.split_at(at);
                Some((*index.get(l)?, *index.get(r)?, l, r))
            })
            .collect();
        local.sort_by_key(|&(li, ri, _, _)| (li, ri));
        merges.extend(local.into_iter().map(|(_, _, l, r)| (l, r, s, l.chars().count(), r.chars().count())));
    }
    merges.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.3.cmp(&a.3)).then(b.4.cmp(&a.4)));
    merges.into_iter().map(|(l, r, ..)| (l, r)).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn implied_merges_follow_scores_then_longer_left_pieces() {
        // "abc" splits as a+bc and ab+c; "ab" and "bc" as pairs of single letters.
        let tokens = strings(&["a", "b", "c", "ab", "bc", "abc"]);
        let index: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        let by_position: Vec<f64> = (0..6).map(|i| -(i as f64)).collect();
        let merges = implied_merges(&tokens, &index, &by_position);
        assert_eq!(merges, vec![("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]);
        // Scores reorder: "bc" first, "ab" last.
        let scores = [0.0, 0.0, 0.0, -3.0, -1.0, -2.0];
        let merges = implied_merges(&tokens, &index, &scores);
        assert_eq!(merges, vec![("b", "c"), ("ab", "c"), ("a", "bc"), ("a", "b")]);
    }

    #[test]
    fn implied_merges_split_at_characters_not_bytes() {
        let tokens = strings(&["\u{2581}", "é", "\u{2581}é"]);
        let index: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        assert_eq!(implied_merges(&tokens, &index, &[0.0, -1.0, -2.0]), vec![("\u{2581}", "é")]);
    }

    #[test]
    fn byte_level_alphabet_is_gpt2s() {
        let a = byte_level_alphabet();
        assert_eq!(a.len(), 256);
        assert_eq!(a[b'!' as usize], '!');
        assert_eq!(a[b' ' as usize], '\u{120}'); // "Ġ"
        assert_eq!(a[b'\n' as usize], '\u{10A}'); // "Ċ"
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }
}
