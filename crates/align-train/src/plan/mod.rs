//! A memory plan before launch: the bytes per device a run's config needs, from the model
//! folder's `config.json` alone (no weights are loaded), by term and by phase, whether that
//! fits a device, and which switches would make it fit (`align train --config run.toml
//! --plan [--device-memory 80GiB] [--json]`; docs/training.md has tables for 7-9B models).
//!
//! ```
//! use align_train::plan::{estimate, param_counts, PlanInputs, RecordShape};
//! use align_train::batch::StepPlan;
//! use align_train::RunConfig;
//! use align_losses::Need;
//! use std::path::Path;
//!
//! let model = lm_backend::ModelConfig::from_json_str(r#"{"model_type": "llama", "vocab_size": 1000,
//!     "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
//!     "num_attention_heads": 4, "num_key_value_heads": 2}"#, "config.json")?;
//! let run = RunConfig::parse("[model]\npath = \"m\"\ndtype = \"bf16\"\n[data]\ntrain = \"d.jsonl\"\n\
//!     [[objective]]\nkind = \"dpo\"\n", Path::new("run.toml"))?;
//! let step = StepPlan::new(&[Need::PolicyLogps, Need::ReferenceLogps], false);
//! let plan = estimate(&PlanInputs::new(&run, &model, &step, RecordShape::worst_case(1024)));
//! assert_eq!(plan.model.params.total, param_counts(&model).total);
//! assert_eq!(plan.terms.weights, 2 * plan.model.params.total); // bf16
//! assert_eq!(plan.terms.optimizer_state, 8 * plan.model.params.total); // AdamW m and v in f32
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The terms (each a documented formula; bytes per device):
//!
//! - **weights**: parameters x dtype bytes ([`params`] counts them from the config's shapes;
//!   a test checks the count against `lm_backend::tensor_specs`); with `[lora]` the frozen base
//!   plus the f32 adapters;
//! - **gradients**: one per trained parameter, in its dtype (they stay allocated between
//!   steps: the optimizer zeroes them in place);
//! - **optimizer state**: AdamW's `m` and `v`, f32, per trained parameter (`optim.rs`);
//! - **master weights**: an f32 copy of each trained bf16 parameter (`optim.rs`);
//! - **reference model**: a second copy of the weights (its own `config.json` when `[model]
//!   reference` names another folder). `trainer/setup.rs` loads it whenever a term reads
//!   reference log-probs or states; it is kept during training only for MPO's retain term
//!   (hidden states), otherwise dropped once the reference log-probs are cached. With
//!   `[lora]` the reference is the base with the adapters off: no copy (unless `[model]
//!   reference` names another folder);
//! - **reference cache**: five f32 numbers per record (`trainer/reference.rs`), in host
//!   memory (on a CUDA device only a micro-batch's rows are copied over);
//! - **activations** and **logits**: what the step's passes keep for backward, see
//!   [`activations`]; plus the backward's working set (one decoder layer, two under
//!   checkpointing, and a layer weight's fresh gradient) or the logits' backward buffers,
//!   whichever is larger;
//! - **optimizer step**: its temporaries on the largest trained tensor, f32: the gradient's
//!   f32 copy (bf16), and one more, the squared gradient and then the update's denominator
//!   (`AdamW::step` updates the moments and the weights in place);
//! - **MLC heads**: `head_dim x (D + 1)` f32 parameters with gradient and AdamW state.
//!
//! Phases (the peak is the largest): **setup** (policy and reference weights, a no-gradient
//! reference forward for the cache; on a CPU also the weights file being mapped while it
//! loads), **step** (all persistent terms, the saved activations and logits, and the
//! backward's transients), **optimizer** (persistent terms and the update's temporaries).
//!
//! Record lengths are not read from the data: [`RecordShape::worst_case`] is the bound that
//! `max_length` allows, or [`RecordShape::with_prompt`] a stated shape.

pub mod activations;
pub mod fit;
pub mod params;
mod report;
pub mod size;

pub use activations::{tree_pass, Block, ForwardSettings, LoraSettings, Pass, PassBytes, RecordShape, TargetSet};
pub use fit::{
    check_fit, headroom_percent, required_bytes, Fit, Switch, HEADROOM_FIXED, HEADROOM_PERCENT, HEADROOM_PERCENT_CPU,
};
pub use params::{lora_params, param_counts, ParamCounts, Projection};
pub use report::render_table;
pub use size::{format_gib, parse_memory_size, GIB};

