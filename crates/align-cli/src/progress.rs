//! Progress of long-running work on stderr: a bar with rate and ETA on a terminal, a plain
//! log line about every 5% otherwise (architecture.md, "Long work"). The libraries report
//! progress through callbacks (the evals' `(done, total)`, training's [`TrainEvent`]s); this
//! module draws it.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use align_train::trainer::{EventHandler, SaveReason, TrainEvent};

/// Reports `(done, total)` progress of one phase named `label` (e.g. "scoring pairs").
pub struct PhaseProgress {
    label: String,
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_logged: usize,
}

impl PhaseProgress {
    /// A reporter for the phase `label`; a bar when stderr is a terminal.
    pub fn new(label: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len}  {per_sec}  [{elapsed} < {eta}]")
                    .expect("valid template"),
            );
            bar.set_message(label.to_string());
            bar
        });
        PhaseProgress { label: label.to_string(), bar, started: Instant::now(), last_logged: 0 }
    }

    /// Records that `done` of `total` items are finished.
    pub fn update(&mut self, done: usize, total: usize) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                if done == total {
                    bar.finish();
                }
            }
            None => {
                let every = (total / 20).max(1);
                if done == total || done >= self.last_logged + every {
                    self.last_logged = done;
                    let seconds = self.started.elapsed().as_secs_f64();
                    let rate = done as f64 / seconds.max(1e-9);
                    eprintln!("{}: {done}/{total} ({rate:.1}/s, {seconds:.1}s)", self.label);
                }
            }
        }
    }
}

/// Draws a training run's [`TrainEvent`]s on stderr: a step bar with loss, tokens/s and ETA
/// on a terminal, a log line about every 5% of the steps otherwise; skipped records,
/// left-out languages, the reference cache, resume, non-finite steps and interruptions as
/// messages. One reporter can serve several runs in sequence (each `Started` begins a bar).
pub fn train_reporter() -> EventHandler {
    let state = Mutex::new(TrainReport::default());
    EventHandler::new(move |event: &TrainEvent| match state.lock() {
        Ok(mut s) => s.handle(event),
        Err(poisoned) => poisoned.into_inner().handle(event),
    })
}

#[derive(Default)]
struct TrainReport {
    cache: Option<PhaseProgress>,
    steps: Option<StepProgress>,
}

impl TrainReport {
    fn handle(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::RecordsSkipped { errors, kept } => {
                for e in *errors {
                    eprintln!("skipped: {e}");
                }
                eprintln!("skipped {} bad record(s); training on {kept}", errors.len());
            }
            TrainEvent::LanguagesLeftOut { counts } => {
                let list: Vec<String> = counts.iter().map(|(lang, n)| format!("{lang} {n}")).collect();
                eprintln!("left out texts in languages not in [data] languages: {}", list.join(", "));
            }
            TrainEvent::Bf16OnCpu { instructions: [] } => eprintln!(
                "warning: dtype = \"bf16\" on a CPU without AVX-512 BF16 or AMX: bf16 matmuls are emulated and \
                 run several times slower than f32 (dtype = \"f32\" is faster here)"
            ),
            TrainEvent::Bf16OnCpu { instructions } => {
                eprintln!("bf16 on this CPU: {} (bf16 matmuls in hardware)", instructions.join(", "))
            }
            TrainEvent::LayerChosen { term, layer, choice: Some(c), record } => eprintln!(
                "{term}: layer = \"auto\" chose hidden-state index {layer} (centred collinearity ratio {:.4} over {} \
                 group(s); candidates {}..={}; profile in {})",
                c.profile.iter().find(|l| l.layer == *layer).map_or(f64::NAN, |l| l.centred_collinearity_ratio),
                c.n_groups,
                c.candidates.first().unwrap_or(&0),
                c.candidates.last().unwrap_or(&0),
                record.display()
            ),
            TrainEvent::LayerChosen { term, layer, choice: None, record } => {
                eprintln!("{term}: layer = \"auto\" is hidden-state index {layer}, as recorded in {}", record.display())
            }
            TrainEvent::ReferenceProgress { done, total } => {
                self.cache.get_or_insert_with(|| PhaseProgress::new("reference log-probs")).update(*done, *total)
            }
            TrainEvent::ReferenceCacheReady { path, reused } => {
                self.cache = None;
                if *reused {
                    eprintln!("reference log-probs: reusing {}", path.display());
                }
            }
            TrainEvent::Resumed { step, checkpoint } => {
                eprintln!("resuming from {} (step {step})", checkpoint.display())
            }
            TrainEvent::Started { start, total_steps, .. } => {
                self.steps = Some(StepProgress::new(*total_steps, *start))
            }
            TrainEvent::StepFinished { step, loss, tokens, seconds, .. } => {
                if let Some(p) = &mut self.steps {
                    p.update(*step, *loss, *tokens as f64 / seconds.max(1e-9));
                }
            }
            TrainEvent::NonFiniteSkipped { step, what, value } => {
                self.println(&format!("step {step}: {what} is not finite ({value}); step skipped"))
            }
            TrainEvent::CheckpointSaved { dir, reason, .. } => match reason {
                SaveReason::Interrupted => {
                    self.finish();
                    eprintln!("interrupted: saved {} (continue with --resume)", dir.display());
                }
                SaveReason::Final | SaveReason::NonFinite => self.finish(),
                SaveReason::Periodic => {}
            },
            _ => {}
        }
    }

    fn println(&self, line: &str) {
        match self.steps.as_ref().and_then(|p| p.bar.as_ref()) {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.steps.take().and_then(|p| p.bar) {
            bar.finish();
        }
    }
}

/// The optimizer-step bar of one run.
struct StepProgress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    every: u64,
    started: Instant,
}

impl StepProgress {
    fn new(total: u64, position: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]")
                    .expect("valid template"),
            );
            bar.set_position(position);
            bar
        });
        Self { bar, total, every: (total / 20).max(1), started: Instant::now() }
    }

    fn update(&mut self, step: u64, loss: f64, tokens_per_s: f64) {
        let msg = format!("loss {loss:.4}  {tokens_per_s:.0} tok/s");
        match &self.bar {
            Some(bar) => {
                bar.set_position(step);
                bar.set_message(msg);
            }
            None if step % self.every == 0 || step == self.total => {
                eprintln!("[{step}/{}] {msg}  ({:.1}s)", self.total, self.started.elapsed().as_secs_f64());
            }
            None => {}
        }
    }
}
