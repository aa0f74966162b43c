//! Checkpoints: `checkpoint-<step>/` and `final/`, each a Hugging Face model folder (with
//! `[lora]`: a PEFT adapter folder, `adapter_config.json` and `adapter_model.safetensors`)
//! plus the tokenizer files, the optimizer state, the objective's own parameters and
//! `trainer_state.json`, written atomically (a crash never leaves a half-written checkpoint
//! that looks complete), found again on resume, and restored.

use crate::{Result, TrainError};
use lm_backend::atomic::{write_dir, write_file};
use lm_backend::HfCausalLm;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::Tensor;

/// Files copied from the model folder into every checkpoint (when present).
pub const TOKENIZER_FILES: &[&str] =
    &["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

/// The file of a checkpoint holding the objective's own trainable tensors (MLC heads).
pub const OBJECTIVE_PARAMS: &str = "objective_params.safetensors";

/// The file of a checkpoint holding the AdamW state.
pub const OPTIMIZER_STATE: &str = "optimizer.safetensors";

/// The file of a checkpoint written last: its presence marks the checkpoint complete.
pub const TRAINER_STATE: &str = "trainer_state.json";

/// The latest checkpoint of `output` whose [`TRAINER_STATE`] was written (checkpoints are
/// renamed into place whole, and this file is written last in any case).
pub fn latest_checkpoint(output: &Path) -> Option<(u64, PathBuf)> {
    std::fs::read_dir(output)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step: u64 = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join(TRAINER_STATE).is_file().then(|| (step, e.path()))
        })
        .max_by_key(|(step, _)| *step)
}

/// Saves and restores the state of one run under its output folder.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    output: PathBuf,
    extra_files: Vec<PathBuf>,
    /// The base model folder, absolute: an adapter checkpoint's `base_model_name_or_path`.
    base_model: PathBuf,
    total_steps: u64,
    seed: u64,
}

impl Checkpointer {
    /// Checkpoints of a run of `total_steps` steps (seed `seed`) under `output`, carrying the
    /// tokenizer files of `model_dir` (the base model, which adapter checkpoints name by its
    /// absolute path).
    pub fn new(output: &Path, model_dir: &Path, total_steps: u64, seed: u64) -> Self {
        let extra_files = TOKENIZER_FILES.iter().map(|f| model_dir.join(f)).filter(|p| p.is_file()).collect();
        let base_model = std::fs::canonicalize(model_dir)
            .or_else(|_| std::path::absolute(model_dir))
            .unwrap_or_else(|_| model_dir.to_path_buf());
        Self { output: output.to_path_buf(), extra_files, base_model, total_steps, seed }
    }

    /// `output/checkpoint-<step>`.
    pub fn step_dir(&self, step: u64) -> PathBuf {
        self.output.join(format!("checkpoint-{step}"))
    }

    /// `output/final`.
    pub fn final_dir(&self) -> PathBuf {
        self.output.join("final")
    }

    /// The checkpoint of `output` to resume from: the latest complete one, or an error when
    /// there is none.
    pub fn resume_point(output: &Path) -> Result<(u64, PathBuf)> {
        latest_checkpoint(output).ok_or_else(|| TrainError::Resume {
            path: output.to_path_buf(),
            why: "it holds no complete checkpoint-<step>/".into(),
        })
    }

    /// Writes the state after `step` optimizer steps to `dir`, atomically: the policy as a
    /// Hugging Face folder (a policy with LoRA adapters: a PEFT adapter folder naming the base
    /// model), the optimizer state, the objective's parameters (when it has any) and, last,
    /// `trainer_state.json`. An existing `dir` is replaced whole. `optimizer` is the optimizer
    /// state as named tensors ([`crate::optim::AdamW::state`]).
    pub fn save(
        &self,
        dir: &Path,
        step: u64,
        policy: &HfCausalLm,
        optimizer: &[(String, Tensor)],
        heads: &VarStore,
    ) -> Result<()> {
        write_dir(dir, |tmp| {
            let saved = if policy.has_adapters() {
                policy.save_adapter(tmp, &self.base_model.to_string_lossy(), &self.extra_files)
            } else {
                policy.save(tmp, &self.extra_files)
            };
            saved.map_err(TrainError::model(format!("saving {}", dir.display())))?;
            Tensor::write_safetensors(optimizer, tmp.join(OPTIMIZER_STATE))
                .map_err(TrainError::torch("writing optimizer.safetensors"))?;
            if !heads.variables().is_empty() {
                heads
                    .save(tmp.join(OBJECTIVE_PARAMS))
                    .map_err(TrainError::torch("writing objective_params.safetensors"))?;
            }
            let state = serde_json::json!({ "step": step, "total_steps": self.total_steps, "seed": self.seed });
            write_file(&tmp.join(TRAINER_STATE), state.to_string().as_bytes())?;
            Ok(())
        })
    }

    /// Loads the optimizer state and the objective's parameters of the checkpoint `dir`
    /// (taken after `step` steps): `load` receives the optimizer's named tensors and the step
    /// and says what is wrong with them. The policy's weights are loaded from `dir` by the caller.
    pub fn restore(
        &self,
        dir: &Path,
        step: u64,
        load: impl FnOnce(&[(String, Tensor)], u64) -> std::result::Result<(), String>,
        heads: &mut VarStore,
    ) -> Result<()> {
        let state = Tensor::read_safetensors(dir.join(OPTIMIZER_STATE))
            .map_err(TrainError::torch("reading optimizer.safetensors"))?;
        load(&state, step).map_err(|why| TrainError::Resume { path: dir.to_path_buf(), why })?;
        if !heads.variables().is_empty() {
            heads
                .load(dir.join(OBJECTIVE_PARAMS))
                .map_err(TrainError::torch("reading objective_params.safetensors"))?;
        }
        Ok(())
    }
}
