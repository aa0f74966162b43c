//! Gemma 3 (Gemma Team 2025), text model (`Gemma3ForCausalLM`, `model_type = gemma3_text`):
//! Gemma 2's sandwich layer (see `gemma2.rs`) with an RMSNorm (scale `1 + w`) over each
//! query and key head before the rotation and, by default, no soft-caps. Five
//! sliding-window layers alternate with one global layer (`layer_types`, else
//! `sliding_window_pattern`, 6 when absent: layer `i` slides unless `(i + 1) % 6 == 0`).
//! Sliding layers rotate with their own base (`rope_local_base_freq`, 10000), global layers
//! with `rope_theta` (1e6) and its scaling (`rope_scaling`); the form `transformers` 5.x
//! writes keeps both in `rope_parameters.{full_attention, sliding_attention}`.

use super::{gemma2, ArchSettings};
use crate::config::RawConfig;

/// `sliding_window_pattern` when `config.json` omits it.
const DEFAULT_SLIDING_WINDOW_PATTERN: usize = 6;
/// Head width when `config.json` omits it.
const DEFAULT_HEAD_DIM: usize = 256;
/// Rotary base of global layers when `config.json` gives none.
const DEFAULT_ROPE_THETA: f64 = 1_000_000.0;
/// Rotary base of sliding layers when `config.json` gives none.
const DEFAULT_LOCAL_ROPE_THETA: f64 = 10_000.0;

/// Gemma 3's reading of `config.json`: Gemma 2's, with query/key norms, soft-caps only when
/// given, its own defaults, and the sliding pattern above.
pub(super) fn settings(raw: &RawConfig) -> ArchSettings {
    let pattern = raw
        .sliding_window_pattern
        .or(raw.private_sliding_window_pattern)
        .unwrap_or(DEFAULT_SLIDING_WINDOW_PATTERN)
        .max(1);
    ArchSettings {
        qk_norm: true,
        default_head_dim: Some(DEFAULT_HEAD_DIM),
        default_sliding: (0..raw.num_hidden_layers).map(|i| (i + 1) % pattern != 0).collect(),
        default_rope_theta: DEFAULT_ROPE_THETA,
        local_rope_theta: Some(DEFAULT_LOCAL_ROPE_THETA),
        ..gemma2::settings(raw)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{LayerAttention, ModelConfig, RopeConfig, RopeScaling};

    const PUBLISHED: &str = r#"{"model_type": "gemma3_text", "vocab_size": 8, "hidden_size": 8,
        "intermediate_size": 8, "num_hidden_layers": 7, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 4, "sliding_window": 3, "query_pre_attn_scalar": 9, "rope_theta": 50000.0,
        "rope_local_base_freq": 100.0, "rope_scaling": {"rope_type": "linear", "factor": 4.0},
        "sliding_window_pattern": 3, "final_logit_softcapping": null, "attn_logit_softcapping": null}"#;

    #[test]
    fn published_form_gives_the_pattern_and_both_rotary_bases() {
        let c = ModelConfig::from_json_str(PUBLISHED, "c.json").unwrap();
        let (s, f) = (LayerAttention::Sliding { window: 3 }, LayerAttention::Full);
        assert_eq!(c.layers, vec![s, s, f, s, s, f, s]);
        assert_eq!(c.rope, RopeConfig { theta: 50000.0, scaling: RopeScaling::Linear { factor: 4.0 } });
        assert_eq!(c.local_rope, Some(RopeConfig { theta: 100.0, scaling: RopeScaling::None }));
        assert_eq!(c.rope_for(s).theta, 100.0);
        assert_eq!(c.rope_for(f).theta, 50000.0);
        assert!(
            c.qk_norm && c.tie_word_embeddings && c.attn_logit_softcap.is_none() && c.final_logit_softcap.is_none()
        );
        assert!((c.attention_scale - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn new_form_equals_the_published_one() {
        let new = PUBLISHED
            .replace(r#""rope_theta": 50000.0,"#, "")
            .replace(r#""rope_local_base_freq": 100.0,"#, "")
            .replace(
                r#""rope_scaling": {"rope_type": "linear", "factor": 4.0}"#,
                r#""rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 50000.0},
                    "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}}"#,
            )
            .replace(
                r#""sliding_window_pattern": 3"#,
                r#""layer_types": ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention",
                    "sliding_attention", "full_attention", "sliding_attention"]"#,
            );
        let published = ModelConfig::from_json_str(PUBLISHED, "c.json").unwrap();
        assert_eq!(ModelConfig::from_json_str(&new, "c.json").unwrap(), published);
    }

    #[test]
    fn defaults_and_refusals() {
        let bare = r#"{"model_type": "gemma3_text", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 6, "num_attention_heads": 2}"#;
        let c = ModelConfig::from_json_str(bare, "c.json").unwrap();
        assert_eq!(c.head_dim, 256);
        assert_eq!(c.rope.theta, 1e6);
        assert_eq!(c.local_rope.as_ref().map(|r| r.theta), Some(10_000.0));
        assert_eq!(c.layers[4], LayerAttention::Sliding { window: 4096 });
        assert_eq!(c.layers[5], LayerAttention::Full);
        let bidirectional = bare
            .replace(r#""num_attention_heads": 2"#, r#""num_attention_heads": 2, "use_bidirectional_attention": true"#);
        let e = ModelConfig::from_json_str(&bidirectional, "c.json").unwrap_err().to_string();
        assert!(e.contains("use_bidirectional_attention"), "{e}");
        let bad = PUBLISHED.replace(
            r#""rope_scaling": {"rope_type": "linear", "factor": 4.0}"#,
            r#""rope_parameters": {"full_attention": {"rope_theta": 5.0}, "chunked_attention": {"rope_theta": 5.0}}"#,
        );
        let e = ModelConfig::from_json_str(&bad, "c.json").unwrap_err().to_string();
        assert!(e.contains("rope_parameters") && e.contains("chunked_attention"), "{e}");
    }
}
