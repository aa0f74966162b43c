//! Turning prepared records into padded tensors and running the forward passes a step's
//! objective needs, producing the [`BatchView`] its terms read.

use crate::prepare::PreparedRecord;
use crate::{Result, TrainError};
use align_losses::{
    predicting_positions, scored_sequence_logps, BatchView, DominantStates, KlLogps, Layer, Need, PairLogps,
    SequenceLogps, TargetPairs, VariantStates,
};
use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, HiddenStates};
use std::collections::BTreeSet;
use tch::{Device, Kind, Tensor};

/// Right-padded token sequences with their masks.
#[derive(Debug)]
pub struct Padded {
    /// `[N, T]` int64 token ids (padding = the pad id).
    pub ids: Tensor,
    /// `[N, T]` int64: 1 for tokens, 0 for padding.
    pub mask: Tensor,
    /// `[N, T]` float32: 1 for scored (completion) tokens.
    pub scored: Tensor,
    /// Prompt length of each sequence.
    pub prompt_lens: Vec<usize>,
    /// Non-padding tokens in all sequences.
    pub tokens: usize,
}

/// Right-pads `(prompt, completion)` sequences; the completion tokens are scored.
pub fn pad_pairs(seqs: &[(&[i64], &[i64])], pad_id: i64, device: Device) -> Padded {
    let t = seqs.iter().map(|(p, c)| p.len() + c.len()).max().unwrap_or(1).max(1);
    let n = seqs.len();
    let mut ids = vec![pad_id; n * t];
    let mut mask = vec![0i64; n * t];
    let mut scored = vec![0f32; n * t];
    for (row, (p, c)) in seqs.iter().enumerate() {
        for (j, &id) in p.iter().chain(c.iter()).enumerate() {
            ids[row * t + j] = id;
            mask[row * t + j] = 1;
            if j >= p.len() {
                scored[row * t + j] = 1.0;
            }
        }
    }
    let shape = [n as i64, t as i64];
    Padded {
        ids: Tensor::from_slice(&ids).reshape(shape).to_device(device),
        mask: Tensor::from_slice(&mask).reshape(shape).to_device(device),
        scored: Tensor::from_slice(&scored).reshape(shape).to_device(device),
        prompt_lens: seqs.iter().map(|(p, _)| p.len()).collect(),
        tokens: seqs.iter().map(|(p, c)| p.len() + c.len()).sum(),
    }
}

impl Padded {
    /// The summed log-probs of the scored tokens of each sequence under `model`, and the
    /// requested hidden states. Logits are computed only at the positions that predict a
    /// scored token ([`CausalLm::forward_at`]), never `[N, T, V]`: prompt and padding
    /// positions skip the output projection and its backward. `context` names the pass in
    /// errors ("policy forward", ...).
    pub fn scored_logps(
        &self,
        model: &impl CausalLm,
        hidden: &HiddenRequest,
        context: &str,
    ) -> Result<(SequenceLogps, HiddenStates)> {
        let loss_err = |source| TrainError::Loss { context: format!("{context}: log-probs"), source };
        let positions = predicting_positions(&self.scored).map_err(loss_err)?;
        let out = model
            .forward_at(&self.ids, &self.mask, &positions, hidden)
            .map_err(|source| TrainError::Model { context: context.to_string(), source })?;
        let logps = scored_sequence_logps(&out.logits, &self.ids, &self.scored).map_err(loss_err)?;
        Ok((logps, out.hidden))
    }
}

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

