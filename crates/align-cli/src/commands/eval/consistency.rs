//! `align eval consistency --model DIR --data FILE.jsonl`: per layer, how collinear the
//! language variants of each prompt are at the last prompt token ([`evaluate_consistency`]);
//! prints the per-layer table, writes the JSON with `--output` and a PNG with `--plot`.

use std::path::PathBuf;

use align_train::eval::{
    evaluate_consistency_with_progress, format_consistency_table, plot_consistency, ConsistencyOptions, LayerSelection,
};
use anyhow::Context;
use clap::Args;

use crate::model_args::ModelArgs;
use crate::progress::PhaseProgress;

/// Arguments of `align eval consistency`.
#[derive(Debug, Args)]
pub struct ConsistencyArgs {
    /// The model folder, device and dtype.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Records whose prompts have language variants (JSONL, the training format).
    #[arg(long, value_name = "FILE.jsonl")]
    pub data: PathBuf,
    /// Hidden-state indices: `all` (0 = embeddings .. L) or a list such as `4,8,12`.
    #[arg(long, default_value = "all", value_parser = parse_layers)]
    pub layers: LayerSelection,
    /// Language tags of the file, dominant first, comma-separated. Default: every tag of the
    /// file (`en` first).
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub languages: Vec<String>,
    /// Prompts per prompt-only forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Write the report to this JSON file.
    #[arg(long, value_name = "FILE.json")]
    pub output: Option<PathBuf>,
    /// Draw the ratios against the layer into this PNG (no text; see docs/evaluation.md).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
}

fn parse_layers(s: &str) -> Result<LayerSelection, String> {
    s.parse().map_err(|e: align_train::TrainError| e.to_string())
}

/// Evaluates and prints.
pub fn run(args: ConsistencyArgs) -> anyhow::Result<()> {
    let languages = super::languages_of(&args.data, &args.languages)?;
    let records = super::read_records(&args.data, &languages)?;
    let (model, tokenizer) = args.model.load()?;
    let options = ConsistencyOptions { layers: args.layers.clone(), batch_size: args.batch_size };
    let mut progress = PhaseProgress::new("prompt states");
    let report =
        evaluate_consistency_with_progress(&model, &tokenizer, &records, &options, &mut |d, t| progress.update(d, t))
            .with_context(|| format!("cannot evaluate the consistency on {}", args.data.display()))?;
    print!("{}", format_consistency_table(&report));
    if let Some(path) = &args.output {
        super::write_json(path, &report)?;
    }
    if let Some(path) = &args.plot {
        plot_consistency(&report, path, 800, 500).with_context(|| format!("cannot draw {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
