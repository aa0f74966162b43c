//! Running the forward passes a step's objective needs on a micro-batch of prepared records,
//! producing the [`BatchView`] its terms read. Which passes run is decided once per run by
//! the [`StepPlan`] (from the terms' [`Need`]s); padding is [`crate::padding`]'s.

use crate::padding::{gather_positions, pad_pairs, pad_prompts, Padded};
use crate::prepare::PreparedRecord;
use crate::{Result, TrainError};
use align_losses::{
    BatchView, DominantStates, KlLogps, Layer, Need, PairLogps, SequenceLogps, TargetPairs, VariantStates,
};
use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, HiddenStates};
use std::collections::{BTreeMap, BTreeSet};
use tch::{Device, Kind, Tensor};

/// The hidden-state request that yields `layers`.
pub fn hidden_request(layers: &BTreeSet<Layer>) -> HiddenRequest {
    let mut req = HiddenRequest::layers(layers.iter().filter_map(|l| match l {
        Layer::Index(i) => Some(*i),
        Layer::Last => None,
    }));
    if layers.contains(&Layer::Last) {
        req = req.with_last_pre_norm();
    }
    req
}

/// The state at `layer` from a pass's hidden states.
pub fn take_layer(hidden: &HiddenStates, layer: Layer) -> Tensor {
    match layer {
        Layer::Index(i) => hidden.layers[&i].shallow_clone(),
        Layer::Last => hidden.last_pre_norm.as_ref().expect("requested with the layer").shallow_clone(),
    }
}

/// Reference log-probs of every record, computed once before training.
#[derive(Debug)]
pub struct ReferenceCache {
    /// `[N]` float32 summed log-probs of each record's chosen completion.
    pub chosen_sum: Tensor,
    /// `[N]` float32 scored-token counts of the same.
    pub chosen_count: Tensor,
    /// `[N]` float32 summed log-probs of each record's rejected completion.
    pub rejected_sum: Tensor,
    /// `[N]` float32 counts of the same.
    pub rejected_count: Tensor,
    /// `[N]` float32: record `i`'s prompt with record `i + 1`'s chosen completion (KTO's KL).
    pub kl_sum: Tensor,
}

/// Which inputs a step builds, derived from the objective's [`Need`]s.
#[derive(Debug, Clone, Default)]
pub struct StepPlan {
    /// Policy log-probs of chosen/rejected.
    pub policy: bool,
    /// Chosen only (every term reads chosen alone, e.g. SFT): rejected mirrors chosen.
    pub chosen_only: bool,
    /// Cached reference log-probs.
    pub reference: bool,
    /// KTO's mismatched pairs.
    pub kl: bool,
    /// MPO's target pairs.
    pub targets: bool,
    /// Layers of language-variant prompt states.
    pub variant_layers: BTreeSet<Layer>,
    /// Layers of dominant-sequence states (policy and reference).
    pub dominant_layers: BTreeSet<Layer>,
}

impl StepPlan {
    /// The plan for `needs`; `chosen_only` when the terms read chosen completions alone.
    pub fn new(needs: &[Need], chosen_only: bool) -> Self {
        let mut plan = StepPlan { chosen_only, ..Self::default() };
        for need in needs {
            match need {
                Need::PolicyLogps => plan.policy = true,
                Need::ReferenceLogps => plan.reference = true,
                Need::KlLogps => plan.kl = true,
                Need::TargetPairLogps => plan.targets = true,
                Need::PromptVariantStates { layer } => {
                    plan.variant_layers.insert(*layer);
                }
                Need::DominantStates { layer } => {
                    plan.dominant_layers.insert(*layer);
                }
            }
        }
        plan
    }
}

