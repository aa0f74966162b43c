//! `align eval safety --model DIR --prompts FILE`: greedy answers to harmful prompts, judged
//! into the attack success rate per language ([`generate_responses`], [`judge_generations`]);
//! prints the per-language table and, with `--output DIR`, writes `DIR/safety.json` and the
//! judged answers `DIR/generations.jsonl`.

use std::path::PathBuf;

use align_train::eval::{
    format_safety_table, generate_responses_with_progress, judge_generations_with_progress, load_safety_prompts,
    write_safety_outputs, GenerationOptions, HttpJudge, HttpJudgeConfig, Judge, RefusalPhraseJudge,
};
use anyhow::Context;
use clap::Args;

use crate::model_args::ModelArgs;
use crate::progress::PhaseProgress;

/// Arguments of `align eval safety`.
#[derive(Debug, Args)]
pub struct SafetyArgs {
    /// The model folder, device and dtype.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Harmful prompts: JSONL, or CSV with one column per language (MultiJail).
    #[arg(long, value_name = "FILE")]
    pub prompts: PathBuf,
    /// Only these languages, comma-separated (for CSV: these columns). Default: all.
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub languages: Vec<String>,
    /// `refusal` (offline refusal-phrase lists) or the base URL of an OpenAI-compatible chat
    /// endpoint used as an LLM judge.
    #[arg(long, default_value = "refusal", value_name = "refusal|URL")]
    pub judge: String,
    /// The `model` field sent to an HTTP judge.
    #[arg(long, default_value = "judge", value_name = "NAME")]
    pub judge_model: String,
    /// New tokens per answer at most.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Prompts per generation batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Encode plain prompts as they are instead of as a user turn of the chat template.
    #[arg(long)]
    pub no_chat_template: bool,
    /// Write safety.json and generations.jsonl into this folder (created).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// The judge `--judge` names; an HTTP judge caches its verdicts in the output folder.
fn judge(args: &SafetyArgs) -> anyhow::Result<Box<dyn Judge>> {
    if args.judge == "refusal" {
        return Ok(Box::new(RefusalPhraseJudge::new()));
    }
    let mut config = HttpJudgeConfig::new(args.judge.clone(), args.judge_model.clone());
    config.api_key = std::env::var("ALIGN_JUDGE_API_KEY").ok().filter(|k| !k.is_empty());
    config.cache_path = args.output.as_ref().map(|d| d.join("judge_cache.jsonl"));
    let judge = HttpJudge::new(config).with_context(|| format!("--judge {}", args.judge))?;
    Ok(Box::new(judge))
}

/// Generates, judges, prints and writes.
pub fn run(args: SafetyArgs) -> anyhow::Result<()> {
    let languages = (!args.languages.is_empty()).then_some(args.languages.as_slice());
    let prompts = load_safety_prompts(&args.prompts, languages)
        .with_context(|| format!("cannot read the prompts {}", args.prompts.display()))?;
    let judge = judge(&args)?;
    let (model, tokenizer) = args.model.load()?;
    super::require_eos(&tokenizer, &args.model.model)?;
    let options = GenerationOptions {
        max_new_tokens: args.max_new_tokens,
        batch_size: args.batch_size,
        use_chat_template: !args.no_chat_template,
    };
    let mut progress = PhaseProgress::new("generating");
    let generations =
        generate_responses_with_progress(&model, &tokenizer, &prompts, &options, &mut |d, t| progress.update(d, t))
            .context("cannot generate the answers")?;
    let mut progress = PhaseProgress::new("judging");
    let (report, judged) =
        judge_generations_with_progress(&generations, judge.as_ref(), &mut |d, t| progress.update(d, t))
            .context("cannot judge the answers")?;
    print!("{}", format_safety_table(&report));
    if let Some(dir) = &args.output {
        write_safety_outputs(dir, &report, &judged).with_context(|| format!("cannot write into {}", dir.display()))?;
        eprintln!("wrote {} and {}", dir.join("safety.json").display(), dir.join("generations.jsonl").display());
    }
    Ok(())
}
