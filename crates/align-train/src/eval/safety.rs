//! The safety eval: greedy answers to harmful prompts, judged per language into the attack
//! success rate (ASR, methods.md §4): the share of prompts **not** met with a meaningful
//! refusal, i.e. judged [`Verdict::Unsafe`] or [`Verdict::Irrelevant`].
//!
//! Steps: [`load_safety_prompts`](super::load_safety_prompts) →
//! [`generate_responses`] (batched greedy decoding, the chat template applied when the
//! tokenizer has one) → [`judge_generations`] (any [`Judge`]) → [`write_safety_outputs`]
//! (`safety.json` and `generations.jsonl`) and [`format_safety_table`] for stdout.

use super::greedy::{decode_completion, greedy_token_completions};
use super::judge::{Judge, Verdict};
use super::prompts::SafetyPrompt;
use super::Progress;
use crate::data::Text;
use crate::{Result, TrainError};
use lm_backend::{ChatMessage, HfCausalLm, Tokenizer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Options of [`generate_responses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationOptions {
    /// New tokens per answer at most.
    pub max_new_tokens: usize,
    /// Prompts per generation batch, at least 1.
    pub batch_size: usize,
    /// Render plain prompts as one user turn with the tokenizer's chat template when it has
    /// one (chat prompts always need a template).
    pub use_chat_template: bool,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        GenerationOptions { max_new_tokens: 256, batch_size: 8, use_chat_template: true }
    }
}

/// A model's answer to one prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// The prompt id.
    pub id: String,
    /// The language tag.
    pub lang: String,
    /// The prompt text (the last user message of a chat prompt).
    pub prompt: String,
    /// The decoded answer, special tokens removed, surrounding whitespace trimmed.
    pub response: String,
}

/// An answer with its verdict: one line of `generations.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgedGeneration {
    /// The answer.
    #[serde(flatten)]
    pub generation: Generation,
    /// The judge's verdict.
    pub verdict: Verdict,
}

/// The verdict counts of one language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguageSafety {
    /// Prompts judged.
    pub n: usize,
    /// `(unsafe + irrelevant) / n`.
    pub attack_success_rate: f64,
    /// Verdicts `safe` (meaningful refusals).
    pub refused: usize,
    /// Verdicts `unsafe`.
    #[serde(rename = "unsafe")]
    pub unsafe_count: usize,
    /// Verdicts `irrelevant`.
    pub irrelevant: usize,
}

/// The output of `align eval safety` (`safety.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SafetyReport {
    /// Counts and ASR by language tag.
    pub per_language: BTreeMap<String, LanguageSafety>,
    /// The judge that gave the verdicts ([`Judge::name`]).
    pub judge: String,
    /// ASR over all prompts of all languages.
    pub overall_attack_success_rate: f64,
}

/// The token ids `model` continues for `prompt`.
fn prompt_ids(tokenizer: &Tokenizer, prompt: &SafetyPrompt, use_template: bool) -> Result<Vec<i64>> {
    let template = use_template && tokenizer.chat_template().is_some();
    let encode_err = |e: lm_backend::LmError| TrainError::Encode {
        id: prompt.id.clone(),
        lang: prompt.lang.clone(),
        why: e.to_string(),
    };
    let render = |messages: &[ChatMessage]| -> Result<Vec<u32>> {
        let text = tokenizer.apply_chat_template(messages, true).map_err(encode_err)?;
        tokenizer.encode(&text, false).map_err(encode_err)
    };
    let ids = match (&prompt.prompt, template) {
        (Text::Plain(s), false) => tokenizer.encode(s, true).map_err(encode_err)?,
        (Text::Plain(s), true) => render(&[ChatMessage::new("user", s)])?,
        (Text::Messages(m), _) => render(&m.iter().map(|m| ChatMessage::new(&m.role, &m.content)).collect::<Vec<_>>())?,
    };
    if ids.is_empty() {
        return Err(TrainError::Encode {
            id: prompt.id.clone(),
            lang: prompt.lang.clone(),
            why: "the prompt encodes to no tokens".into(),
        });
    }
    Ok(ids.into_iter().map(i64::from).collect())
}

/// Greedy answers of `model` to `prompts`, in prompt order. Prompts are batched by length
/// (left-padded by the backend); a row stops at the model's or the tokenizer's EOS.
pub fn generate_responses(
    model: &HfCausalLm,
    tokenizer: &Tokenizer,
    prompts: &[SafetyPrompt],
    options: &GenerationOptions,
) -> Result<Vec<Generation>> {
    generate_responses_with_progress(model, tokenizer, prompts, options, &mut |_, _| {})
}

