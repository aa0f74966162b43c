//! `align train --plan`: the memory plan of a config from the model folder's `config.json`
//! alone (a folder without weights works), as a table or JSON, checked against
//! `--device-memory`; bad sizes and missing arguments are usage errors naming the option.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use align_train::plan::{param_counts, GIB};
use lm_backend::{tensor_specs, ModelConfig};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lm-backend/tests/fixtures");

fn align(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align")).current_dir(dir).args(args).output().expect("the align binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `root/model` holding only the `config.json` of the lm-backend fixture `fixture`, and
/// `root/run.toml` (DPO + MLC over two languages) training it on a data file that does not
/// exist.
fn config_only(root: &Path, fixture: &str) -> std::path::PathBuf {
    let model = root.join("model");
    fs::create_dir_all(&model).unwrap();
    fs::copy(Path::new(FIXTURES).join(fixture).join("config.json"), model.join("config.json")).unwrap();
    let run = root.join("run.toml");
    let toml = "[model]\npath = \"model\"\ndtype = \"bf16\"\ndevice = \"cuda\"\n\
                [data]\ntrain = \"pairs.jsonl\"\nlanguages = [\"en\", \"de\"]\nmax_length = 64\n\
                [[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 2\nweight = 0.5\n\
                [train]\nbatch_size = 2\n";
    fs::write(&run, toml).unwrap();
    run
}

/// Thousands-separated, as the table prints counts.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    s.chars()
        .enumerate()
        .flat_map(|(i, c)| (i > 0 && (s.len() - i) % 3 == 0).then_some(',').into_iter().chain([c]))
        .collect()
}

#[test]
fn plan_of_a_folder_with_only_config_json() {
    for fixture in ["llama", "qwen2", "gemma2"] {
        let dir = tempfile::tempdir().unwrap();
        config_only(dir.path(), fixture);
        let out = align(dir.path(), &["train", "--config", "run.toml", "--plan"]);
        assert!(out.status.success(), "{fixture}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        let c = ModelConfig::from_dir(dir.path().join("model")).unwrap();
        let total: i64 = tensor_specs(&c).iter().map(|s| s.shape.iter().product::<i64>()).sum();
        assert!(stdout.contains("no weights loaded"), "{stdout}");
        assert!(stdout.contains(&format!("{} parameters", thousands(total as u64))), "{fixture}: {stdout}");
        for row in ["weights", "gradients", "optimizer state", "master weights", "activations", "logits", "peak"] {
            assert!(stdout.contains(row), "{fixture}: no `{row}` in {stdout}");
        }
        assert!(stdout.contains("prompt variants (MLC)"), "{stdout}");
        assert!(stdout.contains("worst case that max_length = 64 allows"), "{stdout}");
        assert!(!dir.path().join("runs").exists(), "--plan trains nothing and writes no run folder");
    }
}

#[test]
fn plan_as_json_with_a_device_check() {
    let dir = tempfile::tempdir().unwrap();
    config_only(dir.path(), "llama");
    let args =
        ["train", "--config", "run.toml", "--plan", "--json", "--device-memory", "24GiB", "--prompt-tokens", "8"];
    let out = align(dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let c = ModelConfig::from_dir(dir.path().join("model")).unwrap();
    let p = param_counts(&c);
    assert_eq!(v["plan"]["model"]["params"]["total"].as_u64(), Some(p.total));
    assert_eq!(v["plan"]["terms"]["weights"].as_u64(), Some(2 * p.total), "bf16");
    assert_eq!(v["plan"]["terms"]["master_weights"].as_u64(), Some(4 * p.total));
    assert_eq!(v["plan"]["run"]["shape"]["prompt"].as_u64(), Some(8));
    assert_eq!(v["plan"]["run"]["shape"]["completion"].as_u64(), Some(56));
    assert_eq!(v["fit"]["device_bytes"].as_u64(), Some(24 * GIB));
    assert_eq!(v["fit"]["fits"].as_bool(), Some(true), "a tiny model fits 24 GiB");
    let peak = v["plan"]["phases"]["peak"].as_u64().unwrap();
    assert_eq!(v["fit"]["required_bytes"].as_u64(), Some(peak + peak / 10 + GIB));

    // A device smaller than the headroom: no fit, and a suggestion that says it cannot.
    let out = align(dir.path(), &["train", "--config", "run.toml", "--plan", "--device-memory", "512MiB"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("does NOT fit") && stdout.contains("no fit:"), "{stdout}");
}

#[test]
fn bad_sizes_and_missing_arguments_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    config_only(dir.path(), "llama");
    for (bad, says) in [("80", "no unit"), ("eighty GiB", "not a memory size"), ("-3GB", "positive")] {
        let flag = format!("--device-memory={bad}");
        let out = align(dir.path(), &["train", "--config", "run.toml", "--plan", &flag]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("--device-memory") && stderr.contains(says) && stderr.contains("80GiB"), "{stderr}");
    }
    let out = align(dir.path(), &["train", "--plan"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--config"), "{}", text(&out.stderr));
    let out = align(dir.path(), &["train", "--config", "run.toml", "--device-memory", "80GiB"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--plan"), "{}", text(&out.stderr));
    // A model folder without config.json: exit 1 naming the file.
    fs::remove_file(dir.path().join("model/config.json")).unwrap();
    let out = align(dir.path(), &["train", "--config", "run.toml", "--plan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("config.json"), "{}", text(&out.stderr));
}
