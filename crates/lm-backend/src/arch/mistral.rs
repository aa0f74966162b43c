//! Mistral (Jiang et al. 2023): the Llama layer (see `llama.rs`) without biases, with
//! sliding-window attention in every layer when `sliding_window` is set (a positive number;
//! `null` means full attention). As in `transformers`, `layer_types` is not read: the window
//! applies to all layers or none.

use super::{llama, ArchSettings};
use crate::config::RawConfig;

/// `sliding_window` when `config.json` omits the key (`MistralConfig`'s default; `null`
/// turns the window off).
const DEFAULT_SLIDING_WINDOW: usize = 4096;

/// Mistral's reading of `config.json`: Llama's, with no biases and every layer sliding when
/// `sliding_window` is set.
pub(super) fn settings(raw: &RawConfig) -> ArchSettings {
    let window = raw.sliding_window.unwrap_or(Some(DEFAULT_SLIDING_WINDOW));
    let sliding = window.is_some_and(|w| w > 0);
    ArchSettings {
        sliding_window: window,
        qkv_bias: false,
        o_bias: false,
        mlp_bias: false,
        default_sliding: vec![sliding; raw.num_hidden_layers],
        sliding_allowed: true,
        reads_layer_types: false,
        ..llama::settings(raw)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{LayerAttention, ModelConfig};

    #[test]
    fn mistral_slides_every_layer_or_none() {
        let text = r#"{"model_type": "mistral", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "sliding_window": WINDOW,
            "rope_theta": 1000000.0, "layer_types": ["full_attention", "full_attention"]}"#;
        let c = ModelConfig::from_json_str(&text.replace("WINDOW", "6"), "c.json").unwrap();
        assert_eq!(c.layers, vec![LayerAttention::Sliding { window: 6 }; 2]);
        assert!(!c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.qk_norm && !c.tie_word_embeddings);
        assert_eq!(c.rope.theta, 1e6);
        let c = ModelConfig::from_json_str(&text.replace("WINDOW", "null"), "c.json").unwrap();
        assert_eq!(c.layers, vec![LayerAttention::Full; 2]);
        let absent = text.replace(r#""sliding_window": WINDOW,"#, "");
        let c = ModelConfig::from_json_str(&absent, "c.json").unwrap();
        assert_eq!(c.layers, vec![LayerAttention::Sliding { window: 4096 }; 2]);
    }
}
