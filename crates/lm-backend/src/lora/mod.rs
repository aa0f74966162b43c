//! LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3):
//! each adapted projection `y = x W^T + b` becomes
//! `y = x W^T + b + (alpha / r) * dropout(x) A^T B^T`, with `A` `[r, in]` and `B` `[out, r]`,
//! in the layout of the Python PEFT library.
//!
//! - A model gets adapters when it is loaded: fresh ones ([`HfCausalLm::load_with_lora`],
//!   `A` drawn like PEFT's default, `kaiming_uniform(a = sqrt(5))`, i.e. uniform in
//!   `±1/sqrt(in)`, from the spec's seed; `B = 0`, so the model starts as its base) or those
//!   of an adapter folder ([`HfCausalLm::load_with_adapter`]).
//! - The base weights stay as loaded (e.g. bf16, frozen); the adapters are float32 (float64
//!   for a float64 model). The input is cast to the adapters' dtype and the sum back to the
//!   base's, as PEFT does.
//! - [`HfCausalLm::adapter_parameters`] lists the adapters by PEFT's names
//!   (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`);
//!   [`HfCausalLm::set_adapters_enabled`] switches them off and on for every pass that
//!   follows; [`HfCausalLm::base_model`] is the base alone, sharing the weights (no copy).
//! - [`HfCausalLm::save_adapter`] writes a PEFT adapter folder (`adapter_config.json`,
//!   `adapter_model.safetensors`); [`HfCausalLm::merged`] folds the adapters into the weights
//!   (`W + (alpha / r) B A`, in the weights' dtype).
//!
//! ## Dropout masks (the replay hook)
//!
//! Dropout applies only in training mode ([`HfCausalLm::set_training`]). Its masks never come
//! from libtorch's global generator: the mask of a module is a pure function of the model's
//! current *dropout key* ([`HfCausalLm::set_dropout_key`]), the module's name and each
//! element's index in the module's input (see `seeded`). A trainer sets a key per forward
//! pass from (seed, step, micro-batch, pass), so a resumed run draws the masks of an
//! uninterrupted one. A recomputation of a block (activation checkpointing) replays the masks
//! of the pass it repeats when it runs under the same key: read
//! [`HfCausalLm::dropout_key`] when the block runs forward, and set it again (e.g. with
//! [`HfCausalLm::with_dropout_key`]) around the recomputation.
//!
//! ```
//! use lm_backend::lora::LoraSpec;
//! use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, LoadOptions};
//! use tch::Tensor;
//!
//! let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
//! let base = HfCausalLm::load(format!("{fixtures}/llama"), LoadOptions::cpu_f32())?;
//! let lora = HfCausalLm::load_with_lora(format!("{fixtures}/llama"), LoadOptions::cpu_f32(), &LoraSpec::new(4, 8.0))?;
//! assert_eq!(lora.adapter_parameters().len(), 3 * 7 * 2); // 3 layers, 7 projections, A and B
//! let ids = Tensor::from_slice(&[5i64, 6, 7]).unsqueeze(0);
//! let logits = |m: &HfCausalLm| m.forward(&ids, &ids.ones_like(), &HiddenRequest::none()).unwrap().logits;
//! assert!(logits(&lora).equal(&logits(&base))); // B = 0: the base model, exactly
//! # Ok::<(), lm_backend::LmError>(())
//! ```
//!
//! [`HfCausalLm::load_with_lora`]: crate::HfCausalLm::load_with_lora
//! [`HfCausalLm::load_with_adapter`]: crate::HfCausalLm::load_with_adapter
//! [`HfCausalLm::adapter_parameters`]: crate::HfCausalLm::adapter_parameters
//! [`HfCausalLm::set_adapters_enabled`]: crate::HfCausalLm::set_adapters_enabled
//! [`HfCausalLm::base_model`]: crate::HfCausalLm::base_model
//! [`HfCausalLm::save_adapter`]: crate::HfCausalLm::save_adapter
//! [`HfCausalLm::merged`]: crate::HfCausalLm::merged
//! [`HfCausalLm::set_training`]: crate::HfCausalLm::set_training
//! [`HfCausalLm::set_dropout_key`]: crate::HfCausalLm::set_dropout_key
//! [`HfCausalLm::dropout_key`]: crate::HfCausalLm::dropout_key
//! [`HfCausalLm::with_dropout_key`]: crate::HfCausalLm::with_dropout_key

mod layer;
mod peft;
mod seeded;

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::SafeTensors;
use tch::{Device, Kind, Tensor};

pub use peft::{is_adapter_dir, peft_name, AdapterConfig, ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX};

pub(crate) use layer::{AdapterState, AdapterTable, LoraLinear};

