//! Training records: the JSONL format of architecture.md, validated line by line.
//!
//! One record per line:
//! `{"id": "..", "prompt": <prompt>, "chosen": <completion>, "rejected": <completion>}` where
//! - `<prompt>` is a string (in the dominant language), a list of chat messages
//!   (`{"role", "content"}`, conversational form), or an object mapping language tags to
//!   either of those (the language variants of one prompt);
//! - `<completion>` is a string, a list of assistant messages, or an object mapping language
//!   tags to either.
//!
//! A bad line stops loading with `file:line: what is wrong`, unless bad lines are skipped,
//! in which case each is counted and reported. Blank lines are not records.
//!
//! The configured languages select: a text of a record in a language that is not listed is
//! left out and counted per language ([`Dataset::left_out`]), so one multilingual file serves
//! runs over any subset of its languages. The dominant language (the first listed) stays
//! required in every per-language object.

use crate::{Result, TrainError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The message text.
    pub content: String,
}

/// A prompt or a completion in one language: plain text or chat messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    /// Plain text, tokenised as is (the prompt with the tokenizer's own special tokens).
    Plain(String),
    /// Chat messages, rendered with the model's chat template.
    Messages(Vec<Message>),
}

/// Where a record came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// One validated training record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's `id`, or `file:line` when it has none.
    pub id: String,
    /// Where it was read.
    pub origin: Origin,
    /// The prompt by language tag; always has the dominant language.
    pub prompt: BTreeMap<String, Text>,
    /// The preferred completion by language tag; always has the dominant language.
    pub chosen: BTreeMap<String, Text>,
    /// The dispreferred completion by language tag (absent for SFT-only data).
    pub rejected: Option<BTreeMap<String, Text>>,
}

/// The records of one or more files, the lines that were skipped as bad, and the texts left
/// out because of their language.
#[derive(Debug, Default)]
pub struct Dataset {
    /// The valid records, in file order.
    pub records: Vec<Record>,
    /// Bad lines skipped (only when skipping was asked for), each `file:line: why`.
    pub skipped: Vec<TrainError>,
    /// Texts left out because their language is not among the selected ones, counted per
    /// language tag: each prompt, chosen and rejected text of such a language counts once
    /// (a record with `vi` prompt, chosen and rejected adds 3 to `left_out["vi"]`). Only
    /// records that were loaded count; bad lines do not. Empty when every text was kept.
    pub left_out: BTreeMap<String, usize>,
}

impl Dataset {
    /// Total number of texts left out, over all languages.
    pub fn left_out_total(&self) -> usize {
        self.left_out.values().sum()
    }
}

/// Reads and validates every record of `paths`. `languages` is the config's list, dominant
/// first: a plain-string prompt or completion is in `languages[0]`, texts in other listed
/// languages are kept, and texts in unlisted languages are left out and counted in
/// [`Dataset::left_out`]. With `skip_bad_lines`, malformed lines are collected in
/// [`Dataset::skipped`] instead of stopping.
pub fn load_records(paths: &[PathBuf], languages: &[String], skip_bad_lines: bool) -> Result<Dataset> {
    let mut data = Dataset::default();
    for path in paths {
        let before = (data.records.len(), data.skipped.len());
        let file = std::fs::File::open(path).map_err(|source| TrainError::Io { path: path.clone(), source })?;
        for (index, line) in BufReader::new(file).lines().enumerate() {
            let origin = Origin { path: path.clone(), line: index + 1 };
            let line = line.map_err(|source| TrainError::Io { path: path.clone(), source })?;
            if line.trim().is_empty() {
                continue;
            }
            match parse_record_with_left_out(&line, &origin, languages) {
                Ok((record, left_out)) => {
                    data.records.push(record);
                    for (lang, n) in left_out {
                        *data.left_out.entry(lang).or_default() += n;
                    }
                }
                Err(e) if skip_bad_lines => data.skipped.push(e),
                Err(e) => return Err(e),
            }
        }
        if data.records.len() == before.0 {
            let skipped = data.skipped.len() - before.1;
            let detail = if skipped > 0 { format!(" ({skipped} bad lines skipped)") } else { String::new() };
            return Err(TrainError::EmptyData { path: path.clone(), detail });
        }
    }
    Ok(data)
}

/// Parses one JSONL line (see the module docs). `origin` names it in errors. Texts in
/// languages not in `languages` are left out without a count; use
/// [`parse_record_with_left_out`] (or [`load_records`]) to count them.
pub fn parse_record(line: &str, origin: &Origin, languages: &[String]) -> Result<Record> {
    parse_record_with_left_out(line, origin, languages).map(|(record, _)| record)
}

