//! The options that choose and load a model folder (`--model`, `--device`, `--dtype`),
//! shared by every verb that runs a model.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use lm_backend::{HfCausalLm, LoadOptions, Tokenizer};
use tch::Kind;

/// Element type of the weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// float32 (exact; use it to compare with other implementations).
    F32,
    /// bfloat16 (half the memory; faster on GPUs, often slower on CPUs at small shapes).
    Bf16,
}

impl DtypeArg {
    /// The libtorch kind.
    pub fn kind(self) -> Kind {
        match self {
            DtypeArg::F32 => Kind::Float,
            DtypeArg::Bf16 => Kind::BFloat16,
        }
    }
}

/// `--model DIR [--device D] [--dtype T]`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A Hugging Face model folder (config.json, *.safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Where to run: "cpu", "cuda" or "cuda:N".
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Element type of the weights and activations.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
}

impl ModelArgs {
    /// Checks the device, then loads the model and its tokenizer; errors name the folder.
    pub fn load(&self) -> anyhow::Result<(HfCausalLm, Tokenizer)> {
        let device = torch_device::device_from_str(&self.device)?;
        let dir = &self.model;
        if !dir.is_dir() {
            bail!("model folder {} does not exist or is not a folder", dir.display());
        }
        let options = LoadOptions::cpu_f32().with_dtype(self.dtype.kind()).with_device(device);
        let model =
            HfCausalLm::load(dir, options).with_context(|| format!("cannot load the model in {}", dir.display()))?;
        let tokenizer =
            Tokenizer::from_dir(dir).with_context(|| format!("cannot load the tokenizer in {}", dir.display()))?;
        Ok((model, tokenizer))
    }
}