use crate::config::ModelConfig;
use crate::error::{LmError, Result};
use crate::model::{tensor_specs, EMBED_TOKENS, LM_HEAD};
use crate::weights::safetensors_kind;
use seeded::{combine, name_id, uniform};

/// The projections adapted by default: every linear projection of attention and MLP.
pub const DEFAULT_TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// The adapters to give a model: rank, scale, dropout, which projections, and the seed of
/// the fresh `A` matrices.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    /// Rank `r` of every adapter.
    pub r: usize,
    /// Scale numerator: updates are multiplied by `alpha / r`.
    pub alpha: f64,
    /// Dropout on the adapters' input in training mode (0: none).
    pub dropout: f64,
    /// Module names to adapt; a module is adapted when its full name equals a target or
    /// ends in `.<target>` (PEFT's rule), e.g. `q_proj` or `self_attn.q_proj`.
    pub target_modules: Vec<String>,
    /// Rank-stabilised scale `alpha / sqrt(r)` instead of `alpha / r`.
    pub use_rslora: bool,
    /// Seed of the fresh `A` matrices.
    pub seed: u64,
}

impl LoraSpec {
    /// Rank `r`, scale numerator `alpha`, no dropout, [`DEFAULT_TARGETS`], seed 0.
    pub fn new(r: usize, alpha: f64) -> Self {
        LoraSpec {
            r,
            alpha,
            dropout: 0.0,
            target_modules: DEFAULT_TARGETS.iter().map(|t| t.to_string()).collect(),
            use_rslora: false,
            seed: 0,
        }
    }

    /// This spec adapting `targets` instead.
    pub fn with_targets<S: Into<String>>(mut self, targets: impl IntoIterator<Item = S>) -> Self {
        self.target_modules = targets.into_iter().map(Into::into).collect();
        self
    }

    /// This spec with dropout `p`.
    pub fn with_dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    /// This spec with seed `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The factor of every update: `alpha / r` (`alpha / sqrt(r)` with `use_rslora`).
    pub fn scaling(&self) -> f64 {
        peft::scaling(self.alpha, self.r, self.use_rslora)
    }

