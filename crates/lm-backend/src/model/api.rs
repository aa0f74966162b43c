//! What a trainer sees of a model: the [`CausalLm`] interface, which hidden states a pass
//! returns ([`HiddenRequest`], [`HiddenStates`]) and its output ([`LmOutput`]).

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

use crate::config::ModelConfig;
use crate::error::{LmError, Result};
use crate::packed::PackedBatch;

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

    pub(super) fn wants(&self, index: usize) -> bool {
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
    /// [`CausalLm::forward_at`] (`[M, V]` at the `M` selected tokens of a packed row from
    /// [`CausalLm::forward_packed_at`]).
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

    /// Logits at the selected tokens of a packed row only, `[M, V]`, and the requested hidden
    /// states `[1, N, D]` (see [`crate::packed`] for what each token sees).
    ///
    /// `positions` is a `[1, N]` bool (or 0/1) tensor; row `m` of the logits belongs to its
    /// `m`-th true entry, left to right. Each packed sequence gets the values it gets alone
    /// from [`CausalLm::forward`] (a tree branch: those of `trunk + branch` as one sequence).
    ///
    /// The default implementation returns an error: models that support packed batches
    /// override it.
    fn forward_packed_at(&self, batch: &PackedBatch, positions: &Tensor, hidden: &HiddenRequest) -> Result<LmOutput> {
        let _ = (batch, positions, hidden);
        Err(packing_unsupported())
    }

    /// The requested hidden states of a packed row only, each `[1, N, D]`, running the decoder
    /// layers no further than the deepest one requested (as [`CausalLm::hidden_states`]).
    ///
    /// The default implementation returns an error: models that support packed batches
    /// override it.
    fn hidden_states_packed(&self, batch: &PackedBatch, hidden: &HiddenRequest) -> Result<HiddenStates> {
        let _ = (batch, hidden);
        Err(packing_unsupported())
    }

    /// Sets the key that the next passes' dropout masks are drawn from (LoRA adapters with
    /// `dropout > 0`: [`HfCausalLm::set_dropout_key`]). A trainer gives each pass with
    /// gradient its own key, so masks differ between passes and steps yet replay on resume.
    /// The default does nothing: a model without dropout has no key.
    fn set_dropout_key(&self, key: u64) {
        let _ = key;
    }
}

/// The error of a model without packed passes.
fn packing_unsupported() -> LmError {
    LmError::input("packed", "this model does not support packed batches")
}

/// The error of asking a model without decoder layers for logits or final states.
pub(super) fn no_layers() -> LmError {
    LmError::input("model", "a model without layers has no logits")
}

/// Flat indices `b * T + t` of the true entries of `positions` `[B, T]` (row-major order),
/// after checking its shape against `input_ids` and its device.
pub(super) fn selected_rows(positions: &Tensor, input_ids: &Tensor) -> Result<Tensor> {
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
