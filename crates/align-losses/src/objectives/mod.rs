//! The base preference objectives of methods.md §3, one file each.
//!
//! | type | config `kind` | needs | length normalisation |
//! |---|---|---|---|
//! | [`Dpo`] | `dpo` | policy, reference | sums |
//! | [`RobustDpo`] | `robust_dpo` | policy, reference | sums |
//! | [`Hinge`] | `hinge` | policy, reference | sums |
//! | [`Ipo`] | `ipo` | policy, reference | per-token averages |
//! | [`RDpo`] | `r_dpo` | policy, reference | sums (plus a token-count margin) |
//! | [`SimPo`] | `simpo` | policy | per-token averages |
//! | [`Cpo`] | `cpo` | policy | sums; token-mean NLL |
//! | [`Orpo`] | `orpo` | policy | per-token averages; token-mean NLL |
//! | [`Kto`] | `kto` | policy, reference, KL pairs | sums |
//! | [`Sft`] | `sft` | policy (chosen only) | token-mean NLL |

mod cpo;
mod dpo;
mod hinge;
mod ipo;
mod kto;
mod orpo;
mod r_dpo;
mod robust_dpo;
mod sft;
mod simpo;

pub use cpo::Cpo;
pub use dpo::Dpo;
pub use hinge::Hinge;
pub use ipo::Ipo;
pub use kto::Kto;
pub use orpo::{log1mexp, Orpo, ORPO_AVG_LOGP_CEILING};
pub use r_dpo::RDpo;
pub use robust_dpo::RobustDpo;
pub use sft::Sft;
pub use simpo::SimPo;