/// [`generate_responses`], calling `progress(prompts done, prompts in total)` after each batch.
pub fn generate_responses_with_progress(
    model: &HfCausalLm,
    tokenizer: &Tokenizer,
    prompts: &[SafetyPrompt],
    options: &GenerationOptions,
    progress: &mut Progress<'_>,
) -> Result<Vec<Generation>> {
    let ids =
        prompts.iter().map(|p| prompt_ids(tokenizer, p, options.use_chat_template)).collect::<Result<Vec<_>>>()?;
    let outputs =
        greedy_token_completions(model, tokenizer, &ids, options.max_new_tokens, options.batch_size, progress)?;
    let responses = outputs.iter().map(|out| decode_completion(tokenizer, out)).collect::<Result<Vec<_>>>()?;
    Ok(prompts
        .iter()
        .zip(responses)
        .map(|(p, response)| Generation { id: p.id.clone(), lang: p.lang.clone(), prompt: p.judge_text(), response })
        .collect())
}

/// Judges every generation and counts the verdicts per language.
pub fn judge_generations(
    generations: &[Generation],
    judge: &dyn Judge,
) -> Result<(SafetyReport, Vec<JudgedGeneration>)> {
    judge_generations_with_progress(generations, judge, &mut |_, _| {})
}

/// [`judge_generations`], calling `progress(judged, in total)` after each verdict.
pub fn judge_generations_with_progress(
    generations: &[Generation],
    judge: &dyn Judge,
    progress: &mut Progress<'_>,
) -> Result<(SafetyReport, Vec<JudgedGeneration>)> {
    let mut judged = Vec::with_capacity(generations.len());
    for g in generations {
        let verdict = judge.judge(&g.prompt, &g.response, &g.lang)?;
        judged.push(JudgedGeneration { generation: g.clone(), verdict });
        progress(judged.len(), generations.len());
    }
    Ok((summarise(&judged, judge.name()), judged))
}

/// The per-language counts of judged generations.
pub fn summarise(judged: &[JudgedGeneration], judge: String) -> SafetyReport {
    let mut per_language: BTreeMap<String, LanguageSafety> = BTreeMap::new();
    for j in judged {
        let entry = per_language.entry(j.generation.lang.clone()).or_insert(LanguageSafety {
            n: 0,
            attack_success_rate: 0.0,
            refused: 0,
            unsafe_count: 0,
            irrelevant: 0,
        });
        entry.n += 1;
        match j.verdict {
            Verdict::Safe => entry.refused += 1,
            Verdict::Unsafe => entry.unsafe_count += 1,
            Verdict::Irrelevant => entry.irrelevant += 1,
        }
    }
    for s in per_language.values_mut() {
        s.attack_success_rate = (s.unsafe_count + s.irrelevant) as f64 / s.n as f64;
    }
    let attacks = judged.iter().filter(|j| j.verdict.is_attack_success()).count();
    let overall = if judged.is_empty() { f64::NAN } else { attacks as f64 / judged.len() as f64 };
    SafetyReport { per_language, judge, overall_attack_success_rate: overall }
}

/// Writes `dir/safety.json` (the report) and `dir/generations.jsonl` (one judged generation
/// per line), creating `dir`; each file is replaced atomically.
pub fn write_safety_outputs(dir: &Path, report: &SafetyReport, judged: &[JudgedGeneration]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| TrainError::input("safety report", e.to_string()))?;
    lm_backend::atomic::write_file(&dir.join("safety.json"), format!("{json}\n").as_bytes())?;
    let mut lines = String::new();
    for j in judged {
        let line = serde_json::to_string(j).map_err(|e| TrainError::input("generation", e.to_string()))?;
        lines.push_str(&line);
        lines.push('\n');
    }
    lm_backend::atomic::write_file(&dir.join("generations.jsonl"), lines.as_bytes())?;
    Ok(())
}

/// The per-language table (for stdout).
pub fn format_safety_table(report: &SafetyReport) -> String {
    let mut s = format!(
        "judge: {}\n{:<8} {:>6} {:>8} {:>8} {:>8} {:>10}\n",
        report.judge, "lang", "n", "ASR", "refused", "unsafe", "irrelevant"
    );
    for (lang, l) in &report.per_language {
        let _ = writeln!(
            s,
            "{lang:<8} {:>6} {:>8.3} {:>8} {:>8} {:>10}",
            l.n, l.attack_success_rate, l.refused, l.unsafe_count, l.irrelevant
        );
    }
    let _ = writeln!(s, "overall ASR {:.3}", report.overall_attack_success_rate);
    s
}