use crate::batch::StepPlan;
use crate::config::{AttentionImpl, Dtype, LayerChoice, ObjectiveConfig, ObjectiveKind, RunConfig};
use crate::terms::{build_objective, ModelShape};
use crate::{Result, TrainError};
use align_losses::{Layer, PreferenceObjective};
use lm_backend::ModelConfig;
use serde::Serialize;
use std::path::Path;

/// Everything a plan is computed from (no file is read by [`estimate`]).
#[derive(Debug, Clone)]
pub struct PlanInputs<'a> {
    /// The run config.
    pub run: &'a RunConfig,
    /// The policy's `config.json`.
    pub model: &'a ModelConfig,
    /// The reference's `config.json` when `[model] reference` names another folder.
    pub reference_model: Option<&'a ModelConfig>,
    /// Which passes a step runs (from the objective's needs).
    pub step: &'a StepPlan,
    /// Parameters of the objective's own trainable tensors (MLC heads).
    pub objective_params: u64,
    /// Record lengths assumed.
    pub shape: RecordShape,
    /// True when `shape` is [`RecordShape::worst_case`].
    pub worst_case: bool,
    /// Records in the data files, when they were counted.
    pub records: Option<u64>,
    /// The largest weights file of the folder the setup loads last (mapped while it loads;
    /// counted on a CPU device only).
    pub weights_file: Option<u64>,
    /// Processes of a data-parallel run (1: one process). The plan is per process; with
    /// `[train] shard_optimizer` the optimizer state and master weights are divided among them.
    pub world_size: u64,
}

impl<'a> PlanInputs<'a> {
    /// Inputs with no reference folder, no MLC heads, no record count and no weights file.
    pub fn new(run: &'a RunConfig, model: &'a ModelConfig, step: &'a StepPlan, shape: RecordShape) -> Self {
        let worst_case = shape == RecordShape::worst_case(run.data.max_length as u64);
        PlanInputs {
            run,
            model,
            reference_model: None,
            step,
            objective_params: 0,
            shape,
            worst_case,
            records: None,
            weights_file: None,
            world_size: 1,
        }
    }
}

/// The model as the plan sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    /// `model_type`.
    pub architecture: String,
    /// The policy's parameters.
    pub params: ParamCounts,
    /// The reference's parameters, when it is another folder.
    pub reference_params: Option<u64>,
}

/// The run settings the plan used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// `[model] dtype`.
    pub dtype: String,
    /// `[model] device`.
    pub device: String,
    /// `[model] attention` as configured.
    pub attention: String,
    /// The attention path the layers take (`eager` for soft-capped scores whatever the key).
    pub attention_used: String,
    /// `[train] packing`.
    pub packing: bool,
    /// `[train] gradient_checkpointing`.
    pub gradient_checkpointing: bool,
    /// `[train] batch_size`.
    pub batch_size: usize,
    /// `[train] grad_accum`.
    pub grad_accum: usize,
    /// Processes of a data-parallel run; the plan is per process.
    pub world_size: u64,
    /// Whether each process holds only its shard of the optimizer state.
    pub shard_optimizer: bool,
    /// `[data] languages` count.
    pub languages: usize,
    /// `[data] max_length`.
    pub max_length: usize,
    /// Record lengths assumed.
    pub shape: RecordShape,
    /// Whether `shape` is the worst case `max_length` allows.
    pub worst_case: bool,
    /// Records counted in the data files.
    pub records: Option<u64>,
    /// `[lora]`: rank, targets and adapter parameters.
    pub lora: Option<LoraSummary>,
}

/// `[lora]` in the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoraSummary {
    /// Rank.
    pub r: u64,
    /// Adapted projections.
    pub target_modules: Vec<String>,
    /// Adapter parameters: `r (in + out)` per targeted projection per layer.
    pub adapter_params: u64,
    /// Their bytes: f32 weights, gradients, AdamW `m` and `v` (16 per parameter).
    pub adapter_bytes: u64,
}

/// One forward pass of the step and what it keeps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassPlan {
    /// The pass.
    pub pass: Pass,
    /// Its bytes.
    pub bytes: PassBytes,
}

