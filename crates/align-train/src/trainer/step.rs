//! The step loop: each optimizer step accumulates the gradients of `grad_accum`
//! micro-batches, guards against non-finite losses and gradients, clips, applies AdamW at
//! the scheduled learning rate, appends a line to `metrics.jsonl`, and saves a checkpoint
//! every `save_every` steps or when the run is interrupted.

use super::checkpoint::Checkpointer;
use super::events::{Events, Interrupt, SaveReason, TrainEvent};
use super::optimizer::Optimizer;
use super::setup::Run;
use crate::batch::{build_view, dropout_key, StepModels, StepPlan};
use crate::config::{OnNonFinite, RunConfig};
use crate::order::MicroBatches;
use crate::prepare::PreparedRecord;
use crate::seeded::Fnv1a;
use crate::{LrSchedule, MetricsLog, Result, TrainError};
use align_losses::PreferenceObjective;
use lm_backend::Checkpointed;
use std::path::PathBuf;
use std::time::Instant;
use torch_dist::ReduceOp;

/// What the forward and backward passes of one micro-batch produced
/// ([`micro_batch_backward`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatchOutcome {
    /// The objective's (weighted) loss, before scaling.
    pub loss: f64,
    /// Each term's named metrics, in the objective's order.
    pub metrics: Vec<(String, f64)>,
    /// Tokens forwarded with gradient (padding never counts).
    pub tokens: usize,
}

/// One micro-batch of a training step, as the trainer runs it: the forward passes the plan
/// asks for ([`build_view`]), the objective, and the backward pass of `loss * scale` into the
/// `.grad` fields of the policy's parameters and the objective's own (gradients accumulate
/// over calls, as over the micro-batches of a step).
///
/// With `checkpointed` (the policy wrapped by [`lm_backend::HfCausalLm::checkpointed`],
/// `[train] gradient_checkpointing = true`), the policy's passes run through it instead of
/// `models.policy`: they keep only each decoder block's input, and its layer-wise reverse pass
/// ([`Checkpointed::backward`]) follows the loss's backward. The reference's passes (no
/// gradient) are never checkpointed.
///
/// `batch` are the micro-batch's records, `indices` their dataset indices and `all` every
/// record (KTO reads mismatched completions); `step` (1-based) names the step in errors.
/// Returns `Ok(Err(loss))` when the loss is not finite: nothing is back-propagated then.
///
/// With [`StepModels::ranks`] (a data-parallel run), `batch` is this rank's slice of the
/// global micro-batch: the backward pass leaves this rank's share of the gradient, and the
/// loss and metrics returned are those of the global micro-batch (`tokens` stays this rank's).
#[allow(clippy::too_many_arguments)] // the step's inputs, each distinct
pub fn micro_batch_backward(
    models: &StepModels,
    checkpointed: Option<&Checkpointed>,
    plan: &StepPlan,
    objective: &dyn PreferenceObjective,
    batch: &[&PreparedRecord],
    indices: &[usize],
    all: &[PreparedRecord],
    scale: f64,
    step: u64,
) -> Result<std::result::Result<MicroBatchOutcome, f64>> {
    let models = match checkpointed {
        Some(c) => StepModels { policy: c, ..*models },
        None => *models,
    };
    let (view, tokens) = build_view(&models, plan, batch, indices, all)?;
    let out = objective.compute(&view).map_err(TrainError::loss(format!("step {step}")))?;
    // With ranks, `out.loss` is this rank's share; every rank sees the global value.
    let loss = view.global_value(&out.loss).map_err(TrainError::loss(format!("step {step}")))?;
    if !loss.is_finite() {
        return Ok(Err(loss));
    }
    (out.loss * scale).f_backward().map_err(TrainError::torch(format!("step {step}: backward")))?;
    if let Some(c) = checkpointed {
        c.backward().map_err(TrainError::model(format!("step {step}: recomputing the checkpointed blocks")))?;
    }
    let metrics = out.metrics.iter().map(|(k, v)| (k.to_string(), v)).collect();
    Ok(Ok(MicroBatchOutcome { loss, metrics, tokens }))
}

/// The seed of the randomness replayed inside checkpointed blocks for micro-batch `micro` of
/// step `step` (0-based) of a run seeded `seed`: a function of the three, so a resumed run
/// draws what the uninterrupted one drew.
pub fn checkpoint_seed(seed: u64, step: u64, micro: usize) -> u64 {
    let mut h = Fnv1a::new();
    h.write_bytes(b"checkpointed blocks");
    for x in [seed, step, micro as u64] {
        h.write_u64(x);
    }
    h.finish()
}

