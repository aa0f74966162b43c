//! Runs side by side: `align report` reads the evaluation outputs and training metrics under
//! each run (or eval) folder and writes one Markdown report, with a table per metric
//! (languages as columns, one row per run, then the average and the variance over the
//! languages), and PNG charts of the same numbers. `align demo` renders its tables through
//! this module too, so the demo and a report of real runs look alike.
//!
//! - [`load_run`]: a folder → [`RunSummary`] (what it finds: `safety.json`, `utility.json`,
//!   reward-gap and consistency JSON, `metrics.jsonl`).
//! - [`render_markdown`]: runs → the Markdown text ([`ReportOptions`]: title, introduction,
//!   language order).
//! - [`draw_plots`]: runs → PNG charts ([`crate::chart`]); [`write_report`] does both into a
//!   folder.
//!
//! ```
//! use align_train::report::{render_markdown, ReportOptions, RunSummary};
//! use std::collections::BTreeMap;
//!
//! let asr = |en: f64, sw: f64| BTreeMap::from([("en".to_string(), en), ("sw".to_string(), sw)]);
//! let runs = vec![
//!     RunSummary { attack_success_rate: Some(asr(0.1, 0.9)), ..RunSummary::named("base") },
//!     RunSummary { attack_success_rate: Some(asr(0.0, 0.3)), ..RunSummary::named("dpo+mlc") },
//! ];
//! let text = render_markdown(&runs, &ReportOptions::new("Two runs"), &[]);
//! assert!(text.contains("| dpo+mlc | 0.000 | 0.300 | 0.150 | 0.0225 |"), "{text}");
//! ```

mod load;
mod markdown;
mod plots;

pub use load::{load_run, read_metrics};
pub use markdown::{mean_and_variance, render_markdown};
pub use plots::{draw_plots, Plot};

use crate::eval::ConsistencyReport;
use crate::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Utility numbers of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct UtilitySummary {
    /// What the accuracy measures (`utility.json`'s `metric`, e.g. `exact_number`).
    pub metric: String,
    /// Accuracy per language.
    pub accuracy: BTreeMap<String, f64>,
}

/// Everything the report shows about one run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunSummary {
    /// The row label.
    pub name: String,
    /// Attack success rate per language (`safety.json`).
    pub attack_success_rate: Option<BTreeMap<String, f64>>,
    /// Utility per language (`utility.json`).
    pub utility: Option<UtilitySummary>,
    /// Mean reward gap per language (the `align eval reward-gap` JSON).
    pub reward_gap: Option<BTreeMap<String, f64>>,
    /// Collinearity by layer (the `align eval consistency` JSON).
    pub consistency: Option<ConsistencyReport>,
    /// The numeric fields of each `metrics.jsonl` line, in step order.
    pub training: Option<Vec<BTreeMap<String, f64>>>,
    /// The files these numbers were read from.
    pub files: Vec<PathBuf>,
}

impl RunSummary {
    /// A run with this label and no numbers yet.
    pub fn named(name: impl Into<String>) -> Self {
        RunSummary { name: name.into(), ..RunSummary::default() }
    }

    /// The utility accuracy per language when the run's utility metric is `metric`.
    pub fn utility_accuracy(&self, metric: &str) -> Option<&BTreeMap<String, f64>> {
        self.utility.as_ref().filter(|u| u.metric == metric).map(|u| &u.accuracy)
    }
}

/// The report's title, introduction and column order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// The `#` heading.
    pub title: String,
    /// Paragraphs under the title (Markdown).
    pub intro: Vec<String>,
    /// The language columns in order; `None`: every language of the runs, `en` first, the
    /// others sorted.
    pub languages: Option<Vec<String>>,
    /// The heading of each utility metric's table and chart, by metric (default: the metric's
    /// name).
    pub utility_titles: BTreeMap<String, String>,
}

impl ReportOptions {
    /// Options with this title and the defaults otherwise.
    pub fn new(title: impl Into<String>) -> Self {
        ReportOptions { title: title.into(), intro: vec![], languages: None, utility_titles: BTreeMap::new() }
    }

    /// The language columns of `runs`.
    pub fn languages_of(&self, runs: &[RunSummary]) -> Vec<String> {
        if let Some(l) = &self.languages {
            return l.clone();
        }
        let mut all: Vec<String> = runs
            .iter()
            .flat_map(|r| {
                let maps =
                    [r.attack_success_rate.as_ref(), r.utility.as_ref().map(|u| &u.accuracy), r.reward_gap.as_ref()];
                maps.into_iter().flatten().flat_map(|m| m.keys().cloned()).collect::<Vec<_>>()
            })
            .collect();
        all.sort();
        all.dedup();
        if let Some(i) = all.iter().position(|l| l == "en") {
            let en = all.remove(i);
            all.insert(0, en);
        }
        all
    }

    /// The heading of a utility metric.
    pub fn utility_title(&self, metric: &str) -> String {
        self.utility_titles.get(metric).cloned().unwrap_or_else(|| match metric {
            crate::eval::utility::EXACT_NUMBER => "Utility: exact-answer accuracy (higher is better)".to_string(),
            other => format!("Utility: {other} (higher is better)"),
        })
    }
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// The charts.
    pub plots: Vec<PathBuf>,
}

/// Draws the charts into `dir` (created) and writes `dir/report.md` (atomically) linking them.
pub fn write_report(runs: &[RunSummary], options: &ReportOptions, dir: &Path) -> Result<ReportFiles> {
    std::fs::create_dir_all(dir).map_err(|e| crate::TrainError::io(dir, e))?;
    let plots = draw_plots(runs, options, dir)?;
    let text = render_markdown(runs, options, &plots);
    let markdown = dir.join("report.md");
    lm_backend::atomic::write_file(&markdown, text.as_bytes())?;
    Ok(ReportFiles { markdown, plots: plots.iter().map(|p| dir.join(&p.file)).collect() })
}