/// The terms, in bytes per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Terms {
    /// Policy weights (with `[lora]`: frozen base plus f32 adapters).
    pub weights: u64,
    /// Gradients of the trained parameters.
    pub gradients: u64,
    /// AdamW `m` and `v` (f32).
    pub optimizer_state: u64,
    /// f32 copies of trained bf16 parameters.
    pub master_weights: u64,
    /// The reference model kept during training (MPO's retain term).
    pub reference_model: u64,
    /// The reference model while the setup computes the reference cache.
    pub reference_model_setup: u64,
    /// The reference cache (host memory; on the device only for `device = "cpu"`).
    pub reference_cache: u64,
    /// MLC heads: f32 weights, gradients and AdamW state.
    pub objective_heads: u64,
    /// Activations kept for backward by all passes of a micro-batch.
    pub activations: u64,
    /// Final norm, output-projection inputs and f32 logits kept for backward.
    pub logits: u64,
    /// MPO retain: the frozen reference's pass and the two `[B, T, D]` state tensors.
    pub retain_states: u64,
    /// Backward transients: max of the layer working set and the logits' backward buffers.
    pub backward_transient: u64,
    /// The optimizer update's temporaries.
    pub optimizer_transient: u64,
    /// The no-gradient reference forward of the setup (one layer, masks, logits buffers).
    pub setup_forward: u64,
    /// A weights file mapped while it loads (CPU device only).
    pub weights_file_mapping: u64,
}

/// Peak bytes by phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Phases {
    /// Loading and the reference cache.
    pub setup: u64,
    /// Forward and backward of a micro-batch.
    pub step: u64,
    /// The AdamW update.
    pub optimizer: u64,
    /// The largest of the three.
    pub peak: u64,
    /// Which phase the peak is in.
    pub peak_phase: String,
}

/// The step's activation bytes (saved activations, logits and backward transients) under
/// one combination of the three switches that change them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivationVariant {
    /// `gradient_checkpointing`.
    pub gradient_checkpointing: bool,
    /// `attention` (the path used: soft-capped models stay eager).
    pub attention: String,
    /// `packing`.
    pub packing: bool,
    /// Bytes.
    pub bytes: u64,
    /// This is the config's own combination.
    pub current: bool,
}

/// A run's memory plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPlan {
    /// The model.
    pub model: ModelSummary,
    /// The run settings used.
    pub run: RunSummary,
    /// The passes of one micro-batch.
    pub passes: Vec<PassPlan>,
    /// The reference-cache pass of the setup (no gradient), when there is one.
    pub setup_pass: Option<PassPlan>,
    /// The terms.
    pub terms: Terms,
    /// The phases and the peak.
    pub phases: Phases,
    /// Activation bytes with and without checkpointing, sdpa or eager, packed or padded.
    pub activation_variants: Vec<ActivationVariant>,
}

/// Bytes per element of `dtype`.
fn dtype_bytes(dtype: Dtype) -> u64 {
    match dtype {
        Dtype::F32 => 4,
        Dtype::Bf16 => 2,
    }
}

/// The forward settings of `run` on `model`.
pub fn forward_settings(run: &RunConfig, model: &ModelConfig) -> ForwardSettings {
    let lora = run.lora.as_ref().map(|l| {
        let targets: Vec<Projection> = l.target_modules.iter().filter_map(|n| Projection::from_name(n)).collect();
        LoraSettings { r: l.r as u64, targets: TargetSet::new(&targets), dropout: l.dropout > 0.0 }
    });
    ForwardSettings {
        dtype_bytes: dtype_bytes(run.model.dtype),
        sdpa: run.model.attention == AttentionImpl::Sdpa && model.attn_logit_softcap.is_none(),
        packing: run.train.packing,
        checkpointing: run.train.gradient_checkpointing,
        lora,
    }
}

/// The hidden-state depth a set of layers needs: the deepest index (`L` for the last layer).
fn depth(layers: &std::collections::BTreeSet<Layer>, num_layers: u64) -> u64 {
    layers
        .iter()
        .map(|l| match l {
            Layer::Index(i) => *i as u64,
            Layer::Last => num_layers,
        })
        .max()
        .unwrap_or(0)
}

