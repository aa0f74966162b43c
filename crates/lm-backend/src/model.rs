//! The model stack shared by all architectures (embedding, decoder layers, final norm,
//! output projection) and the [`CausalLm`] interface a trainer uses.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::arch::DecoderBlock;
use crate::attention::{AttentionContext, LayerCache};
use crate::config::ModelConfig;
use crate::error::{LmError, Result};
use crate::norm::RmsNorm;
use crate::rope::Rope;
use crate::weights::{record_specs, Checkpoint, LoadOptions, TensorSpec, WeightSource, Weights};

/// Name of the token embedding.
pub const EMBED_TOKENS: &str = "model.embed_tokens.weight";
/// Name of the final norm.
pub const FINAL_NORM: &str = "model.norm.weight";
/// Name of the output projection (absent with tied embeddings).
pub const LM_HEAD: &str = "lm_head.weight";

/// Which hidden states a pass should return.
///
/// Indices follow `transformers`' `output_hidden_states`: 0 is the embedding output (for
/// Gemma2 already multiplied by `sqrt(D)`), `i` in `1..L` the output of decoder layer `i`,
/// and `L` (the last) the output of the last layer **after the final norm**, as
/// `transformers` returns it. The last layer's output *before* the final norm is available
/// separately ([`HiddenRequest::with_last_pre_norm`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HiddenRequest {
    /// Hidden-state indices, each `<= L`.
    pub layers: Vec<usize>,
    /// Also return the last decoder layer's output before the final norm.
    pub last_pre_norm: bool,
}

impl HiddenRequest {
    /// No hidden states (logits only).
    pub fn none() -> Self {
        Self::default()
    }

    /// The hidden states at these indices.
    pub fn layers(layers: impl IntoIterator<Item = usize>) -> Self {
        HiddenRequest { layers: layers.into_iter().collect(), last_pre_norm: false }
    }

    /// This request plus the last layer's output before the final norm.
    pub fn with_last_pre_norm(mut self) -> Self {
        self.last_pre_norm = true;
        self
    }

    fn wants(&self, index: usize) -> bool {
        self.layers.contains(&index)
    }
}

/// Hidden states returned by a pass, each `[B, T, D]`.
#[derive(Debug, Default)]
pub struct HiddenStates {
    /// By hidden-state index (see [`HiddenRequest`]).
    pub layers: BTreeMap<usize, Tensor>,
    /// The last decoder layer's output before the final norm, when requested.
    pub last_pre_norm: Option<Tensor>,
}

/// Output of a full forward pass.
#[derive(Debug)]
pub struct LmOutput {
    /// Next-token logits in the model's dtype: `[B, T, V]` at every position from
    /// [`CausalLm::forward`], `[N, V]` at the `N` selected positions from
    /// [`CausalLm::forward_at`].
    pub logits: Tensor,
    /// The requested hidden states.
    pub hidden: HiddenStates,
}

/// A causal language model over right-padded batches.
///
/// Inputs: `input_ids` `[B, T]` int64 on the model's device, `attention_mask` `[B, T]`
/// (int or bool, 1 = token, 0 = padding). Right padding is the convention (it is what
/// `transformers` assumes for training); left padding gives the same values at real
/// positions, because positions count real tokens only. Outputs at padding positions are
/// computed but meaningless (they do not affect real positions). Hidden-state
/// indices are those of [`HiddenRequest`].
pub trait CausalLm {
    /// The model's configuration.
    fn config(&self) -> &ModelConfig;

    /// The device of the weights; inputs must be there too.
    fn device(&self) -> Device;

    /// The dtype of the weights and activations.
    fn kind(&self) -> Kind;