/// `[N, D]`: the state at each row's position `positions[row]` of `[N, T, D]` states.
pub fn gather_positions(states: &Tensor, positions: &[usize]) -> Tensor {
    let index: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
    let index = Tensor::from_slice(&index)
        .to_device(states.device())
        .view([-1, 1, 1])
        .expand([positions.len() as i64, 1, states.size()[2]], false);
    states.gather(1, &index, false).squeeze_dim(1)
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
    let device = m.policy.device();
    let b = batch.len();
    let mut view = BatchView::default();
    let mut tokens = 0;

    // Dominant chosen (and rejected) sequences in one forward; also yields the hidden states
    // of the dominant variant and of the retain term.
    let mut full_layers = plan.dominant_layers.clone();
    full_layers.extend(plan.variant_layers.iter().copied());
    let mut seqs: Vec<(&[i64], &[i64])> =
        batch.iter().map(|r| (&r.chosen.prompt[..], &r.chosen.completion[..])).collect();
    if !plan.chosen_only {
        for r in batch {
            let rej = r.rejected.as_ref().expect("prepared with a rejected completion");
            seqs.push((&rej.prompt[..], &rej.completion[..]));
        }
    }
    let padded = pad_pairs(&seqs, m.pad_id, device);
    tokens += padded.tokens;
    let (logps, hidden) = padded.scored_logps(m.policy, &hidden_request(&full_layers), "policy forward")?;
    let (chosen, rejected) = if plan.chosen_only {
        (logps.shallow_clone(), logps)
    } else {
        let split = |t: &Tensor, start: i64| t.narrow(0, start, b as i64);
        let c = SequenceLogps { sum: split(&logps.sum, 0), count: split(&logps.count, 0) };
        let r = SequenceLogps { sum: split(&logps.sum, b as i64), count: split(&logps.count, b as i64) };
        (c, r)
    };
    view.policy = Some(PairLogps::new(chosen, rejected).map_err(loss_err("policy log-probs"))?);

    if plan.reference || plan.kl {
        let cache = m.cache.expect("reference cache computed when the plan reads it");
        let idx = Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let pick = |t: &Tensor| t.index_select(0, &idx).to_device(device);
        if plan.reference {
            view.reference = Some(
                PairLogps::from_tensors(
                    pick(&cache.chosen_sum),
                    pick(&cache.chosen_count),
                    pick(&cache.rejected_sum),
                    pick(&cache.rejected_count),
                )
                .map_err(loss_err("reference log-probs"))?,
            );
        }
        if plan.kl {
            let n = all.len();
            let kl_seqs: Vec<(&[i64], &[i64])> =
                indices.iter().map(|&i| (&all[i].chosen.prompt[..], &all[(i + 1) % n].chosen.completion[..])).collect();
            let kp = pad_pairs(&kl_seqs, m.pad_id, device);
            tokens += kp.tokens;
            let (kl, _) = kp.scored_logps(m.policy, &HiddenRequest::none(), "KL forward")?;
            view.kl = Some(KlLogps { policy: kl.sum, reference: pick(&cache.kl_sum) });
        }
    }

    for &layer in &plan.dominant_layers {
        let reference = m.reference.expect("reference model kept when dominant states are needed");
        let chosen_rows = padded.ids.narrow(0, 0, b as i64);
        let chosen_mask = padded.mask.narrow(0, 0, b as i64);
        let req = hidden_request(&BTreeSet::from([layer]));
        let ref_states = tch::no_grad(|| reference.hidden_states(&chosen_rows, &chosen_mask, &req))
            .map_err(model_err("reference forward"))?;
        view.dominant_states.insert(
            layer,
            DominantStates {
                policy: take_layer(&hidden, layer).narrow(0, 0, b as i64),
                reference: take_layer(&ref_states, layer),
                attention_mask: chosen_mask,
            },
        );
    }

    if !plan.variant_layers.is_empty() {
        let (states, more) = variant_states(m, plan, batch, &hidden, &padded.prompt_lens)?;
        tokens += more;
        view.prompt_variants = states;
    }

    if plan.targets {
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
        if p > 0 {
            let tp = pad_pairs(&seqs, m.pad_id, device);
            tokens += tp.tokens;
            let (lp, _) = tp.scored_logps(m.policy, &HiddenRequest::none(), "target forward")?;
            let split = |t: &Tensor, s: usize| t.narrow(0, s as i64, p as i64);
            let policy =
                PairLogps::from_tensors(split(&lp.sum, 0), split(&lp.count, 0), split(&lp.sum, p), split(&lp.count, p))
                    .map_err(loss_err("target log-probs"))?;
            view.targets =
                Some(TargetPairs { policy, record: Tensor::from_slice(&record).to_device(device), languages });
        } else {
            let empty = || Tensor::zeros([0], (Kind::Float, device));
            let policy =
                PairLogps::from_tensors(empty(), empty(), empty(), empty()).map_err(loss_err("target log-probs"))?;
            view.targets =
                Some(TargetPairs { policy, record: Tensor::zeros([0], (Kind::Int64, device)), languages: vec![] });
        }
    }
    Ok((view, tokens))
}

