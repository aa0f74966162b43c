//! Writes the testbed world into a folder, and optionally a randomly initialised tiny Llama.
//!
//! ```text
//! cargo run -p align-testbed --example write_world -- OUT_DIR [--world uniform|anchored|anchored-no-parallel] [--seed N] [--no-parallel-text] [--checkpoint MODEL_DIR]
//! ```

use std::path::PathBuf;

use align_testbed::{
    write_checkpoint, write_world, Dataset, TinyLlamaConfig, Vocabulary, World, WorldConfig, WorldKind,
};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut checkpoint: Option<PathBuf> = None;
    let mut config = WorldConfig::default();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => config.seed = args.next().ok_or("--seed needs a value")?.parse()?,
            "--world" => {
                let name = args.next().ok_or("--world needs a name")?;
                let kind = WorldKind::from_name(&name).ok_or(format!("unknown world `{name}`"))?;
                config = kind.config(config.seed);
            }
            "--no-parallel-text" => config.parallel_text = false,
            "--checkpoint" => checkpoint = Some(args.next().ok_or("--checkpoint needs a folder")?.into()),
            "-h" | "--help" => {
                println!("usage: write_world OUT_DIR [--world uniform|anchored|anchored-no-parallel] [--seed N] [--no-parallel-text] [--checkpoint MODEL_DIR]");
                return Ok(());
            }
            _ if out.is_none() => out = Some(a.into()),
            _ => return Err(format!("unexpected argument `{a}`").into()),
        }
    }
    let out = out.ok_or("usage: write_world OUT_DIR [--world uniform|anchored|anchored-no-parallel] [--seed N] [--no-parallel-text] [--checkpoint MODEL_DIR]")?;
    let world = World::generate(&config)?;
    let summary = write_world(&world, &out)?;
    let data = Dataset::build(&world);
    let requests = data.pretrain.iter().filter(|r| r.id.starts_with("req-")).count();
    println!(
        "world seed {}: {} languages, {} concepts ({} held out), vocabulary {} tokens",
        config.seed,
        world.languages().len(),
        world.concepts().len(),
        world.held_out_concepts().len(),
        Vocabulary::of(&world).len()
    );
    println!("pretrain: {requests} request records of {}", data.pretrain.len());
    println!("{summary}");
    println!("written to {}", out.display());
    if let Some(dir) = checkpoint {
        let s = write_checkpoint(&world, &TinyLlamaConfig::default(), &dir)?;
        println!(
            "checkpoint: {} parameters, {} bytes of safetensors in {}",
            s.parameters,
            s.safetensors_bytes,
            dir.display()
        );
    }
    Ok(())
}
