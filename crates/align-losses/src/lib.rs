//! # align-losses
//!
//! Preference-alignment objectives over [`tch`], composable through one trait,
//! [`PreferenceObjective`]: a base objective (DPO, SimPO, ORPO, …) and any number of
//! regularisers (MLC, MPO's retain term, …) stack into one weighted sum, [`ObjectiveStack`].
//!
//! Every term reads what it needs from a [`BatchView`] (sequence log-probs of policy and
//! reference, hidden states, language tags), declares those needs with [`Need`] so that a
//! trainer computes only that, and returns its loss plus named [`Metrics`]. All loss math
//! is float32, whatever the model's dtype.
//!
//! ```
//! use align_losses::{BatchView, Dpo, ObjectiveStack, PairLogps, PreferenceObjective};
//! use tch::Tensor;
//!
//! // Summed completion log-probs and token counts of 2 pairs, policy and reference.
//! let pairs = |c: &[f32], r: &[f32]| {
//!     PairLogps::from_tensors(Tensor::from_slice(c), Tensor::from_slice(&[3f32, 4.]),
//!                             Tensor::from_slice(r), Tensor::from_slice(&[5f32, 2.]))
//! };
//! let batch = BatchView::from_pairs(pairs(&[-5., -7.], &[-9., -3.])?, Some(pairs(&[-6., -7.], &[-8., -3.])?));
//! let objective = ObjectiveStack::new().with(1.0, Dpo::new(0.1, 0.0)?)?;
//! let out = objective.compute(&batch)?;
//! assert!(out.loss.double_value(&[]) < std::f64::consts::LN_2);
//! assert!(out.metrics.get("loss/dpo").is_some());
//! # Ok::<(), align_losses::LossError>(())
//! ```
//!
//! Main types: [`PreferenceObjective`], [`BatchView`], [`PairLogps`], [`SequenceLogps`],
//! [`ObjectiveStack`]; helpers [`sequence_logps`] and [`token_logps`] turn model logits into
//! the log-probs the objectives read.
//!
//! Objectives (one file each in [`objectives`], formulas in their docs): [`Dpo`] (and cDPO),
//! [`RobustDpo`], [`Hinge`], [`Ipo`], [`RDpo`], [`SimPo`], [`Cpo`], [`Orpo`] (with the
//! stable [`log1mexp`]), [`Kto`] and [`Sft`]. Each has a `new(...)` that validates its
//! parameters and a `named(...)` to give two terms of one kind distinct names; that name
//! plumbing (and the default name, the term's config `kind`, e.g. [`Dpo::KIND`]) is generated
//! by [`objective_term!`], which terms of other crates use too.
//!
//! Errors: one vocabulary, [`LossError`], for every objective crate. The input checks behind
//! it (shape, element kind, device, parameter range) live in [`check`], which `mlc-loss` and
//! `mpo-loss` call too; their own error types wrap a [`LossError`] for these failures and turn
//! into one inside an [`ObjectiveStack`] (their `into_loss_error(term)`, built on
//! [`LossError::attributed_to`]).

mod batch;
pub mod check;
mod error;
mod logps;
pub mod metrics;
mod objective;
mod objective_term;
pub mod objectives;
mod stack;

pub use batch::{
    missing, BatchView, DominantStates, KlLogps, Layer, PairLogps, RankSum, SequenceLogps, TargetPairs, VariantStates,
};
pub use error::{LossError, Result};
pub use logps::{predicting_positions, scored_sequence_logps, sequence_logps, token_logps};
pub use objective::{Metrics, Need, PreferenceObjective, TermOutput};
pub use objectives::*;
pub use stack::{ObjectiveStack, WeightedTerm};
