//! Multi-head self-attention with grouped-query heads (Ainslie et al. 2023), rotary positions,
//! a causal + padding mask, an optional sliding window, an optional soft-cap of the scores
//! (Gemma 2 report, sec. 2) and a configurable score scale — the eager path of `transformers`.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

use crate::config::{LayerAttention, ModelConfig};
use crate::error::Result;
use crate::linear::Linear;
use crate::norm::accumulation_kind;
use crate::rope::{apply_rotary, Rope};
use crate::weights::{record_specs, TensorSpec, Weights};

/// Per-forward inputs shared by all layers: rotary tables and one mask per attention span.
#[derive(Debug)]
pub struct AttentionContext {
    /// `[B, 1, T, head_dim]`.
    pub cos: Tensor,
    /// `[B, 1, T, head_dim]`.
    pub sin: Tensor,
    masks: BTreeMap<Option<usize>, Tensor>, // window -> allowed [B, 1, T, S] (bool)
}

impl AttentionContext {
    /// Builds the tables for queries at `query_positions` `[B, T]` attending to keys at
    /// `key_positions` `[B, S]` of which `key_valid` `[B, S]` (bool) are real tokens.
    ///
    /// Key k is visible to query q iff it is valid, `pos(k) <= pos(q)` (causal) and, in a
    /// sliding layer, `pos(q) - pos(k) < window`. With positions `0..T` this is exactly the
    /// index-based mask of `transformers`.
    pub fn new(
        rope: &Rope,
        kind: Kind,
        layers: &[LayerAttention],
        query_positions: &Tensor,
        key_positions: &Tensor,
        key_valid: &Tensor,
    ) -> Self {
        let (cos, sin) = rope.cos_sin(query_positions, kind);
        let q = query_positions.unsqueeze(2); // [B, T, 1]
        let k = key_positions.unsqueeze(1); // [B, 1, S]
        let causal = k.le_tensor(&q).logical_and(&key_valid.unsqueeze(1)); // [B, T, S]
        let mut masks = BTreeMap::new();
        for layer in layers {
            let window = match layer {
                LayerAttention::Full => None,
                LayerAttention::Sliding { window } => Some(*window),
            };
            masks.entry(window).or_insert_with(|| {
                let allowed = match window {
                    None => causal.shallow_clone(),
                    Some(w) => causal.logical_and(&(&q - &k).lt(w as i64)),
                };
                allowed.unsqueeze(1)
            });
        }
        AttentionContext { cos, sin, masks }
    }

    fn mask(&self, layer: LayerAttention) -> &Tensor {
        let window = match layer {
            LayerAttention::Full => None,
            LayerAttention::Sliding { window } => Some(window),
        };
        &self.masks[&window]
    }
}

/// Keys and values of earlier positions of one layer, `[B, KV, S, head_dim]` each.
#[derive(Debug, Default)]
pub struct LayerCache {
    kv: Option<(Tensor, Tensor)>,
}

/// One self-attention block.
#[derive(Debug)]
pub struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
    scale: f64,
    softcap: Option<f64>,
    span: LayerAttention,
}

impl Attention {
    /// The tensors under `prefix` (e.g. `model.layers.0.self_attn`).
    pub fn specs(prefix: &str, c: &ModelConfig) -> Vec<TensorSpec> {
        record_specs(|w| Attention::load(&w.pushed(prefix), c, LayerAttention::Full))
    }

    /// The attention under `w` (e.g. `model.layers.0.self_attn`) of a layer spanning `span`:
    /// projections `q_proj` `[H hd, D]`, `k_proj` and `v_proj` `[KV hd, D]`, `o_proj`
    /// `[D, H hd]`, with the biases the config asks for.
    pub(crate) fn load(w: &Weights, c: &ModelConfig, span: LayerAttention) -> Result<Self> {
        let (d, q, kv) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let proj = |name: &str, out, inputs, bias| Linear::load(&w.pushed(name), out, inputs, bias);
        Ok(Attention {
            q: proj("q_proj", q, d, c.qkv_bias)?,
            k: proj("k_proj", kv, d, c.qkv_bias)?,
            v: proj("v_proj", kv, d, c.qkv_bias)?,
            o: proj("o_proj", d, q, c.o_bias)?,
            num_heads: c.num_heads as i64,
            num_kv_heads: c.num_kv_heads as i64,
            head_dim: c.head_dim as i64,
            scale: c.attention_scale,
            softcap: c.attn_logit_softcap,
            span,
        })
    }

    /// `x` `[B, T, D]` -> `[B, T, D]`. With a cache, the new keys/values are appended to it
    /// and the queries attend to all cached positions (the context's masks must cover them).
    pub fn forward(&self, x: &Tensor, ctx: &AttentionContext, cache: Option<&mut LayerCache>) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let heads = |p: &Linear, n: i64| p.forward(x).view([b, t, n, self.head_dim]).transpose(1, 2);
        let q = apply_rotary(&heads(&self.q, self.num_heads), &ctx.cos, &ctx.sin); // [B, H, T, hd]
        let mut k = apply_rotary(&heads(&self.k, self.num_kv_heads), &ctx.cos, &ctx.sin); // [B, KV, T, hd]
        let mut v = heads(&self.v, self.num_kv_heads);
        if let Some(cache) = cache {
            if let Some((pk, pv)) = &cache.kv {
                k = Tensor::cat(&[pk, &k], 2);
                v = Tensor::cat(&[pv, &v], 2);
            }
            cache.kv = Some((k.shallow_clone(), v.shallow_clone()));
        }
        let groups = self.num_heads / self.num_kv_heads;
        let (k, v) = if groups > 1 {
            (k.repeat_interleave_self_int(groups, 1, None), v.repeat_interleave_self_int(groups, 1, None))
        } else {
            (k, v)
        };
        let mut scores = q.matmul(&k.transpose(2, 3)) * self.scale; // [B, H, T, S]
        if let Some(cap) = self.softcap {
            scores = (scores / cap).tanh() * cap;
        }
        // A finite minimum (not -inf), as transformers: a row without visible keys stays finite.
        let min = match scores.kind() {
            Kind::BFloat16 => -(2.0 - 2f64.powi(-7)) * 2f64.powi(127),
            Kind::Half => -65504.0,
            Kind::Double => f64::MIN,
            _ => f32::MIN as f64,
        };
        let scores = scores.masked_fill(&ctx.mask(self.span).logical_not(), min);
        let probs = scores.softmax(-1, accumulation_kind(v.kind())).to_kind(v.kind());
        let out = probs.matmul(&v).transpose(1, 2).reshape([b, t, self.num_heads * self.head_dim]);
        self.o.forward(&out)
    }
}
