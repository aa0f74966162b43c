//! The preference terms of `align-losses`: DPO and its relatives, and SFT.
//!
//! Each kind: a parameter struct (its config keys with architecture.md's defaults), `parse`
//! from the struct to its [`ObjectiveKind`] variant, and `build` from the variant to the term.

use super::{KindEntry, ObjectiveKind};
use crate::config::TableContext;
use crate::terms::TermContext;
use crate::Result;
use align_losses::{Cpo, Dpo, Hinge, Ipo, Kto, Orpo, PreferenceObjective, RDpo, RobustDpo, Sft, SimPo};
use serde::Deserialize;
use toml::Table;

/// A boxed term, for the `build` functions.
type Term = Result<Box<dyn PreferenceObjective>>;

/// `kind = "dpo"`.
pub(super) const DPO: KindEntry = KindEntry { name: "dpo", chosen_only: false, parse: parse_dpo, build: build_dpo };

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DpoParams {
    beta: f64,
    label_smoothing: f64,
}

impl Default for DpoParams {
    fn default() -> Self {
        Self { beta: 0.1, label_smoothing: 0.0 }
    }
}

fn parse_dpo(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    let p: DpoParams = cx.deserialize(t)?;
    Ok(ObjectiveKind::Dpo { beta: p.beta, label_smoothing: p.label_smoothing })
}

fn build_dpo(kind: &ObjectiveKind, cx: &TermContext) -> Term {
    let &ObjectiveKind::Dpo { beta, label_smoothing } = kind else { return Err(cx.wrong_kind(kind, &DPO)) };
    Ok(Box::new(Dpo::new(beta, label_smoothing).map_err(cx.loss_err())?.named(cx.name)))
}

/// `kind = "robust_dpo"`.
pub(super) const ROBUST_DPO: KindEntry =
    KindEntry { name: "robust_dpo", chosen_only: false, parse: parse_robust_dpo, build: build_robust_dpo };

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RobustDpoParams {
    beta: f64,
    label_smoothing: f64,
}

impl Default for RobustDpoParams {
    fn default() -> Self {
        Self { beta: 0.1, label_smoothing: 0.1 }
    }
}

fn parse_robust_dpo(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    let p: RobustDpoParams = cx.deserialize(t)?;
    Ok(ObjectiveKind::RobustDpo { beta: p.beta, label_smoothing: p.label_smoothing })
}

fn build_robust_dpo(kind: &ObjectiveKind, cx: &TermContext) -> Term {
    let &ObjectiveKind::RobustDpo { beta, label_smoothing } = kind else {
        return Err(cx.wrong_kind(kind, &ROBUST_DPO));
    };
    Ok(Box::new(RobustDpo::new(beta, label_smoothing).map_err(cx.loss_err())?.named(cx.name)))
}

/// The parameters of the kinds that take `beta` alone (`hinge`, `ipo`, `orpo`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BetaParams {
    beta: f64,
}

impl Default for BetaParams {
    fn default() -> Self {
        Self { beta: 0.1 }
    }
}

/// `kind = "hinge"`.
pub(super) const HINGE: KindEntry =
    KindEntry { name: "hinge", chosen_only: false, parse: parse_hinge, build: build_hinge };

fn parse_hinge(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    Ok(ObjectiveKind::Hinge { beta: cx.deserialize::<BetaParams>(t)?.beta })
}

fn build_hinge(kind: &ObjectiveKind, cx: &TermContext) -> Term {
    let &ObjectiveKind::Hinge { beta } = kind else { return Err(cx.wrong_kind(kind, &HINGE)) };
    Ok(Box::new(Hinge::new(beta).map_err(cx.loss_err())?.named(cx.name)))
}

/// `kind = "ipo"`.
pub(super) const IPO: KindEntry = KindEntry { name: "ipo", chosen_only: false, parse: parse_ipo, build: build_ipo };

fn parse_ipo(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    Ok(ObjectiveKind::Ipo { beta: cx.deserialize::<BetaParams>(t)?.beta })
}

fn build_ipo(kind: &ObjectiveKind, cx: &TermContext) -> Term {
    let &ObjectiveKind::Ipo { beta } = kind else { return Err(cx.wrong_kind(kind, &IPO)) };
    Ok(Box::new(Ipo::new(beta).map_err(cx.loss_err())?.named(cx.name)))
}

