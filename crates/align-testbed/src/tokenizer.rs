//! The world's tokenizer: a Hugging Face `tokenizer.json` with a WordLevel model (every word of
//! the world is one token) and a whitespace-split pre-tokenizer, plus `tokenizer_config.json`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::corpus::{translate_marker, REPLY_MARKER, TEXT_MARKER};
use crate::world::World;

/// The unknown-word token (id 0).
pub const UNK: &str = "<unk>";
/// The beginning-of-sequence token (id 1), added before every encoded prompt.
pub const BOS: &str = "<s>";
/// The end-of-sequence token (id 2), appended after every completion.
pub const EOS: &str = "</s>";
/// The padding token (id 3).
pub const PAD: &str = "<pad>";
/// The special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 4] = [UNK, BOS, EOS, PAD];
/// The longest sequence the tokenizer config announces (also the model's context).
pub const MODEL_MAX_LENGTH: usize = 128;

/// The token list of a world: specials, task markers, then every language's words.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    tokens: Vec<String>,
}

impl Vocabulary {
    /// The vocabulary of `world`; ids are positions in [`Vocabulary::tokens`].
    pub fn of(world: &World) -> Vocabulary {
        let mut tokens: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
        tokens.push(TEXT_MARKER.to_string());
        tokens.extend(world.languages().iter().map(|l| translate_marker(&l.tag)));
        if world.config().reply_marker {
            tokens.push(REPLY_MARKER.to_string());
        }
        for lang in world.languages() {
            tokens.extend(lang.words.iter().cloned());
        }
        Vocabulary { tokens }
    }

    /// The tokens in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The number of tokens (the model's `vocab_size`).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary is empty (never, for a generated world).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn id(&self, token: &str) -> Option<usize> {
        self.tokens.iter().position(|t| t == token)
    }

    /// The `tokenizer.json` document (Hugging Face `tokenizers` format).
    pub fn tokenizer_json(&self) -> Value {
        let added: Vec<Value> = SPECIAL_TOKENS
            .iter()
            .enumerate()
            .map(|(id, t)| {
                json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": true})
            })
            .collect();
        let vocab: BTreeMap<&str, usize> = self.tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        let bos_id = SPECIAL_TOKENS.iter().position(|t| *t == BOS).unwrap_or(1);
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "WhitespaceSplit"},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {BOS: {"id": BOS, "ids": [bos_id], "tokens": [BOS]}}
            },
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK}
        })
    }

    /// The `tokenizer_config.json` document (plain text, no chat template).
    pub fn tokenizer_config_json(&self) -> Value {
        let added: BTreeMap<String, Value> = SPECIAL_TOKENS
            .iter()
            .enumerate()
            .map(|(id, t)| {
                let entry = json!({"content": t, "single_word": false, "lstrip": false, "rstrip": false,
                                   "normalized": false, "special": true});
                (id.to_string(), entry)
            })
            .collect();
        json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": BOS,
            "eos_token": EOS,
            "pad_token": PAD,
            "unk_token": UNK,
            "add_bos_token": true,
            "add_eos_token": false,
            "model_max_length": MODEL_MAX_LENGTH,
            "padding_side": "right",
            "clean_up_tokenization_spaces": false,
            "added_tokens_decoder": added
        })
    }

    /// The `special_tokens_map.json` document.
    pub fn special_tokens_map_json(&self) -> Value {
        json!({"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK})
    }
}