    /// Logits at every position and the requested hidden states.
    fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, hidden: &HiddenRequest) -> Result<LmOutput>;

    /// The requested hidden states only, running the decoder layers no further than the
    /// deepest one requested (no logits are computed).
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        hidden: &HiddenRequest,
    ) -> Result<HiddenStates>;

    /// Logits at the selected positions only, `[N, V]`, and the requested hidden states.
    ///
    /// `positions` is a `[B, T]` bool (or 0/1) tensor; row `n` of the logits belongs to its
    /// `n`-th true entry in row-major order (sequence by sequence, left to right). The values
    /// equal those rows of [`CausalLm::forward`]'s logits. A trainer that scores only
    /// completion tokens needs no others: the output projection to the vocabulary, and its
    /// backward, then cost `N / (B T)` of the full pass, and no `[B, T, V]` tensor is made.
    ///
    /// The default implementation selects from [`CausalLm::forward`]; models override it to
    /// project only the selected positions.
    fn forward_at(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: &Tensor,
        hidden: &HiddenRequest,
    ) -> Result<LmOutput> {
        let rows = selected_rows(positions, input_ids)?;
        let out = self.forward(input_ids, attention_mask, hidden)?;
        let vocab = out.logits.size()[2];
        Ok(LmOutput { logits: out.logits.reshape([-1, vocab]).index_select(0, &rows), hidden: out.hidden })
    }
}

/// The error of asking a model without decoder layers for logits or final states.
fn no_layers() -> LmError {
    LmError::input("model", "a model without layers has no logits")
}

/// Flat indices `b * T + t` of the true entries of `positions` `[B, T]` (row-major order),
/// after checking its shape against `input_ids` and its device.
fn selected_rows(positions: &Tensor, input_ids: &Tensor) -> Result<Tensor> {
    if positions.size() != input_ids.size() {
        let msg = format!("expected shape {:?} (as input_ids), got {:?}", input_ids.size(), positions.size());
        return Err(LmError::input("positions", msg));
    }
    if positions.device() != input_ids.device() {
        let msg = format!("on {:?}, input_ids are on {:?}", positions.device(), input_ids.device());
        return Err(LmError::input("positions", msg));
    }
    Ok(positions.ne(0).reshape([-1]).nonzero().squeeze_dim(1))
}

