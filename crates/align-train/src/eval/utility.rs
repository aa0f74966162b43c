//! The utility eval: does the model still solve grade-school math in every language? Both
//! papers check that safety alignment keeps multilingual utility (MLC reports MGSM per
//! language); this eval answers the questions of a file like MGSM's (Shi et al. 2023) with
//! greedy decoding and scores the **last number** of each answer against the reference.
//!
//! Steps: [`load_utility_items`] (JSONL `{"id", "lang", "question", "answer"}`; MGSM's TSV
//! files convert with [`read_mgsm_folder`]) → [`utility_prompt`] (the chat template, or the
//! plain [`frame_labels`] frame, with optional exemplars) → greedy generation
//! ([`evaluate_utility`]) → [`score_completions`] (extraction by [`super::numbers`]) →
//! [`UtilityReport`] (`utility.json`, [`write_utility_report`]) and [`format_utility_table`].

use super::greedy::{decode_completion, greedy_token_completions};
use super::numbers::{last_number, parse_number};
use super::Progress;
use crate::{Result, TrainError};
use lm_backend::{ChatMessage, HfCausalLm, Tokenizer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The `metric` of reports made by [`score_completions`]: the extracted last number equals
/// the reference answer.
pub const EXACT_NUMBER: &str = "exact_number";

fn exact_number() -> String {
    EXACT_NUMBER.to_string()
}

/// One question with its reference answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UtilityItem {
    /// The question id (MGSM: the same id for the translations of one question).
    pub id: String,
    /// The language tag.
    pub lang: String,
    /// The question text.
    pub question: String,
    /// The reference answer.
    #[serde(serialize_with = "serialize_number", deserialize_with = "deserialize_answer")]
    pub answer: f64,
    /// A worked answer ending with the number; used when the item is an exemplar (the
    /// answer turn shows it instead of the bare number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solution: Option<String>,
}

/// Writes integral values as JSON integers (`18`, not `18.0`).
fn serialize_number<S: Serializer>(x: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        s.serialize_i64(*x as i64)
    } else {
        s.serialize_f64(*x)
    }
}

fn serialize_optional_number<S: Serializer>(x: &Option<f64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match x {
        Some(x) => serialize_number(x, s),
        None => s.serialize_none(),
    }
}

/// An answer: a JSON number, or a string holding one number (`"2,125"`, read as
/// [`parse_number`] reads it).
fn deserialize_answer<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| serde::de::Error::custom("not a finite number")),
        serde_json::Value::String(s) => {
            parse_number(&s).ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a number")))
        }
        other => Err(serde::de::Error::custom(format!("expected a number, got {other}"))),
    }
}

/// Reads a JSONL file of [`UtilityItem`]s; a bad line is [`TrainError::BadRecord`] naming the
/// file and line. With `languages`, only items in those languages are kept. An empty result
/// is [`TrainError::EmptyData`].
pub fn load_utility_items(path: &Path, languages: Option<&[String]>) -> Result<Vec<UtilityItem>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut items = vec![];
    for (k, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| TrainError::BadRecord { path: path.to_path_buf(), line: k + 1, why };
        let item: UtilityItem = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if item.id.is_empty() || item.lang.is_empty() || item.question.trim().is_empty() {
            return Err(bad("`id`, `lang` and `question` must not be empty".into()));
        }
        if languages.is_none_or(|l| l.contains(&item.lang)) {
            items.push(item);
        }
    }
    if items.is_empty() {
        let detail = languages.map(|l| format!(" in the languages {}", l.join(","))).unwrap_or_default();
        return Err(TrainError::EmptyData { path: path.to_path_buf(), detail });
    }
    Ok(items)
}

