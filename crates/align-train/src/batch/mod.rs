//! Running the forward passes a step's objective needs on a micro-batch of prepared records,
//! producing the [`BatchView`] its terms read. Which passes run is decided once per run by
//! the [`StepPlan`] (from the terms' [`Need`]s). Two layouts compute the same view:
//! `packed` (the default: no padding, each pair's prompt forwarded once, see
//! [`crate::packing`]) and `padded` (right-padded rows, [`crate::padding`]; the reference
//! the packed path is tested against).

mod packed;
mod padded;

use crate::prepare::PreparedRecord;
use crate::{Result, TrainError};
use align_losses::{BatchView, DominantStates, KlLogps, Layer, Need, PairLogps, TargetPairs, VariantStates};
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
#[derive(Clone, Copy)]
pub struct StepModels<'a> {
    /// The model being trained: an [`HfCausalLm`], or its activation-checkpointed form
    /// ([`lm_backend::Checkpointed`], see [`crate::trainer::micro_batch_backward`]).
    pub policy: &'a dyn CausalLm,
    /// The frozen reference (only for dominant-sequence states).
    pub reference: Option<&'a HfCausalLm>,
    /// Cached reference log-probs (when the plan reads them).
    pub cache: Option<&'a ReferenceCache>,
    /// Padding token id.
    pub pad_id: i64,
    /// Number of configured languages `K` (dominant first).
    pub num_languages: usize,
    /// Padding-free batches ([`crate::packing`]); false: right-padded rows.
    pub packing: bool,
    /// The micro-batch's dropout key (LoRA adapter dropout): pass `i` of the step's passes
    /// with gradient runs under `dropout_key + i`, so its masks are a function of the run's
    /// seed, step, micro-batch and pass (see [`dropout_key`]). No effect without dropout.
    pub dropout_key: u64,
    /// The run's languages, dominant first (terms' per-language metrics over a split batch).
    pub languages: &'a [String],
    /// Sums over the ranks of a data-parallel run ([`crate::dist::World::ranks`]); `None`:
    /// the micro-batch is the whole batch.
    pub ranks: Option<&'a std::sync::Arc<dyn align_losses::RankSum>>,
}

/// The dropout key of micro-batch `micro` of step `step` (0-based) of a run with seed `seed`.
pub fn dropout_key(seed: u64, step: u64, micro: usize) -> u64 {
    let mut h = crate::seeded::Fnv1a::new();
    for x in [seed, step, micro as u64] {
        h.write_u64(x);
    }
    h.finish()
}

/// The passes with gradient of one micro-batch, in the order [`view_in`] runs them; each
/// has its own dropout key (`StepModels::dropout_key + pass`).
#[derive(Debug, Clone, Copy)]
enum Pass {
    Policy,
    Kl,
    Variants,
    Targets,
}

impl StepModels<'_> {
    /// Sets the policy's dropout key for `pass`.
    fn key_for(&self, pass: Pass) {
        self.policy.set_dropout_key(self.dropout_key.wrapping_add(pass as u64));
    }
}

/// Runs the forward passes of one micro-batch (records `batch`, their dataset indices
/// `indices`, all records `all` for KTO's mismatched completions) and returns the view plus
/// the number of tokens forwarded with gradient (padding never counts).
pub fn build_view(
    m: &StepModels,
    plan: &StepPlan,
    batch: &[&PreparedRecord],
    indices: &[usize],
    all: &[PreparedRecord],
) -> Result<(BatchView, usize)> {
    if m.packing {
        view_in::<packed::PackedLayout>(m, plan, batch, indices, all)
    } else {
        view_in::<padded::PaddedLayout>(m, plan, batch, indices, all)
    }
}

/// The passes of one batch layout; [`view_in`] runs those the plan asks for. Each pass that
/// forwards with gradient also returns its token count.
trait Layout {
    /// What the policy pass leaves for the dominant-state and variant passes.
    type Policy;
    /// The dominant pairs under the policy: sets `view.policy`.
    fn policy_pass(
        m: &StepModels,
        plan: &StepPlan,
        batch: &[&PreparedRecord],
        view: &mut BatchView,
    ) -> Result<Self::Policy>;
    /// Tokens the policy pass forwarded.
    fn policy_tokens(pass: &Self::Policy) -> usize;
    /// KTO's mismatched pairs under the policy.
    fn kl_logps(m: &StepModels, indices: &[usize], all: &[PreparedRecord]) -> Result<(KlLogps, usize)>;
    /// The dominant chosen sequences' states at `layer`, policy and reference.
    fn dominant_states(
        m: &StepModels,
        batch: &[&PreparedRecord],
        pass: &Self::Policy,
        layer: Layer,
    ) -> Result<DominantStates>;
    /// Every language variant's last-prompt-token state at each requested layer.
    fn variant_states(
        m: &StepModels,
        plan: &StepPlan,
        batch: &[&PreparedRecord],
        pass: &Self::Policy,
    ) -> Result<(BTreeMap<Layer, VariantStates>, usize)>;
    /// MPO's target-language pairs under the policy.
    fn target_pairs(m: &StepModels, batch: &[&PreparedRecord]) -> Result<(TargetPairs, usize)>;
}