/// The forward passes of one micro-batch of `batch` records (`trainer/step.rs`,
/// `batch/mod.rs`): the policy pass always; KTO's mismatched pairs; MLC's prompt variants up
/// to the deepest MLC layer; MPO's target pairs (every other language, the worst case); and
/// for MPO's retain term the frozen reference's pass (no gradient).
pub fn step_passes(inputs: &PlanInputs, settings: &ForwardSettings, batch: u64) -> Vec<Pass> {
    let (step, shape, l) = (inputs.step, inputs.shape, inputs.model.num_layers as u64);
    let others = inputs.run.data.languages.len().saturating_sub(1) as u64;
    let (p, c, packing) = (shape.prompt, shape.completion, settings.packing);
    let branches: &[u64] = if step.chosen_only { &[c] } else { &[c, c] };
    let name = if step.chosen_only { "policy (chosen)" } else { "policy (chosen + rejected)" };
    let mut passes = vec![activations::tree_pass(name, batch, p, branches, l, true, packing)];
    if step.kl {
        passes.push(activations::tree_pass("KL pairs (KTO)", batch, p, &[c], l, true, packing));
    }
    if !step.variant_layers.is_empty() && others > 0 {
        let (count, layers) = (batch * others, depth(&step.variant_layers, l));
        let pv = shape.variant_prompt;
        passes.push(activations::tree_pass("prompt variants (MLC)", count, pv, &[], layers, false, packing));
    }
    if step.targets && others > 0 {
        passes.push(activations::tree_pass("target pairs (MPO)", batch * others, p, &[c, c], l, true, packing));
    }
    if !step.dominant_layers.is_empty() {
        let layers = depth(&step.dominant_layers, l);
        let mut pass = activations::tree_pass("reference states (MPO retain)", batch, p, &[c], layers, false, packing);
        pass.grad = false;
        passes.push(pass);
    }
    passes
}

/// Whether the setup loads a reference model, and whether training keeps it.
fn reference_use(inputs: &PlanInputs) -> (bool, bool) {
    let step = inputs.step;
    let loaded = step.reference || step.kl || !step.dominant_layers.is_empty();
    let kept = !step.dominant_layers.is_empty();
    // With [lora] the reference is the base with the adapters off, unless it is another folder.
    let separate = inputs.run.lora.is_none() || inputs.reference_model.is_some();
    (loaded && separate, kept && separate)
}