/// Reads MGSM's released files: `dir/mgsm_<lang>.tsv`, one question per line,
/// `question<TAB>answer`, no header (the 11 languages bn de en es fr ja ru sw te th zh, 250
/// questions each). Line `k` of every file gets the id `mgsm-<k>` (1-based, three digits),
/// so the translations of a question share it. Languages in file-name order, or `languages`'
/// order (each must have its file). Answers are read with [`parse_number`] (`2,125` = 2125).
pub fn read_mgsm_folder(dir: &Path, languages: Option<&[String]>) -> Result<Vec<UtilityItem>> {
    let file = |lang: &str| dir.join(format!("mgsm_{lang}.tsv"));
    let langs: Vec<String> = match languages {
        Some(l) => l.to_vec(),
        None => {
            let entries = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
            let mut found: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("mgsm_").and_then(|n| n.strip_suffix(".tsv")).map(str::to_string)
                })
                .collect();
            found.sort();
            found
        }
    };
    if langs.is_empty() {
        return Err(TrainError::EmptyData { path: dir.to_path_buf(), detail: " (no mgsm_<lang>.tsv file)".into() });
    }
    let mut items = vec![];
    for lang in &langs {
        let path = file(lang);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        for (k, line) in text.lines().enumerate() {
            let bad = |why: &str| TrainError::BadRecord { path: path.clone(), line: k + 1, why: why.to_string() };
            let line = line.trim_end_matches('\r');
            let line = if k == 0 { line.trim_start_matches('\u{feff}') } else { line };
            if line.trim().is_empty() {
                continue;
            }
            let (question, answer) = line.rsplit_once('\t').ok_or_else(|| bad("expected question<TAB>answer"))?;
            let answer = parse_number(answer).ok_or_else(|| bad(&format!("the answer `{answer}` is not a number")))?;
            if question.trim().is_empty() {
                return Err(bad("empty question"));
            }
            let id = format!("mgsm-{:03}", k + 1);
            items.push(UtilityItem { id, lang: lang.clone(), question: question.to_string(), answer, solution: None });
        }
    }
    Ok(items)
}

/// Writes items as JSONL (one [`UtilityItem`] per line), atomically.
pub fn write_utility_items(path: &Path, items: &[UtilityItem]) -> Result<()> {
    let mut text = String::new();
    for item in items {
        text.push_str(&serde_json::to_string(item).map_err(|e| TrainError::input("utility item", e.to_string()))?);
        text.push('\n');
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    }
    lm_backend::atomic::write_file(path, text.as_bytes())?;
    Ok(())
}

/// The labels of the plain frame in a language: `(question, answer)`, e.g. `("Frage:",
/// "Antwort:")`. Known: en de es fr ru zh ja th sw bn te (MGSM's languages); any other tag gets
/// the English labels.
pub fn frame_labels(lang: &str) -> (&'static str, &'static str) {
    match lang {
        "de" => ("Frage:", "Antwort:"),
        "es" => ("Pregunta:", "Respuesta:"),
        "fr" => ("Question :", "Réponse :"),
        "ru" => ("Вопрос:", "Ответ:"),
        "zh" => ("问题：", "答案："),
        "ja" => ("質問：", "答え："),
        "th" => ("คำถาม:", "คำตอบ:"),
        "sw" => ("Swali:", "Jibu:"),
        "bn" => ("প্রশ্ন:", "উত্তর:"),
        "te" => ("ప్రశ్న:", "సమాధానం:"),
        _ => ("Question:", "Answer:"),
    }
}

/// The prompt of one question: its text as rendered and its token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct UtilityPrompt {
    /// The text given to the tokenizer (the chat template's output, or the plain frame).
    pub text: String,
    /// The token ids the model continues.
    pub ids: Vec<i64>,
    /// Whether the plain frame was used (then the answer is read up to the frame's next
    /// question label; see [`answer_part`]).
    pub plain_frame: bool,
}

/// The exemplar's answer turn: its worked solution, or the bare answer.
fn exemplar_answer(e: &UtilityItem) -> String {
    e.solution.clone().unwrap_or_else(|| format_number(e.answer))
}