/// How the step loop ended.
pub(crate) enum LoopEnd {
    /// Every step was taken.
    Finished {
        /// Steps taken (skipped ones included).
        step: u64,
    },
    /// The interrupt handle was triggered; the state was saved to `saved`.
    Interrupted {
        /// Steps taken.
        step: u64,
        /// The checkpoint written.
        saved: PathBuf,
    },
}

/// What one optimizer step's micro-batches produced.
struct Accumulated {
    /// The weighted loss, averaged over micro-batches.
    loss: f64,
    /// Tokens forwarded with gradient.
    tokens: usize,
    /// Each term's metrics, averaged over micro-batches, in first-seen order.
    metrics: Vec<(String, f64)>,
    /// The global norm of the accumulated gradient, before clipping.
    grad_norm: f64,
}

/// The state the loop moves forward.
pub(crate) struct StepLoop<'a> {
    pub config: &'a RunConfig,
    pub run: &'a Run,
    pub optimizer: Optimizer,
    pub schedule: LrSchedule,
    pub batches: MicroBatches,
    /// `metrics.jsonl` (rank 0 only).
    pub metrics_log: Option<MetricsLog>,
    pub checkpointer: &'a Checkpointer,
    pub events: &'a Events,
    pub interrupt: &'a Interrupt,
    pub total_steps: u64,
    /// Steps skipped as non-finite so far.
    pub nonfinite_steps: u64,
}