/// The view of one micro-batch from the passes of layout `L` (see [`build_view`]).
fn view_in<L: Layout>(
    m: &StepModels,
    plan: &StepPlan,
    batch: &[&PreparedRecord],
    indices: &[usize],
    all: &[PreparedRecord],
) -> Result<(BatchView, usize)> {
    let mut view = BatchView { languages: m.languages.to_vec(), ranks: m.ranks.cloned(), ..BatchView::default() };
    m.key_for(Pass::Policy);
    let pass = L::policy_pass(m, plan, batch, &mut view)?;
    let mut tokens = L::policy_tokens(&pass);
    if plan.reference {
        view.reference = Some(cached_reference(m, indices)?);
    }
    if plan.kl {
        m.key_for(Pass::Kl);
        let (kl, more) = L::kl_logps(m, indices, all)?;
        view.kl = Some(kl);
        tokens += more;
    }
    for &layer in &plan.dominant_layers {
        view.dominant_states.insert(layer, L::dominant_states(m, batch, &pass, layer)?);
    }
    if !plan.variant_layers.is_empty() {
        m.key_for(Pass::Variants);
        let (states, more) = L::variant_states(m, plan, batch, &pass)?;
        tokens += more;
        view.prompt_variants = states;
    }
    if plan.targets {
        m.key_for(Pass::Targets);
        let (targets, more) = L::target_pairs(m, batch)?;
        view.targets = Some(targets);
        tokens += more;
    }
    Ok((view, tokens))
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
    .map_err(TrainError::loss("reference log-probs"))
}

/// MPO's target pairs with no pair in this micro-batch.
fn no_target_pairs(device: Device) -> Result<TargetPairs> {
    let empty = || Tensor::zeros([0], (Kind::Float, device));
    let policy =
        PairLogps::from_tensors(empty(), empty(), empty(), empty()).map_err(TrainError::loss("target log-probs"))?;
    Ok(TargetPairs { policy, record: Tensor::zeros([0], (Kind::Int64, device)), languages: vec![] })
}

/// The `[G, K, D]` grid of language-variant states with its `[G, K]` mask: each group's
/// dominant state (`[G, D]`) in column 0, and `others` (`[P, D]`) at their `(group,
/// language index)` slots; cells without a variant are zero and masked.
fn variant_grid(dominant: &Tensor, others: Option<&Tensor>, slots: &[(usize, usize)], k: usize) -> VariantStates {
    let device = dominant.device();
    let g = dominant.size()[0];
    let mut grid = dominant.zeros_like().unsqueeze(1).repeat([1, k as i64, 1]); // [G, K, D]
    let column0 = [Some(Tensor::arange(g, (Kind::Int64, device))), Some(Tensor::zeros([g], (Kind::Int64, device)))];
    grid = grid.index_put(&column0, dominant, false);
    if let Some(states) = others {
        let rows: Vec<i64> = slots.iter().map(|s| s.0 as i64).collect();
        let cols: Vec<i64> = slots.iter().map(|s| s.1 as i64).collect();
        let at = [Some(Tensor::from_slice(&rows).to_device(device)), Some(Tensor::from_slice(&cols).to_device(device))];
        grid = grid.index_put(&at, states, false);
    }
    let mut mask = vec![false; g as usize * k];
    for row in 0..g as usize {
        mask[row * k] = true;
    }
    for &(row, lang) in slots {
        mask[row * k + lang] = true;
    }
    let mask = Tensor::from_slice(&mask).reshape([g, k as i64]).to_device(device);
    VariantStates { states: grid, mask: Some(mask) }
}

/// The non-dominant prompt variants of a micro-batch, each with its `(group, language
/// index)` slot.
fn variant_prompts<'a>(batch: &[&'a PreparedRecord]) -> (Vec<&'a [i64]>, Vec<(usize, usize)>) {
    let mut prompts = Vec::new();
    let mut slots = Vec::new();
    for (row, r) in batch.iter().enumerate() {
        for (lang, ids) in &r.variants {
            prompts.push(&ids[..]);
            slots.push((row, *lang));
        }
    }
    (prompts, slots)
}
