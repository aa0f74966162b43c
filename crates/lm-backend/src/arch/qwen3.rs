//! Qwen3 (Yang et al. 2025): the Llama layer (see `llama.rs`) with an RMSNorm (scale `w`)
//! over each query and key head after the projections and before the rotation, biases on
//! all four attention projections only when `attention_bias` says so, a head width that
//! need not be `hidden_size / heads` (`head_dim`, 128 when absent), and sliding-window
//! attention from layer `max_window_layers` on when `use_sliding_window` is set.

use super::{llama, qwen2, ArchSettings};
use crate::config::RawConfig;

/// `head_dim` when `config.json` omits it (`Qwen3Config`'s default).
const DEFAULT_HEAD_DIM: usize = 128;
/// `max_window_layers` when `config.json` omits it (`Qwen3Config`'s default).
const DEFAULT_MAX_WINDOW_LAYERS: usize = 28;
/// `sliding_window` when `config.json` omits it (`Qwen3Config`'s default).
const DEFAULT_SLIDING_WINDOW: usize = 4096;

/// Qwen3's reading of `config.json`: Llama's, with query/key norms, no MLP biases, head
/// width 128 unless told and, without `layer_types`, sliding layers from
/// `max_window_layers` on when `use_sliding_window`.
pub(super) fn settings(raw: &RawConfig) -> ArchSettings {
    ArchSettings {
        mlp_bias: false,
        qk_norm: true,
        default_head_dim: Some(DEFAULT_HEAD_DIM),
        sliding_window: raw.sliding_window.unwrap_or(Some(DEFAULT_SLIDING_WINDOW)),
        default_sliding: qwen2::sliding_layers(raw, DEFAULT_MAX_WINDOW_LAYERS),
        sliding_allowed: true,
        ..llama::settings(raw)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{LayerAttention, ModelConfig};

    #[test]
    fn qwen3_has_qk_norm_its_own_head_dim_and_optional_biases() {
        let text = r#"{"model_type": "qwen3", "vocab_size": 8, "hidden_size": 16, "intermediate_size": 8,
            "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 12,
            "attention_bias": BIAS, "tie_word_embeddings": true, "use_sliding_window": false,
            "sliding_window": 4, "max_window_layers": 1}"#;
        let c = ModelConfig::from_json_str(&text.replace("BIAS", "false"), "c.json").unwrap();
        assert!(c.qk_norm && !c.qkv_bias && !c.o_bias && !c.mlp_bias && c.tie_word_embeddings);
        assert_eq!(c.head_dim, 12);
        assert!((c.attention_scale - 12f64.powf(-0.5)).abs() < 1e-15);
        assert_eq!(c.layers, vec![LayerAttention::Full; 3]);
        let c = ModelConfig::from_json_str(&text.replace("BIAS", "true"), "c.json").unwrap();
        assert!(c.qkv_bias && c.o_bias && !c.mlp_bias);
        let no_head_dim = text.replace(r#""head_dim": 12,"#, "").replace("BIAS", "false");
        assert_eq!(ModelConfig::from_json_str(&no_head_dim, "c.json").unwrap().head_dim, 128);
        let sliding =
            text.replace("BIAS", "false").replace(r#""use_sliding_window": false"#, r#""use_sliding_window": true"#);
        let s = LayerAttention::Sliding { window: 4 };
        assert_eq!(ModelConfig::from_json_str(&sliding, "c.json").unwrap().layers, vec![LayerAttention::Full, s, s]);
    }
}
