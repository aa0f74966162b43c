//! # mlc-loss
//!
//! The MLC multilingual consistency loss (Bu et al., *Align Once, Benefit Multilingually*,
//! ICLR 2026, arXiv 2602.16660) over [`tch`]: it pulls the hidden states of one prompt's
//! language variants towards one direction (collinearity), so safety learned in one language
//! carries to the others. It needs only multilingual *prompts*, no responses.
//!
//! For each group of `k` variants, the states are normalised to unit length, stacked as the
//! columns of `Z` (`D x k`), and the loss is the softmax cross-entropy that puts all the mass
//! on the top singular value: `-log( exp(s_1/tau) / sum_j exp(s_j/tau) )`, averaged over the
//! groups. See `docs/mlc.md` for the derivation, the mask rules and advice on `tau`.
//!
//! ```
//! use mlc_loss::{collinearity_ratio, mlc_loss};
//! use tch::{Device, Kind, Tensor};
//!
//! // 4 prompts x 3 languages, hidden size 16; the third prompt lacks its last language.
//! let states = Tensor::randn([4, 3, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
//! let mask = Tensor::from_slice(&[true, true, true, true, true, true, true, true, false, true, true, true])
//!     .reshape([4, 3]);
//! let loss = mlc_loss(&states, Some(&mask), 1.0)?; // scalar, f32
//! loss.backward(); // finite gradients, also at collinear or duplicated states
//! let ratio = collinearity_ratio(&states, Some(&mask))?; // [4], each in [1/k, 1]
//! assert!(ratio.min().double_value(&[]) >= 1.0 / 3.0 - 1e-6);
//! # Ok::<(), mlc_loss::MlcError>(())
//! ```
//!
//! Main items: [`mlc_loss`] and the [`Mlc`] objective term (an
//! [`align_losses::PreferenceObjective`] to stack with DPO, SimPO, MPO, …), the optional
//! trainable [`ProjectionHead`], the diagnostics [`collinearity_ratio`] and
//! [`mean_pairwise_cosine`], the ablation [`pairwise_cosine_loss`] / [`PairwiseCosine`], and
//! the error type [`MlcError`].
//!
//! Every function takes `states` `[G, K, D]` (any float dtype; half types are computed in
//! f32, f64 stays f64) and an optional `[G, K]` bool `mask` of the variants that exist, and
//! returns an `Err`, never panics, on a wrong shape, dtype or device. Those errors are
//! `align-losses`' own, checked by [`align_losses::check`]: [`MlcError::Input`] wraps the
//! [`LossError`](align_losses::LossError) that names the input or parameter at fault, and
//! [`MlcError::into_loss_error`] hands it to an objective stack attributed to a term.
//!
//! Cost: one SVD of a `D x K` matrix per group, `O(K^2 D)`, tiny next to the model: for 8
//! groups of 10 languages at hidden size 4096 (f32, one CPU thread) the forward pass took
//! 3 to 5 ms and forward + backward 9 to 15 ms on a busy shared machine (criterion bench
//! `benches/mlc.rs`; `docs/mlc.md`).
//!
//! Degenerate inputs are safe: gradients come from the SVD's backward through the singular
//! values alone (`U diag(dL/ds) V^T`), finite at identical, opposite and orthogonal vectors
//! and when `K > D`. Opposite vectors count as collinear (rank 1). Masked-out variants are
//! exactly as if removed; groups with fewer than 2 variants are skipped, and a batch with
//! none gives a zero loss that is still connected to the graph.

mod diagnostics;
mod error;
mod groups;
mod head;
mod loss;
mod objective;

pub use diagnostics::{collinearity_ratio, mean_pairwise_cosine};
pub use error::{MlcError, Result};
pub use groups::{MIN_VARIANTS, NORM_EPS};
pub use head::ProjectionHead;
pub use loss::{mlc_loss, pairwise_cosine_loss};
pub use objective::{Mlc, PairwiseCosine};
