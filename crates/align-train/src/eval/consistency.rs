//! The consistency eval: how collinear the language variants of each prompt are, layer by
//! layer (methods.md §1 "Diagnostics", §4 "Representation views").
//!
//! Every record whose prompt has two or more language variants is a group. Each variant is
//! encoded like MLC reads it ([`encode_prompt`]: chat template for conversational records),
//! run through a prompt-only pass ([`CausalLm::hidden_states`], which stops at the deepest
//! layer asked for), and its state at the **last prompt token** is taken at every requested
//! layer. Per layer the report gives the mean over groups of
//! - the collinearity ratio `s_1^2 / sum_i s_i^2` of the group's unit-normalised states
//!   ([`mlc_loss::collinearity_ratio`]; `1/k` for orthogonal variants, 1 for parallel ones),
//! - the mean pairwise cosine ([`mlc_loss::mean_pairwise_cosine`]),
//! - and both again after **mean-centring**: the mean state over all prompts of the eval at
//!   that layer is subtracted first, so a direction every prompt shares (e.g. the embedding
//!   of a common final token) does not make every layer look aligned.
//!
//! Hidden-state indices follow [`HiddenRequest`]: 0 the embeddings, `i` the output of decoder
//! layer `i`, `L` the last layer's output after the final norm.

use super::Progress;
use crate::chart::{draw_line_chart, LineChart, Reference, Series, XAxis};
use crate::data::Record;
use crate::encode::{encode_prompt, TextEncoder};
use crate::padding::{gather_positions, pad_prompts};
use crate::{Result, TrainError};
use lm_backend::{CausalLm, HiddenRequest};
use plotters::style::RGBColor;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::Path;
use std::str::FromStr;
use tch::{Device, Kind, Tensor};

/// Which hidden-state indices to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LayerSelection {
    /// Every index `0..=L`.
    #[default]
    All,
    /// These indices (each `<= L`).
    List(Vec<usize>),
}

impl LayerSelection {
    /// The sorted, deduplicated indices for a model of `num_layers` decoder layers.
    pub fn resolve(&self, num_layers: usize) -> Result<Vec<usize>> {
        let mut layers = match self {
            LayerSelection::All => (0..=num_layers).collect(),
            LayerSelection::List(list) => list.clone(),
        };
        layers.sort_unstable();
        layers.dedup();
        if layers.is_empty() {
            return Err(TrainError::input("layers", "no layer selected"));
        }
        if let Some(bad) = layers.iter().find(|&&l| l > num_layers) {
            return Err(TrainError::input(
                "layers",
                format!("layer {bad} does not exist: the model has hidden-state indices 0..={num_layers}"),
            ));
        }
        Ok(layers)
    }
}

impl FromStr for LayerSelection {
    type Err = TrainError;

    /// `all`, or a comma-separated list of indices such as `4,8,12`.
    fn from_str(s: &str) -> Result<Self> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(LayerSelection::All);
        }
        s.split(',')
            .map(|part| {
                part.trim().parse::<usize>().map_err(|_| {
                    TrainError::input("layers", format!("`{part}` is not a layer index; use `all` or e.g. `4,8,12`"))
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(LayerSelection::List)
    }
}

/// Options of [`evaluate_consistency`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyOptions {
    /// The hidden-state indices to evaluate.
    pub layers: LayerSelection,
    /// Prompts per prompt-only forward pass, at least 1.
    pub batch_size: usize,
}

impl Default for ConsistencyOptions {
    fn default() -> Self {
        ConsistencyOptions { layers: LayerSelection::All, batch_size: 8 }
    }
}

/// The consistency of one layer: means over groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerConsistency {
    /// Hidden-state index.
    pub layer: usize,
    /// Mean collinearity ratio `s_1^2 / sum_i s_i^2`.
    pub collinearity_ratio: f64,
    /// Mean pairwise cosine of the variants.
    pub mean_pairwise_cosine: f64,
    /// Mean collinearity ratio after subtracting the mean state of all prompts.
    pub centred_collinearity_ratio: f64,
    /// Mean pairwise cosine after subtracting the mean state of all prompts.
    pub centred_mean_pairwise_cosine: f64,
}

/// The output of `align eval consistency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyReport {
    /// Groups (records with two or more prompt variants).
    pub n_groups: usize,
    /// Prompts encoded (all variants of all groups).
    pub n_prompts: usize,
    /// The ratio of mutually orthogonal variants, `mean_g 1/k_g`: the floor of the ratio.
    pub orthogonal_ratio: f64,
    /// One entry per evaluated layer, by increasing index.
    pub layers: Vec<LayerConsistency>,
}

/// Evaluates the consistency of the prompt variants of `records`; see the module docs.
pub fn evaluate_consistency<M: CausalLm + ?Sized>(
    model: &M,
    encoder: &dyn TextEncoder,
    records: &[Record],
    options: &ConsistencyOptions,
) -> Result<ConsistencyReport> {
    evaluate_consistency_with_progress(model, encoder, records, options, &mut |_, _| {})
}

