//! Multi-head self-attention with grouped-query heads (Ainslie et al. 2023), an optional
//! RMSNorm of each query and key head (Qwen3, Gemma 3), rotary positions (one table, or one
//! per layer kind: Gemma 3),
//! a causal + padding mask (or the per-chunk masks of a packed row, see [`crate::packed`]),
//! an optional sliding window, an optional soft-cap of the scores
//! (Gemma 2 report, sec. 2) and a configurable score scale.
//!
//! Two implementations compute the same values ([`AttentionImpl`], chosen when loading):
//! libtorch's fused `scaled_dot_product_attention` ([`AttentionImpl::Sdpa`], the default: no
//! `[B, H, T, S]` probabilities kept for the backward pass) and the separate ops of
//! `transformers`' eager path ([`AttentionImpl::Eager`]). A soft-capped layer always runs
//! eager: the fused kernel cannot cap the scores before its softmax.

use std::collections::{BTreeMap, BTreeSet};

use tch::{Kind, Tensor};

use crate::config::{LayerAttention, ModelConfig};
use crate::error::Result;
use crate::linear::Linear;
use crate::norm::{accumulation_kind, RmsNorm};
use crate::packed::{chunk_visibility, PackedBatch};
use crate::rope::{apply_rotary, Rope};
use crate::weights::{record_specs, AttentionImpl, TensorSpec, Weights};

/// Per-forward inputs shared by all layers: rotary tables (one set, or one for full and one
/// for sliding-window layers) and, per attention chunk, one mask per attention span.
///
/// A padded batch is one chunk spanning every query and key; a packed batch
/// ([`AttentionContext::packed`]) has one chunk per token range of its row, whose queries
/// attend only to the chunk's own keys. The context also says which implementation the
/// layers use.
#[derive(Debug)]
pub struct AttentionContext {
    /// `[B, 1, T, head_dim]`.
    pub cos: Tensor,
    /// `[B, 1, T, head_dim]`.
    pub sin: Tensor,
    /// `(cos, sin)` of sliding-window layers when they rotate with a table of their own.
    local: Option<(Tensor, Tensor)>,
    chunks: Vec<MaskedChunk>,
    implementation: AttentionImpl,
}

/// Queries of one token range attending to keys of the same range, with their masks.
#[derive(Debug)]
struct MaskedChunk {
    range: Option<(i64, i64)>, // (start, length) on the token axis; None: every query and key
    masks: BTreeMap<Option<usize>, SpanMask>, // by window
}

/// Which keys each query of a chunk sees in layers of one span.
#[derive(Debug)]
struct SpanMask {
    /// `[B, 1, T_c, S_c]` bool: key visible to query.
    allowed: Tensor,
    /// `allowed` is the plain causal mask of unpadded rows (`T_c == S_c`, key `k` visible to
    /// query `q` iff `k <= q`): the fused kernel then runs with `is_causal` and no mask.
    causal: bool,
}

/// The window of a layer's span (`None`: full attention).
fn window(span: LayerAttention) -> Option<usize> {
    match span {
        LayerAttention::Full => None,
        LayerAttention::Sliding { window } => Some(window),
    }
}

/// The distinct windows of `layers`.
fn windows(layers: &[LayerAttention]) -> BTreeSet<Option<usize>> {
    layers.iter().map(|&l| window(l)).collect()
}

