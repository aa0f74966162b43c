//! LoRA adapters on a model ([`crate::lora`]): loading a model with fresh adapters or those
//! of a PEFT folder, the switches (on/off, trainable, training mode, dropout key), the base
//! model alone, merging, and saving in PEFT's layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::Tensor;

use super::HfCausalLm;
use crate::atomic::{write_dir, write_file};
use crate::config::ModelConfig;
use crate::error::{LmError, Result};
use crate::lora::{
    folder_table, fresh_table, peft_name, AdapterConfig, AdapterState, AdapterTable, LoraSpec, ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
};
use crate::save::{copy_files, write_safetensors};
use crate::weights::{LoadOptions, WeightSource};

/// A model's adapters: none ([`Adapters::default`]) or those of one spec.
#[derive(Debug, Default)]
pub(crate) struct Adapters {
    spec: Option<LoraSpec>,
    /// `(A [r, in], B [out, r])` by module name.
    modules: BTreeMap<String, (Tensor, Tensor)>,
    /// The same tensors by PEFT name.
    parameters: BTreeMap<String, Tensor>,
    state: Arc<AdapterState>,
}

impl Adapters {
    /// The adapters of `table`, once the model's construction took each.
    pub(super) fn from_table(table: AdapterTable, spec: LoraSpec) -> Result<Self> {
        let missed = table.not_taken();
        if !missed.is_empty() {
            let why = format!("adapters were given for {missed:?}, which are not linear projections of the model");
            return Err(LmError::Adapter { path: PathBuf::from("<model>"), message: why });
        }
        let (modules, state) = table.into_parts();
        let parameters = modules
            .iter()
            .flat_map(|(m, (a, b))| {
                [(peft_name(m, "lora_A"), a.shallow_clone()), (peft_name(m, "lora_B"), b.shallow_clone())]
            })
            .collect();
        Ok(Adapters { spec: Some(spec), modules, parameters, state })
    }
}

/// The `model_type` of `dir/config.json`, if it can be read.
fn model_type_of(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("model_type")?.as_str().map(String::from)
}

/// An error when the adapter of `adapter_dir` names a base model folder (that exists) of
/// another architecture than `base` (at `base_dir`).
fn check_named_base(adapter_dir: &Path, adapter: &AdapterConfig, base: &ModelConfig, base_dir: &Path) -> Result<()> {
    let Ok(named) = adapter.base_dir(adapter_dir) else { return Ok(()) };
    let ours = base.architecture.model_type();
    match model_type_of(&named) {
        Some(theirs) if theirs != ours => {
            let why = format!(
                "the adapter was made for a `{theirs}` model ({}), but the base model {} is a `{ours}` model",
                named.display(),
                base_dir.display()
            );
            Err(LmError::Adapter { path: adapter_dir.join(ADAPTER_CONFIG), message: why })
        }
        _ => Ok(()),
    }
}

impl HfCausalLm {
    /// Loads the model of `dir` with fresh LoRA adapters of `spec` on the projections it
    /// targets: `A` uniform in `±1/sqrt(in)` drawn from `spec.seed` (PEFT's default
    /// initialisation, without libtorch's global generator), `B = 0`, so the model computes
    /// exactly what its base does until `B` moves. Adapters are float32 (float64 for a
    /// float64 model), not trainable until [`HfCausalLm::set_adapters_trainable`].
    pub fn load_with_lora(dir: impl AsRef<Path>, options: LoadOptions, spec: &LoraSpec) -> Result<Self> {
        let dir = dir.as_ref();
        let (config, source_config) = Self::read_config(dir)?;
        let table = fresh_table(&config, spec, options.dtype, options.device, dir)?;
        let tensors = Self::read_weights(dir, &config, options)?;
        Self::from_tensors(
            config,
            source_config,
            WeightSource::loaded(tensors, dir),
            options,
            Some((table, spec.clone())),
        )
    }

    /// Loads the model of `base_dir` with the adapters of the PEFT folder `adapter_dir`
    /// (`adapter_config.json`, `adapter_model.safetensors`, ours or PEFT's). Every adapter
    /// tensor must belong to a projection of the base with the shape it implies; an adapter
    /// that names a base of another architecture is an error. The adapters' dropout applies in
    /// training mode only ([`HfCausalLm::set_training`]).
    pub fn load_with_adapter(
        base_dir: impl AsRef<Path>,
        adapter_dir: impl AsRef<Path>,
        options: LoadOptions,
    ) -> Result<Self> {
        let (base_dir, adapter_dir) = (base_dir.as_ref(), adapter_dir.as_ref());
        let (config, source_config) = Self::read_config(base_dir)?;
        let adapter = AdapterConfig::read(adapter_dir)?;
        check_named_base(adapter_dir, &adapter, &config, base_dir)?;
        let adapters = folder_table(&config, adapter_dir, &adapter, options.dtype, options.device)?;
        let tensors = Self::read_weights(base_dir, &config, options)?;
        Self::from_tensors(config, source_config, WeightSource::loaded(tensors, base_dir), options, Some(adapters))
    }

    /// Loads an adapter folder onto its base: the folder `base_dir` when given, else the one
    /// its `base_model_name_or_path` names (absolute, or relative to `adapter_dir`).
    pub fn load_adapter_folder(
        adapter_dir: impl AsRef<Path>,
        base_dir: Option<&Path>,
        options: LoadOptions,
    ) -> Result<Self> {
        let adapter_dir = adapter_dir.as_ref();
        let base = match base_dir {
            Some(b) => b.to_path_buf(),
            None => AdapterConfig::read(adapter_dir)?.base_dir(adapter_dir)?,
        };
        Self::load_with_adapter(base, adapter_dir, options)
    }

