//! A run's `layer = "auto"` terms resolved to hidden-state indices ([`crate::auto_layer`]):
//! chosen from the initial policy on a fresh run and recorded in `auto_layer.json`, read back
//! from that file on resume, and the same on every process of a data-parallel run.

use super::events::{Events, TrainEvent};
use crate::auto_layer::{
    choose_layer, read_auto_layers, write_auto_layers, AutoLayerEntry, AUTO_LAYER_FILE, MAX_GROUPS,
};
use crate::config::{LayerChoice, ObjectiveConfig, RunConfig};
use crate::data::Record;
use crate::dist::World;
use crate::encode::TextEncoder;
use crate::eval::consistency::has_prompt_variants;
use crate::terms::objective_table;
use crate::{Result, TrainError};
use lm_backend::HfCausalLm;
use std::path::Path;
use std::sync::Arc;
use tch::Tensor;

/// What resolving the auto layers of a run reads.
pub(crate) struct AutoLayerInputs<'a> {
    /// The policy as loaded: the initial model on a fresh run.
    pub policy: &'a HfCausalLm,
    /// The run's tokenizer.
    pub encoder: &'a dyn TextEncoder,
    /// The run's records, in file order, as read with `[data] languages`.
    pub records: &'a [Record],
    /// The output folder (`auto_layer.json`).
    pub output: &'a Path,
    /// True when the run resumes from a checkpoint: the choice is read back.
    pub resuming: bool,
    /// The processes of a data-parallel run.
    pub world: Option<&'a Arc<World>>,
}

/// `config`'s objectives with every `layer = "auto"` replaced by its hidden-state index;
/// the objectives unchanged when no term asks for it.
pub(crate) fn resolve_auto_layers(
    config: &RunConfig,
    config_path: &Path,
    inputs: &AutoLayerInputs,
    events: &Events,
) -> Result<Vec<ObjectiveConfig>> {
    let auto: Vec<usize> = (0..config.objectives.len())
        .filter(|&i| config.objectives[i].kind.layer_choice() == Some(LayerChoice::Auto))
        .collect();
    let Some(&first) = auto.first() else { return Ok(config.objectives.clone()) };
    let record = inputs.output.join(AUTO_LAYER_FILE);
    let names: Vec<&str> = auto.iter().map(|&i| config.objectives[i].name.as_str()).collect();
    let layers = if inputs.resuming {
        let layers = same_on_every_rank(inputs.world, recorded_layers(inputs.output, &names)?)?;
        for (term, &layer) in names.iter().zip(&layers) {
            events.emit(TrainEvent::LayerChosen { term, layer, choice: None, record: &record });
        }
        layers
    } else {
        check_can_choose(config, config_path, first, inputs)?;
        let mut choice = profile_initial_policy(inputs)?;
        choice.chosen = same_on_every_rank(inputs.world, vec![choice.chosen])?[0];
        if inputs.world.is_none_or(|w| w.is_main()) {
            let entries: Vec<AutoLayerEntry> =
                names.iter().map(|term| AutoLayerEntry { term: term.to_string(), choice: choice.clone() }).collect();
            write_auto_layers(inputs.output, &entries)?;
        }
        for term in &names {
            events.emit(TrainEvent::LayerChosen { term, layer: choice.chosen, choice: Some(&choice), record: &record });
        }
        vec![choice.chosen; names.len()]
    };
    let mut objectives = config.objectives.clone();
    for (&i, layer) in auto.iter().zip(layers) {
        objectives[i].kind = objectives[i].kind.with_auto_layer(layer);
    }
    Ok(objectives)
}

/// The profile of the policy without adapter dropout (its training mode is restored after).
fn profile_initial_policy(inputs: &AutoLayerInputs) -> Result<crate::auto_layer::AutoLayer> {
    let training = inputs.policy.training();
    inputs.policy.set_training(false);
    let choice = choose_layer(inputs.policy, inputs.encoder, inputs.records, MAX_GROUPS);
    inputs.policy.set_training(training);
    choice
}

/// The config errors of a choice that cannot be made, naming the first auto term's `layer`:
/// a model with fewer than 2 decoder layers, or data with no multi-variant prompt.
fn check_can_choose(config: &RunConfig, config_path: &Path, first: usize, inputs: &AutoLayerInputs) -> Result<()> {
    let invalid = |why: String| TrainError::InvalidValue {
        path: config_path.to_path_buf(),
        table: objective_table(first, &config.objectives[first]),
        key: "layer".into(),
        why,
    };
    let num_layers = inputs.policy.num_layers();
    if num_layers < 2 {
        return Err(invalid(format!(
            "\"auto\" chooses among the hidden-state indices 1..=L-1, and the model of {} has {num_layers} decoder \
             layer(s): give an index",
            config.model.path.display()
        )));
    }
    if !inputs.records.iter().any(has_prompt_variants) {
        return Err(invalid(format!(
            "\"auto\" profiles the prompts that have two or more language variants, and no record of [data] train \
             has its prompt in two or more of [data] languages ({})",
            config.data.languages.join(", ")
        )));
    }
    Ok(())
}

/// The recorded index of each of `terms`, from `output/auto_layer.json`.
fn recorded_layers(output: &Path, terms: &[&str]) -> Result<Vec<usize>> {
    let recorded = read_auto_layers(output)?;
    terms
        .iter()
        .map(|term| {
            recorded.iter().find(|(t, _)| t == term).map(|&(_, layer)| layer).ok_or_else(|| TrainError::Resume {
                path: output.join(AUTO_LAYER_FILE),
                why: format!("it records no layer for the term `{term}`, which has layer = \"auto\""),
            })
        })
        .collect()
}

/// `layers` as rank 0 has them (broadcast), so that every process trains the same layers;
/// unchanged without a world.
fn same_on_every_rank(world: Option<&Arc<World>>, layers: Vec<usize>) -> Result<Vec<usize>> {
    let Some(world) = world else { return Ok(layers) };
    let mine: Vec<i64> = layers.iter().map(|&l| l as i64).collect();
    let theirs = world.broadcast(&Tensor::from_slice(&mine), 0, "the layers of layer = \"auto\"")?;
    let theirs = Vec::<i64>::try_from(&theirs).map_err(TrainError::torch("reading the broadcast layers"))?;
    Ok(theirs.into_iter().map(|l| l as usize).collect())
}
