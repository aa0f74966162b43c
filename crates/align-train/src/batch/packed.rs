//! The packed layout ([`crate::packing`]): each pass packs its sequences into one row without
//! padding, and each preference pair is one tree `[prompt | chosen | rejected]` whose prompt
//! is forwarded once. Computes the same [`BatchView`] as the padded layout.

use super::{
    cache, hidden_request, no_target_pairs, pick, take_layer, variant_grid, variant_prompts, Layout, StepModels,
    StepPlan,
};
use crate::packing::{gather_rows, select, unpack, Packed, Packer};
use crate::prepare::PreparedRecord;
use crate::{Result, TrainError};
use align_losses::{BatchView, DominantStates, KlLogps, Layer, PairLogps, TargetPairs, VariantStates};
use lm_backend::{CausalLm, HiddenRequest, HiddenStates};
use std::collections::BTreeMap;
use tch::Tensor;

/// The packed layout.
pub(super) struct PackedLayout;

impl Layout for PackedLayout {
    type Policy = PolicyPass;

    fn policy_pass(
        m: &StepModels,
        plan: &StepPlan,
        batch: &[&PreparedRecord],
        view: &mut BatchView,
    ) -> Result<Self::Policy> {
        policy_pass(m, plan, batch, view)
    }

    fn policy_tokens(pass: &Self::Policy) -> usize {
        pass.packed.tokens
    }

    fn kl_logps(m: &StepModels, indices: &[usize], all: &[PreparedRecord]) -> Result<(KlLogps, usize)> {
        kl_logps(m, indices, all)
    }

    fn dominant_states(
        m: &StepModels,
        batch: &[&PreparedRecord],
        pass: &Self::Policy,
        layer: Layer,
    ) -> Result<DominantStates> {
        dominant_states(m, batch, pass, layer)
    }

    fn variant_states(
        m: &StepModels,
        plan: &StepPlan,
        batch: &[&PreparedRecord],
        pass: &Self::Policy,
    ) -> Result<(BTreeMap<Layer, VariantStates>, usize)> {
        variant_states(m, plan, batch, pass)
    }

    fn target_pairs(m: &StepModels, batch: &[&PreparedRecord]) -> Result<(TargetPairs, usize)> {
        target_pairs(m, batch)
    }
}

/// The policy pass and where to read its results.
pub(super) struct PolicyPass {
    packed: Packed,
    hidden: HiddenStates,
    /// The completion index of each record's chosen sequence.
    chosen: Vec<usize>,
    /// The row of each record's last prompt token.
    prompt_last: Vec<usize>,
}

/// The dominant pairs of the micro-batch as trees, in one forward with gradient: sets
/// `view.policy` and keeps the hidden states that the dominant-state and variant terms read.
fn policy_pass(m: &StepModels, plan: &StepPlan, batch: &[&PreparedRecord], view: &mut BatchView) -> Result<PolicyPass> {
    let mut layers = plan.dominant_layers.clone();
    layers.extend(plan.variant_layers.iter().copied());
    let mut p = Packer::new();
    let (mut chosen, mut rejected, mut prompt_last) = (vec![], vec![], vec![]);
    for r in batch {
        let rej = if plan.chosen_only { None } else { Some(r.rejected.as_ref().expect("prepared with a rejected")) };
        let slots = p.pair(&r.chosen, rej);
        chosen.push(slots.chosen);
        rejected.extend(slots.rejected);
        prompt_last.push(slots.prompt_last);
    }
    let packed = p.finish(m.policy.device())?;
    let (logps, hidden) = packed.scored_logps(m.policy, &hidden_request(&layers), "policy forward")?;
    let chosen_logps = select(&logps, &chosen);
    let rejected_logps = if plan.chosen_only { chosen_logps.shallow_clone() } else { select(&logps, &rejected) };
    view.policy = Some(PairLogps::new(chosen_logps, rejected_logps).map_err(TrainError::loss("policy log-probs"))?);
    Ok(PolicyPass { packed, hidden, chosen, prompt_last })
}

/// KTO's mismatched pairs (record `i`'s prompt with record `i + 1`'s chosen completion)
/// under the policy, packed; the reference side is cached. Returns the tokens forwarded.
fn kl_logps(m: &StepModels, indices: &[usize], all: &[PreparedRecord]) -> Result<(KlLogps, usize)> {
    let n = all.len();
    let mut p = Packer::new();
    for &i in indices {
        p.tree(&all[i].chosen.prompt, &[&all[(i + 1) % n].chosen.completion]);
    }
    let packed = p.finish(m.policy.device())?;
    let (kl, _) = packed.scored_logps(m.policy, &HiddenRequest::none(), "KL forward")?;
    Ok((KlLogps { policy: kl.sum, reference: pick(m, &cache(m).kl_sum, indices) }, packed.tokens))
}