/// The plan of `inputs` (formulas in the module documentation).
pub fn estimate(inputs: &PlanInputs) -> MemoryPlan {
    let (run, m) = (inputs.run, inputs.model);
    let settings = forward_settings(run, m);
    let s = settings.dtype_bytes;
    let params = param_counts(m);
    let lora = run.lora.as_ref().map(|l| {
        let targets = settings.lora.expect("settings of [lora]").targets.projections();
        let adapter_params = lora_params(m, l.r as u64, &targets);
        LoraSummary {
            r: l.r as u64,
            target_modules: targets.iter().map(|p| p.name().to_string()).collect(),
            adapter_params,
            adapter_bytes: 16 * adapter_params,
        }
    });
    let batch = run.train.batch_size as u64;
    let passes: Vec<PassPlan> = step_passes(inputs, &settings, batch)
        .into_iter()
        .map(|pass| PassPlan { bytes: activations::pass_bytes(m, &settings, &pass), pass })
        .collect();
    let (reference_loaded, reference_kept) = reference_use(inputs);
    let reference_params = inputs.reference_model.map(|r| param_counts(r).total).unwrap_or(params.total);

    let mut t = Terms::default();
    let objective = inputs.objective_params;
    let (trained, trained_bytes, largest) = match &lora {
        Some(l) => {
            let targets = settings.lora.expect("settings of [lora]").targets.projections();
            (l.adapter_params, 4, params::lora_largest_tensor(m, l.r, &targets))
        }
        None => (params.total, s, params.largest_tensor),
    };
    t.weights = params.total * s + lora.as_ref().map_or(0, |l| 4 * l.adapter_params);
    t.gradients = trained * trained_bytes;
    t.optimizer_state = 8 * trained;
    t.master_weights = if trained_bytes == 4 { 0 } else { 4 * trained };
    let world = inputs.world_size.max(1);
    if world > 1 && run.train.shard_optimizer {
        // ZeRO-1: this rank's share of the state, plus its share of the summed gradients
        // (float32), which the sharded update reads.
        t.optimizer_state = t.optimizer_state.div_ceil(world);
        t.master_weights = t.master_weights.div_ceil(world);
        t.gradients += (4 * trained).div_ceil(world);
    }
    t.objective_heads = 16 * objective;
    t.reference_model_setup = if reference_loaded { reference_params * s } else { 0 };
    t.reference_model = if reference_kept { reference_params * s } else { 0 };
    t.reference_cache = inputs.records.map_or(0, |n| 20 * n);
    t.activations = passes.iter().map(|p| p.bytes.activations).sum();
    t.logits = passes.iter().map(|p| p.bytes.logits).sum();
    t.retain_states = retain_states(inputs, &passes, s);
    t.backward_transient = backward_transient(&passes, &settings, m, &params);
    t.optimizer_transient = 4 * largest * if trained_bytes == 4 { 1 } else { 2 };
    if world > 1 {
        // The float32 buffers of one gradient bucket in flight (flattened and reduced).
        t.backward_transient = t.backward_transient.max(2 * crate::dist::BUCKET_BYTES as u64);
    }
    let on_cpu = run.model.device == "cpu";
    t.weights_file_mapping = if on_cpu { inputs.weights_file.unwrap_or(0) } else { 0 };
    let setup_pass = (inputs.step.reference || inputs.step.kl).then(|| setup_pass(inputs, &settings, batch));
    t.setup_forward = setup_pass.as_ref().map_or(0, |p| setup_forward(m, s, p));

    let cache_here = if on_cpu { t.reference_cache } else { 0 };
    let persistent = t.weights
        + t.gradients
        + t.optimizer_state
        + t.master_weights
        + t.reference_model
        + t.objective_heads
        + cache_here;
    let setup = t.weights + t.objective_heads + t.reference_model_setup + t.setup_forward + t.weights_file_mapping;
    let step = persistent + t.activations + t.logits + t.retain_states + t.backward_transient;
    let optimizer = persistent + t.optimizer_transient;
    let (peak, peak_phase) =
        [(setup, "setup"), (step, "step"), (optimizer, "optimizer")].into_iter().max_by_key(|(b, _)| *b).unwrap();

    MemoryPlan {
        model: ModelSummary {
            architecture: m.architecture.model_type().into(),
            params,
            reference_params: inputs.reference_model.map(|r| param_counts(r).total),
        },
        run: RunSummary {
            dtype: run.model.dtype.name().into(),
            device: run.model.device.clone(),
            attention: run.model.attention.name().into(),
            attention_used: if settings.sdpa { "sdpa" } else { "eager" }.into(),
            packing: run.train.packing,
            gradient_checkpointing: run.train.gradient_checkpointing,
            batch_size: run.train.batch_size,
            grad_accum: run.train.grad_accum,
            languages: run.data.languages.len(),
            world_size: world,
            shard_optimizer: run.train.shard_optimizer && world > 1,
            max_length: run.data.max_length,
            shape: inputs.shape,
            worst_case: inputs.worst_case,
            records: inputs.records,
            lora,
        },
        activation_variants: activation_variants(inputs, &settings),
        passes,
        setup_pass,
        terms: t,
        phases: Phases { setup, step, optimizer, peak, peak_phase: peak_phase.into() },
    }
}

/// MPO retain: the frozen reference pass's working set and the policy's and reference's
/// `[B, T, D]` states with their f32 difference.
fn retain_states(inputs: &PlanInputs, passes: &[PassPlan], s: u64) -> u64 {
    let d = inputs.model.hidden_size as u64;
    passes
        .iter()
        .filter(|p| !p.pass.grad)
        .map(|p| {
            let rows = inputs.run.train.batch_size as u64 * (inputs.shape.prompt + inputs.shape.completion);
            p.bytes.layer + p.bytes.shared + (2 * s + 4) * rows * d
        })
        .sum()
}

/// The backward's transient bytes: the larger of the logits' backward buffers and a layer's
/// working set (one layer's set, two under checkpointing, plus a layer weight's fresh
/// gradient when the base trains).
fn backward_transient(passes: &[PassPlan], set: &ForwardSettings, m: &ModelConfig, params: &ParamCounts) -> u64 {
    let grad_passes = passes.iter().filter(|p| p.pass.grad);
    let layer = grad_passes.clone().map(|p| p.bytes.layer).max().unwrap_or(0);
    let copies = if set.checkpointing { 2 } else { 1 };
    let weight_grad = if set.base_trains() { set.dtype_bytes * params.largest_layer_tensor } else { 0 };
    let working = if m.num_layers > 0 { copies * layer + weight_grad } else { 0 };
    let logits = grad_passes.map(|p| p.bytes.logits_backward).max().unwrap_or(0);
    working.max(logits)
}

