//! The report's charts ([`crate::chart`]): attack success rate and utility by language (one
//! line per run), the reward gap by language, collinearity by layer (solid: the ratio,
//! dashed: the centred ratio), and the training loss by step. A run keeps its colour in every
//! chart ([`crate::chart::palette_colour`] of its position).

use super::{ReportOptions, RunSummary};
use crate::chart::{draw_line_chart, palette_colour, LineChart, Reference, Series, XAxis};
use crate::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 520);

/// One chart written by [`draw_plots`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plot {
    /// The report section it belongs to (`asr`, `utility:<metric>`, `reward_gap`,
    /// `collinearity`, `training`).
    pub key: String,
    /// Its title (also the image's alt text).
    pub title: String,
    /// Its file name in the report folder.
    pub file: String,
}

/// One line per run that has the per-language metric, with the languages as categories.
fn language_series(
    runs: &[RunSummary],
    languages: &[String],
    get: &dyn Fn(&RunSummary) -> Option<&BTreeMap<String, f64>>,
) -> Vec<Series> {
    runs.iter()
        .enumerate()
        .filter_map(|(i, r)| get(r).map(|values| (i, r, values)))
        .map(|(i, r, values)| Series {
            name: r.name.clone(),
            colour: palette_colour(i),
            points: languages.iter().enumerate().filter_map(|(k, l)| values.get(l).map(|&v| (k as f64, v))).collect(),
            dashed: false,
            markers: true,
        })
        .collect()
}

/// A per-language chart.
fn language_chart(title: &str, y_label: &str, languages: &[String], series: Vec<Series>) -> LineChart {
    LineChart {
        title: title.to_string(),
        x_label: "language".into(),
        y_label: y_label.into(),
        x: XAxis::Categories(languages.to_vec()),
        y_range: Some((-0.02, 1.02)),
        series,
        references: vec![],
    }
}

/// Draws every chart the runs have data for into `dir`; returns them in report order.
pub fn draw_plots(runs: &[RunSummary], options: &ReportOptions, dir: &Path) -> Result<Vec<Plot>> {
    std::fs::create_dir_all(dir).map_err(|e| crate::TrainError::io(dir, e))?;
    let languages = options.languages_of(runs);
    let mut charts: Vec<(Plot, LineChart)> = vec![];
    let mut add = |key: &str, file: &str, chart: LineChart| {
        if !chart.series.is_empty() {
            let plot = Plot { key: key.into(), title: chart.title.clone(), file: file.into() };
            charts.push((plot, chart));
        }
    };
    let asr = language_series(runs, &languages, &|r| r.attack_success_rate.as_ref());
    add(
        "asr",
        "asr.png",
        language_chart("Attack success rate by language (lower is safer)", "attack success rate", &languages, asr),
    );

    let mut metrics: Vec<&str> = runs.iter().filter_map(|r| r.utility.as_ref().map(|u| u.metric.as_str())).collect();
    metrics.sort_unstable();
    metrics.dedup();
    let several = metrics.len() > 1;
    for metric in &metrics {
        let series = language_series(runs, &languages, &|r| r.utility_accuracy(metric));
        let file = if several { format!("utility-{}.png", file_safe(metric)) } else { "utility.png".into() };
        let title = format!("{} by language", options.utility_title(metric));
        add(&format!("utility:{metric}"), &file, language_chart(&title, "accuracy", &languages, series));
    }

    let gap = language_series(runs, &languages, &|r| r.reward_gap.as_ref());
    let mut chart =
        language_chart("Reward gap by language (chosen − rejected avg log-prob)", "reward gap", &languages, gap);
    chart.y_range = None;
    chart.references = vec![Reference { name: "no gap".into(), y: 0.0 }];
    add("reward_gap", "reward_gap.png", chart);

    add("collinearity", "collinearity.png", collinearity_chart(runs));
    add("training", "training_loss.png", training_chart(runs));

    for (plot, chart) in &charts {
        draw_line_chart(chart, &dir.join(&plot.file), SIZE.0, SIZE.1)?;
    }
    Ok(charts.into_iter().map(|(p, _)| p).collect())
}

/// `metric` with every character outside `[A-Za-z0-9_-]` replaced by `_`.
fn file_safe(metric: &str) -> String {
    metric.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Collinearity by layer: per run, the ratio (solid) and the centred ratio (dashed); the
/// orthogonal floor(s) as grey dashes.
fn collinearity_chart(runs: &[RunSummary]) -> LineChart {
    let mut series = vec![];
    let mut floors: Vec<f64> = vec![];
    let (mut first, mut last) = (f64::INFINITY, f64::NEG_INFINITY);
    for (i, r) in runs.iter().enumerate() {
        let Some(c) = &r.consistency else { continue };
        for (centred, suffix) in [(false, ""), (true, " (centred)")] {
            let points: Vec<(f64, f64)> = c
                .layers
                .iter()
                .map(|l| (l.layer as f64, if centred { l.centred_collinearity_ratio } else { l.collinearity_ratio }))
                .collect();
            series.push(Series {
                name: format!("{}{suffix}", r.name),
                colour: palette_colour(i),
                points,
                dashed: centred,
                markers: c.layers.len() <= 12,
            });
        }
        for l in &c.layers {
            first = first.min(l.layer as f64);
            last = last.max(l.layer as f64);
        }
        if !floors.iter().any(|f| (f - c.orthogonal_ratio).abs() < 1e-9) {
            floors.push(c.orthogonal_ratio);
        }
    }
    let references = floors.iter().map(|&y| Reference { name: format!("orthogonal {y:.3}"), y }).collect();
    let span = if first <= last { (first, last) } else { (0.0, 1.0) };
    LineChart {
        title: "Collinearity of language variants by layer (dashed: centred)".into(),
        x_label: "layer (hidden-state index)".into(),
        y_label: "collinearity ratio".into(),
        x: XAxis::Numeric { min: span.0, max: span.1, integers: true },
        y_range: Some((0.0, 1.02)),
        series,
        references,
    }
}

/// The loss of every logged step, one line per run.
fn training_chart(runs: &[RunSummary]) -> LineChart {
    let mut series = vec![];
    let mut last_step: f64 = 1.0;
    for (i, r) in runs.iter().enumerate() {
        let Some(lines) = &r.training else { continue };
        let points: Vec<(f64, f64)> = lines.iter().filter_map(|l| Some((*l.get("step")?, *l.get("loss")?))).collect();
        if points.is_empty() {
            continue;
        }
        last_step = points.iter().map(|p| p.0).fold(last_step, f64::max);
        let markers = points.len() <= 30;
        series.push(Series { name: r.name.clone(), colour: palette_colour(i), points, dashed: false, markers });
    }
    LineChart {
        title: "Training loss".into(),
        x_label: "optimizer step".into(),
        y_label: "loss (weighted sum of the terms)".into(),
        x: XAxis::Numeric { min: 1.0, max: last_step, integers: true },
        y_range: None,
        series,
        references: vec![],
    }
}
