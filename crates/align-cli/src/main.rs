//! # align
//!
//! The `align` command line of polyalign. Each verb lives in its own module under
//! `src/commands/`; this file only parses the arguments and reports errors.
//!
//! - `align convert --from gguf FILE.gguf --output DIR`: a llama.cpp GGUF file to a Hugging
//!   Face folder; `--from mgsm DIR --output FILE.jsonl`: MGSM's TSV files to questions
//!   ([`commands::convert`]).
//! - `align generate --model DIR --prompt TEXT`: a completion from a model folder
//!   ([`commands::generate`]). Every `--model` also takes a LoRA adapter folder.
//! - `align train --config run.toml`: a training run ([`commands::train`]).
//! - `align merge --base DIR --adapter DIR --output DIR`: a LoRA adapter folded into its
//!   base model ([`commands::merge`]).
//! - `align eval reward-gap|consistency|safety|utility --model DIR ...`: the evaluations
//!   ([`commands::eval`]).
//! - `align report RUN_OR_EVAL_DIR...`: runs side by side in Markdown tables and charts
//!   ([`commands::report`]).
//! - `align demo`: the embedded default on the bundled testbed ([`commands::demo`]).
//!
//! Errors are printed to stderr as `error: ...` followed by their chain of causes, and the
//! process exits with status 1; usage errors (unknown flags, missing arguments) exit with
//! status 2, as clap reports them. The user guide is `docs/cli.md`.

mod commands;
mod launcher;
mod model_args;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
