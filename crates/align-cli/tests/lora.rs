//! LoRA end to end through the `align` binary on the tiny Llama fixture: `align train` with
//! `[lora]` (checkpoints, resume), `align merge`, and adapter folders as `--model` of
//! `align eval` and `align generate`, which compute what the merged model computes; bad
//! adapters and missing bases exit with 1 and say what to do.

mod common;

use common::*;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// A temp folder with `base/` (the tiny Llama and the fixture tokenizer) and `pairs.jsonl`.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    model_dir(&root, "base");
    let records = [
        (
            "a",
            "How do I open a lock?",
            "Wie öffne ich ein Schloss?",
            "I cannot help.",
            "Ich kann nicht.",
            "Pick it.",
            "Nadel.",
        ),
        ("b", "Tell me a story.", "Erzähl mir etwas.", "Once upon a time.", "Es war einmal.", "No.", "Nein."),
        (
            "c",
            "How to make a fire?",
            "Wie macht man Feuer?",
            "Use dry wood.",
            "Trockenes Holz.",
            "Burn it.",
            "Das Haus.",
        ),
        ("d", "What is the sky?", "Was ist der Himmel?", "It is above us.", "Er ist oben.", "Go away.", "Geh weg."),
    ];
    let lines: Vec<String> = records
        .iter()
        .map(|(id, pe, pd, ce, cd, re, rd)| {
            serde_json::json!({"id": id, "prompt": {"en": pe, "de": pd}, "chosen": {"en": ce, "de": cd},
                               "rejected": {"en": re, "de": rd}})
            .to_string()
        })
        .collect();
    fs::write(root.join("pairs.jsonl"), lines.join("\n")).unwrap();
    (tmp, root)
}

