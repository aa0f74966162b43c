//! Activation checkpointing: passes that keep only each decoder block's input, and a
//! layer-wise reverse pass that recomputes each block with gradient when the gradients are
//! wanted ([`Checkpointed`]).
//!
//! libtorch's autograd keeps every intermediate tensor of every block for the backward pass;
//! a model with `L` blocks of activations `A` per block holds `L A`. Here a pass runs the
//! blocks without gradient tracking and keeps one tensor per block, its input (`[B, T, D]`),
//! as a leaf that requires gradient; the caller's loss reads leaves (the last block's output,
//! from which the final norm and the logits are computed with gradient, and any requested
//! hidden state) instead of tensors inside a graph. After `loss.backward()` has filled the
//! leaves' gradients, [`Checkpointed::backward`] walks the blocks from the top: block `i` is
//! run again from its stored input with gradient, and its output is back-propagated with the
//! gradient accumulated on that output's leaf (from the block above and from the loss reading
//! it directly); the input leaf's gradient then carries on to block `i - 1`, and finally
//! through the embedding. Parameter gradients accumulate in their `.grad` fields exactly as in
//! an ordinary backward pass, so optimizers, clipping and gradient accumulation are unchanged.
//! The peak then holds the `L + 1` leaves plus one block's activations, at the cost of a
//! second forward pass through every block.
//!
//! # Randomness inside blocks
//!
//! A recomputed block must compute what it computed the first time. Blocks are deterministic
//! today; a block that draws random numbers (e.g. dropout on adapter inputs) from libtorch's
//! global generator is replayed exactly when the model is wrapped with
//! [`Checkpointed::with_replayed_randomness`]: the global generator is then seeded before
//! each block's forward and again before its recomputation, with a seed derived from the
//! wrapper's seed, the pass and the layer ([`block_seed`]). Such a block must draw its
//! numbers on the model's device, in the same order both times, and nothing else may draw
//! from the global generator inside the block. Choose a different seed for every
//! micro-batch (e.g. from the run's seed, step and micro-batch index), or every micro-batch
//! draws the same numbers.
//!
//! LoRA's dropout does not use the global generator: its masks are a function of the
//! model's dropout key ([`HfCausalLm::set_dropout_key`]), the module and the element. Each
//! recorded pass keeps the key it ran under, and its blocks are recomputed under that key.

use std::cell::{Cell, RefCell};

use tch::{Device, Kind, Tensor};

use super::{CausalLm, HfCausalLm, HiddenRequest, HiddenStates, LmOutput};
use crate::attention::AttentionContext;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::generate::SplitMix64;
use crate::packed::PackedBatch;

/// A model whose passes keep only each decoder block's input and recompute the blocks in
/// [`Checkpointed::backward`] (see the [module documentation](self)).
///
/// It implements [`CausalLm`]: pass it wherever a model is expected. Passes run while
/// gradients are tracked are recorded; passes under [`tch::no_grad`] are ordinary passes
/// and record nothing. After the loss's `backward()`, call [`Checkpointed::backward`] once:
/// it back-propagates through every pass recorded since the last call. Values, hidden
/// states and gradients equal those of the wrapped model's own passes up to float rounding.
///
/// ```
/// use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, LoadOptions};
/// use tch::{Kind, Tensor};
///
/// let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
/// let model = HfCausalLm::load(format!("{fixtures}/llama"), LoadOptions::cpu_f32())?;
/// model.set_trainable(true);
/// let ids = Tensor::from_slice(&[5i64, 6, 7, 8]).unsqueeze(0); // [1, T]
/// let checkpointed = model.checkpointed();
/// let out = checkpointed.forward(&ids, &ids.ones_like(), &HiddenRequest::layers([1]))?;
/// let loss = out.logits.log_softmax(-1, Kind::Float).mean(Kind::Float) + out.hidden.layers[&1].mean(Kind::Float);
/// loss.backward(); // gradients of the final norm and output projection, and of the leaves
/// checkpointed.backward()?; // gradients of the decoder blocks and the embedding
/// assert!(model.parameters()["model.layers.0.mlp.up_proj.weight"].grad().defined());
/// # Ok::<(), lm_backend::LmError>(())
/// ```
#[derive(Debug)]
pub struct Checkpointed<'m> {
    model: &'m HfCausalLm,
    tape: Tape,
}

