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
    let shown: Vec<(usize, &RunSummary, &BTreeMap<String, f64>)> =
        runs.iter().enumerate().filter_map(|(i, r)| get(r).map(|values| (i, r, values))).collect();
    let centre = (shown.len() as f64 - 1.0) / 2.0;
    shown
        .iter()
        .enumerate()
        .map(|(k, &(i, r, values))| {
            let dodge = (k as f64 - centre) * DODGE;
            Series {
                name: r.name.clone(),
                colour: palette_colour(i),
                points: languages
                    .iter()
                    .enumerate()
                    .filter_map(|(x, l)| values.get(l).map(|&v| (x as f64 + dodge, v)))
                    .collect(),
                dashed: false,
                markers: true,
            }
        })
        .collect()
}

/// How far apart (in language positions) the runs' points are drawn at one language, so that
/// runs with equal values stay visible side by side instead of one hiding the other.
const DODGE: f64 = 0.04;

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
/// orthogonal floor(s) as grey dashes. When every run was measured at the same single layer,
/// the runs are the x axis instead: one line for the ratio, one for the centred ratio.
fn collinearity_chart(runs: &[RunSummary]) -> LineChart {
    let measured: Vec<&RunSummary> = runs.iter().filter(|r| r.consistency.is_some()).collect();
    let mut layers: Vec<usize> =
        measured.iter().flat_map(|r| r.consistency.as_ref().unwrap().layers.iter().map(|l| l.layer)).collect();
    layers.sort_unstable();
    layers.dedup();
    if let [layer] = layers[..] {
        return one_layer_chart(&measured, layer);
    }
    layers_chart(runs)
}

/// The ratio and the centred ratio of each run at one layer, runs as categories.
fn one_layer_chart(runs: &[&RunSummary], layer: usize) -> LineChart {
    let value = |r: &RunSummary, centred: bool| {
        let l = &r.consistency.as_ref().unwrap().layers[0];
        if centred {
            l.centred_collinearity_ratio
        } else {
            l.collinearity_ratio
        }
    };
    let line = |name: &str, colour: usize, centred: bool| Series {
        name: name.into(),
        colour: palette_colour(colour),
        points: runs.iter().enumerate().map(|(x, r)| (x as f64, value(r, centred))).collect(),
        dashed: centred,
        markers: true,
    };
    let mut floors: Vec<f64> = runs.iter().map(|r| r.consistency.as_ref().unwrap().orthogonal_ratio).collect();
    floors.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    LineChart {
        title: format!("Collinearity of language variants at layer {layer}"),
        x_label: "run".into(),
        y_label: "collinearity ratio".into(),
        x: XAxis::Categories(runs.iter().map(|r| r.name.clone()).collect()),
        y_range: Some((0.0, 1.02)),
        series: vec![line("ratio", 0, false), line("centred ratio", 3, true)],
        references: floors.into_iter().map(|y| Reference { name: format!("orthogonal {y:.3}"), y }).collect(),
    }
}

/// Collinearity over several layers, one pair of lines per run.
fn layers_chart(runs: &[RunSummary]) -> LineChart {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{ConsistencyReport, LayerConsistency};

    fn measured(name: &str, layers: &[usize]) -> RunSummary {
        let layers = layers
            .iter()
            .map(|&layer| LayerConsistency {
                layer,
                collinearity_ratio: 0.5,
                mean_pairwise_cosine: 0.5,
                centred_collinearity_ratio: 0.25,
                centred_mean_pairwise_cosine: 0.25,
            })
            .collect();
        let consistency = ConsistencyReport { n_groups: 1, n_prompts: 2, orthogonal_ratio: 0.5, layers };
        RunSummary { consistency: Some(consistency), ..RunSummary::named(name) }
    }

    #[test]
    fn one_layer_puts_the_runs_on_the_x_axis_and_several_layers_the_layers() {
        let one = collinearity_chart(&[measured("a", &[2]), RunSummary::named("none"), measured("b", &[2])]);
        assert_eq!(one.x, XAxis::Categories(vec!["a".into(), "b".into()]));
        assert_eq!(one.series.len(), 2);
        assert_eq!(one.series[1].points, vec![(0.0, 0.25), (1.0, 0.25)]);
        assert_eq!(one.references.len(), 1);
        let many = collinearity_chart(&[measured("a", &[0, 1, 2]), measured("b", &[1, 2])]);
        assert_eq!(many.x, XAxis::Numeric { min: 0.0, max: 2.0, integers: true });
        assert_eq!(many.series.len(), 4);
        assert_eq!(many.series[3].name, "b (centred)");
    }

    #[test]
    fn runs_are_dodged_around_each_language() {
        let values = BTreeMap::from([("en".to_string(), 1.0)]);
        let runs: Vec<RunSummary> = (0..3)
            .map(|i| RunSummary { reward_gap: Some(values.clone()), ..RunSummary::named(format!("r{i}")) })
            .collect();
        let series = language_series(&runs, &["en".into()], &|r| r.reward_gap.as_ref());
        let xs: Vec<f64> = series.iter().map(|s| s.points[0].0).collect();
        assert_eq!(xs, vec![-DODGE, 0.0, DODGE]);
        assert_eq!(series[2].colour, palette_colour(2));
    }
}
