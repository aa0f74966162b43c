//! Helpers shared by the integration tests that run the `align` binary on the tiny fixtures.
#![allow(dead_code)] // each test file uses its own subset

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// lm-backend's fixture folder (tiny models, the fixture tokenizer).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lm-backend/tests/fixtures");

/// Runs `align args` and returns what it did.
pub fn align(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align")).args(args).output().expect("the align binary runs")
}

/// Bytes as text (lossy).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `align args`, asserting exit status 0; returns stdout.
pub fn align_ok(args: &[&str]) -> String {
    let out = align(args);
    assert!(out.status.success(), "align {args:?} failed:\n{}", text(&out.stderr));
    text(&out.stdout)
}

/// Runs `align args`, asserting exit status 1; returns stderr.
pub fn align_fails(args: &[&str]) -> String {
    let out = align(args);
    assert_eq!(out.status.code(), Some(1), "align {args:?}: stdout {} stderr {}", text(&out.stdout), text(&out.stderr));
    text(&out.stderr)
}

/// A model folder `root/name`: the tiny Llama (config, weights, generation config) with the
/// fixture tokenizer.
pub fn model_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors", "generation_config.json"] {
        fs::copy(Path::new(FIXTURES).join("llama").join(f), dir.join(f)).unwrap();
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        fs::copy(Path::new(FIXTURES).join("tokenizer").join(f), dir.join(f)).unwrap();
    }
    dir
}

/// JSONL lines of bilingual preference records, each given as (id, en prompt, de prompt,
/// en chosen, de chosen, en rejected, de rejected).
pub fn pair_lines(records: &[[&str; 7]]) -> Vec<String> {
    records
        .iter()
        .map(|[id, pe, pd, ce, cd, re, rd]| {
            serde_json::json!({"id": id, "prompt": {"en": pe, "de": pd}, "chosen": {"en": ce, "de": cd},
                               "rejected": {"en": re, "de": rd}})
            .to_string()
        })
        .collect()
}
