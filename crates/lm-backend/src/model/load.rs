//! Building an [`HfCausalLm`]: from a checkpoint folder ([`HfCausalLm::load`]) or named
//! tensors ([`HfCausalLm::from_parameters`]), and the list of tensors a config implies
//! ([`tensor_specs`]), recorded from the same construction code.

use std::collections::BTreeMap;
use std::path::Path;

use tch::Tensor;

use super::adapters::Adapters;
use super::{HfCausalLm, EMBED_TOKENS, FINAL_NORM, LM_HEAD};
use crate::arch::DecoderBlock;
use crate::config::ModelConfig;
use crate::error::{LmError, Result};
use crate::lora::{AdapterTable, LoraSpec};
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
        let (config, source_config) = Self::read_config(dir)?;
        let tensors = Self::read_weights(dir, &config, options)?;
        Self::from_tensors(config, source_config, WeightSource::loaded(tensors, dir), options, None)
    }

    /// Reads `dir/config.json`: the normalised config and the JSON as written.
    pub(super) fn read_config(dir: &Path) -> Result<(ModelConfig, serde_json::Value)> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| LmError::io(&config_path, e))?;
        let config = ModelConfig::from_json_str(&text, &config_path)?;
        let source_config: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| LmError::Json { path: config_path.clone(), source })?;
        Ok((config, source_config))
    }

    /// The weights of the checkpoint folder `dir` of a model of `config`, converted to
    /// `options`.
    pub(super) fn read_weights(
        dir: &Path,
        config: &ModelConfig,
        options: LoadOptions,
    ) -> Result<BTreeMap<String, Tensor>> {
        let specs = tensor_specs(config);
        let tied = config.tie_word_embeddings;
        // Skipped when present: a redundant output projection of a tied model (transformers
        // ignores it too) and rotary tables some old checkpoints saved.
        let ignorable = |name: &str| (tied && name == LM_HEAD) || name.ends_with("rotary_emb.inv_freq");
        Checkpoint::open(dir)?.load(&specs, ignorable, options)
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
        Self::from_tensors(config, source_config, WeightSource::loaded(converted, path), options, None)
    }

    /// The model of `config` over `source`'s tensors (already in `options`' dtype and device),
    /// with the LoRA adapters of `adapters` (and their spec) when given.
    pub(super) fn from_tensors(
        config: ModelConfig,
        source_config: serde_json::Value,
        source: WeightSource,
        options: LoadOptions,
        adapters: Option<(AdapterTable, LoraSpec)>,
    ) -> Result<Self> {
        let root = match &adapters {
            Some((table, _)) => source.root_with_adapters(table),
            None => source.root(),
        };
        let Stack { embed, blocks, norm, lm_head } = Stack::load(&root, &config)?;
        let adapters = match adapters {
            Some((table, spec)) => Adapters::from_table(table, spec)?,
            None => Adapters::default(),
        };
        // Rounded to the weights' dtype, as in transformers.
        let embed_scale = config
            .architecture
            .entry()
            .embed_scale
            .map(|scale| Tensor::from(scale(&config) as f32).to_kind(options.dtype).to_device(options.device));
        Ok(HfCausalLm {
            rope: Rope::for_config(&config, options.device),
            blocks,
            embed,
            embed_scale,
            norm,
            lm_head,
            parameters: source.into_tensors(),
            options,
            config,
            source_config,
            adapters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of the tensors of a one-layer model of `model_type`, `extra` added to its
    /// config, sorted.
    fn names(model_type: &str, extra: &str) -> Vec<String> {
        let text = format!(
            r#"{{"model_type": "{model_type}", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 12,
                "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1 {extra}}}"#
        );
        let config = ModelConfig::from_json_str(&text, "c.json").unwrap();
        let mut names: Vec<String> = tensor_specs(&config).into_iter().map(|s| s.name).collect();
        names.sort();
        names
    }

    fn layer(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| format!("model.layers.0.{n}")).collect()
    }

    const ATTENTION: [&str; 4] =
        ["self_attn.k_proj.weight", "self_attn.o_proj.weight", "self_attn.q_proj.weight", "self_attn.v_proj.weight"];
    const MLP: [&str; 3] = ["mlp.down_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight"];
    const QKV_BIASES: [&str; 3] = ["self_attn.k_proj.bias", "self_attn.q_proj.bias", "self_attn.v_proj.bias"];

    #[test]
    fn each_architecture_lists_its_tensors() {
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let shared = |layer_tensors: Vec<String>, tied: bool| {
            let mut v = vec![EMBED_TOKENS.to_string(), FINAL_NORM.to_string()];
            v.extend((!tied).then(|| LM_HEAD.to_string()));
            v.extend(layer_tensors);
            sorted(v)
        };
        let norms = ["input_layernorm.weight", "post_attention_layernorm.weight"];
        let llama = [&ATTENTION[..], &MLP, &norms].concat();
        assert_eq!(names("llama", ""), shared(layer(&llama), false));
        let qwen2 = [&llama[..], &QKV_BIASES].concat();
        assert_eq!(names("qwen2", r#", "tie_word_embeddings": true"#), shared(layer(&qwen2), true));
        let gemma_norms = ["pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight"];
        let gemma2 = [&llama[..], &gemma_norms].concat();
        assert_eq!(names("gemma2", r#", "sliding_window": 4"#), shared(layer(&gemma2), true));
        let qk_norms = ["self_attn.k_norm.weight", "self_attn.q_norm.weight"];
        let qwen3 = [&llama[..], &qk_norms].concat();
        assert_eq!(names("qwen3", ""), shared(layer(&qwen3), false));
        assert_eq!(names("mistral", r#", "sliding_window": 4"#), shared(layer(&llama), false));
        let gemma3 = [&gemma2[..], &qk_norms].concat();
        assert_eq!(names("gemma3_text", r#", "sliding_window": 4, "head_dim": 4"#), shared(layer(&gemma3), true));
    }

    #[test]
    fn query_key_norms_span_one_head() {
        let text = r#"{"model_type": "qwen3", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 12,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 6}"#;
        let specs = tensor_specs(&ModelConfig::from_json_str(text, "c.json").unwrap());
        let shape =
            |name: &str| specs.iter().find(|s| s.name == format!("model.layers.0.{name}")).unwrap().shape.clone();
        assert_eq!(shape("self_attn.q_norm.weight"), [6]);
        assert_eq!(shape("self_attn.k_norm.weight"), [6]);
        assert_eq!(shape("self_attn.q_proj.weight"), [12, 8]);
    }

    #[test]
    fn shapes_follow_the_config() {
        let text = r#"{"model_type": "llama", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 12,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 6,
            "attention_bias": true}"#;
        let specs = tensor_specs(&ModelConfig::from_json_str(text, "c.json").unwrap());
        let shape =
            |name: &str| specs.iter().find(|s| s.name == format!("model.layers.0.{name}")).unwrap().shape.clone();
        assert_eq!(shape("self_attn.q_proj.weight"), [12, 8]);
        assert_eq!(shape("self_attn.k_proj.weight"), [6, 8]);
        assert_eq!(shape("self_attn.o_proj.weight"), [8, 12]);
        assert_eq!(shape("self_attn.o_proj.bias"), [8]);
        assert_eq!(shape("mlp.down_proj.weight"), [8, 12]);
        assert_eq!(specs[0], TensorSpec::new(EMBED_TOKENS, &[16, 8]));
    }
}