/// Everything a step's forward passes need besides the records.
pub struct StepModels<'a> {
    /// The model being trained.
    pub policy: &'a HfCausalLm,
    /// The frozen reference (only for dominant-sequence states).
    pub reference: Option<&'a HfCausalLm>,
    /// Cached reference log-probs (when the plan reads them).
    pub cache: Option<&'a ReferenceCache>,
    /// Padding token id.
    pub pad_id: i64,
    /// Number of configured languages `K` (dominant first).
    pub num_languages: usize,
}

fn model_err(context: &str) -> impl FnOnce(lm_backend::LmError) -> TrainError + '_ {
    move |source| TrainError::Model { context: context.to_string(), source }
}

fn loss_err(context: &str) -> impl FnOnce(align_losses::LossError) -> TrainError + '_ {
    move |source| TrainError::Loss { context: context.to_string(), source }
}

/// Runs the forward passes of one micro-batch (records `batch`, their dataset indices
/// `indices`, all records `all` for KTO's mismatched completions) and returns the view plus
/// the number of non-padding tokens forwarded with gradient.
pub fn build_view(
    m: &StepModels,
    plan: &StepPlan,
    batch: &[&PreparedRecord],
    indices: &[usize],
    all: &[PreparedRecord],
) -> Result<(BatchView, usize)> {
    let mut view = BatchView::default();
    let (padded, hidden) = policy_pass(m, plan, batch, &mut view)?;
    let mut tokens = padded.tokens;
    if plan.reference {
        view.reference = Some(cached_reference(m, indices)?);
    }
    if plan.kl {
        let (kl, more) = kl_logps(m, indices, all)?;
        view.kl = Some(kl);
        tokens += more;
    }
    for &layer in &plan.dominant_layers {
        view.dominant_states.insert(layer, dominant_states(m, &padded, &hidden, layer, batch.len())?);
    }
    if !plan.variant_layers.is_empty() {
        let (states, more) = variant_states(m, plan, batch, &hidden, &padded.prompt_lens)?;
        tokens += more;
        view.prompt_variants = states;
    }
    if plan.targets {
        let (targets, more) = target_pairs(m, batch)?;
        view.targets = Some(targets);
        tokens += more;
    }
    Ok((view, tokens))
}

/// The policy pass over the dominant chosen (and rejected) sequences, in one forward: sets
/// `view.policy` and returns the padded batch (chosen rows first) with the hidden states
/// that the dominant-state and variant terms read (the dominant variant's prompt states and
/// the retain term's states come from this pass).
fn policy_pass(
    m: &StepModels,
    plan: &StepPlan,
    batch: &[&PreparedRecord],
    view: &mut BatchView,
) -> Result<(Padded, HiddenStates)> {
    let b = batch.len() as i64;
    let mut layers = plan.dominant_layers.clone();
    layers.extend(plan.variant_layers.iter().copied());
    let mut seqs: Vec<(&[i64], &[i64])> =
        batch.iter().map(|r| (&r.chosen.prompt[..], &r.chosen.completion[..])).collect();
    if !plan.chosen_only {
        for r in batch {
            let rej = r.rejected.as_ref().expect("prepared with a rejected completion");
            seqs.push((&rej.prompt[..], &rej.completion[..]));
        }
    }
    let padded = pad_pairs(&seqs, m.pad_id, m.policy.device());
    let (logps, hidden) = padded.scored_logps(m.policy, &hidden_request(&layers), "policy forward")?;
    let (chosen, rejected) = if plan.chosen_only {
        (logps.shallow_clone(), logps)
    } else {
        let split = |t: &Tensor, start: i64| t.narrow(0, start, b);
        let c = SequenceLogps { sum: split(&logps.sum, 0), count: split(&logps.count, 0) };
        let r = SequenceLogps { sum: split(&logps.sum, b), count: split(&logps.count, b) };
        (c, r)
    };
    view.policy = Some(PairLogps::new(chosen, rejected).map_err(loss_err("policy log-probs"))?);
    Ok((padded, hidden))
}