/// A Hugging Face causal LM (Llama, Qwen2 or Gemma2) loaded from a checkpoint folder.
#[derive(Debug)]
pub struct HfCausalLm {
    config: ModelConfig,
    source_config: serde_json::Value,
    options: LoadOptions,
    parameters: BTreeMap<String, Tensor>,
    embed: Tensor, // [V, D]
    embed_scale: Option<Tensor>,
    blocks: Vec<Box<dyn DecoderBlock>>,
    norm: RmsNorm,
    lm_head: Tensor, // [V, D], the embedding when tied
    rope: Rope,
}

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

    /// The parameters by their checkpoint names (a tied output projection appears once, as
    /// the embedding). The tensors share storage with the model: setting `requires_grad`
    /// or updating them in place changes the model.
    pub fn parameters(&self) -> &BTreeMap<String, Tensor> {
        &self.parameters
    }

    /// Turns gradient tracking of every parameter on or off (off after loading).
    pub fn set_trainable(&self, trainable: bool) {
        for p in self.parameters.values() {
            let _ = p.shallow_clone().set_requires_grad(trainable);
        }
    }

    /// The number of decoder layers `L` (the last hidden-state index).
    pub fn num_layers(&self) -> usize {
        self.config.num_layers
    }

    /// The hidden states after the final norm (hidden-state index `L`), `[B, T]` -> `[B, T, D]`:
    /// a full pass without the output projection. A caller that scores only some positions
    /// (completion tokens, the last token) selects them and calls
    /// [`HfCausalLm::project_logits`], which avoids the `[B, T, V]` logits of [`CausalLm::forward`].
    pub fn final_hidden(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let last = self.config.num_layers;
        let mut states = self.hidden_states(input_ids, attention_mask, &HiddenRequest::layers([last]))?;
        states.layers.remove(&last).ok_or_else(no_layers)
    }

    /// Logits of final hidden states (as returned by [`HfCausalLm::final_hidden`]),
    /// `[..., D]` -> `[..., V]`: the output projection and, for Gemma2, the final soft-cap.
    /// At every position this equals the logits of [`CausalLm::forward`].
    pub fn project_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let size = hidden.size();
        if size.last() != Some(&(self.config.hidden_size as i64)) {
            let msg = format!("expected shape [..., {}], got {size:?}", self.config.hidden_size);
            return Err(LmError::input("hidden", msg));
        }
        if hidden.device() != self.options.device || hidden.kind() != self.options.dtype {
            let msg = format!(
                "on {:?} as {:?}, the model is on {:?} as {:?}",
                hidden.device(),
                hidden.kind(),
                self.options.device,
                self.options.dtype
            );
            return Err(LmError::input("hidden", msg));
        }
        Ok(self.output_projection(hidden))
    }

    /// `[..., D]` -> `[..., V]`, with the final soft-cap when the config has one.
    fn output_projection(&self, normed: &Tensor) -> Tensor {
        let out = normed.matmul(&self.lm_head.tr());
        match self.config.final_logit_softcap {
            Some(cap) => (out / cap).tanh() * cap,
            None => out,
        }
    }

    /// The `config.json` the model was loaded from, as JSON (all keys kept).
    pub fn source_config(&self) -> &serde_json::Value {
        &self.source_config
    }

    pub(crate) fn rope(&self) -> &Rope {
        &self.rope
    }

    /// Checks `input_ids` `[B, T]` and `attention_mask` `[B, T]`; returns the mask as bool.
    pub(crate) fn check_inputs(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let size = input_ids.size();
        if size.len() != 2 || size[1] == 0 {
            return Err(LmError::input("input_ids", format!("expected shape [B, T] with T > 0, got {size:?}")));
        }
        if input_ids.kind() != Kind::Int64 {
            return Err(LmError::input("input_ids", format!("expected int64, got {:?}", input_ids.kind())));
        }
        for (name, t) in [("input_ids", input_ids), ("attention_mask", attention_mask)] {
            if t.device() != self.options.device {
                let msg = format!("on {:?}, the model is on {:?}", t.device(), self.options.device);
                return Err(LmError::input(name, msg));
            }
        }
        if attention_mask.size() != size {
            let msg = format!("shape {:?} differs from input_ids {size:?}", attention_mask.size());
            return Err(LmError::input("attention_mask", msg));
        }
        if attention_mask.is_floating_point() {
            return Err(LmError::input("attention_mask", "expected an integer or bool tensor of 0/1"));
        }
        if size[0] > 0 {
            let (lo, hi) = (input_ids.min().int64_value(&[]), input_ids.max().int64_value(&[]));
            if lo < 0 || hi >= self.config.vocab_size as i64 {
                let msg = format!("ids range over [{lo}, {hi}], the vocabulary is [0, {})", self.config.vocab_size);
                return Err(LmError::input("input_ids", msg));
            }
        }
        Ok(attention_mask.ne(0))
    }

    fn check_request(&self, hidden: &HiddenRequest) -> Result<()> {
        match hidden.layers.iter().find(|&&l| l > self.config.num_layers) {
            Some(l) => Err(LmError::input(
                "hidden.layers",
                format!("hidden-state index {l} exceeds the number of layers {}", self.config.num_layers),
            )),
            None => Ok(()),
        }
    }

    /// The embedding output (hidden-state index 0), `[B, T]` -> `[B, T, D]`.
    pub(crate) fn embed(&self, input_ids: &Tensor) -> Tensor {
        let h = Tensor::embedding(&self.embed, input_ids, -1, false, false);
        match &self.embed_scale {
            Some(s) => h * s,
            None => h,
        }
    }

    /// Runs the decoder layers `0..depth` on `input_ids` `[B, T]`, recording the requested
    /// hidden states and, when `logits`, returning `[B, T, V]` logits (needs `depth == L`).
    pub(crate) fn run(
        &self,
        input_ids: &Tensor,
        ctx: &AttentionContext,
        mut caches: Option<&mut [LayerCache]>,
        depth: usize,
        hidden: &HiddenRequest,
        logits: bool,
    ) -> (Option<Tensor>, HiddenStates) {
        let last = self.config.num_layers;
        let mut states = HiddenStates::default();
        let mut h = self.embed(input_ids); // [B, T, D]
        if hidden.wants(0) && last > 0 {
            states.layers.insert(0, h.shallow_clone());
        }
        for (i, block) in self.blocks.iter().enumerate().take(depth) {
            let cache = caches.as_mut().map(|c| &mut c[i]);
            h = block.forward(&h, ctx, cache);
            if hidden.wants(i + 1) && i + 1 < last {
                states.layers.insert(i + 1, h.shallow_clone());
            }
        }
        if depth < last {
            return (None, states);
        }
        if hidden.last_pre_norm {
            states.last_pre_norm = Some(h.shallow_clone());
        }
        if !logits && !hidden.wants(last) {
            return (None, states);
        }
        let normed = self.norm.forward(&h);
        if hidden.wants(last) {
            states.layers.insert(last, normed.shallow_clone());
        }
        if !logits {
            return (None, states);
        }
        (Some(self.output_projection(&normed)), states) // [B, T, V]
    }

    /// The attention context of a full (uncached) pass. Positions count real tokens
    /// (`cumsum(mask) - 1`), so with right padding they are `0..T` as in `transformers`, and
    /// a left-padded row computes what it computes alone.
    fn full_context(&self, mask: &Tensor) -> AttentionContext {
        let positions = (mask.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0); // [B, T]
        AttentionContext::new(&self.rope, self.options.dtype, &self.config.layers, &positions, &positions, mask)
    }
}

