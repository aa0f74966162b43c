//! `align merge --base DIR --adapter DIR --output DIR`: folds a LoRA adapter folder (ours or
//! PEFT's) into its base model and writes a Hugging Face model folder that `transformers`
//! loads: each adapted weight becomes `W + (alpha / r) B A`, in the base's own dtype (the
//! dtype its embedding is stored in); `config.json` and the tokenizer files are copied from
//! the base. The folder appears atomically; an existing one is replaced only with
//! `--overwrite`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use lm_backend::lora::AdapterConfig;
use lm_backend::model::EMBED_TOKENS;
use lm_backend::{Checkpoint, HfCausalLm, LoadOptions};
use tch::Kind;

/// Files copied from the base folder into the merged one, when present.
const COPIED_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
];

/// Arguments of `align merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The base model folder the adapter was trained on.
    #[arg(long, value_name = "DIR")]
    pub base: PathBuf,
    /// The LoRA adapter folder (adapter_config.json, adapter_model.safetensors).
    #[arg(long, value_name = "DIR")]
    pub adapter: PathBuf,
    /// The merged Hugging Face model folder to write.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// Replace DIR when it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// Merges and prints what was written.
pub fn run(args: MergeArgs) -> anyhow::Result<()> {
    if !args.base.join("config.json").is_file() {
        bail!("base model folder {} does not exist or has no config.json", args.base.display());
    }
    let adapter = AdapterConfig::read(&args.adapter)?;
    if args.output.exists() && !args.overwrite {
        bail!("output folder {} exists; pass --overwrite to replace it", args.output.display());
    }
    let checkpoint = Checkpoint::open(&args.base).with_context(|| format!("cannot read {}", args.base.display()))?;
    let kind = checkpoint.stored_kind(EMBED_TOKENS).with_context(|| format!("cannot read {}", args.base.display()))?;
    let model = HfCausalLm::load_with_adapter(&args.base, &args.adapter, LoadOptions::cpu_f32().with_dtype(kind))
        .with_context(|| {
            format!("cannot apply the adapter in {} to the base model {}", args.adapter.display(), args.base.display())
        })?;
    let modules = model.adapter_parameters().len() / 2;
    let extra: Vec<PathBuf> = COPIED_FILES.iter().map(|f| args.base.join(f)).filter(|p| p.is_file()).collect();
    model
        .merged()?
        .save(&args.output, &extra)
        .with_context(|| format!("cannot write the merged model to {}", args.output.display()))?;
    println!("wrote {}", args.output.display());
    println!("  adapted projections: {modules}");
    println!("  rank, scale:         r = {}, alpha / r = {}", adapter.r, adapter.scaling());
    let dtype = match kind {
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        Kind::Double => "float64",
        _ => "float32",
    };
    println!("  dtype:               {dtype} (the base's)");
    Ok(())
}