/// Rows `indices` of a cached `[N]` column, on the policy's device.
fn pick(m: &StepModels, column: &Tensor, indices: &[usize]) -> Tensor {
    let idx = Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>());
    column.index_select(0, &idx).to_device(m.policy.device())
}

fn cache<'a>(m: &StepModels<'a>) -> &'a ReferenceCache {
    m.cache.expect("reference cache computed when the plan reads it")
}

/// The reference log-probs of the micro-batch, from the cache.
fn cached_reference(m: &StepModels, indices: &[usize]) -> Result<PairLogps> {
    let c = cache(m);
    PairLogps::from_tensors(
        pick(m, &c.chosen_sum, indices),
        pick(m, &c.chosen_count, indices),
        pick(m, &c.rejected_sum, indices),
        pick(m, &c.rejected_count, indices),
    )
    .map_err(loss_err("reference log-probs"))
}

/// KTO's mismatched pairs: record `i`'s prompt with record `i + 1`'s chosen completion,
/// under the policy (with gradient) and the reference (cached). Returns the tokens forwarded.
fn kl_logps(m: &StepModels, indices: &[usize], all: &[PreparedRecord]) -> Result<(KlLogps, usize)> {
    let n = all.len();
    let seqs: Vec<(&[i64], &[i64])> =
        indices.iter().map(|&i| (&all[i].chosen.prompt[..], &all[(i + 1) % n].chosen.completion[..])).collect();
    let padded = pad_pairs(&seqs, m.pad_id, m.policy.device());
    let (kl, _) = padded.scored_logps(m.policy, &HiddenRequest::none(), "KL forward")?;
    Ok((KlLogps { policy: kl.sum, reference: pick(m, &cache(m).kl_sum, indices) }, padded.tokens))
}

/// The dominant chosen sequences' states at `layer` under the policy (from the policy pass)
/// and the frozen reference (a pass without gradient that stops at `layer`).
fn dominant_states(
    m: &StepModels,
    padded: &Padded,
    policy_hidden: &HiddenStates,
    layer: Layer,
    b: usize,
) -> Result<DominantStates> {
    let reference = m.reference.expect("reference model kept when dominant states are needed");
    let chosen_rows = padded.ids.narrow(0, 0, b as i64);
    let chosen_mask = padded.mask.narrow(0, 0, b as i64);
    let req = hidden_request(&BTreeSet::from([layer]));
    let ref_states = tch::no_grad(|| reference.hidden_states(&chosen_rows, &chosen_mask, &req))
        .map_err(model_err("reference forward"))?;
    Ok(DominantStates {
        policy: take_layer(policy_hidden, layer).narrow(0, 0, b as i64),
        reference: take_layer(&ref_states, layer),
        attention_mask: chosen_mask,
    })
}

/// MPO's target-language pairs of the micro-batch under the policy (chosen rows first, then
/// rejected, in one pass). Returns the tokens forwarded.
fn target_pairs(m: &StepModels, batch: &[&PreparedRecord]) -> Result<(TargetPairs, usize)> {
    let device = m.policy.device();
    let mut seqs: Vec<(&[i64], &[i64])> = Vec::new();
    let mut record = Vec::new();
    let mut languages = Vec::new();
    for (row, r) in batch.iter().enumerate() {
        for (lang, c, _) in &r.targets {
            seqs.push((&c.prompt[..], &c.completion[..]));
            record.push(row as i64);
            languages.push(lang.clone());
        }
    }
    for r in batch {
        for (_, _, rej) in &r.targets {
            seqs.push((&rej.prompt[..], &rej.completion[..]));
        }
    }
    let p = record.len();
    if p == 0 {
        let empty = || Tensor::zeros([0], (Kind::Float, device));
        let policy =
            PairLogps::from_tensors(empty(), empty(), empty(), empty()).map_err(loss_err("target log-probs"))?;
        let record = Tensor::zeros([0], (Kind::Int64, device));
        return Ok((TargetPairs { policy, record, languages: vec![] }, 0));
    }
    let padded = pad_pairs(&seqs, m.pad_id, device);
    let (lp, _) = padded.scored_logps(m.policy, &HiddenRequest::none(), "target forward")?;
    let split = |t: &Tensor, s: usize| t.narrow(0, s as i64, p as i64);
    let policy =
        PairLogps::from_tensors(split(&lp.sum, 0), split(&lp.count, 0), split(&lp.sum, p), split(&lp.count, p))
            .map_err(loss_err("target log-probs"))?;
    let record = Tensor::from_slice(&record).to_device(device);
    Ok((TargetPairs { policy, record, languages }, padded.tokens))
}

