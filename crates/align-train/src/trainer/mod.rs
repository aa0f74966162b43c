//! The training loop: `align train --config run.toml`.
//!
//! One run: load the policy (and, when a term needs it, a frozen reference), encode every
//! record, compute the reference log-probs once (cached in the output folder), then take
//! optimizer steps of `grad_accum` micro-batches each, with AdamW, the learning-rate
//! schedule, gradient clipping, a NaN/inf guard, `metrics.jsonl`, checkpoints and resume.
//!
//! With `[lora]` the base model is frozen and only its LoRA adapters train (the optimizer
//! holds their state alone); checkpoints are PEFT adapter folders, and the reference is the
//! base without adapters, sharing the policy's weights.
//!
//! The parts: `setup` (models, objective, data), `layer_choice` (`layer = "auto"`, see
//! [`crate::auto_layer`]), `step` (the step loop, and
//! [`micro_batch_backward`]: one micro-batch's passes and backward, with or without
//! activation checkpointing), [`checkpoint`]
//! ([`Checkpointer`]: save, find the latest complete, restore), [`reference`](mod@reference) (the reference
//! log-prob cache) and [`events`] (what the run reports, and how a caller interrupts it).
//! The library never prints: progress and messages reach the caller as [`TrainEvent`]s.

pub mod checkpoint;
pub mod events;
mod layer_choice;
mod optimizer;
pub mod reference;
mod setup;
mod step;

pub use checkpoint::{
    latest_checkpoint, Checkpointer, OBJECTIVE_PARAMS, OPTIMIZER_STATE, TOKENIZER_FILES, TRAINER_STATE,
};
pub use events::{EventHandler, Interrupt, SaveReason, TrainEvent};
pub use step::{checkpoint_seed, micro_batch_backward, MicroBatchOutcome};

use crate::config::RunConfig;
use crate::dist::World;
use crate::optim::{AdamW, AdamWConfig};
use crate::order::MicroBatches;
use crate::seeded::Fnv1a;
use crate::zero::ShardedAdamW;
use crate::{DataOrder, LrSchedule, MetricsLog, Result, TrainError};
use events::Events;
use optimizer::Optimizer;
use setup::Run;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use step::{LoopEnd, StepLoop};
use tch::Tensor;

/// How to run: where to write, whether to continue an interrupted run, where to report
/// progress and how to be stopped.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// The output folder (`metrics.jsonl`, `checkpoint-<step>/`, `final/`).
    pub output: PathBuf,
    /// Continue from the latest complete checkpoint in `output`.
    pub resume: bool,
    /// Triggering it makes the run save a checkpoint after the current step and return.
    pub interrupt: Interrupt,
    /// Receives the run's [`TrainEvent`]s (progress, skips, checkpoints); none by default.
    /// In a data-parallel run only rank 0 reports.
    pub on_event: Option<EventHandler>,
    /// The processes of a data-parallel run ([`World::connect`]); `None`: this process alone.
    pub world: Option<Arc<World>>,
}

impl TrainOptions {
    /// A fresh run writing to `output`, silent, never interrupted.
    pub fn new(output: impl Into<PathBuf>) -> Self {
        Self { output: output.into(), ..Self::default() }
    }

    /// Continue from the latest complete checkpoint (`true`) or start afresh.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Stop (after saving) when `interrupt` is triggered.
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// Train data-parallel with the processes of `world`: `[train] batch_size` records per
    /// process, rank 0 writing the outputs.
    pub fn with_world(mut self, world: Arc<World>) -> Self {
        self.world = Some(world);
        self
    }

    /// Report events to `handler`.
    pub fn on_event(mut self, handler: impl Fn(&TrainEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(EventHandler::new(handler));
        self
    }
}

/// What a finished (or interrupted) run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// Optimizer steps completed, in total.
    pub steps: u64,
    /// The last model folder written (`final/`, or the checkpoint of an interruption).
    pub saved: PathBuf,
    /// Bad data lines skipped (with `skip_bad_lines`).
    pub skipped_lines: usize,
    /// Steps skipped because loss or gradient was not finite (`on_nonfinite = "skip"`).
    pub nonfinite_steps: u64,
    /// True when the interrupt handle ended the run early (after saving).
    pub interrupted: bool,
}

/// Optimizer steps of the whole run: `max_steps`, or enough for `epochs` passes with
/// `world_size` processes.
fn total_steps(config: &RunConfig, records: usize, world_size: usize) -> u64 {
    let t = &config.train;
    if t.max_steps > 0 {
        t.max_steps as u64
    } else {
        (t.epochs * records).div_ceil(t.batch_size * t.grad_accum * world_size) as u64
    }
}