fn config_text(max_steps: usize) -> String {
    format!(
        "[model]\npath = \"base\"\n[data]\ntrain = \"pairs.jsonl\"\nlanguages = [\"en\", \"de\"]\nmax_length = 64\n\
         [[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 2\nweight = 0.5\n\
         [optim]\nlr = 1e-2\nwarmup_ratio = 0.0\nschedule = \"constant\"\n\
         [train]\nbatch_size = 2\nmax_steps = {max_steps}\nseed = 7\nsave_every = 2\n\
         [lora]\nr = 4\nalpha = 8\ndropout = 0.1\ntarget_modules = [\"q_proj\", \"v_proj\", \"down_proj\"]\n"
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn adapter_tensors(dir: &Path) -> Vec<(String, tch::Tensor)> {
    let mut t = tch::Tensor::read_safetensors(dir.join("adapter_model.safetensors")).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn lora_train_resume_merge_and_evaluate_the_adapter_folder() {
    let (_tmp, root) = setup();
    let (full, short) = (root.join("full.toml"), root.join("short.toml"));
    fs::write(&full, config_text(4)).unwrap();
    fs::write(&short, config_text(3)).unwrap();
    let (a, b) = (root.join("a"), root.join("b"));
    align_ok(&["train", "--config", path(&full), "--output", path(&a)]);
    // A run stopped after step 3 (last checkpoint: checkpoint-2), resumed up to step 4.
    align_ok(&["train", "--config", path(&short), "--output", path(&b)]);
    let stdout = align_ok(&["train", "--config", path(&full), "--output", path(&b), "--resume"]);
    assert!(stdout.contains("finished: 4 optimizer steps"), "{stdout}");
    for dir in [a.join("checkpoint-2"), a.join("final"), b.join("final")] {
        assert!(dir.join("adapter_config.json").is_file() && !dir.join("model.safetensors").exists(), "{dir:?}");
    }
    for ((n, x), (m, y)) in adapter_tensors(&a.join("final")).iter().zip(&adapter_tensors(&b.join("final"))) {
        assert_eq!(n, m);
        let d = (x - y).abs().max().double_value(&[]);
        assert!(d < 1e-6, "{n}: the resumed run's adapter differs by {d}");
    }

    let merged = root.join("merged");
    let stdout = align_ok(&[
        "merge",
        "--base",
        path(&root.join("base")),
        "--adapter",
        path(&b.join("final")),
        "--output",
        path(&merged),
    ]);
    assert!(stdout.contains("adapted projections: 9"), "{stdout}");
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        assert!(merged.join(f).is_file(), "merged/{f}");
    }
    let e = align_fails(&[
        "merge",
        "--base",
        path(&root.join("base")),
        "--adapter",
        path(&b.join("final")),
        "--output",
        path(&merged),
    ]);
    assert!(e.contains("--overwrite"), "{e}");

    // The adapter folder as --model (base found through its absolute base path) scores the
    // pairs as the merged model does.
    let (ra, rm) = (root.join("gap_adapter.json"), root.join("gap_merged.json"));
    let data = root.join("pairs.jsonl");
    align_ok(&["eval", "reward-gap", "--model", path(&b.join("final")), "--data", path(&data), "--output", path(&ra)]);
    align_ok(&["eval", "reward-gap", "--model", path(&merged), "--data", path(&data), "--output", path(&rm)]);
    let base_gap = root.join("gap_base.json");
    align_ok(&[
        "eval",
        "reward-gap",
        "--model",
        path(&root.join("base")),
        "--data",
        path(&data),
        "--output",
        path(&base_gap),
    ]);
    let (x, y, z) = (read_json(&ra), read_json(&rm), read_json(&base_gap));
    let records = |v: &Value| v["records"].as_array().unwrap().clone();
    assert_eq!(records(&x).len(), 8, "4 records x 2 languages");
    let mut moved: f64 = 0.0;
    for ((p, q), r) in records(&x).iter().zip(&records(&y)).zip(&records(&z)) {
        assert_eq!(p["id"], q["id"]);
        for key in ["chosen_avg_logp", "rejected_avg_logp", "reward_gap"] {
            let (u, v, w) = (p[key].as_f64().unwrap(), q[key].as_f64().unwrap(), r[key].as_f64().unwrap());
            assert!((u - v).abs() < 1e-5, "{} {key}: adapter {u} vs merged {v}", p["id"]);
            moved = moved.max((u - w).abs());
        }
    }
    assert!(moved > 1e-3, "the adapter changed the scores (by {moved})");

    // generate: the adapter folder and the merged folder continue a prompt alike.
    let completion = |model: &Path| {
        let out =
            align_ok(&["generate", "--model", path(model), "--prompt", "Tell me", "--max-new-tokens", "8", "--json"]);
        serde_json::from_str::<Value>(out.trim()).unwrap()["completion_ids"].clone()
    };
    assert_eq!(completion(&b.join("final")), completion(&merged));
}

#[test]
fn adapter_folders_without_their_base_or_for_another_model_are_clear_errors() {
    let (_tmp, root) = setup();
    let data = root.join("pairs.jsonl");
    // A PEFT adapter whose base (given relative to the folder) is not there.
    let moved = root.join("adapter");
    fs::create_dir_all(&moved).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        fs::copy(Path::new(FIXTURES).join("peft-llama").join(f), moved.join(f)).unwrap();
    }
    let e = align_fails(&["eval", "reward-gap", "--model", path(&moved), "--data", path(&data)]);
    assert!(e.contains("../llama") && e.contains("--base DIR"), "{e}");
    // ... found with --base.
    align_ok(&[
        "eval",
        "reward-gap",
        "--model",
        path(&moved),
        "--base",
        path(&root.join("base")),
        "--data",
        path(&data),
    ]);
    let e = align_fails(&[
        "eval",
        "reward-gap",
        "--model",
        path(&root.join("base")),
        "--base",
        path(&root.join("base")),
        "--data",
        path(&data),
    ]);
    assert!(e.contains("--base") && e.contains("is a model folder"), "{e}");

    // merge: not an adapter folder; an adapter made for a qwen2 model onto a llama base.
    let out = root.join("merged");
    let base = root.join("base");
    let e = align_fails(&["merge", "--base", path(&base), "--adapter", path(&base), "--output", path(&out)]);
    assert!(e.contains("not an adapter folder") && e.contains("adapter_config.json"), "{e}");
    let qwen2_adapter = Path::new(FIXTURES).join("peft-qwen2");
    let e = align_fails(&["merge", "--base", path(&base), "--adapter", path(&qwen2_adapter), "--output", path(&out)]);
    assert!(e.contains("made for a `qwen2` model"), "{e}");
    // An adapter whose tensors do not fit the base (a llama adapter on gemma2's wider attention).
    let e = align_fails(&[
        "merge",
        "--base",
        path(&Path::new(FIXTURES).join("gemma2")),
        "--adapter",
        path(&moved),
        "--output",
        path(&out),
    ]);
    assert!(e.contains("lora_") && e.contains("has shape"), "{e}");
    assert!(!out.exists(), "nothing written on failure");
}
