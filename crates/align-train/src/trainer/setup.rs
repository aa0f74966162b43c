//! Run setup: everything a run needs before its first step — the tokenizer's EOS and pad ids,
//! the policy (from the base model or the checkpoint to resume; with `[lora]`, the base with
//! fresh adapters or the checkpoint's), the records, the layers of `layer = "auto"` terms
//! ([`super::layer_choice`]), the objective and its [`StepPlan`], the encoded records, the
//! frozen reference (under `[lora]`, the policy's base without adapters) and its cached
//! log-probs.

use super::events::{Events, TrainEvent};
use super::layer_choice::{resolve_auto_layers, AutoLayerInputs};
use super::reference::{reference_cache, ReferenceInputs};
use crate::batch::{ReferenceCache, StepModels, StepPlan};
use crate::config::{Dtype, RunConfig};
use crate::data::{load_records, Dataset};
use crate::dist::World;
use crate::encode::TextEncoder;
use crate::prepare::{prepare_records, PreparedRecord, RecordNeeds};
use crate::seeded::Fnv1a;
use crate::terms::{build_objective, ModelShape};
use crate::{Result, TrainError};
use align_losses::RankSum;
use align_losses::{ObjectiveStack, PreferenceObjective};
use lm_backend::lora::{is_adapter_dir, LoraSpec};
use lm_backend::{CausalLm, HfCausalLm, LoadOptions, Tokenizer};
use std::path::Path;
use std::sync::Arc;
use tch::nn::VarStore;

/// A run's models, objective and data, ready for the step loop.
pub(crate) struct Run {
    /// The model being trained.
    pub policy: HfCausalLm,
    /// The frozen reference, kept only when a term reads its hidden states.
    pub reference: Option<HfCausalLm>,
    /// Cached reference log-probs, when a term reads them.
    pub cache: Option<ReferenceCache>,
    /// The objective's own trainable tensors (MLC projection heads).
    pub heads: VarStore,
    /// The weighted stack of terms.
    pub objective: ObjectiveStack,
    /// Which forward passes a step runs.
    pub plan: StepPlan,
    /// Every usable record, encoded.
    pub records: Vec<PreparedRecord>,
    /// The tokenizer's padding id.
    pub pad_id: i64,
    /// Bad data lines skipped (`skip_bad_lines`).
    pub skipped_lines: usize,
    /// The run's languages, dominant first.
    pub languages: Vec<String>,
    /// The other processes of a data-parallel run.
    pub world: Option<Arc<World>>,
    /// Sums over their ranks, for the objective's normalisers.
    pub ranks: Option<Arc<dyn RankSum>>,
}

impl Run {
    /// Sets up the run of `config` (read from `config_path`), with the policy loaded from
    /// `policy_dir` (the base model, or the checkpoint being resumed: `resuming`) and the
    /// reference cache and `auto_layer.json` under `output`.
    pub fn build(
        config: &RunConfig,
        config_path: &Path,
        (policy_dir, resuming): (&Path, bool),
        output: &Path,
        events: &Events,
        world: Option<&Arc<World>>,
    ) -> Result<Run> {
        let device = torch_device::device_from_str(&config.model.device)?;
        let load = LoadOptions::cpu_f32()
            .with_dtype(config.model.dtype)
            .with_device(device)
            .with_attention(config.model.attention);
        if config.model.dtype == Dtype::Bf16 && device == tch::Device::Cpu {
            events.emit(TrainEvent::Bf16OnCpu { instructions: &torch_device::cpu_bf16_instructions() });
        }
        let tokenizer = load_tokenizer(config, config_path)?;
        let policy = load_policy(config, policy_dir, load)?;
        let shape = ModelShape { num_layers: policy.num_layers(), hidden_size: policy.config().hidden_size };
        let data = load_records(&config.data.train, &config.data.languages, config.data.skip_bad_lines)?;
        let auto =
            AutoLayerInputs { policy: &policy, encoder: &tokenizer, records: &data.records, output, resuming, world };
        let objectives = resolve_auto_layers(config, config_path, &auto, events)?;
        let heads = VarStore::new(device);
        let objective = build_objective(&objectives, shape, &(heads.root() / "mlc_head"), config_path)?;
        let chosen_only = objectives.iter().all(|o| o.kind.is_chosen_only());
        let plan = StepPlan::new(&objective.needs(), chosen_only);
        let (records, skipped_lines) = prepare_data(config, data, &tokenizer, &plan, events)?;
        if let Some(world) = world {
            world.check_same("data (the encoded records)", records_fingerprint(&records))?;
        }
        let pad_id = tokenizer.pad_id();
        let loaded = (&policy, load, world);
        let (reference, cache) = load_reference(config, loaded, &plan, &records, pad_id, output, events)?;
        let languages = config.data.languages.clone();
        let ranks = world.map(World::ranks);
        let world = world.cloned();
        Ok(Run {
            policy,
            reference,
            cache,
            heads,
            objective,
            plan,
            records,
            pad_id,
            skipped_lines,
            languages,
            world,
            ranks,
        })
    }