impl StepLoop<'_> {
    /// Takes steps `start + 1 ..= total_steps`.
    pub fn run(&mut self, start: u64) -> Result<LoopEnd> {
        let mut step = start;
        while step < self.total_steps {
            let t0 = Instant::now();
            let accumulated = match self.accumulate(step)? {
                Ok(a) => a,
                Err((what, value)) => {
                    self.not_finite(step, what, value)?;
                    step += 1;
                    continue;
                }
            };
            step += 1;
            self.apply_and_log(step, accumulated, t0)?;
            let interrupted = self.interrupted()?;
            let periodic = self.config.train.save_every > 0 && step % self.config.train.save_every as u64 == 0;
            if (periodic || interrupted) && step < self.total_steps {
                let reason = if interrupted { SaveReason::Interrupted } else { SaveReason::Periodic };
                let dir = self.save(step, reason)?;
                if interrupted {
                    return Ok(LoopEnd::Interrupted { step, saved: dir });
                }
            }
        }
        Ok(LoopEnd::Finished { step })
    }

    /// Whether the interrupt handle was triggered (in a data-parallel run: on any rank, so
    /// that every rank stops after the same step).
    fn interrupted(&self) -> Result<bool> {
        let here = self.interrupt.is_triggered();
        match &self.run.world {
            None => Ok(here),
            Some(w) => {
                Ok(w.all_reduce_f64(&[f64::from(u8::from(here))], ReduceOp::Max, "agreeing on an interrupt")?[0] > 0.0)
            }
        }
    }

    /// Writes `checkpoint-<step>/` (or `final/` for [`SaveReason::Final`]) and reports it; in
    /// a data-parallel run only rank 0 writes.
    pub fn save(&self, step: u64, reason: SaveReason) -> Result<PathBuf> {
        let c = self.checkpointer;
        let dir = if reason == SaveReason::Final { c.final_dir() } else { c.step_dir(step) };
        let state = self.optimizer.state()?; // sharded: gathered, by every rank
        if self.run.world.as_ref().is_some_and(|w| !w.is_main()) {
            return Ok(dir);
        }
        c.save(&dir, step, &self.run.policy, &state, &self.run.heads)?;
        self.events.emit(TrainEvent::CheckpointSaved { step, dir: &dir, reason });
        Ok(dir)
    }

    /// Forward and backward passes of step `step`'s micro-batches, gradients accumulated;
    /// `Err((what, value))` at the first non-finite loss or a non-finite gradient norm.
    fn accumulate(&mut self, step: u64) -> Result<Result<Accumulated, (String, f64)>> {
        let accum = self.config.train.grad_accum;
        let mut models = self.run.step_models(self.config.data.languages.len(), self.config.train.packing);
        let records = &self.run.records;
        let mut acc = Accumulated { loss: 0.0, tokens: 0, metrics: Vec::new(), grad_norm: f64::NAN };
        let world = self.run.world.as_ref();
        for micro in 0..accum {
            models.dropout_key = dropout_key(self.config.train.seed, step, micro);
            let mut indices = self.batches.indices(step, micro);
            if let Some(w) = world {
                // This rank's slice of the global micro-batch.
                let per = self.config.train.batch_size;
                indices = indices[w.rank() * per..(w.rank() + 1) * per].to_vec();
            }
            let batch: Vec<&PreparedRecord> = indices.iter().map(|&i| &records[i]).collect();
            let checkpointed = self.config.train.gradient_checkpointing.then(|| {
                let seed = checkpoint_seed(self.config.train.seed, step, micro);
                self.run.policy.checkpointed().with_replayed_randomness(seed)
            });
            let (plan, objective) = (&self.run.plan, &self.run.objective);
            let scale = 1.0 / accum as f64;
            let c = checkpointed.as_ref();
            let out = micro_batch_backward(&models, c, plan, objective, &batch, &indices, records, scale, step + 1)?;
            let out = match out {
                Ok(out) => out,
                Err(loss) => return Ok(Err(("loss".into(), loss))),
            };
            acc.tokens += out.tokens;
            acc.loss += out.loss / accum as f64;
            for (k, v) in out.metrics {
                match acc.metrics.iter_mut().find(|(name, _)| *name == k) {
                    Some((_, s)) => *s += v / accum as f64,
                    None => acc.metrics.push((k, v / accum as f64)),
                }
            }
        }
        self.optimizer.sync_grads(world.map(|w| &**w))?;
        if let Some(w) = world {
            acc.tokens = w.all_reduce_f64(&[acc.tokens as f64], ReduceOp::Sum, "counting tokens")?[0] as usize;
        }
        acc.grad_norm = self.optimizer.grad_norm()?;
        if !acc.grad_norm.is_finite() {
            return Ok(Err(("gradient norm".into(), acc.grad_norm)));
        }
        Ok(Ok(acc))
    }

    /// Step `step + 1` had a non-finite loss or gradient: drop its gradients, then skip it or
    /// save the last good state and stop, as `on_nonfinite` says.
    fn not_finite(&mut self, step: u64, what: String, value: f64) -> Result<()> {
        self.optimizer.zero_grad();
        match self.config.train.on_nonfinite {
            OnNonFinite::Skip => {
                self.nonfinite_steps += 1;
                self.events.emit(TrainEvent::NonFiniteSkipped { step: step + 1, what: &what, value });
                Ok(())
            }
            OnNonFinite::Stop => {
                let saved = self.save(step, SaveReason::NonFinite)?;
                Err(TrainError::NonFinite { step: step + 1, what, value, saved })
            }
        }
    }

    /// Clips, applies the update of step `step` (1-based) and logs its metrics line.
    fn apply_and_log(&mut self, step: u64, acc: Accumulated, t0: Instant) -> Result<()> {
        let o = &self.config.optim;
        let grad_norm = acc.grad_norm;
        if o.max_grad_norm > 0.0 && grad_norm > o.max_grad_norm {
            self.optimizer.scale_grads(o.max_grad_norm / (grad_norm + 1e-6));
        }
        let lr = self.schedule.lr(step as usize - 1);
        self.optimizer.step(lr)?;
        self.optimizer.zero_grad();
        let seconds = t0.elapsed().as_secs_f64();
        let world_size = self.run.world.as_ref().map_or(1, |w| w.size());
        let per_step = self.config.train.batch_size * self.config.train.grad_accum * world_size;
        let mut line = vec![
            ("step".to_string(), step as f64),
            ("loss".to_string(), acc.loss),
            ("lr".to_string(), lr),
            ("grad_norm".to_string(), grad_norm),
            ("step_time_s".to_string(), seconds),
            ("tokens".to_string(), acc.tokens as f64),
            ("epoch".to_string(), (step as usize * per_step) as f64 / self.run.records.len() as f64),
        ];
        if let Some(w) = &self.run.world {
            line.push(("world_size".to_string(), world_size as f64));
            line.push(("comm_time_s".to_string(), w.take_comm_time()));
            line.push(("optimizer_state_mib".to_string(), self.optimizer.state_bytes() as f64 / f64::from(1 << 20)));
        }
        line.extend(acc.metrics);
        if let Some(log) = &mut self.metrics_log {
            log.append(&line)?;
        }
        let total_steps = self.total_steps;
        self.events.emit(TrainEvent::StepFinished { step, total_steps, loss: acc.loss, tokens: acc.tokens, seconds });
        Ok(())
    }
}