/// The dominant chosen sequences' states at `layer`, right-padded `[B, T, D]` with their
/// mask: the policy's from the policy pass, the frozen reference's from a packed pass of the
/// chosen sequences without gradient that stops at `layer`.
fn dominant_states(
    m: &StepModels,
    batch: &[&PreparedRecord],
    pass: &PolicyPass,
    layer: Layer,
) -> Result<DominantStates> {
    let reference = m.reference.expect("reference model kept when dominant states are needed");
    let rows: Vec<&[usize]> = pass.chosen.iter().map(|&c| pass.packed.sequence_rows(c)).collect();
    let (policy, attention_mask) = unpack(&take_layer(&pass.hidden, layer), &rows);
    let mut p = Packer::new();
    let chosen: Vec<usize> =
        batch.iter().map(|r| p.tree(&r.chosen.prompt, &[&r.chosen.completion]).completions[0]).collect();
    let packed = p.finish(m.policy.device())?;
    let req = hidden_request(&std::collections::BTreeSet::from([layer]));
    let states = tch::no_grad(|| reference.hidden_states_packed(&packed.batch, &req))
        .map_err(TrainError::model("reference forward"))?;
    let ref_rows: Vec<&[usize]> = chosen.iter().map(|&c| packed.sequence_rows(c)).collect();
    let (reference_states, _) = unpack(&take_layer(&states, layer), &ref_rows);
    Ok(DominantStates { policy, reference: reference_states, attention_mask })
}

/// Last-prompt-token states `[G, K, D]` of every language variant at each requested layer:
/// the dominant variant's from the policy pass (the prompt's last token is in the trunk,
/// which attends to the prompt alone), the others from one packed prompt-only pass that
/// stops at the deepest layer asked for. Returns the tokens of that pass too.
fn variant_states(
    m: &StepModels,
    plan: &StepPlan,
    batch: &[&PreparedRecord],
    pass: &PolicyPass,
) -> Result<(BTreeMap<Layer, VariantStates>, usize)> {
    let (prompts, slots) = variant_prompts(batch);
    let others = if prompts.is_empty() {
        None
    } else {
        let mut p = Packer::new();
        let last: Vec<usize> = prompts.iter().map(|ids| p.tree(ids, &[]).prompt_last).collect();
        let packed = p.finish(m.policy.device())?;
        let hidden = packed.hidden_states(m.policy, &hidden_request(&plan.variant_layers), "prompt-only forward")?;
        Some((hidden, last, packed.tokens))
    };
    let mut out = BTreeMap::new();
    for &layer in &plan.variant_layers {
        let dominant = gather_rows(&take_layer(&pass.hidden, layer), &pass.prompt_last); // [G, D]
        let states = others.as_ref().map(|(hidden, last, _)| gather_rows(&take_layer(hidden, layer), last)); // [P, D]
        out.insert(layer, variant_grid(&dominant, states.as_ref(), &slots, m.num_languages));
    }
    debug_assert!(batch.len() == pass.prompt_last.len());
    Ok((out, others.map_or(0, |o| o.2)))
}

/// MPO's target-language pairs of the micro-batch under the policy, each pair one tree, in
/// one pass. Returns the tokens forwarded.
fn target_pairs(m: &StepModels, batch: &[&PreparedRecord]) -> Result<(TargetPairs, usize)> {
    let device = m.policy.device();
    let mut p = Packer::new();
    let (mut chosen, mut rejected, mut record, mut languages) = (vec![], vec![], vec![], vec![]);
    for (row, r) in batch.iter().enumerate() {
        for (lang, c, rej) in &r.targets {
            let slots = p.pair(c, Some(rej));
            chosen.push(slots.chosen);
            rejected.push(slots.rejected.expect("a rejected completion was given"));
            record.push(row as i64);
            languages.push(lang.clone());
        }
    }
    if record.is_empty() {
        return Ok((no_target_pairs(device)?, 0));
    }
    let packed = p.finish(device)?;
    let (lp, _) = packed.scored_logps(m.policy, &HiddenRequest::none(), "target forward")?;
    let policy =
        PairLogps::new(select(&lp, &chosen), select(&lp, &rejected)).map_err(TrainError::loss("target log-probs"))?;
    let record = Tensor::from_slice(&record).to_device(device);
    Ok((TargetPairs { policy, record, languages }, packed.tokens))
}
