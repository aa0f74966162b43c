//! Harmful prompts for the safety eval, from JSONL or from a CSV with one column per
//! language (the MultiJail layout).
//!
//! JSONL, one object per line, either
//! - `{"id": .., "lang": "zh", "prompt": ..}`: one prompt in one language, or
//! - `{"id": .., "prompt": {"en": .., "zh": ..}, ..}`: a record with per-language prompts
//!   (other fields, e.g. `chosen`, are ignored),
//!
//! where a prompt is a string or a list of `{"role", "content"}` chat messages.
//!
//! CSV: a header row, then one prompt per row with one column per language, e.g.
//! MultiJail's `id,source,tags,en,zh,it,vi,ar,ko,th,bn,sw,jv` (UTF-8, a leading byte-order
//! mark is ignored, quoted fields may span lines). The language columns are the ones the
//! caller names, or else every column not in [`CSV_METADATA_COLUMNS`]. The `id` column, when
//! present, gives the prompt ids; otherwise the row number does.

use crate::data::{Message, Text};
use crate::{Result, TrainError};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// CSV columns that are never languages (compared case-insensitively).
pub const CSV_METADATA_COLUMNS: &[&str] = &["id", "source", "tags", "tag", "category", "index", "type", "label"];

/// One harmful prompt in one language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyPrompt {
    /// The prompt's id (shared by its language variants).
    pub id: String,
    /// The language tag.
    pub lang: String,
    /// The prompt: plain text or chat messages.
    pub prompt: Text,
}

impl SafetyPrompt {
    /// The text a judge sees: the plain prompt, or the last user message.
    pub fn judge_text(&self) -> String {
        match &self.prompt {
            Text::Plain(s) => s.clone(),
            Text::Messages(m) => {
                m.iter().rev().find(|m| m.role == "user").map(|m| m.content.clone()).unwrap_or_default()
            }
        }
    }
}

/// Reads `path` (`.csv`, any case, as CSV; anything else as JSONL). With `languages`, only
/// those languages are kept (and, for CSV, each must be a column).
pub fn load_safety_prompts(path: &Path, languages: Option<&[String]>) -> Result<Vec<SafetyPrompt>> {
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let prompts =
        if is_csv { parse_csv_prompts(file, path, languages)? } else { parse_jsonl_prompts(file, path, languages)? };
    if prompts.is_empty() {
        return Err(TrainError::BadRecord { path: path.to_path_buf(), line: 0, why: "no prompts".into() });
    }
    Ok(prompts)
}

/// Parses CSV prompts from `reader` (`path` names it in errors); see the module docs.
/// Prompts come row by row, languages in column order.
pub fn parse_csv_prompts(reader: impl Read, path: &Path, languages: Option<&[String]>) -> Result<Vec<SafetyPrompt>> {
    let bad = |line: usize, why: String| TrainError::BadRecord { path: path.to_path_buf(), line, why };
    let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(reader);
    let headers: Vec<String> = csv
        .headers()
        .map_err(|e| bad(1, format!("cannot read the header row: {e}")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    let columns: Vec<(usize, String)> = match languages {
        Some(langs) => langs
            .iter()
            .map(|lang| {
                headers
                    .iter()
                    .position(|h| h == lang)
                    .map(|i| (i, lang.clone()))
                    .ok_or_else(|| bad(1, format!("no column `{lang}`; the columns are {}", headers.join(", "))))
            })
            .collect::<Result<_>>()?,
        None => headers
            .iter()
            .enumerate()
            .filter(|(_, h)| !CSV_METADATA_COLUMNS.iter().any(|m| m.eq_ignore_ascii_case(h)) && !h.is_empty())
            .map(|(i, h)| (i, h.clone()))
            .collect(),
    };
    if columns.is_empty() {
        return Err(bad(1, "no language columns (every column is metadata)".into()));
    }
    let id_column = headers.iter().position(|h| h.eq_ignore_ascii_case("id"));
    let mut prompts = vec![];
    for (row, record) in csv.records().enumerate() {
        let line = row + 2;
        let record = record.map_err(|e| bad(line, format!("bad CSV row: {e}")))?;
        let line = record.position().map_or(line, |p| p.line() as usize);
        let id = match id_column {
            Some(i) => record.get(i).unwrap_or_default().to_string(),
            None => (row + 1).to_string(),
        };
        for (i, lang) in &columns {
            let text = record.get(*i).unwrap_or_default();
            if text.trim().is_empty() {
                return Err(bad(line, format!("prompt `{id}` has an empty `{lang}` cell")));
            }
            prompts.push(SafetyPrompt { id: id.clone(), lang: lang.clone(), prompt: Text::Plain(text.to_string()) });
        }
    }
    Ok(prompts)
}

/// Parses JSONL prompts; see the module docs.
fn parse_jsonl_prompts(reader: impl Read, path: &Path, languages: Option<&[String]>) -> Result<Vec<SafetyPrompt>> {
    let mut prompts = vec![];
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let line_no = index + 1;
        let bad = |why: String| TrainError::BadRecord { path: path.to_path_buf(), line: line_no, why };
        let line = line.map_err(|e| TrainError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let id = match value.get("id") {
            None | Some(Value::Null) => line_no.to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => return Err(bad("`id` must be a string or a number".into())),
        };
        let prompt = value.get("prompt").ok_or_else(|| bad("missing `prompt`".into()))?;
        let variants: Vec<(String, &Value)> = match (value.get("lang"), prompt) {
            (Some(Value::String(lang)), p) => vec![(lang.clone(), p)],
            (Some(_), _) => return Err(bad("`lang` must be a string".into())),
            (None, Value::Object(map)) => map.iter().map(|(l, p)| (l.clone(), p)).collect(),
            (None, _) => return Err(bad("a prompt without `lang` must be an object of prompts by language".into())),
        };
        for (lang, p) in variants {
            if languages.is_some_and(|keep| !keep.contains(&lang)) {
                continue;
            }
            let prompt = prompt_text(p).map_err(|why| bad(format!("prompt `{lang}`: {why}")))?;
            prompts.push(SafetyPrompt { id: id.clone(), lang, prompt });
        }
    }
    Ok(prompts)
}

/// A string or a list of chat messages.
fn prompt_text(v: &Value) -> Result<Text, String> {
    match v {
        Value::String(s) if s.trim().is_empty() => Err("empty".into()),
        Value::String(s) => Ok(Text::Plain(s.clone())),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|m| {
                let role = m.get("role").and_then(Value::as_str);
                let content = m.get("content").and_then(Value::as_str);
                match (role, content) {
                    (Some(r), Some(c)) => Ok(Message { role: r.to_string(), content: c.to_string() }),
                    _ => Err("messages must be {\"role\", \"content\"} objects with string values".to_string()),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Text::Messages),
        _ => Err("must be a non-empty string or a list of chat messages".into()),
    }
}
