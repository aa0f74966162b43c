//! The right-padded layout: every sequence a row of its own, padded to the longest; the
//! reference the packed layout is tested against (`[train] packing = false`).

use super::{
    cache, hidden_request, no_target_pairs, pick, take_layer, variant_grid, variant_prompts, Layout, StepModels,
    StepPlan,
};
use crate::padding::{gather_positions, pad_pairs, pad_prompts, Padded};
use crate::prepare::PreparedRecord;
use crate::{Result, TrainError};
use align_losses::{BatchView, DominantStates, KlLogps, Layer, PairLogps, SequenceLogps, TargetPairs, VariantStates};
use lm_backend::{CausalLm, HiddenRequest, HiddenStates};
use std::collections::{BTreeMap, BTreeSet};
use tch::Tensor;

/// The right-padded layout.
pub(super) struct PaddedLayout;

impl Layout for PaddedLayout {
    /// The padded policy batch (chosen rows first) and its hidden states.
    type Policy = (Padded, HiddenStates);

    fn policy_pass(
        m: &StepModels,
        plan: &StepPlan,
        batch: &[&PreparedRecord],
        view: &mut BatchView,
    ) -> Result<Self::Policy> {
        policy_pass(m, plan, batch, view)
    }

    fn policy_tokens((padded, _): &Self::Policy) -> usize {
        padded.tokens
    }

    fn kl_logps(m: &StepModels, indices: &[usize], all: &[PreparedRecord]) -> Result<(KlLogps, usize)> {
        kl_logps(m, indices, all)
    }

    fn dominant_states(
        m: &StepModels,
        batch: &[&PreparedRecord],
        (padded, hidden): &Self::Policy,
        layer: Layer,
    ) -> Result<DominantStates> {
        dominant_states(m, padded, hidden, layer, batch.len())
    }

    fn variant_states(
        m: &StepModels,
        plan: &StepPlan,
        batch: &[&PreparedRecord],
        (padded, hidden): &Self::Policy,
    ) -> Result<(BTreeMap<Layer, VariantStates>, usize)> {
        variant_states(m, plan, batch, hidden, &padded.prompt_lens)
    }

    fn target_pairs(m: &StepModels, batch: &[&PreparedRecord]) -> Result<(TargetPairs, usize)> {
        target_pairs(m, batch)
    }
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
    view.policy = Some(PairLogps::new(chosen, rejected).map_err(TrainError::loss("policy log-probs"))?);
    Ok((padded, hidden))
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
        .map_err(TrainError::model("reference forward"))?;
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
        return Ok((no_target_pairs(device)?, 0));
    }
    let padded = pad_pairs(&seqs, m.pad_id, device);
    let (lp, _) = padded.scored_logps(m.policy, &HiddenRequest::none(), "target forward")?;
    let split = |t: &Tensor, s: usize| t.narrow(0, s as i64, p as i64);
    let policy =
        PairLogps::from_tensors(split(&lp.sum, 0), split(&lp.count, 0), split(&lp.sum, p), split(&lp.count, p))
            .map_err(TrainError::loss("target log-probs"))?;
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
    let g = batch.len();
    let (prompts, slots) = variant_prompts(batch);
    let others = if prompts.is_empty() {
        None
    } else {
        let padded = pad_prompts(&prompts, m.pad_id, m.policy.device());
        let hidden = padded.hidden_states(m.policy, &hidden_request(&plan.variant_layers), "prompt-only forward")?;
        Some((hidden, padded.last_positions(), padded.tokens))
    };
    let dominant_last: Vec<usize> = prompt_lens[..g].iter().map(|l| l - 1).collect();
    let mut out = BTreeMap::new();
    for &layer in &plan.variant_layers {
        let dominant = gather_positions(&take_layer(full, layer).narrow(0, 0, g as i64), &dominant_last); // [G, D]
        let states = others.as_ref().map(|(hidden, last, _)| gather_positions(&take_layer(hidden, layer), last)); // [P, D]
        out.insert(layer, variant_grid(&dominant, states.as_ref(), &slots, m.num_languages));
    }
    Ok((out, others.map_or(0, |o| o.2)))
}
