//! Prints the memory-plan tables of docs/training.md ("Memory plan of 7-9B models"):
//! Qwen2.5-7B-Instruct, Llama-3.1-8B-Instruct and Gemma-2-9B-it (their `config.json` in
//! docs/plan-configs/), bf16 on one CUDA device, DPO and DPO + MLC, full fine-tuning and LoRA,
//! with and without gradient checkpointing, 1 and 4 records per micro-batch of 1024-token
//! sequences, against 24 GiB, 80 GiB and 141 GB.
//!
//! `cargo run -p align-train --example plan_tables > tables.md`; the test
//! `docs_tables_are_current` (tests/plan.rs) checks that docs/training.md holds this output.

use align_train::plan::{format_gib, required_bytes, PlanOptions, PlanSource, GIB, HEADROOM_PERCENT};
use align_train::RunConfig;
use std::fmt::Write;
use std::path::Path;

/// The checkpoints: folder under docs/plan-configs, name, MLC layer (about half the depth).
pub const MODELS: [(&str, &str, usize); 3] = [
    ("qwen2.5-7b-instruct", "Qwen2.5-7B-Instruct", 14),
    ("llama-3.1-8b-instruct", "Llama-3.1-8B-Instruct", 16),
    ("gemma-2-9b-it", "Gemma-2-9B-it", 21),
];

/// The devices, as their vendors count them.
pub const DEVICES: [(&str, u64); 3] = [("24 GiB", 24 * GIB), ("80 GiB", 80 * GIB), ("141 GB", 141_000_000_000)];

/// Tokens of each prompt (every language variant too); completions fill the rest of 1024.
pub const PROMPT_TOKENS: u64 = 128;

/// The run config of one row.
fn run_config(folder: &Path, mlc_layer: Option<usize>, lora: bool, checkpointing: bool, batch: usize) -> String {
    let languages = match mlc_layer {
        Some(_) => r#"["en", "zh", "ru", "ja", "ar", "bn", "sw", "ur", "ps", "ku"]"#,
        None => r#"["en"]"#,
    };
    let mut text = format!(
        "[model]\npath = {:?}\ndtype = \"bf16\"\ndevice = \"cuda\"\n\n[data]\ntrain = \"pairs.jsonl\"\n\
         languages = {languages}\nmax_length = 1024\n\n[[objective]]\nkind = \"dpo\"\n",
        folder.display().to_string()
    );
    if let Some(layer) = mlc_layer {
        write!(text, "\n[[objective]]\nkind = \"mlc\"\nweight = 0.5\nlayer = {layer}\n").unwrap();
    }
    write!(text, "\n[train]\nbatch_size = {batch}\ngradient_checkpointing = {checkpointing}\n").unwrap();
    if lora {
        text.push_str("\n[lora]\nr = 16\n");
    }
    text
}

/// The tables (Markdown), one per model; `plan_configs` is the docs/plan-configs folder.
pub fn tables(plan_configs: &Path) -> String {
    let mut out = String::new();
    for (folder, name, layer) in MODELS {
        let dir = plan_configs.join(folder);
        writeln!(out, "**{name}** (`docs/plan-configs/{folder}/config.json`)\n").unwrap();
        let devices: Vec<&str> = DEVICES.iter().map(|d| d.0).collect();
        writeln!(out, "| objective | tuning | checkpointing | batch | peak | {} |", devices.join(" | ")).unwrap();
        writeln!(out, "|---|---|---|---:|---:|{}", ":-:|".repeat(DEVICES.len())).unwrap();
        for mlc in [None, Some(layer)] {
            for lora in [false, true] {
                for checkpointing in [false, true] {
                    for batch in [1, 4] {
                        let text = run_config(&dir, mlc, lora, checkpointing, batch);
                        // Relative paths resolve against the config file's folder: none here.
                        let config = RunConfig::parse(&text, Path::new("run.toml")).expect("a valid run config");
                        let options = PlanOptions { prompt_tokens: Some(PROMPT_TOKENS), world_size: 1 };
                        let source =
                            PlanSource::read(&config, Path::new("run.toml"), &options).expect("the config reads");
                        let peak = source.plan().phases.peak;
                        let fits: Vec<&str> = DEVICES
                            .iter()
                            .map(
                                |(_, bytes)| {
                                    if required_bytes(peak, HEADROOM_PERCENT) <= *bytes {
                                        "yes"
                                    } else {
                                        "no"
                                    }
                                },
                            )
                            .collect();
                        writeln!(
                            out,
                            "| {} | {} | {} | {batch} | {} | {} |",
                            if mlc.is_some() { "DPO + MLC" } else { "DPO" },
                            if lora { "LoRA r 16" } else { "full" },
                            if checkpointing { "on" } else { "off" },
                            format_gib(peak),
                            fits.join(" | ")
                        )
                        .unwrap();
                    }
                }
            }
        }
        out.push('\n');
    }
    out
}

#[allow(dead_code)] // the test includes this file for `tables` only
fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/plan-configs");
    print!("{}", tables(&dir));
}
