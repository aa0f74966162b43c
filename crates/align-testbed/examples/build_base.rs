//! Rebuilds the demo's assets from the seed: the world's files and the pre-trained base model.
//!
//! ```text
//! cargo run --release -p align-testbed --example build_base -- [ASSETS_DIR] [--world NAME] [--seed N] [--work DIR]
//! ```
//!
//! `--world` is `uniform` (the first world, the default), `anchored` or
//! `anchored-no-parallel`; `--seed` defaults to the world's first bundled seed. `ASSETS_DIR`
//! defaults to the world's bundled folder (`assets/testbed`, `assets/testbed-anchored/seed-1`,
//! ...); the pre-training run (metrics, checkpoints) goes to `--work` (default
//! `runs/testbed-base`, or `runs/testbed-<world>-seed-<seed>`).

use std::path::PathBuf;

use align_train::trainer::{EventHandler, TrainEvent};

use align_testbed::{build_base, World, WorldKind};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut assets: Option<PathBuf> = None;
    let mut work: Option<PathBuf> = None;
    let mut kind = WorldKind::Uniform;
    let mut seed: Option<u64> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--work" => work = Some(args.next().ok_or("--work needs a folder")?.into()),
            "--seed" => seed = Some(args.next().ok_or("--seed needs a number")?.parse()?),
            "--world" => {
                let name = args.next().ok_or("--world needs a name")?;
                kind = WorldKind::from_name(&name).ok_or(format!("unknown world `{name}`"))?;
            }
            "-h" | "--help" => {
                println!("usage: build_base [ASSETS_DIR] [--world uniform|anchored|anchored-no-parallel] [--seed N] [--work DIR]");
                return Ok(());
            }
            _ if !a.starts_with('-') => assets = Some(a.into()),
            _ => return Err(format!("unexpected argument `{a}`").into()),
        }
    }
    let seed = seed.unwrap_or(kind.seeds()[0]);
    let assets = assets.unwrap_or_else(|| kind.assets("assets".as_ref(), seed));
    let work = work.unwrap_or_else(|| match kind {
        WorldKind::Uniform => PathBuf::from("runs/testbed-base"),
        _ => PathBuf::from(format!("runs/testbed-{}-seed-{seed}", kind.name())),
    });
    let world = World::generate(&kind.config(seed))?;
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
