//! The preference terms of `align-losses`: DPO and its relatives, and SFT.
//!
//! Each kind: a parameter struct (its config keys with architecture.md's defaults), `parse`
//! from the struct to its [`ObjectiveKind`] variant, and `build` from the variant to the term;
//! `preference_kind!` writes them for the kinds whose parameters are plain numbers.

use super::{KindEntry, ObjectiveKind};
use crate::config::TableContext;
use crate::terms::TermContext;
use crate::Result;
use align_losses::{Cpo, Dpo, Hinge, Ipo, Kto, Orpo, PreferenceObjective, RDpo, RobustDpo, Sft, SimPo};
use serde::Deserialize;
use toml::Table;

/// A boxed term, for the `build` functions.
type Term = Result<Box<dyn PreferenceObjective>>;

/// Declares a preference kind whose parameters are numbers with defaults and whose term is
/// `Term::new(parameters in order)`: its registry entry, with the parameter struct
/// (`deny_unknown_fields`, the defaults of architecture.md), `parse` and `build` inside.
macro_rules! preference_kind {
    ($(#[$doc:meta])* $entry:ident = $name:literal => $variant:ident($term:ident) { $($field:ident = $default:expr),+ $(,)? }) => {
        $(#[$doc])*
        pub(super) const $entry: KindEntry = {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields, default)]
            struct Params {
                $($field: f64,)+
            }

            impl Default for Params {
                fn default() -> Self {
                    Self { $($field: $default,)+ }
                }
            }

            fn parse(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
                let p: Params = cx.deserialize(t)?;
                Ok(ObjectiveKind::$variant { $($field: p.$field,)+ })
            }

            fn build(kind: &ObjectiveKind, cx: &TermContext) -> Term {
                let &ObjectiveKind::$variant { $($field,)+ } = kind else { return Err(cx.wrong_kind(kind, &$entry)) };
                Ok(Box::new($term::new($($field,)+).map_err(cx.loss_err())?.named(cx.name)))
            }

            KindEntry { name: $name, chosen_only: false, parse, build }
        };
    };
}

preference_kind! {
    /// `kind = "dpo"`.
    DPO = "dpo" => Dpo(Dpo) { beta = 0.1, label_smoothing = 0.0 }
}
preference_kind! {
    /// `kind = "robust_dpo"`.
    ROBUST_DPO = "robust_dpo" => RobustDpo(RobustDpo) { beta = 0.1, label_smoothing = 0.1 }
}
preference_kind! {
    /// `kind = "hinge"`.
    HINGE = "hinge" => Hinge(Hinge) { beta = 0.1 }
}
preference_kind! {
    /// `kind = "ipo"`.
    IPO = "ipo" => Ipo(Ipo) { beta = 0.1 }
}
preference_kind! {
    /// `kind = "r_dpo"`.
    R_DPO = "r_dpo" => RDpo(RDpo) { beta = 0.1, alpha = 0.01 }
}
preference_kind! {
    /// `kind = "simpo"`.
    SIMPO = "simpo" => Simpo(SimPo) { beta = 2.0, gamma = 1.0 }
}
preference_kind! {
    /// `kind = "cpo"`.
    CPO = "cpo" => Cpo(Cpo) { beta = 0.1, alpha = 1.0 }
}
preference_kind! {
    /// `kind = "orpo"`.
    ORPO = "orpo" => Orpo(Orpo) { beta = 0.1 }
}
preference_kind! {
    /// `kind = "kto"`.
    KTO = "kto" => Kto(Kto) { beta = 0.1, desirable_weight = 1.0, undesirable_weight = 1.0 }
}

/// `kind = "sft"`: the only chosen-only kind.
pub(super) const SFT: KindEntry = KindEntry { name: "sft", chosen_only: true, parse: parse_sft, build: build_sft };

/// SFT takes no parameters: any key besides `kind`, `weight` and `name` is unknown.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SftParams {}

fn parse_sft(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    let SftParams {} = cx.deserialize(t)?;
    Ok(ObjectiveKind::Sft)
}

fn build_sft(kind: &ObjectiveKind, cx: &TermContext) -> Term {
    let ObjectiveKind::Sft = kind else { return Err(cx.wrong_kind(kind, &SFT)) };
    Ok(Box::new(Sft::new().map_err(cx.loss_err())?.named(cx.name)))
}
