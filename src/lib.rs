//! # polyalign
//!
//! Make language models equally safe in every language. This facade re-exports the
//! workspace's crates so that one dependency brings all of them:
//!
//! - [`losses`] (`align-losses`): the [`losses::PreferenceObjective`] trait, sequence
//!   log-prob helpers and the base preference objectives (DPO, IPO, SimPO, ORPO, KTO, …).
//! - [`mlc`] (`mlc-loss`): the MLC multilingual consistency loss ([`mlc::mlc_loss`], the
//!   [`mlc::Mlc`] term), its projection head and the collinearity diagnostics.
//!
//! The crates can also be used one by one; `mlc-loss` in particular depends on nothing of
//! ours but the trait crate and can be called on plain `tch::Tensor`s.

pub use align_losses as losses;
pub use mlc_loss as mlc;