impl AttentionContext {
    /// Builds the tables for queries at `query_positions` `[B, T]` attending to keys at
    /// `key_positions` `[B, S]` of which `key_valid` `[B, S]` (bool) are real tokens.
    ///
    /// Key k is visible to query q iff it is valid, `pos(k) <= pos(q)` (causal) and, in a
    /// sliding layer, `pos(q) - pos(k) < window`. With positions `0..T` this is exactly the
    /// index-based mask of `transformers`.
    ///
    /// With [`AttentionImpl::Sdpa`], a query that sees no key at all (every query of a row
    /// without tokens) is shown every key instead: its output is meaningless either way, and
    /// this keeps it finite on every kernel (the eager path's finite minimum does the same
    /// for it). When every row is unpadded with positions `0..T` (`T == S`), a span whose
    /// window is at least `T` is marked plain causal (fused kernel without a mask).
    pub fn new(
        rope: &Rope,
        kind: Kind,
        layers: &[LayerAttention],
        implementation: AttentionImpl,
        query_positions: &Tensor,
        key_positions: &Tensor,
        key_valid: &Tensor,
    ) -> Self {
        let (cos, sin) = rope.cos_sin(query_positions, kind);
        let local = rope.local_cos_sin(query_positions, kind);
        let q = query_positions.unsqueeze(2); // [B, T, 1]
        let k = key_positions.unsqueeze(1); // [B, 1, S]
        let causal = k.le_tensor(&q).logical_and(&key_valid.unsqueeze(1)); // [B, T, S]
        let sdpa = implementation == AttentionImpl::Sdpa;
        let plain_length = if sdpa { plain_causal_length(query_positions, key_positions, key_valid) } else { None };
        let masks = windows(layers)
            .into_iter()
            .map(|window| {
                let mut allowed = match window {
                    None => causal.shallow_clone(),
                    Some(w) => causal.logical_and(&(&q - &k).lt(w as i64)),
                };
                if sdpa {
                    // Rows without a visible key see every key (finite on any kernel).
                    allowed = allowed.logical_or(&allowed.any_dim(-1, true).logical_not());
                }
                let causal = plain_length.is_some_and(|t| window.is_none_or(|w| w as i64 >= t));
                (window, SpanMask { allowed: allowed.unsqueeze(1), causal })
            })
            .collect();
        AttentionContext { cos, sin, local, chunks: vec![MaskedChunk { range: None, masks }], implementation }
    }

    /// Builds the tables of an uncached pass over a packed row `[1, N]`: rotary tables from
    /// its `position_ids`, and per chunk of `chunk_lens` one `[1, 1, n_c, n_c]` mask per
    /// window, by the visibility rule of [`crate::packed`] (every token sees itself, so no
    /// query is left without a key).
    pub fn packed(
        rope: &Rope,
        kind: Kind,
        layers: &[LayerAttention],
        implementation: AttentionImpl,
        batch: &PackedBatch,
    ) -> Self {
        let (cos, sin) = rope.cos_sin(batch.position_ids(), kind);
        let local = rope.local_cos_sin(batch.position_ids(), kind);
        let chunks = batch
            .chunk_ranges()
            .into_iter()
            .map(|(start, len)| {
                let part = |t: &Tensor| t.narrow(1, start, len); // [1, n_c]
                let (p, s, b) = (part(batch.position_ids()), part(batch.segment_ids()), part(batch.branch_ids()));
                let masks = windows(layers)
                    .into_iter()
                    .map(|w| (w, SpanMask { allowed: chunk_visibility(&p, &s, &b, w), causal: false }))
                    .collect();
                MaskedChunk { range: Some((start, len)), masks }
            })
            .collect();
        AttentionContext { cos, sin, local, chunks, implementation }
    }

    /// `(cos, sin)` for a layer spanning `span`.
    fn rotary(&self, span: LayerAttention) -> (&Tensor, &Tensor) {
        match (span, &self.local) {
            (LayerAttention::Sliding { .. }, Some((cos, sin))) => (cos, sin),
            _ => (&self.cos, &self.sin),
        }
    }

    /// The implementation the layers use.
    pub fn implementation(&self) -> AttentionImpl {
        self.implementation
    }
}