/// The setup's reference-cache pass: `batch_size` records' pairs (chosen twice for
/// chosen-only runs) and KTO's mismatched pairs, one packed row, no gradient.
fn setup_pass(inputs: &PlanInputs, settings: &ForwardSettings, batch: u64) -> PassPlan {
    let (p, c, l) = (inputs.shape.prompt, inputs.shape.completion, inputs.model.num_layers as u64);
    let mut pass = activations::tree_pass("reference cache", batch, p, &[c, c], l, true, settings.packing);
    if inputs.step.kl {
        let kl = activations::tree_pass("", batch, p, &[c], l, true, settings.packing);
        pass.tokens += kl.tokens;
        pass.predicting += kl.predicting;
        pass.chunks += kl.chunks;
        pass.blocks.extend(kl.blocks);
    }
    pass.grad = false;
    let bytes = activations::pass_bytes(inputs.model, settings, &pass);
    PassPlan { pass, bytes }
}

/// The setup forward's peak: one layer, its masks and tables, and the logits buffers (the
/// model-dtype logits, their f32 copy and the log-sum-exp's temporary; Gemma 2's soft-cap).
fn setup_forward(m: &ModelConfig, s: u64, p: &PassPlan) -> u64 {
    let pv = p.pass.predicting * m.vocab_size as u64;
    let softcap = if m.final_logit_softcap.is_some() { s } else { 0 };
    let copy = if s == 4 { 0 } else { s };
    p.bytes.layer + p.bytes.shared + pv * (8 + copy + softcap)
}

/// The step's activation bytes under every combination of checkpointing, attention path and
/// layout.
fn activation_variants(inputs: &PlanInputs, current: &ForwardSettings) -> Vec<ActivationVariant> {
    let params = param_counts(inputs.model);
    let mut out = vec![];
    let softcapped = inputs.model.attn_logit_softcap.is_some();
    for checkpointing in [false, true] {
        for sdpa in [true, false] {
            if sdpa && softcapped {
                continue;
            }
            for packing in [true, false] {
                let set = ForwardSettings { checkpointing, sdpa, packing, ..*current };
                let batch = inputs.run.train.batch_size as u64;
                let passes: Vec<PassPlan> = step_passes(inputs, &set, batch)
                    .into_iter()
                    .map(|pass| PassPlan { bytes: activations::pass_bytes(inputs.model, &set, &pass), pass })
                    .collect();
                let saved: u64 = passes.iter().map(|p| p.bytes.activations + p.bytes.logits).sum();
                let bytes = saved
                    + retain_states(inputs, &passes, set.dtype_bytes)
                    + backward_transient(&passes, &set, inputs.model, &params);
                out.push(ActivationVariant {
                    gradient_checkpointing: checkpointing,
                    attention: if sdpa { "sdpa" } else { "eager" }.into(),
                    packing,
                    bytes,
                    current: set == *current,
                });
            }
        }
    }
    out
}

/// How [`PlanSource::read`] sizes the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Every prompt (each language variant too) this many tokens, every completion the rest of
    /// `max_length`; `None`: [`RecordShape::worst_case`].
    pub prompt_tokens: Option<u64>,
    /// Processes of a data-parallel run (0 or 1: one process); the plan is per process.
    pub world_size: u64,
}

/// What a plan of a run config is computed from, read from its files: the model folder's
/// `config.json` (and the reference folder's, when it is another one), the step's passes
/// (from the objective's needs), the record count of the data files that exist and the size
/// of the weights files (counted on a CPU device). No weights are loaded.
#[derive(Debug)]
pub struct PlanSource {
    run: RunConfig,
    model: ModelConfig,
    reference: Option<ModelConfig>,
    step: StepPlan,
    objective_params: u64,
    shape: RecordShape,
    worst_case: bool,
    records: Option<u64>,
    weights_file: Option<u64>,
    world_size: u64,
}

