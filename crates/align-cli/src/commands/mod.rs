//! The verbs of `align`, one module each.
//!
//! To add a verb: write `src/commands/<verb>.rs` with a clap `Args` struct and a
//! `pub fn run(args) -> anyhow::Result<()>`, then add one variant to [`Command`] and one arm
//! to [`run`]. Verbs with sub-verbs (`eval reward-gap`, ...) use a nested `Subcommand` enum in
//! their own module.

pub mod convert;
pub mod demo;
pub mod eval;
pub mod generate;
pub mod merge;
pub mod report;
pub mod train;

use clap::{Parser, Subcommand};

/// Multilingual safety alignment of language models over libtorch.
#[derive(Debug, Parser)]
#[command(name = "align", version, about, propagate_version = true)]
pub struct Cli {
    /// The verb to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert a model file into a Hugging Face model folder, or MGSM's TSV files into JSONL.
    Convert(convert::ConvertArgs),
    /// Continue a prompt with a model folder and print the completion.
    Generate(generate::GenerateArgs),
    /// Fold a LoRA adapter folder into its base model and write a model folder.
    Merge(merge::MergeArgs),
    /// Train a model as a TOML run config describes.
    Train(train::TrainArgs),
    /// Evaluate a model: reward gap, consistency of language variants, safety or utility.
    Eval(eval::EvalArgs),
    /// Put runs side by side: a Markdown report with a table and a chart per metric.
    Report(report::ReportArgs),
    /// The embedded default: align the bundled tiny model with every method and compare them.
    Demo(demo::DemoArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Report(args) => report::run(args),
        Command::Demo(args) => demo::run(args),
    }
}
