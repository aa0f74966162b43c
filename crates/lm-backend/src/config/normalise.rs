//! From the keys as written ([`RawConfig`]) to a [`ModelConfig`]: the architecture's table
//! entry reads the keys that are its own, the shared keys are checked and given their
//! defaults here.

use std::path::{Path, PathBuf};

use super::raw::{RawConfig, RawRope, RawRopeParameters};
use super::{Activation, LayerAttention, ModelConfig, RopeConfig, RopeScaling};
use crate::arch::{ArchSettings, Architecture};
use crate::error::{LmError, Result};

/// The normalised config of `raw`; `path` names the source in errors.
pub(super) fn normalise(raw: RawConfig, path: PathBuf) -> Result<ModelConfig> {
    let Some(architecture) = Architecture::from_model_type(&raw.model_type) else {
        return Err(LmError::UnsupportedModel { path, model_type: raw.model_type });
    };
    let arch = (architecture.entry().settings)(&raw);
    if raw.use_bidirectional_attention == Some(true) {
        let message = "bidirectional attention (embedding models) is not supported; causal LMs only";
        return Err(config_error(&path, "use_bidirectional_attention", message));
    }
    let (num_kv_heads, head_dim) = heads(&raw, &path, arch.default_head_dim)?;
    let (rope, local_rope) = rope(&raw, &path, &arch)?;
    let layers = layers(&raw, &path, architecture, &arch)?;
    let activation = activation(&raw, &path, arch.default_activation)?;
    Ok(ModelConfig {
        architecture,
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        intermediate_size: raw.intermediate_size,
        num_layers: raw.num_hidden_layers,
        num_heads: raw.num_attention_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
        rope,
        local_rope,
        layers,
        attention_scale: arch.attention_scale.unwrap_or((head_dim as f64).powf(-0.5)),
        attn_logit_softcap: arch.attn_logit_softcap,
        final_logit_softcap: arch.final_logit_softcap,
        qk_norm: arch.qk_norm,
        qkv_bias: arch.qkv_bias,
        o_bias: arch.o_bias,
        mlp_bias: arch.mlp_bias,
        activation,
        tie_word_embeddings: arch.tie_word_embeddings,
        bos_token_id: raw.bos_token_id.map(|ids| ids.into_vec()).and_then(|ids| ids.first().copied()),
        eos_token_ids: raw.eos_token_id.map(|ids| ids.into_vec()).unwrap_or_default(),
        pad_token_id: raw.pad_token_id,
        max_position_embeddings: raw.max_position_embeddings.unwrap_or(4096),
    })
}

fn config_error(path: &Path, key: &str, message: impl Into<String>) -> LmError {
    LmError::Config { path: path.to_path_buf(), key: key.to_string(), message: message.into() }
}

/// `(num_kv_heads, head_dim)`, checked: the key/value heads divide the query heads and the
/// head width is even (rotary embeddings rotate pairs). Without `head_dim`: the
/// architecture's default, else `hidden_size / heads`.
fn heads(raw: &RawConfig, path: &Path, default_head_dim: Option<usize>) -> Result<(usize, usize)> {
    let heads = raw.num_attention_heads;
    let num_kv_heads = raw.num_key_value_heads.unwrap_or(heads);
    if heads == 0 || num_kv_heads == 0 || heads % num_kv_heads != 0 {
        let message = format!("{num_kv_heads} does not divide num_attention_heads = {heads}");
        return Err(config_error(path, "num_key_value_heads", message));
    }
    let head_dim = match raw.head_dim.or(default_head_dim) {
        Some(d) => d,
        None if raw.hidden_size % heads == 0 => raw.hidden_size / heads,
        None => return Err(config_error(path, "head_dim", "absent and hidden_size is not a multiple of heads")),
    };
    if head_dim % 2 != 0 {
        return Err(config_error(path, "head_dim", format!("{head_dim} is odd; rotary embeddings need it even")));
    }
    Ok((num_kv_heads, head_dim))
}

