//! Export of a GGUF file (llama, qwen2, qwen3, gemma2, gemma3) to a Hugging Face model folder.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::{Dtype, View};
use serde_json::Value;

use super::arch_mapping::{GgufArchitecture, GgufHparams, RowOrder};
use super::error::{GgufError, Result};
use super::ggml_type::GgmlType;
use super::permute::unpermute_rotary_rows;
use super::quant::dequantize;
use super::reader::GgufFile;
use super::tokenizer::GgufTokenizer;
use crate::atomic::write_dir;
use crate::config::ModelConfig;
use crate::model::tensor_specs;

/// The element type of the exported `model.safetensors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportDtype {
    /// float32: exact for every GGUF type handled (dequantised values are f32).
    #[default]
    F32,
    /// float16 (round to nearest even).
    F16,
    /// bfloat16 (round to nearest even).
    BF16,
}

impl ExportDtype {
    fn safetensors_dtype(self) -> Dtype {
        match self {
            Self::F32 => Dtype::F32,
            Self::F16 => Dtype::F16,
            Self::BF16 => Dtype::BF16,
        }
    }

    /// The name `config.json` uses (`torch_dtype`).
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
        }
    }

    fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
        }
    }

    fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            Self::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
            Self::BF16 => values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        }
    }
}

/// Options of [`convert_to_hf`].
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Element type of the written weights (default f32).
    pub dtype: ExportDtype,
    /// Replace `out_dir` when it exists (default: refuse).
    pub overwrite: bool,
}

/// What [`convert_to_hf`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertReport {
    /// The output folder.
    pub out_dir: PathBuf,
    /// Number of tensors written to `model.safetensors`.
    pub tensors: usize,
    /// Total number of weight values written.
    pub parameters: u64,
    /// How many source tensors had each GGML type.
    pub source_types: BTreeMap<String, usize>,
    /// True when the file has no `output.weight` (the LM head shares the embedding).
    pub tied_embeddings: bool,
    /// Vocabulary size.
    pub vocab_size: u64,
    /// Things the export had to leave out or approximate.
    pub warnings: Vec<String>,
}

/// Converts the GGUF file at `gguf_path` into a Hugging Face folder `out_dir` holding
/// `config.json`, `generation_config.json`, `model.safetensors`, `tokenizer.json` and
/// `tokenizer_config.json`, loadable by `transformers`' class of the file's architecture
/// (`LlamaForCausalLM`, `Qwen2ForCausalLM`, `Qwen3ForCausalLM`, `Gemma2ForCausalLM`,
/// `Gemma3ForCausalLM`) and by this crate.
///
/// Before anything is written, the tensors are checked against the model the metadata
/// describes (names and shapes, from this crate's own construction code): a missing,
/// misshaped or extra tensor is a [`GgufError::ModelMismatch`] naming it.
///
/// The folder appears atomically: everything is written into a temporary folder beside
/// `out_dir`, which is then renamed.
pub fn convert_to_hf(
    gguf_path: impl AsRef<Path>,
    out_dir: impl AsRef<Path>,
    options: &ConvertOptions,
) -> Result<ConvertReport> {
    let file = GgufFile::open(gguf_path)?;
    convert_file_to_hf(&file, out_dir, options)
}