    /// The spec of a loaded adapter (seed 0: its matrices are given): its targets are the
    /// config's list, or, when the config gives a regular expression, the last name part of
    /// each adapted module.
    pub fn from_adapter(config: &AdapterConfig, modules: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let targets: Vec<String> = match &config.target_modules {
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(|v| v.as_str().map(String::from)).collect()
            }
            _ => {
                let mut names: Vec<String> = modules
                    .into_iter()
                    .map(|m| m.as_ref().rsplit('.').next().unwrap_or_default().to_string())
                    .collect();
                names.sort();
                names.dedup();
                names
            }
        };
        LoraSpec {
            r: config.r,
            alpha: config.lora_alpha,
            dropout: config.lora_dropout,
            target_modules: targets,
            use_rslora: config.use_rslora,
            seed: 0,
        }
    }

    /// Whether module `name` (e.g. `model.layers.0.self_attn.q_proj`) is a target.
    pub fn targets(&self, name: &str) -> bool {
        self.target_modules.iter().any(|t| name == t || name.ends_with(&format!(".{t}")))
    }

    fn check(&self, origin: &Path) -> Result<()> {
        let fail = |why: String| Err(LmError::Adapter { path: origin.to_path_buf(), message: why });
        if self.r == 0 {
            return fail("LoRA rank r must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return fail(format!("LoRA alpha must be a finite number > 0, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return fail(format!("LoRA dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }
}

/// A projection of a model that can carry an adapter: its name (e.g.
/// `model.layers.0.mlp.down_proj`) and its weight's `[out, in]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    /// The module name.
    pub name: String,
    /// Output features.
    pub out_features: i64,
    /// Input features.
    pub in_features: i64,
}

/// Every projection of a model of `config` that can carry an adapter: each two-dimensional
/// `<module>.weight` of the checkpoint except the embedding and the output projection.
pub fn projections(config: &ModelConfig) -> Vec<Projection> {
    tensor_specs(config)
        .into_iter()
        .filter(|s| s.shape.len() == 2 && s.name != EMBED_TOKENS && s.name != LM_HEAD)
        .filter_map(|s| {
            let name = s.name.strip_suffix(".weight")?.to_string();
            Some(Projection { name, out_features: s.shape[0], in_features: s.shape[1] })
        })
        .collect()
}

/// The dtype of adapters on a model of dtype `model`: float32, or float64 for a float64 model.
pub(crate) fn adapter_kind(model: Kind) -> Kind {
    crate::norm::accumulation_kind(model)
}

/// Fresh adapters of `spec` for a model of `config`: `A` uniform in `±1/sqrt(in)` from a
/// hash of (seed, module name), `B = 0`. `origin` names the model in errors.
pub(crate) fn fresh_table(
    config: &ModelConfig,
    spec: &LoraSpec,
    kind: Kind,
    device: Device,
    origin: &Path,
) -> Result<AdapterTable> {
    spec.check(origin)?;
    let kind = adapter_kind(kind);
    let r = spec.r as i64;
    let modules: BTreeMap<String, (Tensor, Tensor)> = projections(config)
        .into_iter()
        .filter(|p| spec.targets(&p.name))
        .map(|p| {
            let bound = 1.0 / (p.in_features as f64).sqrt();
            let u = uniform(combine(spec.seed, name_id(&p.name)), &[r, p.in_features], Device::Cpu);
            let a = ((u * 2.0 - 1.0) * bound).to_kind(kind).to_device(device);
            let b = Tensor::zeros([p.out_features, r], (kind, device));
            (p.name, (a, b))
        })
        .collect();
    if modules.is_empty() {
        let why = format!(
            "LoRA target_modules {:?} match no projection of this model (its projections end in {})",
            spec.target_modules,
            DEFAULT_TARGETS.join(", ")
        );
        return Err(LmError::Adapter { path: origin.to_path_buf(), message: why });
    }
    Ok(AdapterTable::new(modules, spec.scaling(), spec.dropout))
}

/// The adapters of the folder `dir` (whose config is `adapter`) for a model of `config`,
/// checked against it: every tensor must be a `lora_A` / `lora_B` of a projection of the
/// model with shapes `[r, in]` / `[out, r]`, and each adapted module must have both. Returns
/// the table and the spec.
pub(crate) fn folder_table(
    config: &ModelConfig,
    dir: &Path,
    adapter: &AdapterConfig,
    kind: Kind,
    device: Device,
) -> Result<(AdapterTable, LoraSpec)> {
    let path = dir.join(ADAPTER_WEIGHTS);
    if !path.is_file() {
        let why = if dir.join("adapter_model.bin").is_file() {
            format!("it holds adapter_model.bin (a pickle), not {ADAPTER_WEIGHTS}; re-save it with safe_serialization")
        } else {
            format!("it has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}")
        };
        return Err(LmError::Adapter { path: dir.to_path_buf(), message: why });
    }
    let bytes = std::fs::read(&path).map_err(|e| LmError::io(&path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| LmError::Safetensors { path: path.clone(), message: e.to_string() })?;
    let projections: BTreeMap<String, Projection> =
        projections(config).into_iter().map(|p| (p.name.clone(), p)).collect();
    let kind = adapter_kind(kind);
    let r = adapter.r as i64;
    let mut halves: BTreeMap<String, [Option<Tensor>; 2]> = BTreeMap::new();
    for (name, view) in st.iter() {
        let Some((module, which)) = peft::parse_peft_name(name) else {
            return Err(LmError::UnexpectedTensor { path: path.clone(), name: name.into() });
        };
        let Some(p) = projections.get(module) else {
            let why = format!(
                "tensor `{name}` adapts `{module}`, which is not a projection of the base model \
                 (an adapter made for another architecture or size?)"
            );
            return Err(LmError::Adapter { path: path.clone(), message: why });
        };
        let (expected, slot) =
            if which == "lora_A" { (vec![r, p.in_features], 0) } else { (vec![p.out_features, r], 1) };
        let found: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        if found != expected {
            return Err(LmError::TensorShape { path: path.clone(), name: name.into(), expected, found });
        }
        let stored = safetensors_kind(view.dtype()).ok_or_else(|| LmError::TensorDtype {
            path: path.clone(),
            name: name.into(),
            dtype: format!("{:?}", view.dtype()),
        })?;
        let t = Tensor::f_from_data_size(view.data(), &found, stored)?.f_to_kind(kind)?.f_to_device(device)?;
        halves.entry(module.to_string()).or_default()[slot] = Some(t);
    }
    let mut modules = BTreeMap::new();
    for (module, [a, b]) in halves {
        match (a, b) {
            (Some(a), Some(b)) => {
                modules.insert(module, (a, b));
            }
            (a, _) => {
                let missing = peft_name(&module, if a.is_none() { "lora_A" } else { "lora_B" });
                return Err(LmError::MissingTensor { path: path.clone(), name: missing });
            }
        }
    }
    if modules.is_empty() {
        return Err(LmError::Adapter { path: path.clone(), message: "it holds no LoRA tensors".into() });
    }
    let spec = LoraSpec::from_adapter(adapter, modules.keys());
    Ok((AdapterTable::new(modules, adapter.scaling(), adapter.lora_dropout), spec))
}