/// `hidden_activation` or `hidden_act`, else the architecture's default.
fn activation(raw: &RawConfig, path: &Path, default: &str) -> Result<Activation> {
    let (key, name) = match (&raw.hidden_activation, &raw.hidden_act) {
        (Some(name), _) => ("hidden_activation", name.as_str()),
        (None, Some(name)) => ("hidden_act", name.as_str()),
        (None, None) => ("hidden_act", default),
    };
    match name {
        "silu" | "swish" => Ok(Activation::Silu),
        "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Ok(Activation::GeluTanh),
        "gelu" => Ok(Activation::Gelu),
        other => Err(config_error(path, key, format!("unsupported activation \"{other}\""))),
    }
}

/// `(rope, local_rope)`: from `rope_parameters` (new form: one set, or one per layer type)
/// or `rope_theta` + `rope_scaling` (published form; `rope_local_base_freq` for the sliding
/// layers of an architecture that rotates them with a base of their own).
fn rope(raw: &RawConfig, path: &Path, arch: &ArchSettings) -> Result<(RopeConfig, Option<RopeConfig>)> {
    let global_theta = raw.rope_theta.unwrap_or(arch.default_rope_theta);
    let local_theta = arch.local_rope_theta.map(|default| raw.rope_local_base_freq.unwrap_or(default));
    let max_positions = raw.max_position_embeddings;
    let read = |p: Option<&RawRope>, key: &str, theta: f64| -> Result<RopeConfig> {
        Ok(RopeConfig {
            theta: p.and_then(|p| p.rope_theta).unwrap_or(theta),
            scaling: match p {
                Some(p) => rope_scaling(p, key, max_positions, path)?,
                None => RopeScaling::None,
            },
        })
    };
    let local_default = || local_theta.map(|theta| RopeConfig { theta, scaling: RopeScaling::None });
    match &raw.rope_parameters {
        Some(RawRopeParameters::PerLayerType(by_type)) if !by_type.is_empty() => {
            if let Some(other) = by_type.keys().find(|k| *k != "full_attention" && *k != "sliding_attention") {
                let message = format!("unknown layer type \"{other}\" (expected full_attention, sliding_attention)");
                return Err(config_error(path, "rope_parameters", message));
            }
            if local_theta.is_none() && by_type.contains_key("sliding_attention") {
                let message = "this architecture has one rotary table; per-layer-type parameters are Gemma 3's form";
                return Err(config_error(path, "rope_parameters.sliding_attention", message));
            }
            let global = read(by_type.get("full_attention"), "rope_parameters.full_attention", global_theta)?;
            let local = match (by_type.get("sliding_attention"), local_theta) {
                (Some(p), Some(theta)) => Some(read(Some(p), "rope_parameters.sliding_attention", theta)?),
                _ => local_default(),
            };
            Ok((global, local))
        }
        Some(RawRopeParameters::PerLayerType(_)) => Ok((read(None, "rope_parameters", global_theta)?, local_default())),
        Some(RawRopeParameters::Shared(p)) => Ok((read(Some(p), "rope_parameters", global_theta)?, local_default())),
        None => Ok((read(raw.rope_scaling.as_ref(), "rope_scaling", global_theta)?, local_default())),
    }
}

/// The scaling `p` (found under `key`) describes.
fn rope_scaling(p: &RawRope, key: &str, max_position_embeddings: Option<usize>, path: &Path) -> Result<RopeScaling> {
    let need = |v: Option<f64>, name: &str| {
        v.ok_or_else(|| config_error(path, &format!("{key}.{name}"), "required by this rope_type"))
    };
    Ok(match p.rope_type.as_deref().unwrap_or("default") {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: need(p.factor, "factor")? },
        "llama3" => RopeScaling::Llama3 {
            factor: need(p.factor, "factor")?,
            low_freq_factor: need(p.low_freq_factor, "low_freq_factor")?,
            high_freq_factor: need(p.high_freq_factor, "high_freq_factor")?,
            original_max_position_embeddings: p
                .original_max_position_embeddings
                .or(max_position_embeddings.map(|m| m as f64))
                .ok_or_else(|| config_error(path, &format!("{key}.original_max_position_embeddings"), "absent"))?,
        },
        other => {
            let message = format!("unsupported rope type \"{other}\"");
            return Err(config_error(path, &format!("{key}.rope_type"), message));
        }
    })
}

