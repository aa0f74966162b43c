//! Rebuilds the demo's assets from the seed: the world's files and the pre-trained base model.
//!
//! ```text
//! cargo run --release -p align-testbed --example build_base -- [ASSETS_DIR] [--work DIR]
//! ```
//!
//! `ASSETS_DIR` defaults to `assets/testbed`; the pre-training run (metrics, checkpoints) goes
//! to `--work` (default `runs/testbed-base`).

use std::path::PathBuf;

use align_train::trainer::{EventHandler, TrainEvent};

use align_testbed::{build_base, World, WorldConfig};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut assets = PathBuf::from("assets/testbed");
    let mut work = PathBuf::from("runs/testbed-base");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--work" => work = args.next().ok_or("--work needs a folder")?.into(),
            "-h" | "--help" => {
                println!("usage: build_base [ASSETS_DIR] [--work DIR]");
                return Ok(());
            }
            _ if !a.starts_with('-') => assets = a.into(),
            _ => return Err(format!("unexpected argument `{a}`").into()),
        }
    }
    let world = World::generate(&WorldConfig::default())?;
    let started = std::time::Instant::now();
    let log = EventHandler::new(|event: &TrainEvent| {
        if let TrainEvent::StepFinished { step, total_steps, loss, .. } = event {
            if step % 100 == 0 || step == total_steps {
                eprintln!("[{step}/{total_steps}] loss {loss:.4}");
            }
        }
    });
    let s = build_base(&world, &assets, &work, None, Some(log))?;
    println!(
        "{} steps in {:.0} s; base model in {} (run folder {})",
        s.run.steps,
        started.elapsed().as_secs_f64(),
        s.base.display(),
        work.display()
    );
    Ok(())
}