/// `kind = "r_dpo"`.
pub(super) const R_DPO: KindEntry =
    KindEntry { name: "r_dpo", chosen_only: false, parse: parse_r_dpo, build: build_r_dpo };

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RDpoParams {
    beta: f64,
    alpha: f64,
}

impl Default for RDpoParams {
    fn default() -> Self {
        Self { beta: 0.1, alpha: 0.01 }
    }
}

fn parse_r_dpo(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    let p: RDpoParams = cx.deserialize(t)?;
    Ok(ObjectiveKind::RDpo { beta: p.beta, alpha: p.alpha })
}

fn build_r_dpo(kind: &ObjectiveKind, cx: &TermContext) -> Term {
    let &ObjectiveKind::RDpo { beta, alpha } = kind else { return Err(cx.wrong_kind(kind, &R_DPO)) };
    Ok(Box::new(RDpo::new(beta, alpha).map_err(cx.loss_err())?.named(cx.name)))
}

/// `kind = "simpo"`.
pub(super) const SIMPO: KindEntry =
    KindEntry { name: "simpo", chosen_only: false, parse: parse_simpo, build: build_simpo };

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SimpoParams {
    beta: f64,
    gamma: f64,
}

impl Default for SimpoParams {
    fn default() -> Self {
        Self { beta: 2.0, gamma: 1.0 }
    }
}

fn parse_simpo(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    let p: SimpoParams = cx.deserialize(t)?;
    Ok(ObjectiveKind::Simpo { beta: p.beta, gamma: p.gamma })
}

fn build_simpo(kind: &ObjectiveKind, cx: &TermContext) -> Term {
    let &ObjectiveKind::Simpo { beta, gamma } = kind else { return Err(cx.wrong_kind(kind, &SIMPO)) };
    Ok(Box::new(SimPo::new(beta, gamma).map_err(cx.loss_err())?.named(cx.name)))
}

/// `kind = "cpo"`.
pub(super) const CPO: KindEntry = KindEntry { name: "cpo", chosen_only: false, parse: parse_cpo, build: build_cpo };

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CpoParams {
    beta: f64,
    alpha: f64,
}

impl Default for CpoParams {
    fn default() -> Self {
        Self { beta: 0.1, alpha: 1.0 }
    }
}

fn parse_cpo(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    let p: CpoParams = cx.deserialize(t)?;
    Ok(ObjectiveKind::Cpo { beta: p.beta, alpha: p.alpha })
}

fn build_cpo(kind: &ObjectiveKind, cx: &TermContext) -> Term {
    let &ObjectiveKind::Cpo { beta, alpha } = kind else { return Err(cx.wrong_kind(kind, &CPO)) };
    Ok(Box::new(Cpo::new(beta, alpha).map_err(cx.loss_err())?.named(cx.name)))
}

/// `kind = "orpo"`.
pub(super) const ORPO: KindEntry = KindEntry { name: "orpo", chosen_only: false, parse: parse_orpo, build: build_orpo };

fn parse_orpo(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    Ok(ObjectiveKind::Orpo { beta: cx.deserialize::<BetaParams>(t)?.beta })
}

fn build_orpo(kind: &ObjectiveKind, cx: &TermContext) -> Term {
    let &ObjectiveKind::Orpo { beta } = kind else { return Err(cx.wrong_kind(kind, &ORPO)) };
    Ok(Box::new(Orpo::new(beta).map_err(cx.loss_err())?.named(cx.name)))
}

/// `kind = "kto"`.
pub(super) const KTO: KindEntry = KindEntry { name: "kto", chosen_only: false, parse: parse_kto, build: build_kto };

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct KtoParams {
    beta: f64,
    desirable_weight: f64,
    undesirable_weight: f64,
}

impl Default for KtoParams {
    fn default() -> Self {
        Self { beta: 0.1, desirable_weight: 1.0, undesirable_weight: 1.0 }
    }
}

fn parse_kto(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    let p: KtoParams = cx.deserialize(t)?;
    Ok(ObjectiveKind::Kto {
        beta: p.beta,
        desirable_weight: p.desirable_weight,
        undesirable_weight: p.undesirable_weight,
    })
}

fn build_kto(kind: &ObjectiveKind, cx: &TermContext) -> Term {
    let &ObjectiveKind::Kto { beta, desirable_weight, undesirable_weight } = kind else {
        return Err(cx.wrong_kind(kind, &KTO));
    };
    Ok(Box::new(Kto::new(beta, desirable_weight, undesirable_weight).map_err(cx.loss_err())?.named(cx.name)))
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
