//! `align convert --from gguf FILE.gguf --output DIR`: a llama.cpp GGUF file to a Hugging
//! Face model folder (`config.json`, `model.safetensors`, tokenizer files), through
//! [`lm_backend::gguf::convert_to_hf`]. The folder appears atomically; an existing one is
//! replaced only with `--overwrite`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use lm_backend::gguf::{convert_to_hf, ConvertOptions, ConvertReport, ExportDtype};

/// Formats `align convert` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceFormat {
    /// A llama.cpp GGUF file (architectures llama, qwen2, qwen3, gemma2, gemma3).
    Gguf,
}

/// Element type of the written weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConvertDtype {
    /// float32: exact (dequantised GGUF values are f32).
    F32,
    /// bfloat16, rounded to nearest even.
    Bf16,
    /// float16, rounded to nearest even.
    F16,
}

/// Arguments of `align convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The format of FILE.
    #[arg(long, value_enum)]
    pub from: SourceFormat,
    /// The model file to convert.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The Hugging Face folder to write.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// Element type of the written weights.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: ConvertDtype,
    /// Replace DIR when it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// Converts and prints the report.
pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let SourceFormat::Gguf = args.from;
    if !args.file.is_file() {
        bail!("model file {} does not exist or is not a file", args.file.display());
    }
    if args.output.exists() && !args.overwrite {
        bail!("output folder {} exists; pass --overwrite to replace it", args.output.display());
    }
    let dtype = match args.dtype {
        ConvertDtype::F32 => ExportDtype::F32,
        ConvertDtype::Bf16 => ExportDtype::BF16,
        ConvertDtype::F16 => ExportDtype::F16,
    };
    let options = ConvertOptions { dtype, overwrite: args.overwrite };
    let report = convert_to_hf(&args.file, &args.output, &options)
        .with_context(|| format!("cannot convert {} into {}", args.file.display(), args.output.display()))?;
    print_report(&report, dtype);
    Ok(())
}

fn print_report(report: &ConvertReport, dtype: ExportDtype) {
    println!("wrote {}", report.out_dir.display());
    println!("  tensors:         {}", report.tensors);
    println!("  parameters:      {}", report.parameters);
    println!("  dtype:           {}", dtype.torch_name());
    println!("  vocabulary:      {}", report.vocab_size);
    println!("  tied embeddings: {}", report.tied_embeddings);
    let types: Vec<String> = report.source_types.iter().map(|(t, n)| format!("{t} x{n}")).collect();
    println!("  source types:    {}", types.join(", "));
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
}