/// `layer_types` if present, else the architecture's rule (`default_sliding`).
fn layers(
    raw: &RawConfig,
    path: &Path,
    architecture: Architecture,
    arch: &ArchSettings,
) -> Result<Vec<LayerAttention>> {
    let sliding = || {
        arch.sliding_window
            .filter(|w| *w > 0)
            .map(|window| LayerAttention::Sliding { window })
            .ok_or_else(|| config_error(path, "sliding_window", "a sliding-attention layer needs a positive window"))
    };
    let Some(types) = raw.layer_types.as_ref().filter(|_| arch.reads_layer_types) else {
        return arch.default_sliding.iter().map(|&s| if s { sliding() } else { Ok(LayerAttention::Full) }).collect();
    };
    if types.len() != raw.num_hidden_layers {
        let message = format!("{} entries for {} layers", types.len(), raw.num_hidden_layers);
        return Err(config_error(path, "layer_types", message));
    }
    if !arch.sliding_allowed && types.iter().any(|t| t != "full_attention") {
        let message = format!("{} layers are all full_attention", architecture.model_type());
        return Err(config_error(path, "layer_types", message));
    }
    types
        .iter()
        .map(|t| match t.as_str() {
            "full_attention" => Ok(LayerAttention::Full),
            "sliding_attention" => sliding(),
            other => Err(config_error(path, "layer_types", format!("unsupported layer type \"{other}\""))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::{ModelConfig, RopeScaling};

    const LEGACY_LLAMA3: &str = r#"{
        "model_type": "llama", "vocab_size": 128, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 500000.0, "tie_word_embeddings": false, "eos_token_id": [7, 9],
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    }"#;

    #[test]
    fn legacy_and_new_rope_forms_agree() {
        let legacy = ModelConfig::from_json_str(LEGACY_LLAMA3, "legacy.json").unwrap();
        let new = LEGACY_LLAMA3
            .replace(r#""rope_theta": 500000.0,"#, "")
            .replace("rope_scaling", "rope_parameters")
            .replace(r#""factor": 8.0"#, r#""factor": 8.0, "rope_theta": 500000.0"#);
        let new = ModelConfig::from_json_str(&new, "new.json").unwrap();
        assert_eq!(legacy, new);
        assert_eq!(legacy.rope.theta, 500000.0);
        assert!(matches!(legacy.rope.scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
        assert_eq!(legacy.head_dim, 16);
        assert_eq!(legacy.eos_token_ids, vec![7, 9]);
    }

    #[test]
    fn unknown_model_type_and_rope_type_are_named() {
        let text = LEGACY_LLAMA3.replace(r#""model_type": "llama""#, r#""model_type": "mamba""#);
        let e = ModelConfig::from_json_str(&text, "c.json").unwrap_err().to_string();
        assert!(e.contains("mamba") && e.contains("model_type"), "{e}");
        let text = LEGACY_LLAMA3.replace(r#""rope_type": "llama3""#, r#""rope_type": "yarn""#);
        let e = ModelConfig::from_json_str(&text, "c.json").unwrap_err().to_string();
        assert!(e.contains("rope_scaling.rope_type") && e.contains("yarn"), "{e}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let text = LEGACY_LLAMA3.replace(r#""hidden_size": 64,"#, "");
        let e = ModelConfig::from_json_str(&text, "c.json").unwrap_err().to_string();
        assert!(e.contains("hidden_size"), "{e}");
    }
}
