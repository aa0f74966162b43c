//! Finding a run's numbers on disk. Files are recognised by their content, not their name,
//! since `align eval reward-gap --output` and `consistency --output` take any file name:
//! a JSON object whose `per_language` entries have `attack_success_rate` is a safety report,
//! `accuracy` a utility report, `reward_gap_mean` a reward-gap report; one whose `layers`
//! entries have `collinearity_ratio` is a consistency report. `metrics.jsonl` is the training
//! log. Model folders (`config.json` beside weights or an adapter) and `checkpoint-*` folders
//! are not searched.

use super::{RunSummary, UtilitySummary};
use crate::eval::{RewardGapReport, SafetyReport, UtilityReport};
use crate::{Result, TrainError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How deep below the given folder files are looked for.
const MAX_DEPTH: usize = 6;

/// The kinds of files a run folder may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Safety,
    Utility,
    RewardGap,
    Consistency,
    Training,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Safety => "safety reports",
            Kind::Utility => "utility reports",
            Kind::RewardGap => "reward-gap reports",
            Kind::Consistency => "consistency reports",
            Kind::Training => "training logs (metrics.jsonl)",
        }
    }
}

/// Whether `dir` is a model folder (weights or an adapter beside `config.json`).
fn is_model_folder(dir: &Path) -> bool {
    let has = |f: &str| dir.join(f).is_file();
    (has("config.json") && (has("model.safetensors") || has("model.safetensors.index.json")))
        || has("adapter_config.json")
}

/// The files below `dir` worth reading, sorted, skipping model and checkpoint folders.
fn candidate_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if depth < MAX_DEPTH && !name.starts_with("checkpoint-") && !is_model_folder(&path) {
                candidate_files(&path, depth + 1, out)?;
            }
        } else if name == "metrics.jsonl" || name.ends_with(".json") {
            out.push(path);
        }
    }
    Ok(())
}

/// The kind of a parsed JSON file, if it is one the report reads.
fn kind_of(value: &Value) -> Option<Kind> {
    let per_language = value.get("per_language").and_then(Value::as_object);
    if let Some(first) = per_language.and_then(|m| m.values().next()) {
        for (field, kind) in
            [("attack_success_rate", Kind::Safety), ("accuracy", Kind::Utility), ("reward_gap_mean", Kind::RewardGap)]
        {
            if first.get(field).is_some() {
                return Some(kind);
            }
        }
    }
    let layers = value.get("layers").and_then(Value::as_array);
    layers.and_then(|l| l.first()).and_then(|l| l.get("collinearity_ratio")).map(|_| Kind::Consistency)
}

/// Reads a training log: the numeric fields of each line (other fields are left out). A line
/// that is not a JSON object is [`TrainError::BadRecord`] naming the file and line.
pub fn read_metrics(path: &Path) -> Result<Vec<BTreeMap<String, f64>>> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut lines = vec![];
    for (k, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| TrainError::BadRecord { path: path.to_path_buf(), line: k + 1, why };
        let value: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let object = value.as_object().ok_or_else(|| bad("expected a JSON object".into()))?;
        lines.push(object.iter().filter_map(|(key, v)| v.as_f64().map(|x| (key.clone(), x))).collect());
    }
    Ok(lines)
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| TrainError::BadRecord {
        path: path.to_path_buf(),
        line: 0,
        why: e.to_string(),
    })
}

/// Everything the report can show about the run or eval folder `dir`, labelled `name`.
///
/// Each kind of file may occur once below `dir`; two of one kind (e.g. the safety reports of
/// two models) are an error naming both, since they would be two rows: pass their folders
/// separately. A folder with none of them is an error too. A `.json` file that is not JSON
/// is an error naming it; JSON of other shapes (configs, `results.json`) is passed over.
pub fn load_run(dir: &Path, name: impl Into<String>) -> Result<RunSummary> {
    if !dir.is_dir() {
        return Err(TrainError::input(dir.display().to_string(), "not a folder"));
    }
    let mut files = vec![];
    candidate_files(dir, 0, &mut files)?;
    let mut found: BTreeMap<Kind, (PathBuf, Option<Value>)> = BTreeMap::new();
    for path in files {
        let (kind, value) = if path.file_name().is_some_and(|n| n == "metrics.jsonl") {
            (Kind::Training, None)
        } else {
            let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
            let value: Value = serde_json::from_str(&text).map_err(|e| TrainError::BadRecord {
                path: path.clone(),
                line: 0,
                why: format!("not JSON: {e}"),
            })?;
            match kind_of(&value) {
                Some(kind) => (kind, Some(value)),
                None => continue,
            }
        };
        if let Some((first, _)) = found.get(&kind) {
            return Err(TrainError::input(
                dir.display().to_string(),
                format!(
                    "two {} ({} and {}); pass the folders that hold one each",
                    kind.describe(),
                    first.display(),
                    path.display()
                ),
            ));
        }
        found.insert(kind, (path, value));
    }
    if found.is_empty() {
        return Err(TrainError::input(
            dir.display().to_string(),
            "no safety, utility, reward-gap or consistency JSON and no metrics.jsonl below it",
        ));
    }
    let mut run = RunSummary::named(name);
    for (kind, (path, value)) in found {
        let value = value.unwrap_or(Value::Null);
        match kind {
            Kind::Safety => {
                let r: SafetyReport = parse(&path, value)?;
                run.attack_success_rate =
                    Some(r.per_language.into_iter().map(|(l, s)| (l, s.attack_success_rate)).collect());
            }
            Kind::Utility => {
                let r: UtilityReport = parse(&path, value)?;
                let accuracy = r.per_language.into_iter().map(|(l, u)| (l, u.accuracy)).collect();
                run.utility = Some(UtilitySummary { metric: r.metric, accuracy });
            }
            Kind::RewardGap => {
                let r: RewardGapReport = parse(&path, value)?;
                run.reward_gap = Some(r.per_language.into_iter().map(|(l, g)| (l, g.reward_gap_mean)).collect());
            }
            Kind::Consistency => run.consistency = Some(parse(&path, value)?),
            Kind::Training => run.training = Some(read_metrics(&path)?),
        }
        run.files.push(path);
    }
    Ok(run)
}
