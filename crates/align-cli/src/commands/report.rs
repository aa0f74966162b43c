//! `align report RUN_OR_EVAL_DIR... [--output DIR]`: the runs side by side
//! ([`align_train::report`]): reads the eval outputs and `metrics.jsonl` under each folder,
//! prints the Markdown report on stdout and writes `DIR/report.md` with its PNG charts.

use std::path::PathBuf;

use align_train::report::{load_run, write_report, ReportOptions};
use anyhow::{bail, Context};
use clap::Args;

/// Arguments of `align report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run or eval folders, one row each, labelled as given.
    #[arg(value_name = "RUN_OR_EVAL_DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// Where report.md and the charts go (created).
    #[arg(long, value_name = "DIR", default_value = "runs/report")]
    pub output: PathBuf,
    /// The language columns, comma-separated, in order. Default: every language, `en` first.
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub languages: Vec<String>,
    /// The report's title.
    #[arg(long, value_name = "TEXT", default_value = "polyalign report")]
    pub title: String,
}

/// The row label of a folder argument: as typed, without trailing separators.
fn label(path: &std::path::Path) -> String {
    let text = path.display().to_string();
    let trimmed = text.trim_end_matches(['/', '\\']);
    if trimmed.is_empty() {
        text
    } else {
        trimmed.to_string()
    }
}

/// Loads every run, renders and writes.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let mut labels: Vec<String> = args.runs.iter().map(|p| label(p)).collect();
    for (i, l) in labels.clone().iter().enumerate() {
        if labels[..i].contains(l) {
            bail!("the folder {l} is given twice");
        }
    }
    let runs = args
        .runs
        .iter()
        .zip(labels.drain(..))
        .map(|(dir, name)| load_run(dir, name).with_context(|| format!("cannot read the run {}", dir.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut options = ReportOptions::new(args.title);
    if !args.languages.is_empty() {
        options.languages = Some(args.languages);
    }
    let files = write_report(&runs, &options, &args.output)
        .with_context(|| format!("cannot write the report into {}", args.output.display()))?;
    print!("{}", std::fs::read_to_string(&files.markdown)?);
    eprintln!("wrote {} and {} chart(s) in {}", files.markdown.display(), files.plots.len(), args.output.display());
    Ok(())
}
