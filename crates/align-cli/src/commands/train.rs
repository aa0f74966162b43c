//! `align train --config run.toml [--output DIR] [--resume]`: one training run through
//! [`align_train::train`] (`metrics.jsonl`, checkpoints and resume are the library's); this
//! verb reads the config, draws the run's progress from its events, turns Ctrl-C into the
//! run's interrupt (it saves a checkpoint and stops), and prints a short summary on stdout:
//! the output folder, the steps taken and the last line of `metrics.jsonl`.
//!
//! Data-parallel: `align train --nproc N --config run.toml` starts N workers of itself on
//! this machine ([`crate::launcher`]); each worker, like a process started by torchrun or
//! SLURM's srun, reads its place from the environment ([`torch_dist::Launch`]), joins the
//! others through c10d ([`align_train::dist::World`]) and trains its slice of every batch.
//! Only rank 0 reports progress and prints the summary.
//!
//! `align train --config run.toml --plan [--device-memory 80GiB] [--json] [--prompt-tokens N]`
//! prints the run's memory plan ([`align_train::plan`]) instead: no weights are loaded and
//! nothing is trained.

use std::path::{Path, PathBuf};

use align_train::dist::World;
use align_train::plan::{parse_memory_size, render_table, PlanOptions, PlanSource};
use align_train::{train, Interrupt, RunConfig, TrainOptions, TrainSummary};
use anyhow::{bail, Context};
use clap::Args;
use std::sync::Arc;
use std::time::Duration;
use torch_dist::Launch;

use crate::launcher::{self, Workers};

use crate::progress::train_reporter;

/// Arguments of `align train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The run's TOML config (docs/training.md).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The output folder (metrics.jsonl, checkpoint-<step>/, final/); default: runs/<config
    /// file name without extension>, relative to the current folder.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Continue from the latest complete checkpoint in the output folder.
    #[arg(long)]
    pub resume: bool,
    /// Print the run's memory plan (bytes per device by term and phase) from the model's
    /// config.json alone, without loading weights or training.
    #[arg(long, conflicts_with = "resume")]
    pub plan: bool,
    /// With --plan: check the plan against a device with this much memory (e.g. 80GiB, 80GB,
    /// 24GiB, 141GB) and name the switches that would make the run fit.
    #[arg(long, value_name = "SIZE", requires = "plan", value_parser = parse_memory_size)]
    pub device_memory: Option<u64>,
    /// With --plan: print the plan (and the device check) as one JSON object.
    #[arg(long, requires = "plan")]
    pub json: bool,
    /// With --plan: assume prompts (each language variant too) of N tokens and completions
    /// filling the rest of max_length; default: the worst case max_length allows.
    #[arg(long, value_name = "N", requires = "plan")]
    pub prompt_tokens: Option<u64>,
    /// Data-parallel on this machine: start N workers of this command (as torchrun would,
    /// with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set), each training
    /// [train] batch_size records of every step; Ctrl-C reaches every worker, and the first
    /// worker to fail stops the others.
    /// With --plan: the memory of each of N processes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub nproc: Option<u16>,
    /// With --nproc: the rendezvous port on 127.0.0.1 (default: MASTER_PORT, else a free one).
    #[arg(long, value_name = "PORT", requires = "nproc")]
    pub master_port: Option<u16>,
}

impl TrainArgs {
    /// The output folder: `--output`, or `runs/<config stem>`.
    pub fn output_dir(&self) -> PathBuf {
        self.output.clone().unwrap_or_else(|| {
            let stem = self.config.file_stem().map(|s| s.to_os_string()).unwrap_or_else(|| "run".into());
            Path::new("runs").join(stem)
        })
    }
}