impl HfCausalLm {
    /// This model with activation checkpointing: its passes with gradient keep only each
    /// decoder block's input, and [`Checkpointed::backward`] recomputes the blocks.
    pub fn checkpointed(&self) -> Checkpointed<'_> {
        Checkpointed { model: self, tape: Tape::default() }
    }
}

impl<'m> Checkpointed<'m> {
    /// The same wrapper, seeding libtorch's global generator before each block's forward
    /// and recomputation so that random draws inside blocks are replayed (see the
    /// [module documentation](self#randomness-inside-blocks)). Without it the generator is
    /// never touched.
    pub fn with_replayed_randomness(mut self, seed: u64) -> Self {
        self.tape.seed = Some(seed);
        self
    }

    /// The wrapped model.
    pub fn model(&self) -> &'m HfCausalLm {
        self.model
    }

    /// Passes recorded and not yet back-propagated.
    pub fn recorded_passes(&self) -> usize {
        self.tape.passes.borrow().len()
    }

    /// The reverse pass through the decoder blocks of every recorded pass (latest first),
    /// after the loss's `backward()`: recomputes each block from its stored input, with
    /// gradient, and back-propagates the gradient accumulated on its output, from the top
    /// block down, then through the embedding. Parameter gradients accumulate in their
    /// `.grad` fields. The recorded passes are released; a block whose output received no
    /// gradient is not recomputed.
    pub fn backward(&self) -> Result<()> {
        let passes = std::mem::take(&mut *self.tape.passes.borrow_mut());
        tch::with_grad(|| passes.into_iter().rev().try_for_each(|pass| self.tape.replay(self.model, pass)))
    }
}

impl CausalLm for Checkpointed<'_> {
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    fn device(&self) -> Device {
        self.model.device()
    }

    fn kind(&self) -> Kind {
        self.model.kind()
    }

    fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor, hidden: &HiddenRequest) -> Result<LmOutput> {
        self.model.forward_recorded(input_ids, attention_mask, hidden, Some(&self.tape))
    }

    fn hidden_states(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        hidden: &HiddenRequest,
    ) -> Result<HiddenStates> {
        self.model.hidden_states_recorded(input_ids, attention_mask, hidden, Some(&self.tape))
    }

    fn forward_at(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        positions: &Tensor,
        hidden: &HiddenRequest,
    ) -> Result<LmOutput> {
        self.model.forward_at_recorded(input_ids, attention_mask, positions, hidden, Some(&self.tape))
    }

    fn forward_packed_at(&self, batch: &PackedBatch, positions: &Tensor, hidden: &HiddenRequest) -> Result<LmOutput> {
        self.model.forward_packed_at_recorded(batch, positions, hidden, Some(&self.tape))
    }

    fn hidden_states_packed(&self, batch: &PackedBatch, hidden: &HiddenRequest) -> Result<HiddenStates> {
        self.model.hidden_states_packed_recorded(batch, hidden, Some(&self.tape))
    }

    fn set_dropout_key(&self, key: u64) {
        self.model.set_dropout_key(key);
    }
}