impl CausalLm for HfCausalLm {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn device(&self) -> Device {
        self.options.device
    }

    fn kind(&self) -> Kind {
        self.options.dtype
    }

    fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, hidden: &HiddenRequest) -> Result<LmOutput> {
        let mask = self.check_inputs(input_ids, attention_mask)?;
        self.check_request(hidden)?;
        let ctx = self.full_context(&mask);
        let (logits, hidden) = self.run(input_ids, &ctx, None, self.config.num_layers, hidden, true);
        let logits = logits.ok_or_else(no_layers)?;
        Ok(LmOutput { logits, hidden })
    }

    fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        hidden: &HiddenRequest,
    ) -> Result<HiddenStates> {
        let mask = self.check_inputs(input_ids, attention_mask)?;
        self.check_request(hidden)?;
        let deepest = hidden.layers.iter().copied().max().unwrap_or(0);
        let depth = if hidden.last_pre_norm { self.config.num_layers } else { deepest };
        let ctx = self.full_context(&mask);
        Ok(self.run(input_ids, &ctx, None, depth, hidden, false).1)
    }

    fn forward_at(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: &Tensor,
        hidden: &HiddenRequest,
    ) -> Result<LmOutput> {
        let mask = self.check_inputs(input_ids, attention_mask)?;
        self.check_request(hidden)?;
        let rows = selected_rows(positions, input_ids)?;
        let last = self.config.num_layers;
        if last == 0 {
            return Err(no_layers());
        }
        // The final-norm output is index L; asked for in any case, kept only when requested.
        let mut request = hidden.clone();
        if !hidden.wants(last) {
            request.layers.push(last);
        }
        let ctx = self.full_context(&mask);
        let (_, mut states) = self.run(input_ids, &ctx, None, last, &request, false);
        let normed = if hidden.wants(last) {
            states.layers[&last].shallow_clone()
        } else {
            states.layers.remove(&last).expect("requested")
        };
        let selected = normed.reshape([-1, self.config.hidden_size as i64]).index_select(0, &rows); // [N, D]
        Ok(LmOutput { logits: self.output_projection(&selected), hidden: states })
    }
}
