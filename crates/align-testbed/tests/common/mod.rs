//! Shared set-up of the integration tests: a world written to a temporary folder.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use align_testbed::{write_world, World, WorldConfig};
use serde_json::Value;

/// The default world with `seed`, written to a fresh temporary folder.
pub fn written_world(seed: u64) -> (World, tempfile::TempDir) {
    let world = World::generate(&WorldConfig { seed, ..WorldConfig::default() }).expect("default config is valid");
    let dir = tempfile::tempdir().expect("temporary folder");
    write_world(&world, dir.path()).expect("world written");
    (world, dir)
}

/// Every line of a JSONL file, parsed.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display()))).collect()
}

/// All strings in a JSON value (texts of a record, whichever shape its fields have).
pub fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Object(m) => m.values().flat_map(strings).collect(),
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// Every request sentence of the world (any language, template, concept) -> (lang, template, concept).
pub fn all_requests(world: &World) -> HashMap<String, (usize, usize, usize)> {
    let mut out = HashMap::new();
    for l in 0..world.languages().len() {
        for t in 0..world.request_templates().len() {
            for c in 0..world.concepts().len() {
                out.insert(world.request(l, t, c), (l, t, c));
            }
        }
    }
    out
}

/// The training files written by `write_world`.
pub const TRAINING_FILES: [&str; 4] = ["pretrain.jsonl", "pairs_en.jsonl", "pairs_mlc.jsonl", "pairs_mpo.jsonl"];
