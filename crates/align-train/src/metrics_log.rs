//! `metrics.jsonl`: one JSON object per optimizer step, flushed as it is written.

use crate::{Result, TrainError};
use lm_backend::atomic::write_file;
use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The per-step metrics file of a run.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for a run. A fresh run (`resume_step = None`) starts an empty file. A
    /// resumed run keeps the lines of steps `<= resume_step` (those of the checkpoint it
    /// resumes from) and drops later ones, which the resumed run will log again.
    pub fn open(path: &Path, resume_step: Option<u64>) -> Result<Self> {
        let io = |source| TrainError::Io { path: path.to_path_buf(), source };
        let kept = match resume_step {
            None => String::new(),
            Some(step) if path.exists() => {
                let mut kept = String::new();
                for line in BufReader::new(File::open(path).map_err(io)?).lines() {
                    let line = line.map_err(io)?;
                    let line_step = serde_json::from_str::<Value>(&line).ok().and_then(|v| v.get("step")?.as_u64());
                    if line_step.is_some_and(|s| s <= step) {
                        kept.push_str(&line);
                        kept.push('\n');
                    }
                }
                kept
            }
            Some(_) => String::new(),
        };
        write_file(path, kept.as_bytes())?;
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    /// Appends one step's metrics as a JSON line and flushes it. Whole numbers (`step`,
    /// `tokens`, …) are written as JSON integers; non-finite numbers as strings (`"NaN"`,
    /// `"inf"`), since JSON has no literal for them.
    pub fn append(&mut self, metrics: &[(String, f64)]) -> Result<()> {
        let mut obj = Map::new();
        for (k, v) in metrics {
            let value = if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Value::from(*v as i64)
            } else {
                serde_json::Number::from_f64(*v).map(Value::Number).unwrap_or_else(|| Value::String(v.to_string()))
            };
            obj.insert(k.clone(), value);
        }
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        let io = |source| TrainError::Io { path: self.path.clone(), source };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.flush().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(s: f64, loss: f64) -> Vec<(String, f64)> {
        vec![("step".into(), s), ("loss".into(), loss)]
    }

    #[test]
    fn resume_keeps_earlier_steps_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&p, None).unwrap();
        for s in 1..=4 {
            log.append(&step(s as f64, 0.5)).unwrap();
        }
        drop(log);
        let mut log = MetricsLog::open(&p, Some(2)).unwrap();
        log.append(&step(3.0, f64::NAN)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let steps: Vec<u64> = lines.iter().map(|v| v["step"].as_u64().expect(&text)).collect();
        assert_eq!(steps, vec![1, 2, 3]);
        assert_eq!(lines[2]["loss"], Value::String("NaN".into()));
        assert_eq!(lines[0]["loss"].as_f64(), Some(0.5));
        assert!(text.starts_with("{\"loss\":0.5,\"step\":1}"), "{text}");
    }

    #[test]
    fn fresh_run_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        std::fs::write(&p, "{\"step\":1}\n").unwrap();
        MetricsLog::open(&p, None).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }
}
