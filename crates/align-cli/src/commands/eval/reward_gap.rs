//! `align eval reward-gap --model DIR --data FILE.jsonl`: the length-normalised reward gap of
//! every (record, language) pair ([`evaluate_reward_gap`]); prints the per-language table and
//! writes the report of architecture.md with `--output`.

use std::path::PathBuf;

use align_train::eval::{evaluate_reward_gap_with_progress, format_reward_gap_table, RewardGapOptions};
use anyhow::Context;
use clap::Args;

use crate::model_args::ModelArgs;
use crate::progress::PhaseProgress;

/// Arguments of `align eval reward-gap`.
#[derive(Debug, Args)]
pub struct RewardGapArgs {
    /// The model folder, device and dtype.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Preference records (JSONL, the training format).
    #[arg(long, value_name = "FILE.jsonl")]
    pub data: PathBuf,
    /// Language tags, dominant first, comma-separated; only these are evaluated. Default:
    /// every tag of the file (`en` first).
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub languages: Vec<String>,
    /// Preference pairs per forward pass.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Write the report (per-language means and every pair) to this JSON file.
    #[arg(long, value_name = "FILE.json")]
    pub output: Option<PathBuf>,
}

/// Evaluates and prints.
pub fn run(args: RewardGapArgs) -> anyhow::Result<()> {
    let languages = super::languages_of(&args.data, &args.languages)?;
    let records = super::read_records(&args.data, &languages)?;
    let (model, tokenizer) = args.model.load()?;
    super::require_eos(&tokenizer, &args.model.model)?;
    let options = RewardGapOptions { languages, batch_size: args.batch_size };
    let mut progress = PhaseProgress::new("scoring pairs");
    let report =
        evaluate_reward_gap_with_progress(&model, &tokenizer, &records, &options, &mut |d, t| progress.update(d, t))
            .with_context(|| format!("cannot evaluate the reward gap on {}", args.data.display()))?;
    print!("{}", format_reward_gap_table(&report));
    if let Some(path) = &args.output {
        super::write_json(path, &report)?;
    }
    Ok(())
}
