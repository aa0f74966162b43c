//! # mpo-loss
//!
//! MPO, multilingual reward-gap optimisation (Zhao et al., *MPO: Multilingual Safety Alignment
//! via Reward Gap Optimization*, ACL 2025), over [`tch`]: the policy's reward gap on each
//! target-language pair is pulled towards the frozen reference's gap on the same record's
//! dominant-language pair, while a retain term keeps the dominant language's hidden states
//! where they were.
//!
//! `L = mean_i (beta RG^t_i - RG^d_i)^2 + retain_weight * L2` (eq. 5-9), with the reward gap
//! `RG = logp(y_w)/|y_w| - logp(y_l)/|y_l|` (eq. 4). The term implements
//! [`align_losses::PreferenceObjective`], so it stacks with a base objective or MLC.
//!
//! ```
//! use align_losses::{BatchView, PairLogps, PreferenceObjective, TargetPairs};
//! use mpo_loss::{Mpo, MpoConfig};
//! use tch::Tensor;
//!
//! let pairs = |c: &[f32], r: &[f32]| {
//!     let n = c.len();
//!     PairLogps::from_tensors(Tensor::from_slice(c), Tensor::ones([n as i64], tch::kind::FLOAT_CPU),
//!                             Tensor::from_slice(r), Tensor::ones([n as i64], tch::kind::FLOAT_CPU))
//! };
//! // One dominant-language record whose reference gap is 2; its zh and sw pairs.
//! let mut batch = BatchView { reference: Some(pairs(&[-1.0], &[-3.0])?), ..Default::default() };
//! batch.targets = Some(TargetPairs { policy: pairs(&[-1.0, -2.0], &[-3.0, -2.5])?,
//!     record: Tensor::from_slice(&[0i64, 0]), languages: vec!["zh".into(), "sw".into()] });
//! let mpo = Mpo::new(MpoConfig { retain_weight: 0.0, ..MpoConfig::default() })?;
//! let out = mpo.compute(&batch)?;
//! // zh already matches (gap 2), sw's gap is 0.5: L1 = (0 + 1.5^2) / 2.
//! assert!((out.loss.double_value(&[]) - 1.125).abs() < 1e-6);
//! assert_eq!(out.metrics.get("reward_gap/sw"), Some(0.5));
//! # Ok::<(), align_losses::LossError>(())
//! ```
//!
//! Main items: [`Mpo`] and its [`MpoConfig`] (with [`RetainForm`] and the ablation
//! [`Variant`]s); the math on plain tensors: [`reward_gap`], [`gap_matching_loss`],
//! [`retain_last_token`], [`retain_mean_pool`], [`last_token_positions`]; errors:
//! [`MpoError`], whose [`MpoError::Input`] wraps the [`LossError`](align_losses::LossError) of
//! a bad shape, kind, device or parameter (checked with [`align_losses::check`], as in every
//! objective crate) and whose other variants are MPO's own. `docs/mpo.md` describes the
//! method, the config keys and what a trainer must provide.

mod error;
mod mpo;
mod retain;
mod reward_gap;
mod variant;

pub use error::{MpoError, Result};
pub use mpo::{Mpo, MpoConfig};
pub use retain::{last_token_positions, retain_last_token, retain_loss, retain_mean_pool, RetainForm};
pub use reward_gap::{gap_matching_loss, reward_gap};
pub use variant::Variant;
