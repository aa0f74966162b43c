//! `layer = "auto"` for the consistency terms (`mlc`, `cosine`): the hidden state to
//! strengthen, chosen from the initial model's own consistency profile.
//!
//! # The rule
//!
//! Before the first step of a fresh run, the trainer takes the consistency profile
//! ([`crate::eval::consistency`], the code of `align eval consistency`) of the **initial
//! policy** (the model of `[model] path` as loaded, before any update) on the run's records
//! whose prompt has two or more language variants: the first [`MAX_GROUPS`] (64) such records
//! in file order, as read with `[data] languages` (so only the run's languages count). The
//! candidates are the hidden-state indices `1..=L-1` of a model with `L` decoder layers: not
//! 0 (the embeddings) and not `L` (the last layer's output after the final norm). The chosen
//! index is the candidate with the highest mean **centred** collinearity ratio (each state
//! minus the mean state of all profiled prompts at that layer, then `s_1^2 / sum_i s_i^2` per
//! group, averaged over the groups); ties go to the shallower layer, and a layer whose ratio
//! is not finite is never chosen. A model with fewer than 2 decoder layers has no candidate,
//! and data without a multi-variant prompt has no profile: both are errors.
//!
//! Why: MLC then strengthens the layer where the base model is already the most
//! language-neutral, instead of forcing one where the languages are still apart (the early
//! layers) or where the output must become language-specific again (the last ones). The
//! centred ratio is used because the raw one also rewards what every prompt shares (e.g. the
//! state of a common final token), which says nothing about languages.
//!
//! # Recording and resume
//!
//! The trainer writes the profile and the choice to [`AUTO_LAYER_FILE`] (`auto_layer.json`)
//! in the run's output folder, one [`AutoLayerEntry`] per auto term, and reports it with
//! [`TrainEvent::LayerChosen`](crate::TrainEvent::LayerChosen). `--resume` reads the choice
//! back ([`read_auto_layers`]) instead of computing it again: the checkpoint is no longer the
//! initial model. In a data-parallel run every process profiles the same records and all take
//! rank 0's choice (a broadcast); rank 0 writes the file.
//!
//! ```
//! use align_train::auto_layer::{choose_layer, MAX_GROUPS};
//! use align_train::data::{parse_record, Origin};
//! use lm_backend::{CausalLm, HfCausalLm, LoadOptions, Tokenizer};
//!
//! let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../lm-backend/tests/fixtures");
//! let model = HfCausalLm::load(format!("{fixtures}/llama"), LoadOptions::cpu_f32())?;
//! let encoder = Tokenizer::from_dir(format!("{fixtures}/tokenizer"))?;
//! let languages = ["en".to_string(), "de".to_string()];
//! let line = r#"{"prompt": {"en": "Hi there", "de": "Hallo du"}, "chosen": "Hello!", "rejected": "No."}"#;
//! let record = parse_record(line, &Origin { path: "pairs.jsonl".into(), line: 1 }, &languages)?;
//! let auto = choose_layer(&model, &encoder, &[record], MAX_GROUPS)?;
//! assert_eq!(auto.candidates, (1..model.config().num_layers).collect::<Vec<_>>());
//! assert!(auto.candidates.contains(&auto.chosen) && auto.n_groups == 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::data::Record;
use crate::encode::TextEncoder;
use crate::eval::consistency::{
    evaluate_consistency, has_prompt_variants, ConsistencyOptions, LayerConsistency, LayerSelection,
};
use crate::{Result, TrainError};
use lm_backend::CausalLm;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Multi-variant records the trainer profiles: the first 64 in file order.
pub const MAX_GROUPS: usize = 64;

/// The file in a run's output folder that records each auto term's profile and choice.
pub const AUTO_LAYER_FILE: &str = "auto_layer.json";

/// The rule in words, as recorded in [`AutoLayer::rule`], for a profile of at most
/// `max_groups` records.
pub fn rule(max_groups: usize) -> String {
    format!(
        "the hidden-state index in 1..=L-1 with the highest mean centred collinearity ratio of the initial \
         policy, over the first {max_groups} records whose prompt has >= 2 language variants; ties: the \
         shallower layer"
    )
}

/// The profile of one model and the layer the rule picks from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoLayer {
    /// The rule, in words ([`rule`]).
    pub rule: String,
    /// The hidden-state indices considered: `1..=L-1`.
    pub candidates: Vec<usize>,
    /// The consistency of each candidate (means over the groups), by increasing index.
    pub profile: Vec<LayerConsistency>,
    /// The chosen hidden-state index.
    pub chosen: usize,
    /// Records profiled (each a group of two or more prompt variants).
    pub n_groups: usize,
    /// Prompts profiled (all variants of all groups).
    pub n_prompts: usize,
    /// The ratio of mutually orthogonal variants, `mean_g 1/k_g`: the floor of the ratio.
    pub orthogonal_ratio: f64,
}

/// One entry of [`AUTO_LAYER_FILE`]: an auto term's name and its choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoLayerEntry {
    /// The term's name (`[[objective]] name`, default its kind).
    pub term: String,
    /// The profile and the chosen index.
    #[serde(flatten)]
    pub choice: AutoLayer,
}