/// Parses one JSONL line like [`parse_record`], and also returns how many of its texts were
/// left out per language (languages not in `languages`; see [`Dataset::left_out`]).
pub fn parse_record_with_left_out(
    line: &str,
    origin: &Origin,
    languages: &[String],
) -> Result<(Record, BTreeMap<String, usize>)> {
    let bad = |why: String| TrainError::BadRecord { path: origin.path.clone(), line: origin.line, why };
    let value: Value = serde_json::from_str(line).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(bad("a record must be a JSON object with `prompt`, `chosen` and `rejected`".into()));
    };
    let id = match obj.get("id") {
        None | Some(Value::Null) => origin.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(bad("`id` must be a string or a number".into())),
    };
    let mut left_out = BTreeMap::new();
    let mut field = |name: &str, role: Role| -> Result<Option<BTreeMap<String, Text>>> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => per_language(v, name, role, languages, &mut left_out).map(Some).map_err(bad),
        }
    };
    let prompt = field("prompt", Role::Prompt)?.ok_or_else(|| bad("missing `prompt`".into()))?;
    let chosen = field("chosen", Role::Completion)?.ok_or_else(|| bad("missing `chosen`".into()))?;
    let rejected = field("rejected", Role::Completion)?;
    Ok((Record { id, origin: origin.clone(), prompt, chosen, rejected }, left_out))
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Prompt,
    Completion,
}

/// A field that is one text (dominant language) or an object of texts by language. Texts in
/// languages not in `languages` are not read (nor checked): each adds 1 to `left_out[lang]`.
fn per_language(
    v: &Value,
    field: &str,
    role: Role,
    languages: &[String],
    left_out: &mut BTreeMap<String, usize>,
) -> Result<BTreeMap<String, Text>, String> {
    let dominant = &languages[0];
    let mut out = BTreeMap::new();
    match v {
        Value::Object(map) => {
            for (lang, text) in map {
                if !languages.contains(lang) {
                    *left_out.entry(lang.clone()).or_default() += 1;
                    continue;
                }
                out.insert(lang.clone(), text_value(text, &format!("{field}.{lang}"), role)?);
            }
            if !out.contains_key(dominant) {
                return Err(format!("`{field}` has no text in the dominant language `{dominant}`"));
            }
        }
        other => {
            out.insert(dominant.clone(), text_value(other, field, role)?);
        }
    }
    Ok(out)
}

/// A string or a list of chat messages.
fn text_value(v: &Value, field: &str, role: Role) -> Result<Text, String> {
    match v {
        Value::String(s) if s.is_empty() => Err(format!("`{field}` is empty")),
        Value::String(s) => Ok(Text::Plain(s.clone())),
        Value::Array(items) => {
            let messages = items
                .iter()
                .enumerate()
                .map(|(i, m)| message(m, &format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            if messages.is_empty() {
                return Err(format!("`{field}` has no messages"));
            }
            if role == Role::Completion && messages.iter().any(|m| m.role != "assistant") {
                return Err(format!("`{field}`: completion messages must all have role \"assistant\""));
            }
            if role == Role::Prompt && messages.last().is_some_and(|m| m.role == "assistant") {
                return Err(format!("`{field}`: the prompt's last message must not be an assistant message"));
            }
            Ok(Text::Messages(messages))
        }
        _ => Err(format!("`{field}` must be a string or a list of {{\"role\", \"content\"}} messages")),
    }
}

fn message(v: &Value, field: &str) -> Result<Message, String> {
    let obj: &Map<String, Value> =
        v.as_object().ok_or_else(|| format!("`{field}` must be an object {{\"role\", \"content\"}}"))?;
    let role = obj.get("role").and_then(Value::as_str).ok_or_else(|| format!("`{field}` has no string `role`"))?;
    if !matches!(role, "system" | "user" | "assistant" | "tool") {
        return Err(format!("`{field}`: role \"{role}\" is not system, user, assistant or tool"));
    }
    let content =
        obj.get("content").and_then(Value::as_str).ok_or_else(|| format!("`{field}` has no string `content`"))?;
    Ok(Message { role: role.to_string(), content: content.to_string() })
}

impl Record {
    /// The dominant-language prompt (always present).
    pub fn dominant_prompt(&self, languages: &[String]) -> &Text {
        &self.prompt[&languages[0]]
    }
}
