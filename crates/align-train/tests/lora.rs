//! Training with `[lora]` on the tiny Llama fixture: only the adapters train (the optimizer
//! holds their state alone), checkpoints are PEFT adapter folders, the reference is the base
//! without adapters (for cached log-probs and for MPO's retain states alike), MLC and MPO
//! train, a resumed run (with adapter dropout) equals an uninterrupted one, and a checkpoint
//! whose adapters differ from `[lora]` is refused.

use align_train::{train, RunConfig, TrainError, TrainOptions};
use lm_backend::lora::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, LoadOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tch::Tensor;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lm-backend/tests/fixtures");

/// `root/base`: the tiny Llama's weights and config with the fixture tokenizer.
fn model_dir(root: &Path) -> PathBuf {
    let dir = root.join("base");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(Path::new(FIXTURES).join("llama").join(f), dir.join(f)).unwrap();
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(Path::new(FIXTURES).join("tokenizer").join(f), dir.join(f)).unwrap();
    }
    dir
}

/// Four multilingual records (en dominant, de variant and target).
fn write_data(root: &Path) {
    let records = [
        (
            "How do I open a lock?",
            "Wie öffne ich ein Schloss?",
            "I cannot help.",
            "Ich kann nicht.",
            "Pick it.",
            "Nadel.",
        ),
        ("Tell me a story.", "Erzähl mir etwas.", "Once upon a time.", "Es war einmal.", "No.", "Nein."),
        ("How to make a fire?", "Wie macht man Feuer?", "Use dry wood.", "Trockenes Holz.", "Burn it.", "Das Haus."),
        ("What is the sky?", "Was ist der Himmel?", "It is above us.", "Er ist oben.", "Go away.", "Geh weg."),
    ];
    let lines: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, (pe, pd, ce, cd, re, rd))| {
            serde_json::json!({"id": i, "prompt": {"en": pe, "de": pd}, "chosen": {"en": ce, "de": cd},
                               "rejected": {"en": re, "de": rd}})
            .to_string()
        })
        .collect();
    std::fs::write(root.join("pairs.jsonl"), lines.join("\n")).unwrap();
}

fn config_text(objectives: &str, model_extra: &str, train_extra: &str, lora: &str) -> String {
    format!(
        "[model]\npath = \"base\"\n{model_extra}\n[data]\ntrain = \"pairs.jsonl\"\nlanguages = [\"en\", \"de\"]\n\
         max_length = 64\n{objectives}\n[optim]\nlr = 1e-2\nwarmup_ratio = 0.0\n[train]\nbatch_size = 2\n\
         max_steps = 3\nseed = 7\n{train_extra}\n[lora]\nr = 4\nalpha = 8\n{lora}"
    )
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    model_dir(&root);
    write_data(&root);
    (dir, root)
}

fn run(root: &Path, text: &str, out: &str, resume: bool) -> Result<align_train::TrainSummary, TrainError> {
    let path = root.join(format!("{out}.toml"));
    std::fs::write(&path, text).unwrap();
    let config = RunConfig::from_file(&path)?;
    train(&config, &path, &TrainOptions::new(root.join(out)).resume(resume))
}

