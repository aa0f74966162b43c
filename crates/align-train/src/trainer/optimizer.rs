//! The run's optimizer: [`AdamW`] on every process, or [`ShardedAdamW`] with
//! `[train] shard_optimizer = true` in a data-parallel run, behind one interface for the step
//! loop and the checkpoints.

use crate::dist::World;
use crate::optim::AdamW;
use crate::zero::ShardedAdamW;
use crate::Result;
use tch::Tensor;

/// AdamW, whole or sharded over the ranks.
#[derive(Debug)]
pub(crate) enum Optimizer {
    /// Every rank holds the whole state; gradients are all-reduced (in a data-parallel run).
    Whole(AdamW),
    /// Each rank holds its shard's state; gradients are reduce-scattered.
    Sharded(ShardedAdamW),
}

impl Optimizer {
    /// Makes every rank's gradients the sum over ranks (sharded: this rank's elements only).
    /// Without `world` (one process) there is nothing to do.
    pub fn sync_grads(&mut self, world: Option<&World>) -> Result<()> {
        match (self, world) {
            (Optimizer::Whole(o), Some(w)) => w.all_reduce_grads(&o.parameters()),
            (Optimizer::Sharded(o), _) => o.reduce_gradients(),
            (Optimizer::Whole(_), None) => Ok(()),
        }
    }

    /// The global norm of the (summed) gradients.
    pub fn grad_norm(&self) -> Result<f64> {
        match self {
            Optimizer::Whole(o) => Ok(o.grad_norm()),
            Optimizer::Sharded(o) => o.grad_norm(),
        }
    }

    /// Scales the gradients by `factor` (clipping).
    pub fn scale_grads(&mut self, factor: f64) {
        match self {
            Optimizer::Whole(o) => o.scale_grads(factor),
            Optimizer::Sharded(o) => o.scale_grads(factor),
        }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        match self {
            Optimizer::Whole(o) => o.zero_grad(),
            Optimizer::Sharded(o) => o.zero_grad(),
        }
    }

    /// One update at learning rate `lr` (sharded: then the parameters are all-gathered).
    pub fn step(&mut self, lr: f64) -> Result<()> {
        match self {
            Optimizer::Whole(o) => {
                o.step(lr);
                Ok(())
            }
            Optimizer::Sharded(o) => o.step(lr),
        }
    }

    /// The whole state as named tensors (sharded: gathered to rank 0, a collective every rank
    /// calls; the other ranks receive an empty list).
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        match self {
            Optimizer::Whole(o) => Ok(o.state()),
            Optimizer::Sharded(o) => o.state(),
        }
    }

    /// Restores [`Optimizer::state`] after `step` steps.
    pub fn load_state(&mut self, state: &[(String, Tensor)], step: u64) -> std::result::Result<(), String> {
        match self {
            Optimizer::Whole(o) => o.load_state(state, step),
            Optimizer::Sharded(o) => o.load_state(state, step),
        }
    }

    /// Bytes of optimizer state this process holds.
    pub fn state_bytes(&self) -> usize {
        match self {
            Optimizer::Whole(o) => o.state_bytes(),
            Optimizer::Sharded(o) => o.state_bytes(),
        }
    }
}