/// A number as a reader writes it: integers without a decimal point.
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The prompt of `item` after `exemplars` (the N-shot examples, oldest first).
///
/// - With a chat template (and `use_chat_template`): one user turn per exemplar question and
///   one assistant turn per exemplar answer, then the question as a user turn, rendered with
///   the generation prompt and encoded without adding special tokens (the template has them).
/// - Otherwise the plain frame in the item's language (`Question: ...\nAnswer:` with
///   [`frame_labels`]), exemplars as complete blocks separated by blank lines, encoded with
///   the tokenizer's own special tokens.
pub fn utility_prompt(
    tokenizer: &Tokenizer,
    item: &UtilityItem,
    exemplars: &[UtilityItem],
    use_chat_template: bool,
) -> Result<UtilityPrompt> {
    let encode_err = |e: lm_backend::LmError| TrainError::Encode {
        id: item.id.clone(),
        lang: item.lang.clone(),
        why: e.to_string(),
    };
    let (text, ids, plain_frame) = if use_chat_template && tokenizer.chat_template().is_some() {
        let mut messages = vec![];
        for e in exemplars {
            messages.push(ChatMessage::new("user", &e.question));
            messages.push(ChatMessage::new("assistant", exemplar_answer(e)));
        }
        messages.push(ChatMessage::new("user", &item.question));
        let text = tokenizer.apply_chat_template(&messages, true).map_err(encode_err)?;
        let ids = tokenizer.encode(&text, false).map_err(encode_err)?;
        (text, ids, false)
    } else {
        let (q, a) = frame_labels(&item.lang);
        let mut text = String::new();
        for e in exemplars {
            let _ = write!(text, "{q} {}\n{a} {}\n\n", e.question.trim(), exemplar_answer(e).trim());
        }
        let _ = write!(text, "{q} {}\n{a}", item.question.trim());
        let ids = tokenizer.encode(&text, true).map_err(encode_err)?;
        (text, ids, true)
    };
    if ids.is_empty() {
        return Err(TrainError::Encode {
            id: item.id.clone(),
            lang: item.lang.clone(),
            why: "the prompt encodes to no tokens".into(),
        });
    }
    Ok(UtilityPrompt { text, ids: ids.into_iter().map(i64::from).collect(), plain_frame })
}

/// The part of a completion that holds the answer: with the plain frame, the text before the
/// model starts a next question of its own (the language's question label, or the English
/// `Question:`), since a base model often goes on with invented questions; otherwise all of it.
pub fn answer_part<'a>(completion: &'a str, lang: &str, plain_frame: bool) -> &'a str {
    if !plain_frame {
        return completion;
    }
    let cut = [frame_labels(lang).0, "Question:"].iter().filter_map(|label| completion.find(label)).min();
    &completion[..cut.unwrap_or(completion.len())]
}

/// Options of [`evaluate_utility`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtilityOptions {
    /// New tokens per answer at most.
    pub max_new_tokens: usize,
    /// Questions per generation batch, at least 1.
    pub batch_size: usize,
    /// Exemplars before each question (0: zero-shot); taken, in file order, from the
    /// exemplars of the question's language.
    pub shots: usize,
    /// Use the tokenizer's chat template when it has one (else the plain frame).
    pub use_chat_template: bool,
}

impl Default for UtilityOptions {
    fn default() -> Self {
        UtilityOptions { max_new_tokens: 256, batch_size: 8, shots: 0, use_chat_template: true }
    }
}

/// The counts of one language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguageUtility {
    /// Questions asked.
    pub n: usize,
    /// Share answered correctly (answers without a number count as wrong).
    pub accuracy: f64,
    /// Answers in which no number was found.
    pub no_number: usize,
}

/// One scored answer: a record of `utility.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UtilityRecord {
    /// The question id.
    pub id: String,
    /// The language tag.
    pub lang: String,
    /// The prompt text as given to the tokenizer.
    pub prompt: String,
    /// The decoded completion (special tokens left out, trimmed), as generated.
    pub completion: String,
    /// The last number of the answer part (normalised), or null.
    #[serde(serialize_with = "serialize_optional_number")]
    pub extracted: Option<f64>,
    /// `extracted` equals the reference answer.
    pub correct: bool,
}

/// The output of `align eval utility` (`utility.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UtilityReport {
    /// What `accuracy` measures: [`EXACT_NUMBER`] for this eval; other producers (the demo's
    /// benign compliance) name their own. [`EXACT_NUMBER`] when a file has no such field.
    #[serde(default = "exact_number")]
    pub metric: String,
    /// Counts and accuracy by language tag.
    pub per_language: BTreeMap<String, LanguageUtility>,
    /// Every answer, in question order.
    pub records: Vec<UtilityRecord>,
}

