//! `align eval <reward-gap|consistency|safety|utility>`: the evaluations of
//! `align_train::eval` (docs/evaluation.md). Each sub-verb loads the model folder, calls the
//! library, prints a table on stdout and writes the JSON it returns.

pub mod consistency;
pub mod reward_gap;
pub mod safety;
pub mod utility;

use std::path::{Path, PathBuf};

use align_train::{load_records, Record};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use lm_backend::Tokenizer;

/// Arguments of `align eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The evaluation to run.
    #[command(subcommand)]
    pub eval: EvalCommand,
}

/// The evaluations.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Length-normalised reward gap of chosen over rejected completions, per language.
    RewardGap(reward_gap::RewardGapArgs),
    /// Collinearity of each prompt's language variants, per layer.
    Consistency(consistency::ConsistencyArgs),
    /// Attack success rate on harmful prompts, per language.
    Safety(safety::SafetyArgs),
    /// Math accuracy (MGSM-style questions, last number of the answer), per language.
    Utility(utility::UtilityArgs),
}

/// Runs the chosen evaluation.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    match args.eval {
        EvalCommand::RewardGap(a) => reward_gap::run(a),
        EvalCommand::Consistency(a) => consistency::run(a),
        EvalCommand::Safety(a) => safety::run(a),
        EvalCommand::Utility(a) => utility::run(a),
    }
}

/// The language tags of `--languages`, or, when none were given, every tag used by an object
/// field of the data file (`en` first when present, the others in order of appearance; `en`
/// alone when the file has only plain strings). Lines that are not JSON are left for
/// [`load_records`] to report with their line number.
pub fn languages_of(data: &Path, given: &[String]) -> anyhow::Result<Vec<String>> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    let text = std::fs::read_to_string(data).with_context(|| format!("cannot read {}", data.display()))?;
    let mut tags: Vec<String> = vec![];
    for line in text.lines() {
        let Ok(serde_json::Value::Object(record)) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        for field in ["prompt", "chosen", "rejected"] {
            if let Some(serde_json::Value::Object(map)) = record.get(field) {
                for tag in map.keys() {
                    if !tags.contains(tag) {
                        tags.push(tag.clone());
                    }
                }
            }
        }
    }
    match tags.iter().position(|t| t == "en") {
        Some(i) => {
            let en = tags.remove(i);
            tags.insert(0, en);
        }
        None if tags.is_empty() => tags.push("en".into()),
        None => {}
    }
    Ok(tags)
}

/// The records of `data` (every bad line is an error naming `file:line`).
pub fn read_records(data: &PathBuf, languages: &[String]) -> anyhow::Result<Vec<Record>> {
    let dataset = load_records(std::slice::from_ref(data), languages, false)
        .with_context(|| format!("cannot read the records of {}", data.display()))?;
    Ok(dataset.records)
}

/// Completions are scored and generated up to an EOS token: a tokenizer without one is an
/// error naming the model folder.
pub fn require_eos(tokenizer: &Tokenizer, model_dir: &Path) -> anyhow::Result<()> {
    if tokenizer.eos_token_id().is_none() {
        bail!(
            "the tokenizer in {} has no EOS token to end completions with; set `eos_token` in its tokenizer_config.json",
            model_dir.display()
        );
    }
    Ok(())
}

/// Writes `value` as pretty JSON to `path` (creating its folder), naming the file on error.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, format!("{text}\n")).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