/// The seed libtorch's global generator gets before block `layer` of recorded pass `pass`
/// (counted from 0 per [`Checkpointed`]) runs, with replayed randomness of seed `seed`.
pub fn block_seed(seed: u64, pass: u64, layer: usize) -> u64 {
    let mut rng = SplitMix64::new(seed ^ pass.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.next_u64() ^ (layer as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// The passes recorded since the last reverse pass.
#[derive(Debug, Default)]
pub(super) struct Tape {
    passes: RefCell<Vec<RecordedPass>>,
    /// Passes recorded so far, the reverse passes included (numbers them for the seeds).
    counter: Cell<u64>,
    /// Replayed randomness: the seed blocks' seeds derive from.
    seed: Option<u64>,
}

/// What the reverse pass needs of one pass.
#[derive(Debug)]
struct RecordedPass {
    /// The pass's number (for [`block_seed`]).
    index: u64,
    /// The model's dropout key when the pass ran (LoRA's masks are a function of it, the
    /// module and the element): the recomputation runs under the same key, so it draws the
    /// same masks.
    dropout_key: u64,
    /// Rotary tables and masks of the pass.
    ctx: AttentionContext,
    /// The embedding output with its (small) graph to the embedding weight.
    embedded: Tensor,
    /// Leaves `[B, T, D]`: 0 the embedding output, `i` the output of block `i`.
    leaves: Vec<Tensor>,
}

impl Tape {
    /// Whether a pass now would be recorded: gradients are being tracked.
    pub(super) fn records(&self) -> bool {
        let probe = Tensor::zeros([], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&probe * 2.0).requires_grad()
    }

    /// Runs the embedding (with gradient) and blocks `0..depth` (without) of `model` on
    /// `input_ids`, records the pass and returns its leaves: index 0 the embedding output,
    /// `i` the output of block `i`, each `[B, T, D]` and requiring gradient.
    pub(super) fn record(
        &self,
        model: &HfCausalLm,
        input_ids: &Tensor,
        ctx: AttentionContext,
        depth: usize,
    ) -> Vec<Tensor> {
        let index = self.counter.get();
        self.counter.set(index + 1);
        let embedded = model.embed(input_ids); // [B, T, D]
        let mut leaves = vec![leaf(&embedded)];
        tch::no_grad(|| {
            for (i, block) in model.blocks.iter().enumerate().take(depth) {
                self.seed_block(index, i);
                let out = block.forward(leaves.last().expect("the embedding leaf"), &ctx, None);
                leaves.push(leaf(&out));
            }
        });
        let kept = leaves.iter().map(Tensor::shallow_clone).collect();
        let dropout_key = model.dropout_key();
        self.passes.borrow_mut().push(RecordedPass { index, dropout_key, ctx, embedded, leaves: kept });
        leaves
    }

    /// The reverse pass of one recorded pass (gradient tracking on).
    fn replay(&self, model: &HfCausalLm, pass: RecordedPass) -> Result<()> {
        let RecordedPass { index, dropout_key, ctx, embedded, mut leaves } = pass;
        while leaves.len() > 1 {
            let output = leaves.pop().expect("more than one leaf");
            let layer = leaves.len() - 1; // block `layer` maps leaves[layer] to `output`
            let grad = output.grad();
            if !grad.defined() {
                continue; // nothing read this output: no gradient flows through the block
            }
            self.seed_block(index, layer);
            let recomputed =
                model.with_dropout_key(dropout_key, || model.blocks[layer].forward(&leaves[layer], &ctx, None));
            // The gradient of sum(recomputed * grad) with respect to `recomputed` is `grad`.
            backward_with(&recomputed, &grad)?;
        }
        let grad = leaves[0].grad();
        if grad.defined() && embedded.requires_grad() {
            backward_with(&embedded, &grad)?;
        }
        Ok(())
    }

    /// Seeds libtorch's global generator for block `layer` of pass `index`, when
    /// randomness is replayed.
    fn seed_block(&self, index: u64, layer: usize) {
        if let Some(seed) = self.seed {
            tch::manual_seed(block_seed(seed, index, layer) as i64);
        }
    }
}

/// A leaf requiring gradient that shares `t`'s values.
fn leaf(t: &Tensor) -> Tensor {
    t.detach().set_requires_grad(true)
}

/// Back-propagates `grad` (same shape) from `output` into every leaf it depends on.
fn backward_with(output: &Tensor, grad: &Tensor) -> Result<()> {
    if output.requires_grad() {
        (output * grad).sum(output.kind()).f_backward()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::DecoderBlock;
    use crate::attention::LayerCache;
    use crate::LoadOptions;

    /// A block that drops half of its output at random (from libtorch's global generator),
    /// as an adapter's dropout would.
    #[derive(Debug)]
    struct WithDropout(Box<dyn DecoderBlock>);

    impl DecoderBlock for WithDropout {
        fn forward(&self, x: &Tensor, ctx: &AttentionContext, cache: Option<&mut LayerCache>) -> Tensor {
            self.0.forward(x, ctx, cache).dropout(0.5, true)
        }
    }

    /// The parameters' gradients after `backward` (which runs the backward passes), from zero.
    fn gradients(model: &HfCausalLm, backward: impl FnOnce()) -> Vec<Tensor> {
        for p in model.parameters().values() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        backward();
        let grad = |p: &Tensor| if p.grad().defined() { p.grad().copy() } else { p.zeros_like() };
        model.parameters().values().map(grad).collect()
    }

    fn largest_relative_difference(a: &[Tensor], b: &[Tensor]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                let scale = y.abs().max().double_value(&[]).max(1e-6);
                (x - y).abs().max().double_value(&[]) / scale
            })
            .fold(0.0, f64::max)
    }

    /// With replayed randomness, the recomputed blocks draw the dropout masks of the first
    /// forward: the gradients equal those of an ordinary pass seeded the same way per block.
    /// Without it they differ. (The only test of this crate's library that uses libtorch's
    /// global generator, so no test running at the same time draws from it.)
    #[test]
    fn replayed_randomness_recomputes_the_same_dropout() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/llama");
        let mut model = HfCausalLm::load(dir, LoadOptions::cpu_f32()).unwrap();
        model.blocks = std::mem::take(&mut model.blocks)
            .into_iter()
            .map(|b| Box::new(WithDropout(b)) as Box<dyn DecoderBlock>)
            .collect();
        model.set_trainable(true);
        let ids = Tensor::from_slice(&[5i64, 9, 40, 7, 81, 3]).unsqueeze(0);
        let mask = ids.ones_like();
        let weights = Tensor::from_slice(&(0..6 * 32).map(|i| ((i * 7) % 11) as f32 - 5.0).collect::<Vec<_>>());
        let weights = weights.view([1, 6, 32]);
        let seed = 1234;
        let reference = gradients(&model, || {
            // The ordinary pass, with the generator seeded as the wrapper seeds it.
            let ctx = model.full_context(&mask.ne(0));
            let mut h = model.embed(&ids);
            for (i, block) in model.blocks.iter().enumerate() {
                tch::manual_seed(block_seed(seed, 0, i) as i64);
                h = block.forward(&h, &ctx, None);
            }
            (h * &weights).sum(Kind::Float).backward();
        });
        let checkpointed = |replay: bool| {
            gradients(&model, || {
                let c = model.checkpointed();
                let c = if replay { c.with_replayed_randomness(seed) } else { c };
                let req = HiddenRequest::none().with_last_pre_norm();
                let h = c.hidden_states(&ids, &mask, &req).unwrap().last_pre_norm.unwrap();
                (h * &weights).sum(Kind::Float).backward();
                assert_eq!(c.recorded_passes(), 1);
                c.backward().unwrap();
                assert_eq!(c.recorded_passes(), 0);
            })
        };
        let replayed = checkpointed(true);
        let d = largest_relative_difference(&replayed, &reference);
        assert!(d < 1e-5, "replayed dropout: gradients differ by {d}");
        let fresh = checkpointed(false);
        let d = largest_relative_difference(&fresh, &reference);
        assert!(d > 1e-2, "without replay the recomputed masks differ, but gradients agree to {d}");
    }
}