/// `config`'s objectives with `layer = "auto"` replaced by the deepest candidate, `L - 1`.
/// The choice needs the model's weights, which a plan does not load; only the depth of the
/// prompt-variant pass depends on it (the pass stops at the layer read), so the deepest
/// candidate is the worst case for memory. A model with fewer than 2 layers is the same error
/// as in training.
fn worst_case_auto_layers(config: &RunConfig, config_path: &Path, num_layers: usize) -> Result<Vec<ObjectiveConfig>> {
    let mut objectives = config.objectives.clone();
    for (i, o) in objectives.iter_mut().enumerate() {
        if o.kind.layer_choice() == Some(LayerChoice::Auto) {
            let deepest = crate::auto_layer::candidates(num_layers).map_err(|e| TrainError::InvalidValue {
                path: config_path.to_path_buf(),
                table: crate::terms::objective_table(i, o),
                key: "layer".into(),
                why: match e {
                    TrainError::BadInput { why, .. } => format!("\"auto\": {why}"),
                    other => other.to_string(),
                },
            })?;
            o.kind = o.kind.with_auto_layer(deepest[deepest.len() - 1]);
        }
    }
    Ok(objectives)
}

impl PlanSource {
    /// Reads what the plan of `config` (read from `config_path`) needs; errors name the file
    /// (a missing or malformed `config.json`, an objective the model cannot serve, a
    /// `prompt_tokens` outside `1..max_length`).
    pub fn read(config: &RunConfig, config_path: &Path, options: &PlanOptions) -> Result<Self> {
        let read = |dir: &Path| {
            ModelConfig::from_dir(dir)
                .map_err(TrainError::model(format!("reading the model config in {}", dir.display())))
        };
        let model = read(&config.model.path)?;
        let reference_dir = config.model.reference.as_ref().filter(|dir| **dir != config.model.path);
        let reference = reference_dir.map(|dir| read(dir)).transpose()?;
        let shape_ctx = ModelShape { num_layers: model.num_layers, hidden_size: model.hidden_size };
        let heads = tch::nn::VarStore::new(tch::Device::Cpu);
        let objectives = worst_case_auto_layers(config, config_path, model.num_layers)?;
        let objective = build_objective(&objectives, shape_ctx, &(heads.root() / "mlc_head"), config_path)?;
        let chosen_only = config.objectives.iter().all(|o| o.kind.is_chosen_only());
        let step = StepPlan::new(&objective.needs(), chosen_only);
        let max_length = config.data.max_length as u64;
        let shape = match options.prompt_tokens {
            None => RecordShape::worst_case(max_length),
            Some(p) => RecordShape::with_prompt(max_length, p).ok_or_else(|| {
                let why = format!("{p} must be at least 1 and below [data] max_length = {max_length}");
                TrainError::input("prompt tokens", why)
            })?,
        };
        let objective_params = config
            .objectives
            .iter()
            .map(|o| match o.kind {
                ObjectiveKind::Mlc { head_dim, .. } if head_dim > 0 => (head_dim * (model.hidden_size + 1)) as u64,
                _ => 0,
            })
            .sum();
        let last_loaded = reference_dir.unwrap_or(&config.model.path);
        Ok(PlanSource {
            run: config.clone(),
            weights_file: largest_weights_file(last_loaded),
            records: count_records(&config.data.train),
            model,
            reference,
            step,
            objective_params,
            shape,
            worst_case: options.prompt_tokens.is_none(),
            world_size: options.world_size.max(1),
        })
    }

    /// The inputs of [`estimate`].
    pub fn inputs(&self) -> PlanInputs<'_> {
        PlanInputs {
            run: &self.run,
            model: &self.model,
            reference_model: self.reference.as_ref(),
            step: &self.step,
            objective_params: self.objective_params,
            shape: self.shape,
            worst_case: self.worst_case,
            records: self.records,
            weights_file: self.weights_file,
            world_size: self.world_size,
        }
    }

    /// The plan.
    pub fn plan(&self) -> MemoryPlan {
        estimate(&self.inputs())
    }

    /// The plan checked against a device of `device_bytes` ([`check_fit`]).
    pub fn check_fit(&self, device_bytes: u64) -> Fit {
        let inputs = self.inputs();
        check_fit(&inputs, &estimate(&inputs), device_bytes)
    }
}

/// Non-blank lines of the data files (read line by line), when every file can be read.
fn count_records(files: &[std::path::PathBuf]) -> Option<u64> {
    use std::io::BufRead;
    let count = |path: &std::path::PathBuf| -> Option<u64> {
        let lines = std::io::BufReader::new(std::fs::File::open(path).ok()?).split(b'\n');
        let mut n = 0;
        for line in lines {
            n += u64::from(line.ok()?.iter().any(|c| !c.is_ascii_whitespace()));
        }
        Some(n)
    };
    files.iter().map(count).sum()
}

/// The largest `*.safetensors` file of `dir`, if any.
fn largest_weights_file(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .max()
}