/// [`convert_to_hf`] for an already opened file.
pub fn convert_file_to_hf(
    file: &GgufFile,
    out_dir: impl AsRef<Path>,
    options: &ConvertOptions,
) -> Result<ConvertReport> {
    let out_dir = out_dir.as_ref();
    if out_dir.exists() && !options.overwrite {
        return Err(GgufError::OutputExists(out_dir.to_path_buf()));
    }
    let hparams = GgufHparams::from_gguf(file)?;
    let tokenizer = GgufTokenizer::from_gguf(file)?;
    let plan = plan_tensors(file, &hparams)?;
    let tied = file.tensor("output.weight").is_none();

    let mut source_types = BTreeMap::new();
    for t in &plan.tensors {
        *source_types.entry(t.source_type.to_string()).or_insert(0) += 1;
    }
    let report = ConvertReport {
        out_dir: out_dir.to_path_buf(),
        tensors: plan.tensors.len(),
        parameters: plan.tensors.iter().map(|t| t.shape.iter().product::<usize>() as u64).sum(),
        source_types,
        tied_embeddings: tied,
        vocab_size: hparams.vocab_size,
        warnings: plan.warnings.clone(),
    };

    let config =
        hparams.config_json(tied, options.dtype.torch_name(), tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id);
    check_complete(&config, &plan, hparams.architecture)?;
    let generation_config = serde_json::json!({
        "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id,
    });
    let tokenizer_json = tokenizer.tokenizer_json()?;
    let tokenizer_config = tokenizer.tokenizer_config_json(Some(hparams.max_position_embeddings));

    write_dir(out_dir, |tmp| {
        write_json(&tmp.join("config.json"), "config.json", &config)?;
        write_json(&tmp.join("generation_config.json"), "generation_config.json", &generation_config)?;
        write_json(&tmp.join("tokenizer.json"), "tokenizer.json", &tokenizer_json)?;
        write_json(&tmp.join("tokenizer_config.json"), "tokenizer_config.json", &tokenizer_config)?;
        write_safetensors(file, &plan, options.dtype, &tmp.join("model.safetensors"))
    })?;
    Ok(report)
}

/// One tensor to write: where it comes from and how it is transformed.
struct PlannedTensor {
    gguf_name: String,
    hf_name: String,
    source_type: GgmlType,
    /// Row-major shape, as in the Hugging Face checkpoint.
    shape: Vec<usize>,
    /// `Some(heads)` for q/k projections whose rows llama.cpp permuted.
    rotary_heads: Option<usize>,
    /// The stored values are `1 + w`.
    subtract_one: bool,
}

struct Plan {
    tensors: Vec<PlannedTensor>,
    warnings: Vec<String>,
}

/// Maps every tensor and checks everything that could fail later (names, shapes, types), so
/// the writing pass only fails on I/O.
fn plan_tensors(file: &GgufFile, hp: &GgufHparams) -> Result<Plan> {
    let arch = hp.architecture;
    let mut tensors = Vec::new();
    let mut warnings = Vec::new();
    for info in file.tensors() {
        if arch == GgufArchitecture::Llama && info.name == "rope_freqs.weight" {
            warnings.push(
                "rope_freqs.weight (Llama 3.1 rope frequency factors) was left out: config.json has no \
                 llama3 rope_scaling, so long contexts will differ from llama.cpp"
                    .to_string(),
            );
            continue;
        }
        let mapping = arch.hf_tensor_name(&info.name).ok_or_else(|| GgufError::UnmappedTensor {
            tensor: info.name.clone(),
            architecture: arch.gguf_name().to_string(),
        })?;
        // An empty slice is a whole number of blocks: this only asks whether the type is handled.
        dequantize(&info.name, info.ggml_type, &[])?;
        let shape = info.shape();
        let rotary_heads = match mapping.row_order {
            RowOrder::AsStored => None,
            RowOrder::Query => Some(hp.num_attention_heads as usize),
            RowOrder::Key => Some(hp.num_key_value_heads as usize),
        };
        if let Some(heads) = rotary_heads {
            let rows = shape.first().copied().unwrap_or(0);
            if shape.len() > 2 || rows != heads * hp.head_dim as usize || hp.head_dim % 2 != 0 {
                return Err(GgufError::Shape {
                    tensor: info.name.clone(),
                    message: format!("expected {heads} heads × {} rows, found shape {shape:?}", hp.head_dim),
                });
            }
        }
        tensors.push(PlannedTensor {
            gguf_name: info.name.clone(),
            hf_name: mapping.hf_name,
            source_type: info.ggml_type,
            shape,
            rotary_heads,
            subtract_one: mapping.subtract_one,
        });
    }
    Ok(Plan { tensors, warnings })
}

