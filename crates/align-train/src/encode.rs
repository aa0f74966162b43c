//! Turning records into token ids, by the contract of architecture.md → Data.
//!
//! Plain text: `encode(prompt, with the tokenizer's own special tokens) ++
//! encode(completion, none) ++ [eos]`; the completion tokens and the EOS are scored. Encoding
//! the two parts separately means no token ever straddles the prompt/completion boundary.
//!
//! Chat messages: the prompt is rendered with the chat template and `add_generation_prompt`,
//! the whole conversation without it, and the completion is the rendered text after the
//! prompt (which must be a prefix of the whole; otherwise the record is rejected). Rendered
//! text already carries the template's special tokens, so it is encoded without adding more
//! (no second BOS); the EOS is appended unless the completion already ends with it.

use crate::data::{Message, Text};

/// What encoding needs from a tokenizer: implemented by the model backend's tokenizer, or by
/// a user's own.
pub trait TextEncoder {
    /// Token ids of `text`; with `add_special_tokens`, the tokenizer's post-processor adds its
    /// own (e.g. a BOS).
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>, String>;
    /// The end-of-sequence token id appended after every completion.
    fn eos_id(&self) -> i64;
    /// The id that right-pads a batch (never attended to, never scored): the tokenizer's pad
    /// token, else its EOS. The one padding rule of training and evaluation.
    fn pad_id(&self) -> i64 {
        self.eos_id()
    }
    /// Renders `messages` with the model's chat template.
    fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, String>;
}

/// One prompt with one completion, as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The prompt's ids (not scored).
    pub prompt: Vec<i64>,
    /// The completion's ids, ending with the EOS (all scored).
    pub completion: Vec<i64>,
}

impl Encoded {
    /// Prompt and completion ids concatenated.
    pub fn ids(&self) -> Vec<i64> {
        [self.prompt.as_slice(), self.completion.as_slice()].concat()
    }

    /// Total length in tokens.
    pub fn len(&self) -> usize {
        self.prompt.len() + self.completion.len()
    }

    /// True when there are no tokens at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The ids of a prompt alone (what MLC and the consistency eval read at its last token).
pub fn encode_prompt(enc: &dyn TextEncoder, prompt: &Text) -> Result<Vec<i64>, String> {
    let ids = match prompt {
        Text::Plain(s) => enc.encode(s, true)?,
        Text::Messages(m) => enc.encode(&enc.render_chat(m, true)?, false)?,
    };
    if ids.is_empty() {
        return Err("the prompt encodes to no tokens".into());
    }
    Ok(ids)
}

/// Encodes `prompt` with `completion` (both plain text, or both chat messages).
pub fn encode_pair(enc: &dyn TextEncoder, prompt: &Text, completion: &Text) -> Result<Encoded, String> {
    let prompt_ids = encode_prompt(enc, prompt)?;
    let mut completion_ids = match (prompt, completion) {
        (Text::Plain(_), Text::Plain(c)) => enc.encode(c, false)?,
        (Text::Messages(p), Text::Messages(c)) => {
            let prompt_text = enc.render_chat(p, true)?;
            let whole: Vec<Message> = p.iter().chain(c.iter()).cloned().collect();
            let whole_text = enc.render_chat(&whole, false)?;
            let rest = whole_text.strip_prefix(&prompt_text).ok_or(
                "the chat template renders the prompt (with add_generation_prompt) differently from the start of \
                 the whole conversation, so the completion cannot be separated",
            )?;
            enc.encode(rest, false)?
        }
        (Text::Plain(_), Text::Messages(_)) => return Err("the prompt is text but the completion is messages".into()),
        (Text::Messages(_), Text::Plain(_)) => return Err("the prompt is messages but the completion is text".into()),
    };
    if completion_ids.last() != Some(&enc.eos_id()) || matches!(completion, Text::Plain(_)) {
        completion_ids.push(enc.eos_id());
    }
    Ok(Encoded { prompt: prompt_ids, completion: completion_ids })
}

/// The model backend's tokenizer encodes records directly.
impl TextEncoder for lm_backend::Tokenizer {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>, String> {
        let ids = lm_backend::Tokenizer::encode(self, text, add_special_tokens).map_err(|e| e.to_string())?;
        Ok(ids.into_iter().map(i64::from).collect())
    }

    fn eos_id(&self) -> i64 {
        // A tokenizer without an EOS cannot end completions; `from_dir` users see this early
        // through `Prepared::new`'s check, so a missing one maps to an impossible id here.
        self.eos_token_id().map(i64::from).unwrap_or(-1)
    }

    fn pad_id(&self) -> i64 {
        self.pad_token_id().map(i64::from).unwrap_or_else(|| TextEncoder::eos_id(self))
    }

    fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, String> {
        let messages: Vec<lm_backend::ChatMessage> =
            messages.iter().map(|m| lm_backend::ChatMessage::new(m.role.clone(), m.content.clone())).collect();
        self.apply_chat_template(&messages, add_generation_prompt).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A character-level encoder with a BOS (id 1) and EOS (id 2), and a `<s>` token in text.
    struct Chars;

    impl TextEncoder for Chars {
        fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>, String> {
            let mut ids = if add_special_tokens { vec![1] } else { vec![] };
            let mut rest = text;
            while let Some(c) = rest.chars().next() {
                if let Some(r) = rest.strip_prefix("</s>") {
                    ids.push(2);
                    rest = r;
                } else {
                    ids.push(c as i64 + 10);
                    rest = &rest[c.len_utf8()..];
                }
            }
            Ok(ids)
        }
        fn eos_id(&self) -> i64 {
            2
        }
        fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, String> {
            let mut s: String = messages.iter().map(|m| format!("[{}]{}</s>", m.role, m.content)).collect();
            if add_generation_prompt {
                s.push_str("[assistant]");
            }
            Ok(s)
        }
    }

    fn ids(s: &str) -> Vec<i64> {
        s.chars().map(|c| c as i64 + 10).collect()
    }

    #[test]
    fn plain_text_gets_bos_on_prompt_and_eos_on_completion() {
        let e = encode_pair(&Chars, &Text::Plain("ab".into()), &Text::Plain("c".into())).unwrap();
        assert_eq!(e.prompt, [vec![1], ids("ab")].concat());
        assert_eq!(e.completion, [ids("c"), vec![2]].concat());
        assert_eq!(e.ids().len(), e.len());
    }

    #[test]
    fn chat_completion_is_the_rendered_suffix_without_a_second_bos_or_eos() {
        let user = |c: &str| Message { role: "user".into(), content: c.into() };
        let asst = |c: &str| Message { role: "assistant".into(), content: c.into() };
        let e = encode_pair(&Chars, &Text::Messages(vec![user("hi")]), &Text::Messages(vec![asst("no")])).unwrap();
        assert_eq!(e.prompt, [ids("[user]hi"), vec![2], ids("[assistant]")].concat(), "no BOS added to rendered text");
        assert_eq!(e.completion, [ids("no"), vec![2]].concat(), "the template's own end token is the EOS");
    }

    #[test]
    fn mismatched_forms_and_bad_templates_are_errors() {
        let user = Text::Messages(vec![Message { role: "user".into(), content: "x".into() }]);
        assert!(encode_pair(&Chars, &user, &Text::Plain("y".into())).is_err());
        assert!(encode_pair(&Chars, &Text::Plain("y".into()), &user).is_err());
    }
}