fn metrics(root: &Path, out: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root.join(out).join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn safetensors(path: &Path) -> Vec<(String, Tensor)> {
    Tensor::read_safetensors(path).unwrap()
}

/// Asserts that the runs `a` and `b` logged the same `keys` at every step.
fn same_metrics(root: &Path, a: &str, b: &str, keys: &[&str], tolerance: f64) {
    let (x, y) = (metrics(root, a), metrics(root, b));
    assert_eq!(x.len(), y.len());
    for (u, v) in x.iter().zip(&y) {
        for key in keys {
            let (p, q) = (u[key].as_f64().unwrap(), v[key].as_f64().unwrap());
            assert!((p - q).abs() <= tolerance * (1.0 + p.abs()), "step {}: {key} {p} ({a}) vs {q} ({b})", u["step"]);
        }
    }
}

#[test]
fn lora_trains_the_adapters_only_and_checkpoints_are_peft_folders() {
    let (_dir, root) = setup();
    let text = config_text("[[objective]]\nkind = \"dpo\"\n", "", "save_every = 2\n", "");
    let summary = run(&root, &text, "out", false).unwrap();
    assert_eq!(summary.saved, root.join("out/final"));
    let lines = metrics(&root, "out");
    let first = lines[0]["loss/dpo"].as_f64().unwrap();
    assert!((first - std::f64::consts::LN_2).abs() < 1e-6, "B = 0: the policy is the reference at step 1 ({first})");
    assert!(lines[2]["rewards/margins"].as_f64().unwrap().abs() > 1e-4, "the adapters moved the policy");
    assert!(root.join("out/reference_logps.safetensors").is_file(), "the reference log-probs are cached");

    let base = std::fs::canonicalize(root.join("base")).unwrap();
    for checkpoint in ["checkpoint-2", "final"] {
        let dir = root.join("out").join(checkpoint);
        let mut files: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.sort();
        assert_eq!(
            files,
            [
                ADAPTER_CONFIG,
                ADAPTER_WEIGHTS,
                "optimizer.safetensors",
                "tokenizer.json",
                "tokenizer_config.json",
                "trainer_state.json"
            ],
            "{checkpoint}"
        );
        let config: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(ADAPTER_CONFIG)).unwrap()).unwrap();
        assert_eq!(config["base_model_name_or_path"], base.to_string_lossy().as_ref(), "absolute base path");
        assert_eq!((config["r"].as_u64(), config["lora_alpha"].as_u64()), (Some(4), Some(8)));
        let adapters = safetensors(&dir.join(ADAPTER_WEIGHTS));
        assert_eq!(adapters.len(), 3 * 7 * 2);
        // The optimizer holds the adapters' moments and nothing else.
        let mut state: Vec<String> =
            safetensors(&dir.join("optimizer.safetensors")).into_iter().map(|(n, _)| n).collect();
        state.sort();
        let mut expected: Vec<String> =
            adapters.iter().flat_map(|(n, _)| [format!("m.{n}"), format!("v.{n}")]).collect();
        expected.sort();
        assert_eq!(state, expected, "{checkpoint}: optimizer state of the adapters only");
    }
    let trained = safetensors(&root.join("out/final").join(ADAPTER_WEIGHTS));
    let b_max = trained.iter().filter(|(n, _)| n.contains("lora_B")).map(|(_, t)| t.abs().max().double_value(&[]));
    assert!(b_max.fold(0.0, f64::max) > 1e-4, "B moved away from zero");

    // The final adapter on its base changes the model; the base files were never written.
    let adapted = HfCausalLm::load_adapter_folder(root.join("out/final"), None, LoadOptions::cpu_f32()).unwrap();
    let base_model = HfCausalLm::load(root.join("base"), LoadOptions::cpu_f32()).unwrap();
    let ids = Tensor::from_slice(&[5i64, 9, 2, 17, 3]).unsqueeze(0);
    let logits = |m: &HfCausalLm| m.forward(&ids, &ids.ones_like(), &HiddenRequest::none()).unwrap().logits;
    assert!((logits(&adapted) - logits(&base_model)).abs().max().double_value(&[]) > 1e-4);
    let fixture = safetensors(&Path::new(FIXTURES).join("llama/model.safetensors"));
    for (name, t) in safetensors(&root.join("base/model.safetensors")) {
        assert!(t.equal(&fixture.iter().find(|(n, _)| *n == name).unwrap().1), "{name}: the base is untouched");
    }
}

/// The implicit reference (the policy's base weights, adapters off) and an explicitly loaded
/// copy of the base give the same run, for DPO's cached log-probs, MPO's retain states and
/// MLC alike; the retain term is 0 at step 1 and grows as the adapters move the policy.
#[test]
fn the_reference_is_the_base_without_adapters() {
    let (_dir, root) = setup();
    let stack = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mpo\"\nretain_layer = 2\n\
                 [[objective]]\nkind = \"mlc\"\nlayer = 2\nweight = 0.5\n";
    run(&root, &config_text(stack, "", "", ""), "implicit", false).unwrap();
    run(&root, &config_text(stack, "reference = \"base\"", "", ""), "explicit", false).unwrap();
    let keys = ["loss", "loss/dpo", "loss/mpo", "loss/mlc", "mpo/retain_loss", "grad_norm", "rewards/margins"];
    same_metrics(&root, "implicit", "explicit", &keys, 1e-6);
    let lines = metrics(&root, "implicit");
    let retain = |i: usize| lines[i]["mpo/retain_loss"].as_f64().unwrap();
    eprintln!("mpo/retain_loss by step: {:?}", (0..3).map(retain).collect::<Vec<_>>());
    assert!(retain(0).abs() < 1e-9, "step 1: policy = base up to rounding, retain {}", retain(0));
    assert!(retain(2) > 1e3 * retain(0).abs().max(1e-9), "step 3: the adapters moved the states, retain {}", retain(2));
}

