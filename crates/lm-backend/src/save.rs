//! Saving a model as a Hugging Face folder (`config.json`, `model.safetensors`, plus any
//! extra files such as the tokenizer's) that `transformers` loads unchanged.
//!
//! The folder is written with [`crate::atomic::write_dir`]: under a temporary name beside
//! the target, renamed into place when complete, so a reader (or a crash) never sees a
//! half-written model.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, View};
use tch::{Device, Kind, Tensor};

use crate::atomic::{write_dir, write_file};
use crate::error::{LmError, Result};
use crate::model::{CausalLm, HfCausalLm};
use crate::weights::SINGLE_FILE;

/// One tensor, copied to contiguous CPU memory when the writer asks for its bytes.
struct TensorBytes {
    tensor: Tensor,
    dtype: Dtype,
    shape: Vec<usize>,
}

impl View for TensorBytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let mut bytes = vec![0u8; self.data_len()];
        self.tensor.copy_data_u8(&mut bytes, self.tensor.numel());
        Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        self.tensor.numel() * self.dtype.bitsize() / 8
    }
}

pub(crate) fn safetensors_dtype(kind: Kind) -> Result<(Dtype, &'static str)> {
    match kind {
        Kind::Float => Ok((Dtype::F32, "float32")),
        Kind::BFloat16 => Ok((Dtype::BF16, "bfloat16")),
        Kind::Half => Ok((Dtype::F16, "float16")),
        Kind::Double => Ok((Dtype::F64, "float64")),
        other => Err(LmError::input("model", format!("cannot save weights of dtype {other:?}"))),
    }
}

impl HfCausalLm {
    /// Writes the model to `dir` as a Hugging Face folder: the `config.json` it was loaded
    /// with (its `dtype`/`torch_dtype` set to the weights' dtype), `model.safetensors`
    /// (a tied output projection stored once, as the embedding, with metadata
    /// `format = pt`) and copies of `extra_files` (e.g. `tokenizer.json`,
    /// `tokenizer_config.json`). An existing `dir` is replaced.
    ///
    /// A model with LoRA adapters is an error: it would lose them. Save the adapters alone
    /// ([`HfCausalLm::save_adapter`]) or fold them in first ([`HfCausalLm::merged`]).
    pub fn save(&self, dir: impl AsRef<Path>, extra_files: &[PathBuf]) -> Result<()> {
        if self.has_adapters() {
            let why = "the model has LoRA adapters, which a model folder cannot hold: save them with \
                       save_adapter, or save merged() for a model with the adapters folded in";
            return Err(LmError::Adapter { path: dir.as_ref().to_path_buf(), message: why.into() });
        }
        write_dir(dir.as_ref(), |tmp| self.write_files(tmp, extra_files))
    }

    fn write_files(&self, dir: &Path, extra_files: &[PathBuf]) -> Result<()> {
        let (_, dtype_name) = safetensors_dtype(self.kind())?;
        let mut config = self.source_config().clone();
        if let Some(obj) = config.as_object_mut() {
            obj.insert("dtype".into(), dtype_name.into());
            if obj.contains_key("torch_dtype") {
                obj.insert("torch_dtype".into(), dtype_name.into());
            }
        }
        let config_path = dir.join("config.json");
        let text = serde_json::to_string_pretty(&config)
            .map_err(|source| LmError::Json { path: config_path.clone(), source })?;
        write_file(&config_path, (text + "\n").as_bytes())?;
        write_safetensors(&dir.join(SINGLE_FILE), self.parameters())?;
        copy_files(dir, extra_files)
    }
}

/// Copies each of `files` into `dir`, under its own name.
pub(crate) fn copy_files(dir: &Path, files: &[PathBuf]) -> Result<()> {
    for file in files {
        let target = dir.join(file.file_name().unwrap_or_default());
        std::fs::copy(file, &target).map_err(|e| LmError::io(file, e))?;
    }
    Ok(())
}

/// Writes `tensors` (each in its own dtype) to the safetensors file `path`, with metadata
/// `format = pt` as `transformers` and PEFT write it. Not atomic by itself: callers write
/// into a folder that [`write_dir`] renames into place.
pub(crate) fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let views = tensors
        .iter()
        .map(|(name, t)| {
            let (dtype, _) = safetensors_dtype(t.kind())?;
            let tensor = t.detach().to_device(Device::Cpu).contiguous();
            let shape = tensor.size().iter().map(|&d| d as usize).collect();
            Ok((name.clone(), TensorBytes { tensor, dtype, shape }))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path)
        .map_err(|e| LmError::Safetensors { path: path.to_path_buf(), message: e.to_string() })
}