/// Last-prompt-token states `[G, K, D]` of every language variant at each requested layer:
/// the dominant variant's from the chosen rows of the full forward (causal attention makes
/// them equal to a prompt-only pass), the others from one prompt-only pass that stops at the
/// deepest layer asked for.
fn variant_states(
    m: &StepModels,
    plan: &StepPlan,
    batch: &[&PreparedRecord],
    full: &HiddenStates,
    prompt_lens: &[usize],
) -> Result<(std::collections::BTreeMap<Layer, VariantStates>, usize)> {
    let device = m.policy.device();
    let (g, k) = (batch.len(), m.num_languages);
    let mut prompts: Vec<(&[i64], &[i64])> = Vec::new();
    let mut slots: Vec<(usize, usize)> = Vec::new(); // (group, language index)
    for (row, r) in batch.iter().enumerate() {
        for (lang, ids) in &r.variants {
            prompts.push((&ids[..], &[][..]));
            slots.push((row, *lang));
        }
    }
    let mut tokens = 0;
    let others = if prompts.is_empty() {
        None
    } else {
        let p = pad_pairs(&prompts, m.pad_id, device);
        tokens += p.tokens;
        let hidden = m
            .policy
            .hidden_states(&p.ids, &p.mask, &hidden_request(&plan.variant_layers))
            .map_err(model_err("prompt-only forward"))?;
        let last: Vec<usize> = prompts.iter().map(|(ids, _)| ids.len() - 1).collect();
        Some((hidden, last))
    };
    let mut mask = vec![false; g * k];
    for row in 0..g {
        mask[row * k] = true;
    }
    for &(row, lang) in &slots {
        mask[row * k + lang] = true;
    }
    let mask = Tensor::from_slice(&mask).reshape([g as i64, k as i64]).to_device(device);
    let mut out = std::collections::BTreeMap::new();
    for &layer in &plan.variant_layers {
        let dominant = gather_positions(
            &take_layer(full, layer).narrow(0, 0, g as i64),
            &prompt_lens[..g].iter().map(|l| l - 1).collect::<Vec<_>>(),
        ); // [G, D]
        let d = dominant.size()[1];
        let mut grid = dominant.zeros_like().unsqueeze(1).repeat([1, k as i64, 1]); // [G, K, D]
        grid = grid.index_put(
            &[
                Some(Tensor::arange(g as i64, (Kind::Int64, device))),
                Some(Tensor::zeros([g as i64], (Kind::Int64, device))),
            ],
            &dominant,
            false,
        );
        if let Some((hidden, last)) = &others {
            let states = gather_positions(&take_layer(hidden, layer), last); // [P, D]
            let rows: Vec<i64> = slots.iter().map(|s| s.0 as i64).collect();
            let cols: Vec<i64> = slots.iter().map(|s| s.1 as i64).collect();
            grid = grid.index_put(
                &[Some(Tensor::from_slice(&rows).to_device(device)), Some(Tensor::from_slice(&cols).to_device(device))],
                &states,
                false,
            );
        }
        debug_assert_eq!(grid.size(), [g as i64, k as i64, d]);
        out.insert(layer, VariantStates { states: grid, mask: Some(mask.shallow_clone()) });
    }
    Ok((out, tokens))
}
