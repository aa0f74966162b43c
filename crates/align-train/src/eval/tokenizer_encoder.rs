//! [`TextEncoder`] for the model backend's [`Tokenizer`].

use super::{EvalError, EvalResult};
use crate::data::Message;
use crate::encode::TextEncoder;
use lm_backend::{ChatMessage, Tokenizer};

/// A [`Tokenizer`] (with its chat template) as the [`TextEncoder`] that
/// [`encode_pair`](crate::encode_pair) and [`encode_prompt`](crate::encode_prompt) use.
#[derive(Debug, Clone)]
pub struct TokenizerEncoder {
    tokenizer: Tokenizer,
    eos_id: i64,
}

impl TokenizerEncoder {
    /// Wraps `tokenizer`, whose `tokenizer_config.json` must name an EOS token in its vocabulary.
    pub fn new(tokenizer: Tokenizer) -> EvalResult<Self> {
        let eos = tokenizer.eos_token_id().ok_or_else(|| {
            EvalError::input(
                "tokenizer",
                "no EOS token (tokenizer_config.json `eos_token` missing or not in the vocabulary); \
                 use TokenizerEncoder::with_eos",
            )
        })?;
        Ok(TokenizerEncoder { tokenizer, eos_id: i64::from(eos) })
    }

    /// Wraps `tokenizer` with an explicit EOS id (e.g. the model config's `eos_token_id`).
    pub fn with_eos(tokenizer: Tokenizer, eos_id: i64) -> Self {
        TokenizerEncoder { tokenizer, eos_id }
    }

    /// The wrapped tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

impl TextEncoder for TokenizerEncoder {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>, String> {
        let ids = self.tokenizer.encode(text, add_special_tokens).map_err(|e| e.to_string())?;
        Ok(ids.into_iter().map(i64::from).collect())
    }

    fn eos_id(&self) -> i64 {
        self.eos_id
    }

    fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, String> {
        let messages: Vec<ChatMessage> = messages.iter().map(|m| ChatMessage::new(&m.role, &m.content)).collect();
        self.tokenizer.apply_chat_template(&messages, add_generation_prompt).map_err(|e| e.to_string())
    }
}