    /// The models and constants the step's forward passes read.
    pub fn step_models(&self, num_languages: usize, packing: bool) -> StepModels<'_> {
        StepModels {
            policy: &self.policy,
            reference: self.reference.as_ref(),
            cache: self.cache.as_ref(),
            pad_id: self.pad_id,
            num_languages,
            packing,
            dropout_key: 0,
            languages: &self.languages,
            ranks: self.ranks.as_ref(),
        }
    }
}

/// The policy: the model of `policy_dir` (the base, or the checkpoint being resumed); with
/// `[lora]`, the base of `[model] path` with fresh adapters (`policy_dir` is the base) or with
/// the adapters of the checkpoint `policy_dir`, in training mode (adapter dropout on).
fn load_policy(config: &RunConfig, policy_dir: &Path, load: LoadOptions) -> Result<HfCausalLm> {
    let context = || format!("loading the policy from {}", policy_dir.display());
    let adapter_checkpoint = is_adapter_dir(policy_dir);
    let Some(lora) = &config.lora else {
        if adapter_checkpoint {
            let why = "it holds a LoRA adapter, but the config has no [lora] section".to_string();
            return Err(TrainError::Resume { path: policy_dir.to_path_buf(), why });
        }
        return HfCausalLm::load(policy_dir, load).map_err(TrainError::model(context()));
    };
    let base = &config.model.path;
    let policy = if adapter_checkpoint {
        let policy = HfCausalLm::load_with_adapter(base, policy_dir, load).map_err(TrainError::model(context()))?;
        check_same_adapters(policy.lora_spec(), &lora.spec(config.train.seed), policy_dir)?;
        policy
    } else if policy_dir == base.as_path() {
        HfCausalLm::load_with_lora(base, load, &lora.spec(config.train.seed)).map_err(TrainError::model(context()))?
    } else {
        let why = "it holds a full model, but the config trains LoRA adapters ([lora])".to_string();
        return Err(TrainError::Resume { path: policy_dir.to_path_buf(), why });
    };
    policy.set_training(true);
    Ok(policy)
}

/// An error unless the checkpoint's adapters (`found`) have the rank, scale, dropout and
/// targets that `[lora]` asks for (`wanted`).
fn check_same_adapters(found: Option<&LoraSpec>, wanted: &LoraSpec, dir: &Path) -> Result<()> {
    let sorted = |s: &LoraSpec| {
        let mut t = s.target_modules.clone();
        t.sort();
        t
    };
    let Some(found) = found else { return Ok(()) };
    let same = found.r == wanted.r
        && found.alpha == wanted.alpha
        && found.dropout == wanted.dropout
        && found.use_rslora == wanted.use_rslora
        && sorted(found) == sorted(wanted);
    if same {
        return Ok(());
    }
    let why = format!(
        "its adapters (r = {}, alpha = {}, dropout = {}, target_modules = {:?}) differ from [lora] \
         (r = {}, alpha = {}, dropout = {}, target_modules = {:?})",
        found.r,
        found.alpha,
        found.dropout,
        sorted(found),
        wanted.r,
        wanted.alpha,
        wanted.dropout,
        sorted(wanted)
    );
    Err(TrainError::Resume { path: dir.to_path_buf(), why })
}

