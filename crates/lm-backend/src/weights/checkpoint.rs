//! Reading a checkpoint folder: one `model.safetensors` or several shards listed by
//! `model.safetensors.index.json`, memory-mapped and copied into [`tch::Tensor`]s of the
//! requested dtype on the requested device.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use tch::{Kind, Tensor};

use super::{LoadOptions, TensorSpec};
use crate::error::{LmError, Result};

/// Name of a single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of the index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The safetensors files of one checkpoint folder.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Finds `model.safetensors.index.json` (sharded) or `model.safetensors` in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let index_path = dir.join(INDEX_FILE);
        let files = if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|e| LmError::io(&index_path, e))?;
            let index: Index =
                serde_json::from_str(&text).map_err(|source| LmError::Json { path: index_path.clone(), source })?;
            let mut files: Vec<PathBuf> = index.weight_map.values().map(|f| dir.join(f)).collect();
            files.sort();
            files.dedup();
            files
        } else {
            vec![dir.join(SINGLE_FILE)]
        };
        for f in &files {
            if !f.is_file() {
                return Err(LmError::io(
                    f,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found"),
                ));
            }
        }
        Ok(Checkpoint { dir, files })
    }

    /// The safetensors files, sorted.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The dtype the tensor `name` is stored in (e.g. the embedding's, to keep a model's own
    /// precision when rewriting it).
    pub fn stored_kind(&self, name: &str) -> Result<Kind> {
        for path in &self.files {
            let file = File::open(path).map_err(|e| LmError::io(path, e))?;
            // SAFETY: as in `load`: a read-only map, used only while this function reads it.
            let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| LmError::io(path, e))?;
            let st = SafeTensors::deserialize(&mmap)
                .map_err(|e| LmError::Safetensors { path: path.clone(), message: e.to_string() })?;
            if let Ok(view) = st.tensor(name) {
                return safetensors_kind(view.dtype()).ok_or_else(|| LmError::TensorDtype {
                    path: path.clone(),
                    name: name.to_string(),
                    dtype: format!("{:?}", view.dtype()),
                });
            }
        }
        Err(LmError::MissingTensor { path: self.dir.clone(), name: name.to_string() })
    }

    /// Loads exactly the tensors in `specs`, checking their shapes, converted to `options`.
    ///
    /// Tensors in the files that are not in `specs` are errors unless `ignorable(name)`
    /// says they may be skipped (e.g. an `lm_head.weight` of a tied model, old rotary
    /// buffers).
    pub fn load(
        &self,
        specs: &[TensorSpec],
        ignorable: impl Fn(&str) -> bool,
        options: LoadOptions,
    ) -> Result<BTreeMap<String, Tensor>> {
        let wanted: HashMap<&str, &TensorSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut out = BTreeMap::new();
        for path in &self.files {
            let file = File::open(path).map_err(|e| LmError::io(path, e))?;
            // SAFETY: the map is read-only and lives only while this function copies from it;
            // the checkpoint files are not expected to change while they are being loaded.
            let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| LmError::io(path, e))?;
            let st = SafeTensors::deserialize(&mmap)
                .map_err(|e| LmError::Safetensors { path: path.clone(), message: e.to_string() })?;
            for (name, view) in st.iter() {
                let Some(spec) = wanted.get(name) else {
                    if ignorable(name) {
                        continue;
                    }
                    return Err(LmError::UnexpectedTensor { path: path.clone(), name: name.to_string() });
                };
                let found: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
                if found != spec.shape {
                    return Err(LmError::TensorShape {
                        path: path.clone(),
                        name: name.to_string(),
                        expected: spec.shape.clone(),
                        found,
                    });
                }
                let Some(kind) = safetensors_kind(view.dtype()) else {
                    return Err(LmError::TensorDtype {
                        path: path.clone(),
                        name: name.to_string(),
                        dtype: format!("{:?}", view.dtype()),
                    });
                };
                let tensor = Tensor::f_from_data_size(view.data(), &found, kind)?
                    .f_to_kind(options.dtype)?
                    .f_to_device(options.device)?;
                out.insert(name.to_string(), tensor);
            }
        }
        if let Some(missing) = specs.iter().find(|s| !out.contains_key(&s.name)) {
            return Err(LmError::MissingTensor { path: self.dir.clone(), name: missing.name.clone() });
        }
        Ok(out)
    }
}

/// The libtorch kind of a stored safetensors dtype, for the float types models use.
pub(crate) fn safetensors_kind(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F16 => Some(Kind::Half),
        Dtype::F64 => Some(Kind::Double),
        _ => None,
    }
}
