//! The cross-lingual consistency terms of `mlc-loss`: MLC and the pairwise-cosine ablation.

use super::{KindEntry, ObjectiveKind};
use crate::config::TableContext;
use crate::terms::TermContext;
use crate::Result;
use align_losses::PreferenceObjective;
use mlc_loss::{Mlc, PairwiseCosine, ProjectionHead};
use serde::Deserialize;
use toml::Table;

/// `kind = "mlc"`.
pub(super) const MLC: KindEntry = KindEntry { name: "mlc", chosen_only: false, parse: parse_mlc, build: build_mlc };

/// MLC's parameters: `layer` is required (serde's missing field becomes `missing key`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlcParams {
    layer: usize,
    #[serde(default = "default_tau")]
    tau: f64,
    #[serde(default)]
    head_dim: usize,
}

fn default_tau() -> f64 {
    1.0
}

fn parse_mlc(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    let p: MlcParams = cx.deserialize(t)?;
    Ok(ObjectiveKind::Mlc { layer: p.layer, tau: p.tau, head_dim: p.head_dim })
}

/// MLC at its layer; with `head_dim > 0`, a projection head created under the trainer's
/// head path (so it is optimised and saved with the run).
fn build_mlc(kind: &ObjectiveKind, cx: &TermContext) -> Result<Box<dyn PreferenceObjective>> {
    let &ObjectiveKind::Mlc { layer, tau, head_dim } = kind else { return Err(cx.wrong_kind(kind, &MLC)) };
    let mut mlc = Mlc::new(cx.layer("layer", layer)?, tau).map_err(cx.loss_err())?.named(cx.name);
    if head_dim > 0 {
        let head = ProjectionHead::new(&(cx.heads / cx.name), cx.shape.hidden_size as i64, head_dim as i64)
            .map_err(|e| (cx.loss_err())(e.into_loss_error(cx.name)))?;
        mlc = mlc.with_head(head);
    }
    Ok(Box::new(mlc))
}

/// `kind = "cosine"`.
pub(super) const COSINE: KindEntry =
    KindEntry { name: "cosine", chosen_only: false, parse: parse_cosine, build: build_cosine };

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CosineParams {
    layer: usize,
}

fn parse_cosine(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    Ok(ObjectiveKind::Cosine { layer: cx.deserialize::<CosineParams>(t)?.layer })
}

fn build_cosine(kind: &ObjectiveKind, cx: &TermContext) -> Result<Box<dyn PreferenceObjective>> {
    let &ObjectiveKind::Cosine { layer } = kind else { return Err(cx.wrong_kind(kind, &COSINE)) };
    Ok(Box::new(PairwiseCosine::new(cx.layer("layer", layer)?).named(cx.name)))
}
