//! `align eval utility --model DIR --data FILE.jsonl`: greedy answers to math questions, the
//! last number of each scored against the reference, per language
//! ([`evaluate_utility`](align_train::eval::evaluate_utility)); prints the per-language table
//! and, with `--output DIR`, writes `DIR/utility.json` (every
//! prompt, completion and extracted number kept).

use std::path::PathBuf;

use align_train::eval::{
    evaluate_utility_with_progress, format_utility_table, load_utility_items, write_utility_report, UtilityOptions,
};
use anyhow::{bail, Context};
use clap::Args;

use crate::model_args::ModelArgs;
use crate::progress::PhaseProgress;

/// Arguments of `align eval utility`.
#[derive(Debug, Args)]
pub struct UtilityArgs {
    /// The model folder, device and dtype.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Questions: JSONL `{"id", "lang", "question", "answer"}` (MGSM converts with
    /// `align convert --from mgsm`).
    #[arg(long, value_name = "FILE.jsonl")]
    pub data: PathBuf,
    /// Only these languages, comma-separated. Default: every language of the file.
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub languages: Vec<String>,
    /// Exemplars shown before each question (0: zero-shot); needs --exemplars.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub shots: usize,
    /// Exemplars: the same JSONL (an optional `solution` field is the worked answer shown);
    /// the first N of the question's language are used.
    #[arg(long, value_name = "FILE.jsonl")]
    pub exemplars: Option<PathBuf>,
    /// New tokens per answer at most.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Questions per generation batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Use the plain "Question: ... Answer:" frame even when the tokenizer has a chat template.
    #[arg(long)]
    pub no_chat_template: bool,
    /// Write utility.json into this folder (created).
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// Generates, scores, prints and writes.
pub fn run(args: UtilityArgs) -> anyhow::Result<()> {
    let languages = (!args.languages.is_empty()).then_some(args.languages.as_slice());
    let items = load_utility_items(&args.data, languages)
        .with_context(|| format!("cannot read the questions {}", args.data.display()))?;
    let exemplars = match (&args.exemplars, args.shots) {
        (Some(path), _) => load_utility_items(path, languages)
            .with_context(|| format!("cannot read the exemplars {}", path.display()))?,
        (None, 0) => vec![],
        (None, n) => bail!("--shots {n} needs --exemplars FILE.jsonl"),
    };
    let (model, tokenizer) = args.model.load()?;
    super::require_eos(&tokenizer, &args.model.model)?;
    let options = UtilityOptions {
        max_new_tokens: args.max_new_tokens,
        batch_size: args.batch_size,
        shots: args.shots,
        use_chat_template: !args.no_chat_template,
    };
    let mut progress = PhaseProgress::new("answering");
    let report = evaluate_utility_with_progress(&model, &tokenizer, &items, &exemplars, &options, &mut |d, t| {
        progress.update(d, t)
    })
    .with_context(|| format!("cannot evaluate utility on {}", args.data.display()))?;
    print!("{}", format_utility_table(&report));
    if let Some(dir) = &args.output {
        let path =
            write_utility_report(dir, &report).with_context(|| format!("cannot write into {}", dir.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