/// AdamW over the policy's parameters (under `[lora]`: its adapters only, by PEFT's names;
/// the base stays frozen) and the objective's own (named `objective.<name>`); sharded over the
/// ranks with `[train] shard_optimizer` in a data-parallel run.
fn optimizer(config: &RunConfig, run: &Run) -> Optimizer {
    let trained = if run.policy.has_adapters() {
        run.policy.set_adapters_trainable(true);
        run.policy.adapter_parameters()
    } else {
        run.policy.set_trainable(true);
        run.policy.parameters()
    };
    let mut params: Vec<(String, Tensor)> = trained.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    for (n, t) in run.heads.variables() {
        params.push((format!("objective.{n}"), t));
    }
    let o = &config.optim;
    let adamw = AdamWConfig { betas: o.betas, eps: o.eps, weight_decay: o.weight_decay };
    match &run.world {
        Some(world) if config.train.shard_optimizer => {
            Optimizer::Sharded(ShardedAdamW::new(params, adamw, world.clone()))
        }
        _ => Optimizer::Whole(AdamW::new(params, adamw)),
    }
}

/// The run's global micro-batches (`batch_size` records for each process), grouped by record
/// length when `group_by_length` asks for it.
fn micro_batches(config: &RunConfig, run: &Run, order: DataOrder) -> MicroBatches {
    let world_size = run.world.as_ref().map_or(1, |w| w.size());
    let batches = MicroBatches::new(order, config.train.batch_size * world_size, config.train.grad_accum);
    if !config.train.group_by_length {
        return batches;
    }
    let length =
        |r: &crate::prepare::PreparedRecord| r.chosen.len() + r.rejected.as_ref().map_or(0, |e| e.completion.len());
    batches.group_by_length(run.records.iter().map(length).collect())
}

/// Runs training as `config` (read from `config_path`) describes.
///
/// With [`TrainOptions::world`], every process of the run calls it with the same config: each
/// takes its slice of every global batch, and rank 0 writes `metrics.jsonl` and the
/// checkpoints, which are the files a one-process run with the whole batch would write.
pub fn train(config: &RunConfig, config_path: &Path, opts: &TrainOptions) -> Result<TrainSummary> {
    let world = opts.world.as_ref();
    let main = world.is_none_or(|w| w.is_main());
    let events = Events(if main { opts.on_event.clone() } else { None });
    if let Some(w) = world {
        w.check_same("configs", config_fingerprint(config))?;
    }
    let localized;
    let config = match world.map(|w| crate::dist::process_device(&config.model.device, w.launch().local_rank)) {
        Some(device) if device != config.model.device => {
            localized =
                RunConfig { model: crate::config::ModelSection { device, ..config.model.clone() }, ..config.clone() };
            &localized
        }
        _ => config,
    };
    tch::manual_seed(config.train.seed as i64);
    std::fs::create_dir_all(&opts.output).map_err(|source| TrainError::Io { path: opts.output.clone(), source })?;
    let resume_from = if opts.resume { Some(Checkpointer::resume_point(&opts.output)?) } else { None };
    if let (Some(w), Some((step, _))) = (world, &resume_from) {
        w.check_same("checkpoints to resume from", *step)?;
    }
    let policy_dir = resume_from.as_ref().map_or(config.model.path.as_path(), |(_, dir)| dir.as_path());
    let policy = (policy_dir, resume_from.is_some());
    let mut run = Run::build(config, config_path, policy, &opts.output, &events, world)?;

    let total_steps = total_steps(config, run.records.len(), world.map_or(1, |w| w.size()));
    let checkpointer = Checkpointer::new(&opts.output, &config.model.path, total_steps, config.train.seed);
    let mut optimizer = optimizer(config, &run);
    let start = match &resume_from {
        Some((step, dir)) => {
            checkpointer.restore(dir, *step, |state, step| optimizer.load_state(state, step), &mut run.heads)?;
            events.emit(TrainEvent::Resumed { step: *step, checkpoint: dir });
            *step
        }
        None => 0,
    };
    let o = &config.optim;
    let order = DataOrder::new(run.records.len(), config.train.seed);
    let mut steps = StepLoop {
        config,
        run: &run,
        optimizer,
        schedule: LrSchedule::new(o.lr, o.schedule, o.warmup_ratio, total_steps as usize),
        batches: micro_batches(config, &run, order),
        metrics_log: match main {
            true => Some(MetricsLog::open(&opts.output.join("metrics.jsonl"), resume_from.as_ref().map(|(s, _)| *s))?),
            false => None,
        },
        checkpointer: &checkpointer,
        events: &events,
        interrupt: &opts.interrupt,
        total_steps,
        nonfinite_steps: 0,
    };
    events.emit(TrainEvent::Started { start, total_steps, records: run.records.len() });
    let (step, saved, interrupted) = match steps.run(start)? {
        LoopEnd::Interrupted { step, saved } => (step, saved, true),
        LoopEnd::Finished { step } => (step, steps.save(step, SaveReason::Final)?, false),
    };
    let (skipped_lines, nonfinite_steps) = (run.skipped_lines, steps.nonfinite_steps);
    Ok(TrainSummary { steps: step, saved, skipped_lines, nonfinite_steps, interrupted })
}

/// FNV-1a of the parsed config: ranks launched with different configs differ here.
fn config_fingerprint(config: &RunConfig) -> u64 {
    let mut h = Fnv1a::new();
    h.write_bytes(format!("{config:?}").as_bytes());
    h.finish()
}
