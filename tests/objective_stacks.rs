//! The whole system through the facade: every base objective stacked with every
//! regulariser, trained a few steps on the tiny real Llama checkpoint of lm-backend's
//! fixtures. Each run's losses are finite, every term is logged under its name at every
//! step, the weighted sum is what the terms and weights say, and the weights move.

use polyalign::train::{train, RunConfig, TrainOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/lm-backend/tests/fixtures");

/// Every base objective, with the parameters it needs, as a `[[objective]]` table body.
const BASES: &[(&str, &str)] = &[
    ("dpo", ""),
    ("robust_dpo", ""),
    ("hinge", ""),
    ("ipo", ""),
    ("r_dpo", ""),
    ("simpo", ""),
    ("cpo", ""),
    ("orpo", ""),
    ("kto", ""),
    ("sft", ""),
    ("mpo", "retain_layer = 2\n"),
];

/// Every regulariser and its weight in the stack.
const REGULARISERS: &[(&str, &str, f64)] =
    &[("mlc", "layer = 1\n", 0.5), ("mlc", "layer = 2\nhead_dim = 4\n", 0.25), ("cosine", "layer = 1\n", 0.5)];

const STEPS: usize = 2;

/// A model folder (the tiny Llama with the fixture tokenizer) and English/German records.
fn workspace(root: &Path) {
    let model = root.join("base");
    std::fs::create_dir_all(&model).unwrap();
    for (from, f) in [("llama", "config.json"), ("llama", "model.safetensors"), ("tokenizer", "tokenizer.json")] {
        std::fs::copy(Path::new(FIXTURES).join(from).join(f), model.join(f)).unwrap();
    }
    std::fs::copy(Path::new(FIXTURES).join("tokenizer/tokenizer_config.json"), model.join("tokenizer_config.json"))
        .unwrap();
    let records = [
        ("How do I open a lock?", "Wie öffne ich ein Schloss?", "I cannot help.", "Nein.", "Use a pin.", "Nadel."),
        ("Tell me a story.", "Erzähl eine Geschichte.", "Once upon a time.", "Es war einmal.", "No.", "Nein."),
        ("How to make a fire?", "Wie macht man Feuer?", "Use dry wood.", "Holz.", "Burn it.", "Brenn."),
        ("What is the sky?", "Was ist der Himmel?", "It is above us.", "Oben.", "Go away.", "Geh."),
    ];
    let lines: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, (pe, pd, ce, cd, re, rd))| {
            serde_json::json!({"id": format!("r{i}"), "prompt": {"en": pe, "de": pd},
                               "chosen": {"en": ce, "de": cd}, "rejected": {"en": re, "de": rd}})
            .to_string()
        })
        .collect();
    std::fs::write(root.join("pairs.jsonl"), lines.join("\n")).unwrap();
}

fn config(base: &(&str, &str), regulariser: &(&str, &str, f64)) -> String {
    let (kind, params) = base;
    let (reg, reg_params, weight) = regulariser;
    format!(
        "[model]\npath = \"base\"\n[data]\ntrain = \"pairs.jsonl\"\nlanguages = [\"en\", \"de\"]\nmax_length = 64\n\
         [[objective]]\nkind = \"{kind}\"\n{params}[[objective]]\nkind = \"{reg}\"\nname = \"reg\"\nweight = {weight}\n\
         {reg_params}[optim]\nlr = 1e-3\nwarmup_ratio = 0.0\n[train]\nbatch_size = 2\nmax_steps = {STEPS}\nseed = 3\n"
    )
}

fn metrics(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn max_weight_change(a: &Path, b: &Path) -> f64 {
    let read = |d: &Path| tch::Tensor::read_safetensors(d.join("model.safetensors")).unwrap();
    let (a, b) = (read(a), read(b));
    a.iter()
        .map(|(name, t)| {
            let (_, u) = b.iter().find(|(n, _)| n == name).expect("same tensors");
            (t - u).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

#[test]
fn every_base_objective_stacks_with_every_regulariser() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    workspace(root);
    for base in BASES {
        for regulariser in REGULARISERS {
            let label = format!("{} + {} {}", base.0, regulariser.2, regulariser.0);
            let path = root.join("run.toml");
            std::fs::write(&path, config(base, regulariser)).unwrap();
            let run_config = RunConfig::from_file(&path).unwrap();
            let out: PathBuf = root.join(format!("{}-{}-{}", base.0, regulariser.0, regulariser.2));
            let summary =
                train(&run_config, &path, &TrainOptions::new(&out)).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(summary.steps, STEPS as u64, "{label}");
            let lines = metrics(&out);
            assert_eq!(lines.len(), STEPS, "{label}: one metrics line per step");
            for line in &lines {
                let term = |name: &str| {
                    let v = line[format!("loss/{name}")].as_f64();
                    v.unwrap_or_else(|| panic!("{label}: loss/{name} not logged in {line}"))
                };
                let (base_loss, reg_loss, total) = (term(base.0), term("reg"), line["loss"].as_f64().unwrap());
                assert!(base_loss.is_finite() && reg_loss.is_finite() && total.is_finite(), "{label}: {line}");
                let expected = base_loss + regulariser.2 * reg_loss;
                assert!((total - expected).abs() <= 1e-5 * (1.0 + expected.abs()), "{label}: {total} != {expected}");
                assert!(line["tokens"].as_f64().unwrap() > 0.0, "{label}");
            }
            let change = max_weight_change(&root.join("base"), &summary.saved);
            assert!(change > 0.0, "{label}: the weights did not move");
        }
    }
}
