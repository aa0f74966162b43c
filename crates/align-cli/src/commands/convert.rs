//! `align convert --from gguf FILE.gguf --output DIR`: a llama.cpp GGUF file to a Hugging
//! Face model folder (`config.json`, `model.safetensors`, tokenizer files), through
//! [`lm_backend::gguf::convert_to_hf`]. The folder appears atomically; an existing one is
//! replaced only with `--overwrite`.
//!
//! `align convert --from mgsm DIR --output FILE.jsonl`: MGSM's released TSV files
//! (`DIR/mgsm_<lang>.tsv`) to the question JSONL of `align eval utility`, through
//! [`read_mgsm_folder`].

use std::path::PathBuf;

use align_train::eval::{read_mgsm_folder, write_utility_items};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use lm_backend::gguf::{convert_to_hf, ConvertOptions, ConvertReport, ExportDtype};

/// Formats `align convert` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceFormat {
    /// A llama.cpp GGUF file (architectures llama, qwen2, qwen3, gemma2, gemma3).
    Gguf,
    /// A folder of MGSM's TSV files, `mgsm_<lang>.tsv` (question, a tab, the answer; no header).
    Mgsm,
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
    /// The model file to convert (gguf), or the folder of TSV files (mgsm).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The Hugging Face folder (gguf) or the JSONL file (mgsm) to write.
    #[arg(long, value_name = "DIR")]
    pub output: PathBuf,
    /// Element type of the written weights (gguf; default f32).
    #[arg(long, value_enum)]
    pub dtype: Option<ConvertDtype>,
    /// Only these languages, comma-separated (mgsm; default: every `mgsm_<lang>.tsv`).
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub languages: Vec<String>,
    /// Replace the output when it exists.
    #[arg(long)]
    pub overwrite: bool,
}

/// Converts and prints the report.
pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    match args.from {
        SourceFormat::Gguf => convert_gguf(args),
        SourceFormat::Mgsm => convert_mgsm(args),
    }
}

/// MGSM's TSV folder to question JSONL.
fn convert_mgsm(args: ConvertArgs) -> anyhow::Result<()> {
    if args.dtype.is_some() {
        bail!("--dtype is for --from gguf");
    }
    if !args.file.is_dir() {
        bail!("MGSM folder {} does not exist or is not a folder", args.file.display());
    }
    if args.output.exists() && !args.overwrite {
        bail!("output file {} exists; pass --overwrite to replace it", args.output.display());
    }
    let languages = (!args.languages.is_empty()).then_some(args.languages.as_slice());
    let items = read_mgsm_folder(&args.file, languages)
        .with_context(|| format!("cannot read the MGSM files in {}", args.file.display()))?;
    write_utility_items(&args.output, &items).with_context(|| format!("cannot write {}", args.output.display()))?;
    let mut counts: Vec<(String, usize)> = vec![];
    for item in &items {
        match counts.last_mut() {
            Some((lang, n)) if *lang == item.lang => *n += 1,
            _ => counts.push((item.lang.clone(), 1)),
        }
    }
    println!("wrote {}", args.output.display());
    println!("  questions: {}", items.len());
    let list: Vec<String> = counts.iter().map(|(lang, n)| format!("{lang} {n}")).collect();
    println!("  languages: {}", list.join(", "));
    Ok(())
}

/// A GGUF file to a Hugging Face folder.
fn convert_gguf(args: ConvertArgs) -> anyhow::Result<()> {
    if !args.languages.is_empty() {
        bail!("--languages is for --from mgsm");
    }
    if !args.file.is_file() {
        bail!("model file {} does not exist or is not a file", args.file.display());
    }
    if args.output.exists() && !args.overwrite {
        bail!("output folder {} exists; pass --overwrite to replace it", args.output.display());
    }
    let dtype = match args.dtype.unwrap_or(ConvertDtype::F32) {
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