/// Checks that `plan` writes exactly the tensors a model of `config` needs, with their shapes,
/// so that the folder loads (here and in `transformers`) rather than failing or, worse,
/// silently initialising a missing weight.
fn check_complete(config: &Value, plan: &Plan, arch: GgufArchitecture) -> Result<()> {
    let mismatch = |message: String| GgufError::ModelMismatch { architecture: arch.gguf_name().to_string(), message };
    let model = ModelConfig::from_json_str(&config.to_string(), "config.json")
        .map_err(|e| mismatch(format!("the exported config is not valid: {e}")))?;
    let mut planned: BTreeMap<&str, &PlannedTensor> = BTreeMap::new();
    for t in &plan.tensors {
        if planned.insert(&t.hf_name, t).is_some() {
            return Err(mismatch(format!("two tensors map to {}", t.hf_name)));
        }
    }
    let mut missing = Vec::new();
    for spec in tensor_specs(&model) {
        match planned.remove(spec.name.as_str()) {
            None => missing.push(spec.name),
            Some(t) if t.shape.iter().map(|&d| d as i64).ne(spec.shape.iter().copied()) => {
                let message = format!(
                    "{} ({}) has shape {:?}, the metadata implies {:?}",
                    t.gguf_name, spec.name, t.shape, spec.shape
                );
                return Err(mismatch(message));
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        return Err(mismatch(format!("missing {} (Hugging Face names)", missing.join(", "))));
    }
    if let Some(t) = planned.values().next() {
        return Err(mismatch(format!("{} ({}) is not part of the model", t.gguf_name, t.hf_name)));
    }
    Ok(())
}

/// A tensor whose bytes are produced only when the safetensors writer asks for them, so that
/// at most one dequantised tensor is in memory at a time.
struct LazyTensor<'a> {
    file: &'a GgufFile,
    planned: &'a PlannedTensor,
    dtype: ExportDtype,
    /// The first error met while producing data (the `View` trait cannot return one).
    failure: &'a RefCell<Option<GgufError>>,
}

impl LazyTensor<'_> {
    fn values(&self) -> Result<Vec<f32>> {
        let p = self.planned;
        let mut values = self.file.tensor_f32(&p.gguf_name)?;
        if let Some(heads) = p.rotary_heads {
            let rows = p.shape[0];
            let cols = p.shape.get(1).copied().unwrap_or(1);
            values = unpermute_rotary_rows(&p.gguf_name, &values, rows, cols, heads)?;
        }
        if p.subtract_one {
            // In f32, as transformers' GGUF import does.
            values.iter_mut().for_each(|v| *v -= 1.0);
        }
        Ok(values)
    }
}

impl View for &LazyTensor<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype.safetensors_dtype()
    }

    fn shape(&self) -> &[usize] {
        &self.planned.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match self.values() {
            Ok(values) => Cow::Owned(self.dtype.encode(&values)),
            Err(e) => {
                self.failure.borrow_mut().get_or_insert(e);
                Cow::Owned(vec![0; self.data_len()])
            }
        }
    }

    fn data_len(&self) -> usize {
        self.planned.shape.iter().product::<usize>() * self.dtype.size()
    }
}

fn write_safetensors(file: &GgufFile, plan: &Plan, dtype: ExportDtype, path: &Path) -> Result<()> {
    let failure = RefCell::new(None);
    let views: Vec<LazyTensor<'_>> =
        plan.tensors.iter().map(|planned| LazyTensor { file, planned, dtype, failure: &failure }).collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views.iter().map(|v| (v.planned.hf_name.as_str(), v)), Some(metadata), path)
        .map_err(|e| GgufError::Safetensors { path: path.to_path_buf(), message: e.to_string() })?;
    match failure.into_inner() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_json(path: &Path, file: &'static str, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| GgufError::Json { file, source })?;
    fs::write(path, text + "\n").map_err(|source| GgufError::Io { action: "write", path: path.to_path_buf(), source })
}
