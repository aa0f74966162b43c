//! The weights a model is built from, asked for where they are used, by name and shape.
//!
//! Construction code asks a [`Weights`] for each tensor once, with its shape, e.g.
//! `w.pushed("self_attn").get("q_proj.weight", &[q, d])`. Over loaded tensors
//! ([`WeightSource::loaded`]) the answer is the tensor, after checking its shape; over a
//! recording ([`record_specs`]) the request is recorded as a [`TensorSpec`] and answered with
//! a placeholder of that shape (one value broadcast, no memory). Running the same
//! construction code both ways is how a model lists the tensors it needs, so that list
//! cannot differ from what loading reads.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use tch::Tensor;

use super::TensorSpec;
use crate::error::{LmError, Result};
use crate::lora::{AdapterTable, LoraLinear};

/// Where the tensors a model is built from come from.
#[derive(Debug)]
pub(crate) enum WeightSource {
    /// Tensors by checkpoint name; `origin` (a folder or file) names them in errors.
    Loaded {
        /// The tensors.
        tensors: BTreeMap<String, Tensor>,
        /// Where they came from.
        origin: PathBuf,
    },
    /// No tensors: each request is recorded and answered with a placeholder.
    Recording(RefCell<Vec<TensorSpec>>),
}

impl WeightSource {
    /// A source of these tensors, which came from `origin`.
    pub(crate) fn loaded(tensors: BTreeMap<String, Tensor>, origin: impl Into<PathBuf>) -> Self {
        WeightSource::Loaded { tensors, origin: origin.into() }
    }

    /// The view of every tensor (no prefix).
    pub(crate) fn root(&self) -> Weights<'_> {
        Weights { source: self, prefix: String::new(), adapters: None }
    }

    /// The view of every tensor, with the LoRA adapters of `adapters` for the projections
    /// that have one ([`Weights::adapter`]).
    pub(crate) fn root_with_adapters<'a>(&'a self, adapters: &'a AdapterTable) -> Weights<'a> {
        Weights { source: self, prefix: String::new(), adapters: Some(adapters) }
    }

    /// The loaded tensors (none for a recording).
    pub(crate) fn into_tensors(self) -> BTreeMap<String, Tensor> {
        match self {
            WeightSource::Loaded { tensors, .. } => tensors,
            WeightSource::Recording(_) => BTreeMap::new(),
        }
    }
}

/// The specs of every tensor `build` asks for, in the order it asks.
pub(crate) fn record_specs<T>(build: impl FnOnce(&Weights) -> Result<T>) -> Vec<TensorSpec> {
    let source = WeightSource::Recording(RefCell::new(vec![]));
    // A recording answers every request, so only a constructor that fails for another
    // reason could fail here; constructors fail only on their weights.
    build(&source.root()).expect("a recording answers every weight request");
    match source {
        WeightSource::Recording(specs) => specs.into_inner(),
        WeightSource::Loaded { .. } => unreachable!("made a recording above"),
    }
}

/// The weights under one name prefix, e.g. `model.layers.0.self_attn`.
#[derive(Debug)]
pub(crate) struct Weights<'a> {
    source: &'a WeightSource,
    prefix: String,
    adapters: Option<&'a AdapterTable>,
}

impl<'a> Weights<'a> {
    /// The weights under `<prefix>.<name>`.
    pub(crate) fn pushed(&self, name: &str) -> Weights<'a> {
        Weights { source: self.source, prefix: self.full_name(name), adapters: self.adapters }
    }

    /// The LoRA adapter of the module this view is of (its prefix, e.g.
    /// `model.layers.0.self_attn.q_proj`), when the model is built with one.
    pub(crate) fn adapter(&self) -> Option<LoraLinear> {
        self.adapters.and_then(|table| table.take(&self.prefix))
    }

    /// The tensor `<prefix>.<name>`, which must have shape `shape`; it shares storage (and
    /// gradient) with the source's tensor.
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let spec = TensorSpec::new(self.full_name(name), shape);
        match self.source {
            WeightSource::Loaded { tensors, origin } => {
                let Some(t) = tensors.get(&spec.name) else {
                    return Err(LmError::MissingTensor { path: origin.clone(), name: spec.name });
                };
                if t.size() != spec.shape {
                    let found = t.size();
                    return Err(LmError::TensorShape {
                        path: origin.clone(),
                        name: spec.name,
                        expected: spec.shape,
                        found,
                    });
                }
                Ok(t.shallow_clone())
            }
            WeightSource::Recording(specs) => {
                let placeholder = Tensor::from(0f32).expand(&spec.shape, false);
                specs.borrow_mut().push(spec);
                Ok(placeholder)
            }
        }
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_lists_what_loading_reads() {
        let build = |w: &Weights| -> Result<Vec<Tensor>> {
            let attn = w.pushed("model.layers.0").pushed("self_attn");
            Ok(vec![attn.get("q_proj.weight", &[4, 2])?, w.get("model.norm.weight", &[2])?])
        };
        let specs = record_specs(build);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["model.layers.0.self_attn.q_proj.weight", "model.norm.weight"]);
        assert_eq!(specs[0].shape, [4, 2]);
        let tensors: BTreeMap<String, Tensor> =
            specs.iter().map(|s| (s.name.clone(), Tensor::ones(&s.shape, tch::kind::FLOAT_CPU))).collect();
        let source = WeightSource::loaded(tensors, "dir");
        let loaded = build(&source.root()).unwrap();
        assert_eq!(loaded[0].size(), [4, 2]);
    }

    #[test]
    fn missing_and_misshaped_tensors_are_named() {
        let tensors = BTreeMap::from([("a.w".to_string(), Tensor::zeros([3], tch::kind::FLOAT_CPU))]);
        let source = WeightSource::loaded(tensors, "dir");
        let a = source.root().pushed("a");
        let e = a.get("w", &[2]).unwrap_err();
        assert!(matches!(&e, LmError::TensorShape { name, .. } if name == "a.w"), "{e}");
        let e = a.get("b", &[2]).unwrap_err();
        assert!(matches!(&e, LmError::MissingTensor { name, .. } if name == "a.b"), "{e}");
    }
}