/// `Some(T)` when queries and keys are the same unpadded rows with positions `0..T`
/// (`[B, T]` each, every key valid): the visibility is then the plain causal mask.
fn plain_causal_length(query_positions: &Tensor, key_positions: &Tensor, key_valid: &Tensor) -> Option<i64> {
    let (qs, ks) = (query_positions.size(), key_positions.size());
    if qs.len() != 2 || qs != ks || key_valid.size() != ks || qs[1] == 0 {
        return None;
    }
    let t = qs[1];
    let expected = Tensor::arange(t, (Kind::Int64, query_positions.device())).unsqueeze(0); // [1, T]
    let plain = key_valid
        .all()
        .logical_and(&query_positions.eq_tensor(&expected).all())
        .logical_and(&key_positions.eq_tensor(&expected).all());
    (plain.int64_value(&[]) != 0).then_some(t)
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
    q_norm: Option<RmsNorm>, // over each head, [head_dim]
    k_norm: Option<RmsNorm>,
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
    /// `[D, H hd]`, with the biases the config asks for, and `q_norm`/`k_norm` `[hd]` when
    /// it asks for query/key norms (scaled like the model's other norms).
    pub(crate) fn load(w: &Weights, c: &ModelConfig, span: LayerAttention) -> Result<Self> {
        let (d, q, kv) = (c.hidden_size, c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let proj = |name: &str, out, inputs, bias| Linear::load(&w.pushed(name), out, inputs, bias);
        let scale = c.architecture.entry().norm_scale;
        let head_norm = |name: &str| -> Result<Option<RmsNorm>> {
            c.qk_norm.then(|| RmsNorm::load(&w.pushed(name), c.head_dim, c.rms_norm_eps, scale)).transpose()
        };
        Ok(Attention {
            q_norm: head_norm("q_norm")?,
            k_norm: head_norm("k_norm")?,
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
    /// and the queries attend to all cached positions (the context's masks must cover them;
    /// a packed context is for uncached passes). With a packed context, each chunk's queries
    /// attend to its own keys only and the chunks' outputs are concatenated back.
    pub fn forward(&self, x: &Tensor, ctx: &AttentionContext, cache: Option<&mut LayerCache>) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let heads = |p: &Linear, norm: Option<&RmsNorm>, n: i64| {
            let h = p.forward(x).view([b, t, n, self.head_dim]); // [B, T, n, hd]
            norm.map_or(h.shallow_clone(), |norm| norm.forward(&h)).transpose(1, 2)
        };
        let (cos, sin) = ctx.rotary(self.span);
        let q = apply_rotary(&heads(&self.q, self.q_norm.as_ref(), self.num_heads), cos, sin); // [B, H, T, hd]
        let mut k = apply_rotary(&heads(&self.k, self.k_norm.as_ref(), self.num_kv_heads), cos, sin); // [B, KV, T, hd]
        let mut v = heads(&self.v, None, self.num_kv_heads);
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
        let span = window(self.span);
        let fused = ctx.implementation == AttentionImpl::Sdpa && self.softcap.is_none();
        let mut parts: Vec<Tensor> = ctx
            .chunks
            .iter()
            .map(|chunk| {
                let mask = &chunk.masks[&span];
                let part = |t: &Tensor| match chunk.range {
                    None => t.shallow_clone(),
                    Some((start, len)) => t.narrow(2, start, len),
                };
                let (q, k, v) = (part(&q), part(&k), part(&v));
                if fused {
                    self.attend_fused(&q, &k, &v, mask)
                } else {
                    self.attend(&q, &k, &v, &mask.allowed)
                }
            })
            .collect();
        let out = if parts.len() == 1 { parts.remove(0) } else { Tensor::cat(&parts, 2) }; // [B, H, T, hd]
        let out = out.transpose(1, 2).reshape([b, t, self.num_heads * self.head_dim]);
        self.o.forward(&out)
    }

    /// libtorch's fused `scaled_dot_product_attention` of `q` `[B, H, T, hd]` over `k`, `v`
    /// `[B, H, S, hd]` (keys and values already repeated per query head): `[B, H, T, hd]`.
    /// The same values as [`Attention::attend`] within rounding (its `-inf` masking equals
    /// the eager finite minimum wherever a query sees a key, which every query of a context
    /// does), without the `[B, H, T, S]` probabilities kept for the backward pass. A plain
    /// causal mask runs as `is_causal` without a mask (the flash kernel on CUDA, and the
    /// faster path on CPU).
    fn attend_fused(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &SpanMask) -> Tensor {
        let allowed = (!mask.causal).then_some(&mask.allowed);
        Tensor::scaled_dot_product_attention(q, k, v, allowed, 0.0, mask.causal, self.scale, false)
    }

    /// Scaled dot-product attention of `q` `[B, H, T, hd]` over `k`, `v` `[B, H, S, hd]`
    /// where `allowed` `[B, 1, T, S]` (bool): `[B, H, T, hd]`. Scores are scaled, soft-capped
    /// when configured and masked with the dtype's finite minimum, as `transformers`' eager
    /// path does (the [`AttentionImpl::Eager`] path, and any soft-capped layer).
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, allowed: &Tensor) -> Tensor {
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
        let scores = scores.masked_fill(&allowed.logical_not(), min);
        let probs = scores.softmax(-1, accumulation_kind(v.kind())).to_kind(v.kind());
        probs.matmul(v)
    }
}
