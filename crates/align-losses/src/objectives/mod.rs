//! The base preference objectives of methods.md §3, one file each.

mod dpo;

pub use dpo::Dpo;
