//! Progress of the long-running evals on stderr: a bar with rate and ETA on a terminal, a
//! plain log line about every 5% otherwise (architecture.md, "Long work").

use std::io::IsTerminal;
use std::time::Instant;

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
