//! The premise checks of a world's bundled base model, before any method runs on it.
//!
//! ```text
//! cargo run --release -p align-testbed --example premise -- [--world anchored] [--seed N] [--assets DIR] [--out DIR]
//! ```
//!
//! `--assets` is the folder with the base model's world files and `base/` (default: the
//! world's bundled folder for the seed).

use std::path::PathBuf;

use align_testbed::{check_premises, PremiseThresholds, World, WorldKind, BASE_DIR};
use lm_backend::{HfCausalLm, LoadOptions, Tokenizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut kind = WorldKind::Anchored;
    let mut seed = None;
    let mut out: Option<PathBuf> = None;
    let mut assets: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--world" => {
                let name = args.next().ok_or("--world needs a name")?;
                kind = WorldKind::from_name(&name).ok_or(format!("unknown world `{name}`"))?;
            }
            "--seed" => seed = Some(args.next().ok_or("--seed needs a number")?.parse()?),
            "--assets" => assets = Some(args.next().ok_or("--assets needs a folder")?.into()),
            "--out" => out = Some(args.next().ok_or("--out needs a folder")?.into()),
            _ => return Err(format!("unexpected argument `{a}`").into()),
        }
    }
    tch::set_num_threads(1);
    let seed = seed.unwrap_or(kind.seeds()[0]);
    let world = World::generate(&kind.config(seed))?;
    let base = assets.unwrap_or_else(|| kind.assets("assets".as_ref(), seed)).join(BASE_DIR);
    let model = HfCausalLm::load(&base, LoadOptions::cpu_f32())?;
    let tokenizer = Tokenizer::from_dir(&base)?;
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir)?;
    }
    let report = check_premises(&world, &model, &tokenizer, PremiseThresholds::default(), out.as_deref())?;
    let languages: Vec<String> = world.languages().iter().map(|l| l.tag.clone()).collect();
    println!("{} world, seed {seed}\n\n{}", kind.name(), report.markdown(&languages));
    Ok(())
}