/// Scores completions against the items (all three in the same order): the last number of
/// each completion's [`answer_part`] against the item's answer.
pub fn score_completions(items: &[UtilityItem], prompts: &[UtilityPrompt], completions: &[String]) -> UtilityReport {
    let mut per_language: BTreeMap<String, LanguageUtility> = BTreeMap::new();
    let mut correct_count: BTreeMap<String, usize> = BTreeMap::new();
    let mut records = Vec::with_capacity(items.len());
    for ((item, prompt), completion) in items.iter().zip(prompts).zip(completions) {
        let extracted = last_number(answer_part(completion, &item.lang, prompt.plain_frame));
        let correct = extracted == Some(item.answer);
        let entry =
            per_language.entry(item.lang.clone()).or_insert(LanguageUtility { n: 0, accuracy: 0.0, no_number: 0 });
        entry.n += 1;
        entry.no_number += usize::from(extracted.is_none());
        *correct_count.entry(item.lang.clone()).or_default() += usize::from(correct);
        records.push(UtilityRecord {
            id: item.id.clone(),
            lang: item.lang.clone(),
            prompt: prompt.text.clone(),
            completion: completion.clone(),
            extracted,
            correct,
        });
    }
    for (lang, l) in per_language.iter_mut() {
        l.accuracy = correct_count[lang] as f64 / l.n as f64;
    }
    UtilityReport { metric: EXACT_NUMBER.into(), per_language, records }
}

/// The first `shots` exemplars of each language of `items`; a language with fewer is an error.
fn exemplars_by_language<'a>(
    items: &[UtilityItem],
    exemplars: &'a [UtilityItem],
    shots: usize,
) -> Result<BTreeMap<String, Vec<&'a UtilityItem>>> {
    let mut by_lang: BTreeMap<String, Vec<&UtilityItem>> = BTreeMap::new();
    for item in items {
        if by_lang.contains_key(&item.lang) {
            continue;
        }
        let chosen: Vec<&UtilityItem> = exemplars.iter().filter(|e| e.lang == item.lang).take(shots).collect();
        if chosen.len() < shots {
            return Err(TrainError::input(
                "shots",
                format!("{shots} exemplars asked for, but the exemplars have {} in `{}`", chosen.len(), item.lang),
            ));
        }
        by_lang.insert(item.lang.clone(), chosen);
    }
    Ok(by_lang)
}

/// Answers every item greedily and scores the answers ([`score_completions`]).
pub fn evaluate_utility(
    model: &HfCausalLm,
    tokenizer: &Tokenizer,
    items: &[UtilityItem],
    exemplars: &[UtilityItem],
    options: &UtilityOptions,
) -> Result<UtilityReport> {
    evaluate_utility_with_progress(model, tokenizer, items, exemplars, options, &mut |_, _| {})
}

/// [`evaluate_utility`], calling `progress(questions answered, in total)` after each batch.
pub fn evaluate_utility_with_progress(
    model: &HfCausalLm,
    tokenizer: &Tokenizer,
    items: &[UtilityItem],
    exemplars: &[UtilityItem],
    options: &UtilityOptions,
    progress: &mut Progress<'_>,
) -> Result<UtilityReport> {
    let shots = exemplars_by_language(items, exemplars, options.shots)?;
    let prompts = items
        .iter()
        .map(|item| {
            let shown: Vec<UtilityItem> = shots[&item.lang].iter().map(|&e| e.clone()).collect();
            utility_prompt(tokenizer, item, &shown, options.use_chat_template)
        })
        .collect::<Result<Vec<_>>>()?;
    let ids: Vec<Vec<i64>> = prompts.iter().map(|p| p.ids.clone()).collect();
    let outputs =
        greedy_token_completions(model, tokenizer, &ids, options.max_new_tokens, options.batch_size, progress)?;
    let completions = outputs.iter().map(|o| decode_completion(tokenizer, o)).collect::<Result<Vec<_>>>()?;
    Ok(score_completions(items, &prompts, &completions))
}

/// Writes `dir/utility.json` (created, replaced atomically); returns its path.
pub fn write_utility_report(dir: &Path, report: &UtilityReport) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| TrainError::input("utility report", e.to_string()))?;
    let path = dir.join("utility.json");
    lm_backend::atomic::write_file(&path, format!("{json}\n").as_bytes())?;
    Ok(path)
}

/// The per-language table (for stdout): `lang n accuracy no_number`, then the overall
/// accuracy.
pub fn format_utility_table(report: &UtilityReport) -> String {
    let mut s = format!("{:<8} {:>6} {:>9} {:>10}\n", "lang", "n", "accuracy", "no_number");
    for (lang, l) in &report.per_language {
        let _ = writeln!(s, "{lang:<8} {:>6} {:>9.3} {:>10}", l.n, l.accuracy, l.no_number);
    }
    let n: usize = report.per_language.values().map(|l| l.n).sum();
    let correct = report.records.iter().filter(|r| r.correct).count();
    if n > 0 {
        let _ = writeln!(s, "overall accuracy {:.3} ({correct}/{n})", correct as f64 / n as f64);
    }
    s
}