/// The hidden-state indices `layer = "auto"` chooses among for a model of `num_layers`
/// decoder layers: `1..=num_layers - 1`. An error below 2 layers (there is no candidate).
pub fn candidates(num_layers: usize) -> Result<Vec<usize>> {
    if num_layers < 2 {
        return Err(TrainError::input(
            "layer = \"auto\"",
            format!(
                "the model has {num_layers} decoder layer(s), and the candidates are the hidden-state indices \
                 1..=L-1 (not the embeddings, not the final output): give `layer` as an index"
            ),
        ));
    }
    Ok((1..num_layers).collect())
}

/// The layer of `profile` with the highest finite centred collinearity ratio; on a tie the
/// first in `profile` order (the shallower, for a profile by increasing index). `None` when
/// no entry is finite.
pub fn most_neutral_layer(profile: &[LayerConsistency]) -> Option<usize> {
    let mut best: Option<&LayerConsistency> = None;
    for l in profile.iter().filter(|l| l.centred_collinearity_ratio.is_finite()) {
        if best.is_none_or(|b| l.centred_collinearity_ratio > b.centred_collinearity_ratio) {
            best = Some(l);
        }
    }
    best.map(|l| l.layer)
}

/// Profiles `model` on the first `max_groups` of `records` whose prompt has two or more
/// language variants and picks the layer by the rule of the module docs.
///
/// The profile is [`evaluate_consistency`] over the candidates ([`candidates`]), prompts
/// encoded by `encoder` as MLC reads them and run in prompt-only passes of 8 (the consistency
/// eval's default batch), without gradient. Errors: `max_groups` of 0, a model with fewer
/// than 2 decoder layers, no record with two or more prompt variants, or a candidate profile
/// with no finite centred ratio.
pub fn choose_layer<M: CausalLm + ?Sized>(
    model: &M,
    encoder: &dyn TextEncoder,
    records: &[Record],
    max_groups: usize,
) -> Result<AutoLayer> {
    if max_groups == 0 {
        return Err(TrainError::input("max_groups", "must be at least 1"));
    }
    let candidates = candidates(model.config().num_layers)?;
    let groups: Vec<Record> = records.iter().filter(|r| has_prompt_variants(r)).take(max_groups).cloned().collect();
    if groups.is_empty() {
        return Err(TrainError::input(
            "layer = \"auto\"",
            "no record has its prompt in two or more languages, so there is no consistency profile to choose from",
        ));
    }
    let options =
        ConsistencyOptions { layers: LayerSelection::List(candidates.clone()), ..ConsistencyOptions::default() };
    let report = evaluate_consistency(model, encoder, &groups, &options)?;
    let chosen = most_neutral_layer(&report.layers).ok_or_else(|| {
        TrainError::input("layer = \"auto\"", "no candidate layer has a finite centred collinearity ratio")
    })?;
    Ok(AutoLayer {
        rule: rule(max_groups),
        candidates,
        profile: report.layers,
        chosen,
        n_groups: report.n_groups,
        n_prompts: report.n_prompts,
        orthogonal_ratio: report.orthogonal_ratio,
    })
}

/// [`AUTO_LAYER_FILE`] as written: `{"terms": [entry, ...]}`.
#[derive(Serialize)]
struct AutoLayerFile<'a> {
    terms: &'a [AutoLayerEntry],
}

/// What [`read_auto_layers`] needs of the file: each term's name and choice (the profile may
/// hold NaN, written as `null`, and is not read back).
#[derive(Deserialize)]
struct RecordedFile {
    terms: Vec<RecordedChoice>,
}

#[derive(Deserialize)]
struct RecordedChoice {
    term: String,
    chosen: usize,
}

/// Writes `entries` to `output/auto_layer.json`, atomically; returns the file's path.
pub fn write_auto_layers(output: &Path, entries: &[AutoLayerEntry]) -> Result<PathBuf> {
    let path = output.join(AUTO_LAYER_FILE);
    let json = serde_json::to_string_pretty(&AutoLayerFile { terms: entries })
        .map_err(|e| TrainError::input("auto_layer.json", e.to_string()))?;
    lm_backend::atomic::write_file(&path, json.as_bytes())?;
    Ok(path)
}

/// The `(term, chosen index)` pairs recorded in `output/auto_layer.json`, in file order. A
/// missing or unreadable file is a [`TrainError::Resume`] naming it.
pub fn read_auto_layers(output: &Path) -> Result<Vec<(String, usize)>> {
    let path = output.join(AUTO_LAYER_FILE);
    let resume_error = |why: String| TrainError::Resume { path: path.clone(), why };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        resume_error(format!(
            "{e}: the layers chosen by layer = \"auto\" are recorded there when the run starts, and a resumed run \
             must read them back (the checkpoint is no longer the initial model); give `layer` as an index to \
             resume without it"
        ))
    })?;
    let file: RecordedFile =
        serde_json::from_str(&text).map_err(|e| resume_error(format!("not a layer record: {e}")))?;
    Ok(file.terms.into_iter().map(|c| (c.term, c.chosen)).collect())
}
