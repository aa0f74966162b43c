//! The options that choose and load a model folder (`--model`, `--base`, `--device`,
//! `--dtype`, `--attention`), shared by every verb that runs a model. `--model` is a Hugging
//! Face model folder or a PEFT adapter folder (`adapter_config.json`), applied to its base
//! model.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use lm_backend::lora::{is_adapter_dir, AdapterConfig};
use lm_backend::{AttentionImpl, Dtype, HfCausalLm, LoadOptions, Tokenizer};

/// `--model DIR [--base DIR] [--device D] [--dtype T] [--attention A]`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A Hugging Face model folder (config.json, *.safetensors, tokenizer.json), or a LoRA
    /// adapter folder (adapter_config.json, adapter_model.safetensors, as LoRA runs of
    /// `align train` and PEFT write them), applied to its base model.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// With an adapter folder as --model: its base model folder (default: the folder its
    /// adapter_config.json names in base_model_name_or_path, absolute or relative to it).
    #[arg(long, value_name = "DIR")]
    pub base: Option<PathBuf>,
    /// Where to run: "cpu", "cuda" or "cuda:N".
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Element type of the weights and activations: "f32" (exact; use it to compare with other
    /// implementations) or "bf16" (half the memory; faster on GPUs and on CPUs with AVX-512
    /// BF16 or AMX, slower on other CPUs). LoRA adapters stay f32.
    #[arg(long, default_value = "f32")]
    pub dtype: Dtype,
    /// How attention is computed: "sdpa" (libtorch's fused kernel; less memory, faster on long
    /// sequences) or "eager" (separate ops, as transformers' eager path). Gemma 2's
    /// soft-capped layers run eager either way.
    #[arg(long, default_value = "sdpa")]
    pub attention: AttentionImpl,
}

impl ModelArgs {
    /// Checks the device, then loads the model (an adapter folder onto its base) and its
    /// tokenizer (an adapter folder's own, else its base's); errors name the folder.
    pub fn load(&self) -> anyhow::Result<(HfCausalLm, Tokenizer)> {
        let device = torch_device::device_from_str(&self.device)?;
        let dir = &self.model;
        if !dir.is_dir() {
            bail!("model folder {} does not exist or is not a folder", dir.display());
        }
        let options = LoadOptions::cpu_f32().with_dtype(self.dtype).with_device(device).with_attention(self.attention);
        if !is_adapter_dir(dir) {
            if let Some(base) = &self.base {
                bail!(
                    "--base {} is for adapter folders, and {} is a model folder (it has no adapter_config.json)",
                    base.display(),
                    dir.display()
                );
            }
            let model = HfCausalLm::load(dir, options)
                .with_context(|| format!("cannot load the model in {}", dir.display()))?;
            return Ok((model, load_tokenizer(dir)?));
        }
        let base = self.base_dir()?;
        let model = HfCausalLm::load_with_adapter(&base, dir, options).with_context(|| {
            format!("cannot load the adapter in {} onto the base model {}", dir.display(), base.display())
        })?;
        let tokenizer_dir = if dir.join("tokenizer.json").is_file() { dir.as_path() } else { base.as_path() };
        Ok((model, load_tokenizer(tokenizer_dir)?))
    }

    /// The base model folder of the adapter folder `--model`: `--base`, else the one its
    /// config names.
    fn base_dir(&self) -> anyhow::Result<PathBuf> {
        let base = match &self.base {
            Some(base) => base.clone(),
            None => AdapterConfig::read(&self.model)?.base_dir(&self.model)?,
        };
        if !base.join("config.json").is_file() {
            bail!("base model folder {} has no config.json", base.display());
        }
        Ok(base)
    }
}

/// The tokenizer of the folder `dir`.
fn load_tokenizer(dir: &Path) -> anyhow::Result<Tokenizer> {
    Tokenizer::from_dir(dir).with_context(|| format!("cannot load the tokenizer in {}", dir.display()))
}
