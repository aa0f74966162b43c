//! The forward pass: embedding -> decoder blocks -> final norm -> output projection, with
//! the hidden states a caller asks for, logits at selected positions only, and the
//! key/value cache generation runs with. Every pass can be recorded on a [`Tape`] instead
//! (activation checkpointing, see [`super::checkpointed`]).

use tch::{Device, Kind, Tensor};

use super::api::{no_layers, selected_rows};
use super::checkpointed::Tape;
use super::{CausalLm, HfCausalLm, HiddenRequest, HiddenStates, LmOutput};
use crate::attention::{AttentionContext, LayerCache};
use crate::config::ModelConfig;
use crate::error::{LmError, Result};
use crate::packed::PackedBatch;

impl HfCausalLm {
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

    /// Checks a packed batch against the model (device and vocabulary; its own consistency
    /// was checked when it was made) and `hidden`; returns its attention context.
    fn packed_context(&self, batch: &PackedBatch, hidden: &HiddenRequest) -> Result<AttentionContext> {
        let ids = batch.input_ids();
        if ids.device() != self.options.device {
            let msg = format!("on {:?}, the model is on {:?}", ids.device(), self.options.device);
            return Err(LmError::input("input_ids", msg));
        }
        let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
        if lo < 0 || hi >= self.config.vocab_size as i64 {
            let msg = format!("ids range over [{lo}, {hi}], the vocabulary is [0, {})", self.config.vocab_size);
            return Err(LmError::input("input_ids", msg));
        }
        self.check_request(hidden)?;
        Ok(AttentionContext::packed(&self.rope, self.options.dtype, &self.config.layers, self.options.attention, batch))
    }

    /// The decoder depth a states-only pass needs: the deepest requested index, or `L` when
    /// the last layer's pre-norm output is requested.
    fn depth_for(&self, hidden: &HiddenRequest) -> usize {
        let deepest = hidden.layers.iter().copied().max().unwrap_or(0);
        if hidden.last_pre_norm {
            self.config.num_layers
        } else {
            deepest
        }
    }

