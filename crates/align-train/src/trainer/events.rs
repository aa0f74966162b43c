//! What a run reports to its caller while it works, and how the caller stops it. The library
//! never prints or owns a terminal: a binary turns these events into a progress bar or log
//! lines, and installs its own Ctrl-C handler that triggers an [`Interrupt`].

use crate::TrainError;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A handle that asks a running [`train`](crate::train) to stop. The run finishes the
/// optimizer step in progress, saves a checkpoint (resumable with `resume`) and returns with
/// [`TrainSummary::interrupted`](crate::TrainSummary::interrupted) set. Clones share one flag,
/// so a signal handler can hold one clone and the run another.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A handle that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop after the current optimizer step.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Interrupt::trigger`] was called on this handle or a clone of it.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveReason {
    /// Every `save_every` optimizer steps.
    Periodic,
    /// The run was interrupted; it can continue with `resume`.
    Interrupted,
    /// A non-finite loss or gradient stopped the run (`on_nonfinite = "stop"`); the
    /// checkpoint holds the last good state.
    NonFinite,
    /// The end of the run (`final/`).
    Final,
}

/// Something a run did, reported through [`TrainOptions::on_event`](super::TrainOptions).
#[derive(Debug)]
#[non_exhaustive]
pub enum TrainEvent<'a> {
    /// Bad records were skipped (`skip_bad_lines = true`); each error names its `file:line`.
    RecordsSkipped {
        /// Why each was skipped.
        errors: &'a [TrainError],
        /// Records left to train on.
        kept: usize,
    },
    /// Texts in languages outside `[data] languages` were left out, counted per language
    /// (prompts and completions alike).
    LanguagesLeftOut {
        /// Texts left out, by language tag.
        counts: &'a BTreeMap<String, usize>,
    },
    /// The run keeps bf16 weights on the CPU: these are the CPU's bf16 instruction sets
    /// (`avx512_bf16`, `amx_bf16`); empty means bf16 matmuls are emulated and run several
    /// times slower than f32.
    Bf16OnCpu {
        /// The instruction sets found.
        instructions: &'a [String],
    },
    /// A consistency term's `layer = "auto"` was resolved ([`crate::auto_layer`]).
    LayerChosen {
        /// The term's name.
        term: &'a str,
        /// The hidden-state index it reads.
        layer: usize,
        /// The profile it was chosen from; `None` when the choice was read back from `record`
        /// on resume.
        choice: Option<&'a crate::auto_layer::AutoLayer>,
        /// The record of the choice, `<output>/auto_layer.json`.
        record: &'a Path,
    },
    /// A batch of the reference log-prob cache was computed.
    ReferenceProgress {
        /// Batches done.
        done: usize,
        /// Batches in all.
        total: usize,
    },
    /// The reference log-prob cache is ready.
    ReferenceCacheReady {
        /// The cache file.
        path: &'a Path,
        /// True when it was read back from an earlier run with the same reference and data.
        reused: bool,
    },
    /// The run continues from a checkpoint.
    Resumed {
        /// The checkpoint's optimizer step.
        step: u64,
        /// The checkpoint folder.
        checkpoint: &'a Path,
    },
    /// The step loop starts.
    Started {
        /// The first step to take is `start + 1`.
        start: u64,
        /// Optimizer steps of the whole run.
        total_steps: u64,
        /// Records trained on.
        records: usize,
    },
    /// An optimizer step was applied (its line is already in `metrics.jsonl`).
    StepFinished {
        /// The step (1-based).
        step: u64,
        /// Optimizer steps of the whole run.
        total_steps: u64,
        /// The weighted loss of the step.
        loss: f64,
        /// Non-padding tokens forwarded with gradient.
        tokens: usize,
        /// Wall seconds of the step.
        seconds: f64,
    },
    /// A step was not applied because its loss or gradient was not finite
    /// (`on_nonfinite = "skip"`).
    NonFiniteSkipped {
        /// The step (1-based).
        step: u64,
        /// `loss` or `gradient norm`.
        what: &'a str,
        /// The value.
        value: f64,
    },
    /// A checkpoint (or `final/`) was written completely.
    CheckpointSaved {
        /// The optimizer steps it holds.
        step: u64,
        /// The folder.
        dir: &'a Path,
        /// Why it was written.
        reason: SaveReason,
    },
}

/// The callback that receives a run's [`TrainEvent`]s; clones share one callback, so one
/// handler can serve several runs.
#[derive(Clone)]
pub struct EventHandler(Arc<dyn Fn(&TrainEvent) + Send + Sync>);

impl EventHandler {
    /// A handler calling `f` with each event.
    pub fn new(f: impl Fn(&TrainEvent) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Passes `event` to the callback.
    pub fn handle(&self, event: &TrainEvent) {
        (self.0)(event)
    }
}

impl fmt::Debug for EventHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventHandler")
    }
}

/// Where a run sends its events: a handler, or nowhere.
#[derive(Debug, Clone, Default)]
pub(crate) struct Events(pub(crate) Option<EventHandler>);

impl Events {
    pub(crate) fn emit(&self, event: TrainEvent) {
        if let Some(handler) = &self.0 {
            handler.handle(&event);
        }
    }
}