/// An interrupted LoRA run (adapter dropout on, MLC with a projection head) resumed from its
/// checkpoint equals an uninterrupted one: adapters, optimizer state and dropout masks come
/// back. Dropout is active: a run without it differs.
#[test]
fn resumed_lora_run_with_dropout_equals_an_uninterrupted_one() {
    let (_dir, root) = setup();
    let stack = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 2\nhead_dim = 8\n";
    let text = config_text(stack, "", "save_every = 2\ngrad_accum = 2\n", "dropout = 0.3\n")
        .replace("max_steps = 3", "max_steps = 4");
    run(&root, &text, "full", false).unwrap();
    let part = root.join("part");
    std::fs::create_dir_all(part.join("checkpoint-2")).unwrap();
    for e in std::fs::read_dir(root.join("full/checkpoint-2")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), part.join("checkpoint-2").join(e.file_name())).unwrap();
    }
    for f in ["metrics.jsonl", "reference_logps.safetensors", "reference_logps.json"] {
        std::fs::copy(root.join("full").join(f), part.join(f)).unwrap();
    }
    let summary = run(&root, &text, "part", true).unwrap();
    assert_eq!(summary.steps, 4);
    same_metrics(&root, "full", "part", &["loss", "loss/dpo", "loss/mlc", "grad_norm"], 1e-6);
    let sorted = |out: &str| {
        let mut t = safetensors(&root.join(out).join("final").join(ADAPTER_WEIGHTS));
        t.sort_by(|x, y| x.0.cmp(&y.0));
        t
    };
    let (a, b) = (sorted("full"), sorted("part"));
    for ((n, x), (m, y)) in a.iter().zip(&b) {
        assert_eq!(n, m);
        let d = (x - y).abs().max().double_value(&[]);
        assert!(d < 1e-6, "{n}: resumed adapters differ by {d}");
    }

    run(&root, &text.replace("dropout = 0.3", "dropout = 0.0"), "no_dropout", false).unwrap();
    let (x, y) = (metrics(&root, "full"), metrics(&root, "no_dropout"));
    let first = (x[0]["loss"].as_f64().unwrap(), y[0]["loss"].as_f64().unwrap());
    assert!((first.0 - first.1).abs() < 1e-9, "step 1: B = 0, so dropout changes nothing yet");
    let later = (x[3]["loss"].as_f64().unwrap(), y[3]["loss"].as_f64().unwrap());
    assert!((later.0 - later.1).abs() > 1e-7, "dropout is applied in training: {later:?}");
}

#[test]
fn a_checkpoint_with_other_adapters_or_no_lora_section_is_refused() {
    let (_dir, root) = setup();
    let text = config_text("[[objective]]\nkind = \"sft\"\n", "", "save_every = 1\n", "");
    run(&root, &text, "out", false).unwrap();
    let e = run(&root, &text.replace("r = 4", "r = 8"), "out", true).unwrap_err().to_string();
    assert!(e.contains("checkpoint-2") && e.contains("differ from [lora]") && e.contains("r = 8"), "{e}");
    let without = text[..text.find("[lora]").unwrap()].to_string();
    let e = run(&root, &without, "out", true).unwrap_err().to_string();
    assert!(e.contains("LoRA adapter") && e.contains("no [lora]"), "{e}");
    run(&root, &without, "full_ft", false).unwrap();
    let e = run(&root, &text, "full_ft", true).unwrap_err().to_string();
    assert!(e.contains("full model") && e.contains("[lora]"), "{e}");
}