/// Runs training and prints the summary (or, with `--plan`, prints the memory plan).
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = RunConfig::from_file(&args.config)
        .with_context(|| format!("cannot read the run config {}", args.config.display()))?;
    if args.plan {
        return print_plan(&args, &config);
    }
    let launch = Launch::from_env()?;
    if let Some(nproc) = args.nproc {
        if let Some(l) = &launch {
            bail!(
                "--nproc starts its own workers, but this process is already rank {} of a {} launch",
                l.rank,
                l.launcher
            );
        }
        return launch_workers(&args, usize::from(nproc));
    }
    let output = args.output_dir();
    let mut options = TrainOptions {
        output: output.clone(),
        resume: args.resume,
        interrupt: ctrl_c_interrupt(),
        on_event: Some(train_reporter()),
        world: None,
    };
    let mut failed = format!("training run {} failed", args.config.display());
    if let Some(launch) = launch.filter(|l| l.world_size > 1) {
        let timeout = Duration::from_secs(config.train.collective_timeout_s);
        failed = format!("rank {} of {}: {failed}", launch.rank, launch.world_size);
        let world = World::connect(&launch, timeout).with_context(|| failed.clone())?;
        options.world = Some(Arc::new(world));
    }
    let main = options.world.as_ref().is_none_or(|w| w.is_main());
    let summary = train(&config, &args.config, &options).context(failed)?;
    if main {
        print_summary(&output, &summary);
    }
    Ok(())
}

/// `--nproc N`: this command's workers, with the same arguments less `--nproc` and
/// `--master-port`.
fn launch_workers(args: &TrainArgs, nproc: usize) -> anyhow::Result<()> {
    let program = std::env::current_exe().context("cannot find the align binary to start its workers")?;
    let mut worker_args = Vec::new();
    let mut argv = std::env::args_os().skip(1);
    while let Some(a) = argv.next() {
        let text = a.to_string_lossy();
        if text == "--nproc" || text == "--master-port" {
            argv.next();
        } else if !(text.starts_with("--nproc=") || text.starts_with("--master-port=")) {
            worker_args.push(a);
        }
    }
    let workers =
        Workers { program, args: worker_args, nproc, master_port: args.master_port, grace: Duration::from_secs(30) };
    launcher::run(&workers)
}

/// Prints the memory plan of `config` as a table or JSON, checked against `--device-memory`
/// when given.
fn print_plan(args: &TrainArgs, config: &RunConfig) -> anyhow::Result<()> {
    let options = PlanOptions { prompt_tokens: args.prompt_tokens, world_size: args.nproc.map_or(1, u64::from) };
    let source = PlanSource::read(config, &args.config, &options)
        .with_context(|| format!("cannot plan the memory of {}", args.config.display()))?;
    let plan = source.plan();
    let fit = args.device_memory.map(|bytes| source.check_fit(bytes));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "plan": plan, "fit": fit }))?);
    } else {
        let from = config.model.path.join("config.json");
        print!("{}", render_table(&plan, fit.as_ref(), &from.display().to_string()));
    }
    Ok(())
}

/// An interrupt handle that Ctrl-C triggers: the run saves a checkpoint after the current
/// step and stops. A second Ctrl-C while it finishes the step is the same request.
fn ctrl_c_interrupt() -> Interrupt {
    let interrupt = Interrupt::new();
    let handle = interrupt.clone();
    if let Err(e) = ctrlc::set_handler(move || handle.trigger()) {
        eprintln!("warning: cannot install the Ctrl-C handler ({e}); Ctrl-C will stop the run without saving");
    }
    interrupt
}

/// The summary on stdout: folder, steps, saved model, and the final metrics.
fn print_summary(output: &Path, summary: &TrainSummary) {
    let state = if summary.interrupted { "interrupted" } else { "finished" };
    println!("{state}: {} optimizer steps in {}", summary.steps, output.display());
    println!("  model:         {}", summary.saved.display());
    println!("  metrics:       {}", output.join("metrics.jsonl").display());
    if summary.skipped_lines > 0 {
        println!("  skipped lines: {}", summary.skipped_lines);
    }
    if summary.nonfinite_steps > 0 {
        println!("  skipped steps: {} (non-finite loss or gradient)", summary.nonfinite_steps);
    }
    if let Some(last) = last_metrics(&output.join("metrics.jsonl")) {
        println!("  final metrics (step {}):", last.get("step").and_then(|v| v.as_u64()).unwrap_or(summary.steps));
        for (key, value) in &last {
            if key == "step" {
                continue;
            }
            match value.as_f64() {
                Some(v) => println!("    {key:<24} {v:.6}"),
                None => println!("    {key:<24} {value}"),
            }
        }
    }
}

/// The last line of `metrics.jsonl` as a JSON object, when there is one.
fn last_metrics(path: &Path) -> Option<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    match serde_json::from_str(line).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}
