//! # polyalign
//!
//! Make language models equally safe in every language. This facade re-exports the
//! workspace's crates so that one dependency brings all of them:
//!
//! - [`losses`] (`align-losses`): the [`losses::PreferenceObjective`] trait, sequence
//!   log-prob helpers and the base preference objectives (DPO, IPO, SimPO, ORPO, KTO, …).
//! - [`mlc`] (`mlc-loss`): the MLC multilingual consistency loss ([`mlc::mlc_loss`], the
//!   [`mlc::Mlc`] term), its projection head and the collinearity diagnostics.
//! - [`mpo`] (`mpo-loss`): MPO's reward gaps, gap-matching loss and retain term.
//! - [`lm`] (`lm-backend`): Hugging Face causal LMs over libtorch, tokenizers, GGUF import.
//! - [`train`] (`align-train`): run configs, data, the training loop and the evaluations.
//!
//! The crates can also be used one by one; `mlc-loss` in particular depends on nothing of
//! ours but the trait crate and can be called on plain `tch::Tensor`s.

pub use align_losses as losses;
pub use align_train as train;
pub use lm_backend as lm;
pub use mlc_loss as mlc;
pub use mpo_loss as mpo;
