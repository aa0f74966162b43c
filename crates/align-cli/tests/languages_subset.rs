//! `align train` with `[data] languages` selecting a subset of the languages of its records
//! (architecture.md, round 2: "selects: other languages in a record are left out and
//! counted"), on the tiny Llama fixture of lm-backend: the run trains on the selected
//! languages instead of stopping at the first record with another one.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lm-backend/tests/fixtures");

/// The records' languages; runs below select two or three of them.
const LANGUAGES: [&str; 5] = ["en", "de", "fr", "sw", "vi"];

fn align(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align")).args(args).output().expect("the align binary runs")
}

/// A temp folder with `base/` (the tiny Llama with the fixture tokenizer) and `pairs.jsonl`
/// (four records whose prompt, chosen and rejected are each in all five languages).
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let base = root.join("base");
    fs::create_dir_all(&base).unwrap();
    for (folder, f) in [("llama", "config.json"), ("llama", "model.safetensors")] {
        fs::copy(Path::new(FIXTURES).join(folder).join(f), base.join(f)).unwrap();
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        fs::copy(Path::new(FIXTURES).join("tokenizer").join(f), base.join(f)).unwrap();
    }
    let in_all = |text: String| -> Value {
        LANGUAGES.iter().map(|l| (l.to_string(), Value::String(format!("{text} ({l})")))).collect()
    };
    let lines: Vec<String> = (0..4)
        .map(|i| {
            serde_json::json!({"id": i, "prompt": in_all(format!("Question {i}?")),
                               "chosen": in_all(format!("Safe answer {i}.")),
                               "rejected": in_all(format!("Unsafe answer {i}."))})
            .to_string()
        })
        .collect();
    fs::write(root.join("pairs.jsonl"), lines.join("\n")).unwrap();
    (dir, root)
}

/// Runs `align train` with `languages` and `objectives`; asserts success and three metrics
/// lines with a finite loss; returns those lines and the run's stderr.
fn train_ok(root: &Path, name: &str, languages: &str, objectives: &str) -> (Vec<Value>, String) {
    let config = format!(
        "[model]\npath = \"base\"\n[data]\ntrain = \"pairs.jsonl\"\nlanguages = {languages}\nmax_length = 64\n\
         {objectives}\n[optim]\nlr = 1e-3\nwarmup_ratio = 0.0\n[train]\nbatch_size = 2\nmax_steps = 3\nseed = 7\n"
    );
    let config_path = root.join(format!("{name}.toml"));
    fs::write(&config_path, config).unwrap();
    let out = root.join(name);
    let result = align(&["train", "--config", config_path.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(result.status.success(), "{name}: align train failed:\n{stderr}");
    assert!(String::from_utf8_lossy(&result.stdout).contains("finished: 3 optimizer steps"), "{name}");
    let metrics = fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let lines: Vec<Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{name}");
    assert!(lines.iter().all(|l| l["loss"].as_f64().is_some_and(f64::is_finite)), "{name}: {metrics}");
    (lines, stderr)
}

#[test]
fn train_on_a_subset_of_the_records_languages() {
    let (_tmp, root) = setup();
    let mlc = "[[objective]]\nkind = \"mlc\"\nweight = 0.5\nlayer = 2\n";
    let (lines, stderr) =
        train_ok(&root, "dpo_mlc", "[\"en\", \"sw\", \"vi\"]", &format!("[[objective]]\nkind = \"dpo\"\n{mlc}"));
    assert!(lines.iter().all(|l| l["loss/mlc"].as_f64().is_some_and(f64::is_finite)), "{lines:?}");
    // Reported once for the run: 4 records x (prompt, chosen, rejected) per left-out language.
    let report = "left out texts in languages not in [data] languages: de 12, fr 12";
    assert_eq!(stderr.matches(report).count(), 1, "{stderr}");
    // MPO's target pairs: the selected target language only.
    let (lines, _) = train_ok(&root, "mpo", "[\"en\", \"de\"]", "[[objective]]\nkind = \"mpo\"\n");
    for line in &lines {
        assert!(line["reward_gap/de"].as_f64().is_some_and(f64::is_finite), "{line}");
        for left_out in ["fr", "sw", "vi"] {
            assert!(line.get(format!("reward_gap/{left_out}")).is_none(), "{line}");
        }
    }
    let (_, stderr) = train_ok(&root, "dominant_only", "[\"en\"]", "[[objective]]\nkind = \"dpo\"\n");
    assert!(stderr.contains("left out texts in languages not in [data] languages: de 12, fr 12, sw 12, vi 12"));
}