/// The base model's tokenizer, which must have an EOS to end completions with.
fn load_tokenizer(config: &RunConfig, config_path: &Path) -> Result<Tokenizer> {
    let base = &config.model.path;
    let tokenizer =
        Tokenizer::from_dir(base).map_err(TrainError::model(format!("loading the tokenizer of {}", base.display())))?;
    if tokenizer.eos_token_id().is_none() {
        return Err(TrainError::InvalidValue {
            path: config_path.to_path_buf(),
            table: "[model]".into(),
            key: "path".into(),
            why: format!("the tokenizer of {} has no EOS token to end completions with", base.display()),
        });
    }
    Ok(tokenizer)
}

/// Encodes the training records `data` with what `plan` needs of each; reports the records
/// skipped and the texts left out. Returns the records and the number of bad lines skipped.
fn prepare_data(
    config: &RunConfig,
    data: Dataset,
    tokenizer: &Tokenizer,
    plan: &StepPlan,
    events: &Events,
) -> Result<(Vec<PreparedRecord>, usize)> {
    let needs =
        RecordNeeds { rejected: !plan.chosen_only, variants: !plan.variant_layers.is_empty(), targets: plan.targets };
    let (records, skipped_prep) = prepare_records(
        &data,
        tokenizer,
        &config.data.languages,
        config.data.max_length,
        needs,
        config.data.skip_bad_lines,
    )?;
    if !data.left_out.is_empty() {
        events.emit(TrainEvent::LanguagesLeftOut { counts: &data.left_out });
    }
    let skipped: Vec<TrainError> = data.skipped.into_iter().chain(skipped_prep).collect();
    if !skipped.is_empty() {
        events.emit(TrainEvent::RecordsSkipped { errors: &skipped, kept: records.len() });
    }
    Ok((records, skipped.len()))
}

/// The frozen reference (kept only when a term reads its hidden states) and the cached
/// reference log-probs (when a term reads them). Without `[model] reference`, the reference
/// is the base model: under `[lora]` the policy's own base weights with no adapters (shared,
/// not loaded again), else a frozen copy of `[model] path`.
fn load_reference(
    config: &RunConfig,
    (policy, load, world): (&HfCausalLm, LoadOptions, Option<&Arc<World>>),
    plan: &StepPlan,
    records: &[PreparedRecord],
    pad_id: i64,
    output: &Path,
    events: &Events,
) -> Result<(Option<HfCausalLm>, Option<ReferenceCache>)> {
    let needs_logps = plan.reference || plan.kl;
    let needs_model = !plan.dominant_layers.is_empty();
    if !needs_logps && !needs_model {
        return Ok((None, None));
    }
    let dir = config.model.reference.clone().unwrap_or_else(|| config.model.path.clone());
    let model = if config.lora.is_some() && config.model.reference.is_none() {
        policy.base_model().map_err(TrainError::model("the reference: the policy's base model"))?
    } else {
        HfCausalLm::load(&dir, load)
            .map_err(TrainError::model(format!("loading the reference from {}", dir.display())))?
    };
    let cache = if needs_logps {
        let inputs = ReferenceInputs {
            model: &model,
            dir: &dir,
            records,
            pad_id,
            batch_size: config.train.batch_size,
            kl: plan.kl,
            packing: config.train.packing,
            world,
        };
        Some(reference_cache(&inputs, output, events)?)
    } else {
        None
    };
    Ok((needs_model.then_some(model), cache))
}

/// FNV-1a over every token id of `records` (and where each prompt ends): ranks that read
/// other data, or tokenized it otherwise, differ here.
pub(crate) fn records_fingerprint(records: &[PreparedRecord]) -> u64 {
    let mut h = Fnv1a::new();
    h.write_u64(records.len() as u64);
    for r in records {
        for (language, prompt) in &r.variants {
            h.write_u64(*language as u64);
            prompt.iter().for_each(|&i| h.write_u64(i as u64));
        }
        let targets = r.targets.iter().flat_map(|(_, c, rj)| [c, rj]);
        for e in [Some(&r.chosen), r.rejected.as_ref()].into_iter().flatten().chain(targets) {
            h.write_u64(e.prompt.len() as u64);
            e.ids().iter().for_each(|&i| h.write_u64(i as u64));
        }
    }
    h.finish()
}