/// Last-prompt-token states `[G, K, D]` of every language variant at each requested layer:
/// the dominant variant's from the chosen rows of the full forward (causal attention makes
/// them equal to a prompt-only pass), the others from one prompt-only pass that stops at the
/// deepest layer asked for. Returns the tokens of that pass too.
fn variant_states(
    m: &StepModels,
    plan: &StepPlan,
    batch: &[&PreparedRecord],
    full: &HiddenStates,
    prompt_lens: &[usize],
) -> Result<(BTreeMap<Layer, VariantStates>, usize)> {
    let device = m.policy.device();
    let (g, k) = (batch.len(), m.num_languages);
    let mut prompts: Vec<&[i64]> = Vec::new();
    let mut slots: Vec<(usize, usize)> = Vec::new(); // (group, language index)
    for (row, r) in batch.iter().enumerate() {
        for (lang, ids) in &r.variants {
            prompts.push(&ids[..]);
            slots.push((row, *lang));
        }
    }
    let others = if prompts.is_empty() {
        None
    } else {
        let padded = pad_prompts(&prompts, m.pad_id, device);
        let hidden = padded.hidden_states(m.policy, &hidden_request(&plan.variant_layers), "prompt-only forward")?;
        Some((hidden, padded.last_positions(), padded.tokens))
    };
    let mask = variant_mask(g, k, &slots, device);
    let dominant_last: Vec<usize> = prompt_lens[..g].iter().map(|l| l - 1).collect();
    let mut out = BTreeMap::new();
    for &layer in &plan.variant_layers {
        let dominant = gather_positions(&take_layer(full, layer).narrow(0, 0, g as i64), &dominant_last); // [G, D]
        let mut grid = dominant.zeros_like().unsqueeze(1).repeat([1, k as i64, 1]); // [G, K, D]
        grid = grid.index_put(
            &[
                Some(Tensor::arange(g as i64, (Kind::Int64, device))),
                Some(Tensor::zeros([g as i64], (Kind::Int64, device))),
            ],
            &dominant,
            false,
        );
        if let Some((hidden, last, _)) = &others {
            let states = gather_positions(&take_layer(hidden, layer), last); // [P, D]
            let rows: Vec<i64> = slots.iter().map(|s| s.0 as i64).collect();
            let cols: Vec<i64> = slots.iter().map(|s| s.1 as i64).collect();
            grid = grid.index_put(
                &[Some(Tensor::from_slice(&rows).to_device(device)), Some(Tensor::from_slice(&cols).to_device(device))],
                &states,
                false,
            );
        }
        out.insert(layer, VariantStates { states: grid, mask: Some(mask.shallow_clone()) });
    }
    Ok((out, others.map_or(0, |o| o.2)))
}

/// `[G, K]` bool: which (group, language) cells hold a variant (the dominant always does).
fn variant_mask(g: usize, k: usize, slots: &[(usize, usize)], device: Device) -> Tensor {
    let mut mask = vec![false; g * k];
    for row in 0..g {
        mask[row * k] = true;
    }
    for &(row, lang) in slots {
        mask[row * k + lang] = true;
    }
    Tensor::from_slice(&mask).reshape([g as i64, k as i64]).to_device(device)
}