    /// Logits at the rows `rows` (flat indices into `[B T]`) of a full pass over `input_ids`
    /// `[B, T]` with `ctx`: `[N, V]`, and the requested hidden states.
    fn logits_at_rows(
        &self,
        input_ids: &Tensor,
        ctx: AttentionContext,
        rows: &Tensor,
        hidden: &HiddenRequest,
        tape: Option<&Tape>,
    ) -> Result<LmOutput> {
        let last = self.config.num_layers;
        if last == 0 {
            return Err(no_layers());
        }
        // The final-norm output is index L; asked for in any case, kept only when requested.
        let mut request = hidden.clone();
        if !hidden.wants(last) {
            request.layers.push(last);
        }
        let (_, mut states) = self.pass(input_ids, ctx, last, &request, false, tape);
        let normed = if hidden.wants(last) {
            states.layers[&last].shallow_clone()
        } else {
            states.layers.remove(&last).expect("requested")
        };
        let selected = normed.reshape([-1, self.config.hidden_size as i64]).index_select(0, rows); // [N, D]
        Ok(LmOutput { logits: self.output_projection(&selected), hidden: states })
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

    /// An uncached pass over `input_ids` `[B, T]` with `ctx` (as [`HfCausalLm::run`]),
    /// recorded on `tape` when there is one and gradients are being tracked.
    fn pass(
        &self,
        input_ids: &Tensor,
        ctx: AttentionContext,
        depth: usize,
        hidden: &HiddenRequest,
        logits: bool,
        tape: Option<&Tape>,
    ) -> (Option<Tensor>, HiddenStates) {
        match tape {
            Some(tape) if tape.records() => {
                // Each block's input as a leaf: index 0 the embedding output, i the output of block i.
                let leaves = tape.record(self, input_ids, ctx, depth);
                let mut states = HiddenStates::default();
                for (i, leaf) in leaves.iter().enumerate() {
                    if hidden.wants(i) && i < self.config.num_layers {
                        states.layers.insert(i, leaf.shallow_clone());
                    }
                }
                let h = leaves.last().expect("the embedding leaf").shallow_clone();
                self.finish(h, states, depth, hidden, logits)
            }
            _ => self.run(input_ids, &ctx, None, depth, hidden, logits),
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
        self.finish(h, states, depth, hidden, logits)
    }

    /// The end of a pass whose last block run (`depth`) gave `h` `[B, T, D]`: the last
    /// pre-norm state, the final norm (index `L`) and the logits, as requested.
    fn finish(
        &self,
        h: Tensor,
        mut states: HiddenStates,
        depth: usize,
        hidden: &HiddenRequest,
        logits: bool,
    ) -> (Option<Tensor>, HiddenStates) {
        let last = self.config.num_layers;
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
    pub(super) fn full_context(&self, mask: &Tensor) -> AttentionContext {
        let positions = (mask.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0); // [B, T]
        let (rope, layers) = (&self.rope, &self.config.layers);
        AttentionContext::new(rope, self.options.dtype, layers, self.options.attention, &positions, &positions, mask)
    }
}

/// The passes of [`CausalLm`], recorded on `tape` when there is one: the one implementation
/// behind [`HfCausalLm`]'s and [`super::Checkpointed`]'s.
impl HfCausalLm {
    pub(super) fn forward_recorded(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        hidden: &HiddenRequest,
        tape: Option<&Tape>,
    ) -> Result<LmOutput> {
        let mask = self.check_inputs(input_ids, attention_mask)?;
        self.check_request(hidden)?;
        let ctx = self.full_context(&mask);
        let (logits, hidden) = self.pass(input_ids, ctx, self.config.num_layers, hidden, true, tape);
        let logits = logits.ok_or_else(no_layers)?;
        Ok(LmOutput { logits, hidden })
    }

    pub(super) fn hidden_states_recorded(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        hidden: &HiddenRequest,
        tape: Option<&Tape>,
    ) -> Result<HiddenStates> {
        let mask = self.check_inputs(input_ids, attention_mask)?;
        self.check_request(hidden)?;
        let ctx = self.full_context(&mask);
        Ok(self.pass(input_ids, ctx, self.depth_for(hidden), hidden, false, tape).1)
    }

    pub(super) fn forward_at_recorded(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: &Tensor,
        hidden: &HiddenRequest,
        tape: Option<&Tape>,
    ) -> Result<LmOutput> {
        let mask = self.check_inputs(input_ids, attention_mask)?;
        self.check_request(hidden)?;
        let rows = selected_rows(positions, input_ids)?;
        let ctx = self.full_context(&mask);
        self.logits_at_rows(input_ids, ctx, &rows, hidden, tape)
    }

    pub(super) fn forward_packed_at_recorded(
        &self,
        batch: &PackedBatch,
        positions: &Tensor,
        hidden: &HiddenRequest,
        tape: Option<&Tape>,
    ) -> Result<LmOutput> {
        let ctx = self.packed_context(batch, hidden)?;
        let rows = selected_rows(positions, batch.input_ids())?;
        self.logits_at_rows(batch.input_ids(), ctx, &rows, hidden, tape)
    }

    pub(super) fn hidden_states_packed_recorded(
        &self,
        batch: &PackedBatch,
        hidden: &HiddenRequest,
        tape: Option<&Tape>,
    ) -> Result<HiddenStates> {
        let ctx = self.packed_context(batch, hidden)?;
        Ok(self.pass(batch.input_ids(), ctx, self.depth_for(hidden), hidden, false, tape).1)
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
        self.forward_recorded(input_ids, attention_mask, hidden, None)
    }

    fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        hidden: &HiddenRequest,
    ) -> Result<HiddenStates> {
        self.hidden_states_recorded(input_ids, attention_mask, hidden, None)
    }

    fn forward_at(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: &Tensor,
        hidden: &HiddenRequest,
    ) -> Result<LmOutput> {
        self.forward_at_recorded(input_ids, attention_mask, positions, hidden, None)
    }

    fn forward_packed_at(&self, batch: &PackedBatch, positions: &Tensor, hidden: &HiddenRequest) -> Result<LmOutput> {
        self.forward_packed_at_recorded(batch, positions, hidden, None)
    }

    fn hidden_states_packed(&self, batch: &PackedBatch, hidden: &HiddenRequest) -> Result<HiddenStates> {
        self.hidden_states_packed_recorded(batch, hidden, None)
    }

    fn set_dropout_key(&self, key: u64) {
        HfCausalLm::set_dropout_key(self, key);
    }
}
