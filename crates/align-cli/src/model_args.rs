//! The options that choose and load a model folder (`--model`, `--device`, `--dtype`,
//! `--attention`), shared by every verb that runs a model.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use lm_backend::{AttentionImpl, Dtype, HfCausalLm, LoadOptions, Tokenizer};

/// `--model DIR [--device D] [--dtype T] [--attention A]`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A Hugging Face model folder (config.json, *.safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Where to run: "cpu", "cuda" or "cuda:N".
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Element type of the weights and activations: "f32" (exact; use it to compare with other
    /// implementations) or "bf16" (half the memory; faster on GPUs and on CPUs with AVX-512
    /// BF16 or AMX, slower on other CPUs).
    #[arg(long, default_value = "f32")]
    pub dtype: Dtype,
    /// How attention is computed: "sdpa" (libtorch's fused kernel; less memory, faster on long
    /// sequences) or "eager" (separate ops, as transformers' eager path). Gemma 2's
    /// soft-capped layers run eager either way.
    #[arg(long, default_value = "sdpa")]
    pub attention: AttentionImpl,
}

impl ModelArgs {
    /// Checks the device, then loads the model and its tokenizer; errors name the folder.
    pub fn load(&self) -> anyhow::Result<(HfCausalLm, Tokenizer)> {
        let device = torch_device::device_from_str(&self.device)?;
        let dir = &self.model;
        if !dir.is_dir() {
            bail!("model folder {} does not exist or is not a folder", dir.display());
        }
        let options = LoadOptions::cpu_f32().with_dtype(self.dtype).with_device(device).with_attention(self.attention);
        let model =
            HfCausalLm::load(dir, options).with_context(|| format!("cannot load the model in {}", dir.display()))?;
        let tokenizer =
            Tokenizer::from_dir(dir).with_context(|| format!("cannot load the tokenizer in {}", dir.display()))?;
        Ok((model, tokenizer))
    }
}
