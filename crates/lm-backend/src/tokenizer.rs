//! The tokenizer of a Hugging Face folder: `tokenizer.json` through the `tokenizers` crate
//! (pure Rust build, no network), special tokens and the chat template from
//! `tokenizer_config.json` (or `chat_template.jinja`), rendered with `minijinja` the way
//! `transformers` renders it (Jinja with `trim_blocks` and `lstrip_blocks`, Python string
//! methods, `raise_exception`).

use std::path::Path;

use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{LmError, Result};

/// One chat message (`{"role": .., "content": ..}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with this role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// A tokenizer with its special tokens and chat template.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
    chat_template: Option<String>,
}

/// A token in `tokenizer_config.json`: a string or an `AddedToken` object with `content`.
fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json`, and `dir/tokenizer_config.json` and
    /// `dir/chat_template.jinja` when present (the `.jinja` file wins, as in `transformers`).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| LmError::Tokenizer { context: path.display().to_string(), message: e.to_string() })?;
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = if config_path.is_file() {
            let text = std::fs::read_to_string(&config_path).map_err(|e| LmError::io(&config_path, e))?;
            serde_json::from_str(&text).map_err(|source| LmError::Json { path: config_path.clone(), source })?
        } else {
            Value::Null
        };
        let jinja_path = dir.join("chat_template.jinja");
        let chat_template = if jinja_path.is_file() {
            Some(std::fs::read_to_string(&jinja_path).map_err(|e| LmError::io(&jinja_path, e))?)
        } else {
            match config.get("chat_template") {
                Some(Value::String(s)) => Some(s.clone()),
                // The list form: [{"name": "default", "template": ..}, ..].
                Some(Value::Array(list)) => list
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .and_then(|t| t.get("template").and_then(Value::as_str))
                    .map(str::to_string),
                _ => None,
            }
        };
        Ok(Tokenizer {
            inner,
            bos_token: token_string(config.get("bos_token")),
            eos_token: token_string(config.get("eos_token")),
            pad_token: token_string(config.get("pad_token")),
            chat_template,
        })
    }

    /// Token ids of `text`; `add_special_tokens` applies the tokenizer's post-processor
    /// (e.g. a BOS in front).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| LmError::Tokenizer { context: "encode".into(), message: e.to_string() })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`, optionally without special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| LmError::Tokenizer { context: "decode".into(), message: e.to_string() })
    }

    /// The id of a token string (special tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The BOS token string, if configured.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The EOS token string, if configured.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The EOS token id, if configured and in the vocabulary.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// The padding token id, if configured and in the vocabulary.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// The chat template, if the folder has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Renders `messages` with the chat template; `add_generation_prompt` appends the
    /// opening of an assistant turn. The template sees `messages`, `add_generation_prompt`,
    /// `bos_token`, `eos_token` and `pad_token`, and can call `raise_exception(msg)` (an
    /// error carrying `msg`) and `strftime_now(fmt)`.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.apply_chat_template_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// [`Tokenizer::apply_chat_template`] with extra template variables, as the keyword
    /// arguments of `transformers`' `apply_chat_template`: e.g. `enable_thinking = false`
    /// (Qwen3) or `date_string` (Llama 3.x, which otherwise prints today's date). They may
    /// override the special tokens, not `messages` or `add_generation_prompt`.
    pub fn apply_chat_template_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        variables: &serde_json::Map<String, Value>,
    ) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| LmError::ChatTemplate { message: "the tokenizer folder has no chat template".into() })?;
        render_chat_template(
            template,
            messages,
            add_generation_prompt,
            [("bos_token", &self.bos_token), ("eos_token", &self.eos_token), ("pad_token", &self.pad_token)],
            variables,
        )
    }
}

fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    tokens: [(&str, &Option<String>); 3],
    variables: &serde_json::Map<String, Value>,
) -> Result<String> {
    let template_error = |e: minijinja::Error| {
        // Show the template's own message for raise_exception, the engine's otherwise.
        let message = match (e.kind(), e.detail()) {
            (ErrorKind::InvalidOperation, Some(d)) => d.to_string(),
            _ => e.to_string(),
        };
        LmError::ChatTemplate { message }
    };
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
        Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
    });
    env.add_function("strftime_now", |format: String| -> String { strftime_now(&format) });
    env.add_template("chat", template).map_err(template_error)?;
    let mut ctx = serde_json::Map::new();
    for (name, value) in tokens {
        ctx.insert(name.into(), value.clone().map(Value::String).unwrap_or(Value::Null));
    }
    ctx.extend(variables.iter().map(|(k, v)| (k.clone(), v.clone())));
    ctx.insert("messages".into(), serde_json::to_value(messages).unwrap_or(Value::Null));
    ctx.insert("add_generation_prompt".into(), Value::Bool(add_generation_prompt));
    env.get_template("chat").and_then(|t| t.render(Value::Object(ctx))).map_err(template_error)
}

/// `strftime_now` for templates that print today's date: supports the common `%Y`, `%m`,
/// `%d`, `%B`, `%b` (UTC), other directives are kept verbatim.
fn strftime_now(format: &str) -> String {
    let days =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0)
            as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let name = MONTHS[(month - 1) as usize];
    format
        .replace("%Y", &year.to_string())
        .replace("%m", &format!("{month:02}"))
        .replace("%d", &format!("{day:02}"))
        .replace("%B", name)
        .replace("%b", &name[..3])
}
