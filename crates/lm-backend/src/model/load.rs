//! Building an [`HfCausalLm`]: from a checkpoint folder ([`HfCausalLm::load`]) or named
//! tensors ([`HfCausalLm::from_parameters`]), and the list of tensors a config implies
//! ([`tensor_specs`]), recorded from the same construction code.

use std::collections::BTreeMap;
use std::path::Path;

use tch::Tensor;

use super::{HfCausalLm, EMBED_TOKENS, FINAL_NORM, LM_HEAD};
use crate::arch::DecoderBlock;
use crate::config::ModelConfig;
use crate::error::{LmError, Result};
use crate::norm::RmsNorm;
use crate::rope::Rope;
use crate::weights::{record_specs, Checkpoint, LoadOptions, TensorSpec, WeightSource, Weights};

/// Every tensor a checkpoint of `config` must hold, with its shape: the tensors the model's
/// construction asks for, recorded without loading any.
pub fn tensor_specs(config: &ModelConfig) -> Vec<TensorSpec> {
    record_specs(|w| Stack::load(w, config))
}

/// The parts of a model that hold its weights.
struct Stack {
    embed: Tensor, // [V, D]
    blocks: Vec<Box<dyn DecoderBlock>>,
    norm: RmsNorm,
    lm_head: Tensor, // [V, D], the embedding when tied
}

impl Stack {
    /// Asks `w` for every weight of a model of config `c`, each once, with its shape.
    fn load(w: &Weights, c: &ModelConfig) -> Result<Stack> {
        let arch = c.architecture.entry();
        let (v, d) = (c.vocab_size, c.hidden_size);
        let embed = w.get(EMBED_TOKENS, &[v, d])?;
        let blocks = (0..c.num_layers)
            .map(|i| (arch.block)(&w.pushed(&format!("model.layers.{i}")), c, i, arch.norm_scale))
            .collect::<Result<_>>()?;
        let norm = RmsNorm::new(w.get(FINAL_NORM, &[d])?, c.rms_norm_eps, arch.norm_scale);
        let lm_head = if c.tie_word_embeddings { embed.shallow_clone() } else { w.get(LM_HEAD, &[v, d])? };
        Ok(Stack { embed, blocks, norm, lm_head })
    }
}

impl HfCausalLm {
    /// Loads `dir/config.json` and the weights of `dir` (single file or sharded).
    pub fn load(dir: impl AsRef<Path>, options: LoadOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| LmError::io(&config_path, e))?;
        let config = ModelConfig::from_json_str(&text, &config_path)?;
        let source_config: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| LmError::Json { path: config_path.clone(), source })?;
        let specs = tensor_specs(&config);
        let tied = config.tie_word_embeddings;
        // Skipped when present: a redundant output projection of a tied model (transformers
        // ignores it too) and rotary tables some old checkpoints saved.
        let ignorable = |name: &str| (tied && name == LM_HEAD) || name.ends_with("rotary_emb.inv_freq");
        let tensors = Checkpoint::open(dir)?.load(&specs, ignorable, options)?;
        Self::from_tensors(config, source_config, WeightSource::loaded(tensors, dir), options)
    }

    /// A model from a `config.json` value and named tensors (e.g. built in memory or
    /// converted from another format). Names and shapes are checked as when loading a
    /// checkpoint; the tensors are converted to `options`' dtype and device.
    pub fn from_parameters(
        source_config: serde_json::Value,
        tensors: BTreeMap<String, Tensor>,
        options: LoadOptions,
    ) -> Result<Self> {
        let path = Path::new("<config>");
        let config = ModelConfig::from_json_str(&source_config.to_string(), path)?;
        let specs = tensor_specs(&config);
        if let Some(name) = tensors.keys().find(|n| !specs.iter().any(|s| &s.name == *n)) {
            return Err(LmError::UnexpectedTensor { path: path.into(), name: name.clone() });
        }
        let converted = tensors
            .into_iter()
            .map(|(name, t)| Ok((name, t.f_detach()?.f_to_kind(options.dtype)?.f_to_device(options.device)?)))
            .collect::<Result<_>>()?;
        Self::from_tensors(config, source_config, WeightSource::loaded(converted, path), options)
    }

    /// The model of `config` over `source`'s tensors (already in `options`' dtype and device).
    fn from_tensors(
        config: ModelConfig,
        source_config: serde_json::Value,
        source: WeightSource,
        options: LoadOptions,
    ) -> Result<Self> {
        let Stack { embed, blocks, norm, lm_head } = Stack::load(&source.root(), &config)?;
        // Rounded to the weights' dtype, as in transformers.
        let embed_scale = config
            .architecture
            .entry()
            .embed_scale
            .map(|scale| Tensor::from(scale(&config) as f32).to_kind(options.dtype).to_device(options.device));
        Ok(HfCausalLm {
            rope: Rope::new(&config.rope, config.head_dim, options.device),
            blocks,
            embed,
            embed_scale,
            norm,
            lm_head,
            parameters: source.into_tensors(),
            options,
            config,
            source_config,
        })
    }
}