    /// Whether the model carries LoRA adapters.
    pub fn has_adapters(&self) -> bool {
        self.adapters.spec.is_some()
    }

    /// The spec of the model's adapters (for a loaded adapter: its config, seed 0).
    pub fn lora_spec(&self) -> Option<&LoraSpec> {
        self.adapters.spec.as_ref()
    }

    /// The adapters by PEFT's names (`base_model.model.<module>.lora_A.weight` `[r, in]`,
    /// `...lora_B.weight` `[out, r]`); empty without adapters. The tensors are the model's:
    /// updating them in place changes the model.
    pub fn adapter_parameters(&self) -> &BTreeMap<String, Tensor> {
        &self.adapters.parameters
    }

    /// Turns gradient tracking of the adapters on or off (off after loading). The base
    /// weights keep their own switch ([`HfCausalLm::set_trainable`]).
    pub fn set_adapters_trainable(&self, trainable: bool) {
        for p in self.adapters.parameters.values() {
            let _ = p.shallow_clone().set_requires_grad(trainable);
        }
    }

    /// Switches the adapters off (the base model's values) or on (the default) for every pass
    /// that follows. The switch belongs to the model, not to a pass: do not run passes with
    /// different settings concurrently. [`HfCausalLm::base_model`] is a separate model instead.
    pub fn set_adapters_enabled(&self, enabled: bool) {
        self.adapters.state.set_enabled(enabled);
    }

    /// Whether the adapters are applied (false for a model without adapters).
    pub fn adapters_enabled(&self) -> bool {
        self.has_adapters() && self.adapters.state.enabled()
    }

    /// Training mode: the adapters' dropout applies (off after loading; no effect without
    /// adapters or with dropout 0).
    pub fn set_training(&self, training: bool) {
        self.adapters.state.set_training(training);
    }

    /// Whether the model is in training mode.
    pub fn training(&self) -> bool {
        self.adapters.state.training()
    }

    /// Sets the dropout key of the passes that follow: in training mode, the dropout mask of
    /// each adapted module is a pure function of this key, the module's name and the element
    /// index (see [`crate::lora`], "Dropout masks").
    pub fn set_dropout_key(&self, key: u64) {
        self.adapters.state.set_dropout_key(key);
    }

    /// The current dropout key (0 after loading).
    pub fn dropout_key(&self) -> u64 {
        self.adapters.state.dropout_key()
    }

    /// Runs `f` under dropout key `key` and restores the previous key: how a recomputation
    /// replays the masks of the pass it repeats.
    pub fn with_dropout_key<T>(&self, key: u64, f: impl FnOnce() -> T) -> T {
        let previous = self.dropout_key();
        self.set_dropout_key(key);
        let out = f();
        self.set_dropout_key(previous);
        out
    }

    /// The base model alone: a model over the same base tensors (shared storage, no copy)
    /// without adapters. A trainer's frozen reference under LoRA.
    pub fn base_model(&self) -> Result<HfCausalLm> {
        let tensors = self.parameters.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        let source = WeightSource::loaded(tensors, "<base model>");
        Self::from_tensors(self.config.clone(), self.source_config.clone(), source, self.options, None)
    }

    /// The model with its adapters folded into the weights: `W + scaling * B A` for each
    /// adapted projection, formed in the adapters' dtype and rounded to the weights' dtype
    /// (as PEFT's `merge_and_unload`). A model without adapters comes back unchanged (its
    /// tensors shared).
    pub fn merged(&self) -> Result<HfCausalLm> {
        let _guard = tch::no_grad_guard();
        let mut tensors: BTreeMap<String, Tensor> =
            self.parameters.iter().map(|(n, t)| (n.clone(), t.detach())).collect();
        let scaling = self.adapters.spec.as_ref().map_or(0.0, LoraSpec::scaling);
        for (module, (a, b)) in &self.adapters.modules {
            let name = format!("{module}.weight");
            let w = tensors
                .get(&name)
                .ok_or_else(|| LmError::MissingTensor { path: "<model>".into(), name: name.clone() })?;
            let delta = b.matmul(a) * scaling; // [out, in]
            let merged = (w.to_kind(delta.kind()) + delta).to_kind(w.kind());
            tensors.insert(name, merged);
        }
        let source = WeightSource::loaded(tensors, "<merged model>");
        Self::from_tensors(self.config.clone(), self.source_config.clone(), source, self.options, None)
    }

    /// Writes the adapters to `dir` as a PEFT adapter folder: `adapter_config.json` (with
    /// `base_model_name_or_path`), `adapter_model.safetensors` (PEFT's names, the adapters'
    /// dtype, metadata `format = pt`) and copies of `extra_files` (e.g. the tokenizer's).
    /// Written atomically; an existing `dir` is replaced. A model without adapters is an
    /// error.
    pub fn save_adapter(
        &self,
        dir: impl AsRef<Path>,
        base_model_name_or_path: &str,
        extra_files: &[PathBuf],
    ) -> Result<()> {
        let dir = dir.as_ref();
        let Some(spec) = &self.adapters.spec else {
            let why = "the model has no LoRA adapters to save (save the model with save)";
            return Err(LmError::Adapter { path: dir.to_path_buf(), message: why.into() });
        };
        let config = AdapterConfig::from_spec(spec, base_model_name_or_path).to_json();
        write_dir(dir, |tmp| {
            let path = tmp.join(ADAPTER_CONFIG);
            let text =
                serde_json::to_string_pretty(&config).map_err(|source| LmError::Json { path: path.clone(), source })?;
            write_file(&path, (text + "\n").as_bytes())?;
            write_safetensors(&tmp.join(ADAPTER_WEIGHTS), &self.adapters.parameters)?;
            copy_files(tmp, extra_files)
        })
    }
}