/// [`evaluate_consistency`], calling `progress(prompts done, prompts in total)` after each
/// prompt-only pass.
pub fn evaluate_consistency_with_progress<M: CausalLm + ?Sized>(
    model: &M,
    encoder: &dyn TextEncoder,
    records: &[Record],
    options: &ConsistencyOptions,
    progress: &mut Progress<'_>,
) -> Result<ConsistencyReport> {
    if options.batch_size == 0 {
        return Err(TrainError::input("batch_size", "must be at least 1"));
    }
    let layers = options.layers.resolve(model.config().num_layers)?;
    let mut prompts: Vec<Vec<i64>> = vec![];
    let mut groups: Vec<Vec<usize>> = vec![];
    for record in records.iter().filter(|r| has_prompt_variants(r)) {
        let mut group = vec![];
        for (lang, text) in &record.prompt {
            let ids = encode_prompt(encoder, text).map_err(|why| TrainError::Encode {
                id: record.id.clone(),
                lang: lang.clone(),
                why,
            })?;
            group.push(prompts.len());
            prompts.push(ids);
        }
        groups.push(group);
    }
    if groups.is_empty() {
        return Err(TrainError::input("records", "no record has its prompt in two or more languages"));
    }
    let states = last_prompt_token_states(model, encoder.pad_id(), &prompts, &layers, options.batch_size, progress)?;
    let per_layer = layers
        .iter()
        .zip(&states)
        .map(|(&layer, states)| layer_consistency(layer, states, &groups))
        .collect::<Result<Vec<_>>>()?;
    let orthogonal_ratio = groups.iter().map(|g| 1.0 / g.len() as f64).sum::<f64>() / groups.len() as f64;
    Ok(ConsistencyReport { n_groups: groups.len(), n_prompts: prompts.len(), orthogonal_ratio, layers: per_layer })
}

/// True when `record`'s prompt has two or more language variants: a group of the consistency
/// eval (records with one prompt are left out of it).
pub fn has_prompt_variants(record: &Record) -> bool {
    record.prompt.len() >= 2
}

/// The state at the last token of each prompt, per requested layer: one `[N, D]` float32 CPU
/// tensor per entry of `layers`, rows in prompt order.
pub(crate) fn last_prompt_token_states<M: CausalLm + ?Sized>(
    model: &M,
    pad_id: i64,
    prompts: &[Vec<i64>],
    layers: &[usize],
    batch_size: usize,
    progress: &mut Progress<'_>,
) -> Result<Vec<Tensor>> {
    let request = HiddenRequest::layers(layers.iter().copied());
    let mut per_layer: Vec<Vec<Tensor>> = layers.iter().map(|_| vec![]).collect();
    let mut done = 0;
    for chunk in prompts.chunks(batch_size) {
        let rows: Vec<&[i64]> = chunk.iter().map(Vec::as_slice).collect();
        let batch = pad_prompts(&rows, pad_id, model.device());
        let hidden = tch::no_grad(|| batch.hidden_states(model, &request, "prompt-only forward"))?;
        for (slot, layer) in per_layer.iter_mut().zip(layers) {
            let h = hidden.layers.get(layer).ok_or_else(|| {
                TrainError::input("layers", format!("the model returned no hidden state at index {layer}"))
            })?; // [B, T, D]
            slot.push(gather_positions(h, &batch.last_positions()).to_kind(Kind::Float).to_device(Device::Cpu));
        }
        done += chunk.len();
        progress(done, prompts.len());
    }
    Ok(per_layer.into_iter().map(|parts| Tensor::cat(&parts, 0)).collect())
}

/// The consistency of one layer from its prompt states `states` (`[N, D]`, float) and the
/// groups (each a list of >= 2 row indices into `states`).
///
/// The ratio and cosine are those of [`mlc_loss::collinearity_ratio`] and
/// [`mlc_loss::mean_pairwise_cosine`] (methods.md §1), averaged over the groups; the centred
/// values use `states - mean_n states[n]` instead.
pub fn layer_consistency(layer: usize, states: &Tensor, groups: &[Vec<usize>]) -> Result<LayerConsistency> {
    let size = states.size();
    if size.len() != 2 || size[0] == 0 {
        return Err(TrainError::input("states", format!("expected [N, D] with N >= 1, got {size:?}")));
    }
    let n = size[0] as usize;
    if groups.is_empty() || groups.iter().any(|g| g.len() < 2 || g.iter().any(|&i| i >= n)) {
        return Err(TrainError::input("groups", format!("need groups of >= 2 row indices below {n}")));
    }
    let k = groups.iter().map(Vec::len).max().unwrap_or(0);
    let mut index = vec![0i64; groups.len() * k];
    let mut present = vec![false; groups.len() * k];
    for (g, group) in groups.iter().enumerate() {
        for (j, &row) in group.iter().enumerate() {
            index[g * k + j] = row as i64;
            present[g * k + j] = true;
        }
    }
    let shape = [groups.len() as i64, k as i64];
    let index = Tensor::from_slice(&index).to_device(states.device());
    let mask = Tensor::from_slice(&present).view(shape).to_device(states.device()); // [G, K]
    let grouped = |x: &Tensor| x.index_select(0, &index).view([shape[0], shape[1], -1]); // [G, K, D]
    let raw = grouped(states);
    let centred = grouped(&(states - states.mean_dim(&[0i64][..], true, states.kind())));
    let mlc_err = |e: mlc_loss::MlcError| TrainError::Loss {
        context: format!("consistency at layer {layer}"),
        source: e.into_loss_error("consistency"),
    };
    let ratio =
        |x: &Tensor| mlc_loss::collinearity_ratio(x, Some(&mask)).map_err(mlc_err).and_then(|t| finite_mean(&t));
    let cosine =
        |x: &Tensor| mlc_loss::mean_pairwise_cosine(x, Some(&mask)).map_err(mlc_err).and_then(|t| finite_mean(&t));
    Ok(LayerConsistency {
        layer,
        collinearity_ratio: ratio(&raw)?,
        mean_pairwise_cosine: cosine(&raw)?,
        centred_collinearity_ratio: ratio(&centred)?,
        centred_mean_pairwise_cosine: cosine(&centred)?,
    })
}

