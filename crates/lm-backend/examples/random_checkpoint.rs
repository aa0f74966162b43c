//! Writes a Hugging Face folder with random weights for a real model's `config.json`: a
//! checkpoint of the right shapes for memory and speed measurements, with nothing to download.
//!
//! ```text
//! cargo run --release -p lm-backend --example random_checkpoint -- CONFIG_JSON OUT_DIR \
//!     [--dtype f32|bf16] [--num-layers N] [--tokenizer DIR] [--seed S]
//! ```
//!
//! - `--num-layers N` keeps the first N decoder layers (a CPU dry run of a 7B shape).
//! - `--tokenizer DIR` copies `tokenizer.json` (and `tokenizer_config.json` when present) from
//!   DIR; its ids must be below the config's `vocab_size`.
//!
//! Weights are N(0, 0.02) (as `initializer_range` in most configs); RMSNorm weights are the
//! identity of their architecture (1 for `w` norms, 0 for Gemma's `1 + w` norms). Used by
//! `scripts/bench/gpu_scale.sh`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lm_backend::{tensor_specs, Dtype, HfCausalLm, LoadOptions, ModelConfig};
use tch::{Kind, Tensor};

struct Args {
    config: PathBuf,
    output: PathBuf,
    dtype: Dtype,
    num_layers: Option<usize>,
    tokenizer: Option<PathBuf>,
    seed: i64,
}

fn parse_args() -> Result<Args, Box<dyn std::error::Error>> {
    let usage = "usage: random_checkpoint CONFIG_JSON OUT_DIR [--dtype f32|bf16] [--num-layers N] \
                 [--tokenizer DIR] [--seed S]";
    let mut positional = Vec::new();
    let (mut dtype, mut num_layers, mut tokenizer, mut seed) = (Dtype::Bf16, None, None, 0);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value; {usage}"));
        match arg.as_str() {
            "--dtype" => dtype = value()?.parse()?,
            "--num-layers" => num_layers = Some(value()?.parse()?),
            "--tokenizer" => tokenizer = Some(PathBuf::from(value()?)),
            "--seed" => seed = value()?.parse()?,
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}; {usage}").into()),
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    let [config, output] = <[PathBuf; 2]>::try_from(positional).map_err(|_| usage.to_string())?;
    Ok(Args { config, output, dtype, num_layers, tokenizer, seed })
}

/// The config's JSON with `num_hidden_layers` (and a `layer_types` list, if any) cut to `n`.
fn with_layers(mut json: serde_json::Value, n: usize) -> serde_json::Value {
    if let Some(obj) = json.as_object_mut() {
        obj.insert("num_hidden_layers".into(), n.into());
        if let Some(serde_json::Value::Array(types)) = obj.get_mut("layer_types") {
            types.truncate(n);
        }
    }
    json
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let text = std::fs::read_to_string(&args.config).map_err(|e| format!("{}: {e}", args.config.display()))?;
    let mut json: serde_json::Value = serde_json::from_str(&text)?;
    if let Some(n) = args.num_layers {
        json = with_layers(json, n);
    }
    let config = ModelConfig::from_json_str(&json.to_string(), &args.config)?;
    // Gemma's RMSNorm multiplies by (1 + w): its identity is w = 0.
    let norm_identity = if config.architecture.model_type().starts_with("gemma") { 0.0 } else { 1.0 };
    tch::manual_seed(args.seed);
    let kind = args.dtype.kind();
    let mut tensors = BTreeMap::new();
    let mut count: i64 = 0;
    for spec in tensor_specs(&config) {
        let t = if spec.name.ends_with("norm.weight") {
            Tensor::full(spec.shape.as_slice(), norm_identity, (kind, tch::Device::Cpu))
        } else {
            (Tensor::randn(spec.shape.as_slice(), (Kind::Float, tch::Device::Cpu)) * 0.02).to_kind(kind)
        };
        count += t.numel() as i64;
        tensors.insert(spec.name, t);
    }
    let model = HfCausalLm::from_parameters(json, tensors, LoadOptions::cpu_f32().with_dtype(args.dtype))?;
    let extra: Vec<PathBuf> = match &args.tokenizer {
        None => Vec::new(),
        Some(dir) => ["tokenizer.json", "tokenizer_config.json"]
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| p.exists() || p.ends_with("tokenizer.json"))
            .collect(),
    };
    model.save(&args.output, &extra)?;
    let layers = config.num_layers;
    println!(
        "wrote {} ({} {}, {layers} layers, {:.3} B parameters, {})",
        args.output.display(),
        config.architecture.model_type(),
        args.dtype,
        count as f64 / 1e9,
        Path::new(&args.config).display()
    );
    Ok(())
}
