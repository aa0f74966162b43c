//! Qwen2 (Yang et al. 2024): the Llama layer (see `llama.rs`) with biases on the query, key
//! and value projections (none on the output projection), usually tied embeddings and a
//! large rope theta; sliding-window attention from layer `max_window_layers` on when
//! `use_sliding_window` is set.

use super::{llama, ArchSettings};
use crate::config::RawConfig;

/// Which layers slide, without `layer_types`, in the Qwen family: those from
/// `max_window_layers` (default `default_max_window_layers`) on, when `use_sliding_window`.
pub(super) fn sliding_layers(raw: &RawConfig, default_max_window_layers: usize) -> Vec<bool> {
    let sliding = raw.use_sliding_window.unwrap_or(false);
    let first_sliding = raw.max_window_layers.unwrap_or(default_max_window_layers);
    (0..raw.num_hidden_layers).map(|i| sliding && i >= first_sliding).collect()
}

/// Qwen2's reading of `config.json`: Llama's, with query/key/value biases (and no others)
/// and, without `layer_types`, sliding layers from `max_window_layers` on when
/// `use_sliding_window`.
pub(super) fn settings(raw: &RawConfig) -> ArchSettings {
    ArchSettings {
        qkv_bias: true,
        o_bias: false,
        mlp_bias: false,
        default_sliding: sliding_layers(raw, 0),
        sliding_allowed: true,
        ..llama::settings(raw)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{LayerAttention, ModelConfig};

    #[test]
    fn qwen2_sliding_layers_follow_max_window_layers_and_layer_types_are_checked() {
        let base = r#"{"model_type": "qwen2", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1,
            "sliding_window": 32, "max_window_layers": 1, "use_sliding_window": USE, "rope_scaling": null}"#;
        let off = ModelConfig::from_json_str(&base.replace("USE", "false"), "c.json").unwrap();
        assert_eq!(off.layers, vec![LayerAttention::Full; 3]);
        assert!(off.qkv_bias && !off.o_bias && !off.tie_word_embeddings);
        let on = ModelConfig::from_json_str(&base.replace("USE", "true"), "c.json").unwrap();
        let s = LayerAttention::Sliding { window: 32 };
        assert_eq!(on.layers, vec![LayerAttention::Full, s, s]);
        let short =
            base.replace("USE", "false").replace("\"rope_scaling\": null", "\"layer_types\": [\"full_attention\"]");
        let e = ModelConfig::from_json_str(&short, "c.json").unwrap_err().to_string();
        assert!(e.contains("layer_types") && e.contains("1 entries for 3 layers"), "{e}");
    }
}