/// Mean of the finite entries of a `[G]` tensor (NaN marks groups that cannot be measured,
/// e.g. all-zero states); NaN when none is finite.
fn finite_mean(values: &Tensor) -> Result<f64> {
    let values = Vec::<f64>::try_from(values.to_kind(Kind::Double).to_device(Device::Cpu))
        .map_err(TrainError::torch("reading consistency values"))?;
    let finite: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    Ok(if finite.is_empty() { f64::NAN } else { finite.iter().sum::<f64>() / finite.len() as f64 })
}

/// The per-layer table (for stdout): one row per layer.
pub fn format_consistency_table(report: &ConsistencyReport) -> String {
    let mut s = format!(
        "{} groups, {} prompts; orthogonal variants give ratio {:.3}\n{:>5} {:>8} {:>8} {:>14} {:>14}\n",
        report.n_groups,
        report.n_prompts,
        report.orthogonal_ratio,
        "layer",
        "ratio",
        "cosine",
        "centred_ratio",
        "centred_cosine"
    );
    for l in &report.layers {
        let _ = writeln!(
            s,
            "{:>5} {:>8.4} {:>8.4} {:>14.4} {:>14.4}",
            l.layer,
            l.collinearity_ratio,
            l.mean_pairwise_cosine,
            l.centred_collinearity_ratio,
            l.centred_mean_pairwise_cosine
        );
    }
    s
}

/// Colour of the collinearity ratio line in [`plot_consistency`].
pub const RATIO_COLOUR: RGBColor = RGBColor(31, 119, 180);
/// Colour of the centred collinearity ratio line in [`plot_consistency`].
pub const CENTRED_RATIO_COLOUR: RGBColor = RGBColor(214, 39, 40);
/// Colour of the orthogonal-variants floor in [`plot_consistency`].
pub const FLOOR_COLOUR: RGBColor = crate::chart::REFERENCE_COLOUR;

/// Writes a PNG of `width` x `height` pixels (at least 320 x 200) plotting the collinearity
/// ratio (blue, [`RATIO_COLOUR`]) and the centred ratio (red, [`CENTRED_RATIO_COLOUR`])
/// against the layer index, with the orthogonal floor `mean 1/k` (grey dashes,
/// [`FLOOR_COLOUR`]); a title, axis labels and a legend name them ([`crate::chart`]: the
/// font is embedded, no system font is needed). y spans 0 to 1.
pub fn plot_consistency(report: &ConsistencyReport, path: &Path, width: u32, height: u32) -> Result<()> {
    if report.layers.is_empty() {
        let why = "need at least one layer".to_string();
        return Err(TrainError::Plot { path: path.to_path_buf(), why });
    }
    let line = |name: &str, colour: RGBColor, centred: bool| Series {
        name: name.into(),
        colour,
        points: report
            .layers
            .iter()
            .map(|l| (l.layer as f64, if centred { l.centred_collinearity_ratio } else { l.collinearity_ratio }))
            .collect(),
        dashed: false,
        markers: report.layers.len() <= 40,
    };
    let first = report.layers[0].layer as f64;
    let last = report.layers[report.layers.len() - 1].layer as f64;
    let chart = LineChart {
        title: format!("Collinearity of language variants ({} groups)", report.n_groups),
        x_label: "layer (hidden-state index)".into(),
        y_label: "collinearity ratio".into(),
        x: XAxis::Numeric { min: first, max: last, integers: true },
        y_range: Some((0.0, 1.02)),
        series: vec![line("ratio", RATIO_COLOUR, false), line("centred ratio", CENTRED_RATIO_COLOUR, true)],
        references: vec![Reference {
            name: format!("orthogonal {:.3}", report.orthogonal_ratio),
            y: report.orthogonal_ratio,
        }],
    };
    draw_line_chart(&chart, path, width, height)
}
