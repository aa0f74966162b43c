//! `kind = "mpo"`: the MPO term of `mpo-loss`, its retain forms and its ablation variants.

use super::{KindEntry, ObjectiveKind};
use crate::config::TableContext;
use crate::terms::TermContext;
use crate::Result;
use align_losses::{Layer, PreferenceObjective};
use mpo_loss::{Mpo, MpoConfig, Variant};
use serde::Deserialize;
use toml::Table;

/// MPO's retain term form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetainForm {
    /// The last real token's hidden state (the paper).
    LastToken,
    /// Hidden states mean-pooled over real tokens (the public code, with padding masked).
    MeanPool,
}

/// MPO's variants (the paper's ablations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MpoVariant {
    /// Reference dominant gap, length-normalised (the paper).
    Paper,
    /// A constant target gap (`target_gap`, required with this variant) instead of the dominant gap.
    ConstantTarget,
    /// The dominant gap computed by the policy instead of the reference.
    PolicyDominant,
    /// Gaps of summed (not length-normalised) log-probs.
    NoLengthNorm,
}

/// `kind = "mpo"`.
pub(super) const MPO: KindEntry = KindEntry { name: "mpo", chosen_only: false, parse: parse_mpo, build: build_mpo };

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MpoParams {
    beta: f64,
    retain: RetainForm,
    retain_layer: Option<usize>,
    retain_weight: f64,
    variant: MpoVariant,
    target_gap: Option<f64>,
}

impl Default for MpoParams {
    fn default() -> Self {
        Self {
            beta: 1.0,
            retain: RetainForm::LastToken,
            retain_layer: None,
            retain_weight: 1.0,
            variant: MpoVariant::Paper,
            target_gap: None,
        }
    }
}

/// Reads MPO's parameters; `target_gap` is required with `variant = "constant_target"` and
/// rejected with any other variant.
fn parse_mpo(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    let p: MpoParams = cx.deserialize(t)?;
    let target_gap = match (p.variant, p.target_gap) {
        (MpoVariant::ConstantTarget, Some(c)) => Some(c),
        (MpoVariant::ConstantTarget, None) => return Err(cx.missing("target_gap")),
        (_, Some(_)) => return Err(cx.invalid("target_gap", "is only used with variant = \"constant_target\"")),
        (_, None) => None,
    };
    Ok(ObjectiveKind::Mpo {
        beta: p.beta,
        retain: p.retain,
        retain_layer: p.retain_layer,
        retain_weight: p.retain_weight,
        variant: p.variant,
        target_gap,
    })
}

fn build_mpo(kind: &ObjectiveKind, cx: &TermContext) -> Result<Box<dyn PreferenceObjective>> {
    let &ObjectiveKind::Mpo { beta, retain, retain_layer, retain_weight, variant, target_gap } = kind else {
        return Err(cx.wrong_kind(kind, &MPO));
    };
    let variant = match variant {
        MpoVariant::Paper => Variant::Paper,
        MpoVariant::ConstantTarget => Variant::ConstantTarget(target_gap.unwrap_or_default()),
        MpoVariant::PolicyDominant => Variant::PolicyDominant,
        MpoVariant::NoLengthNorm => Variant::NoLengthNorm,
    };
    let retain_layer = match retain_layer {
        None => Layer::Last,
        Some(l) => cx.layer("retain_layer", l)?,
    };
    let retain = match retain {
        RetainForm::LastToken => mpo_loss::RetainForm::LastToken,
        RetainForm::MeanPool => mpo_loss::RetainForm::MeanPool,
    };
    let config = MpoConfig { beta, retain, retain_layer, retain_weight, variant };
    Ok(Box::new(Mpo::new(config).map_err(cx.loss_err())?.named(cx.name)))
}
