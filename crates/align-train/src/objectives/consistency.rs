//! The cross-lingual consistency terms of `mlc-loss`: MLC and the pairwise-cosine ablation.
//! Both read one hidden state, given by their `layer` key as a [`LayerChoice`].

use super::{KindEntry, ObjectiveKind};
use crate::config::TableContext;
use crate::terms::TermContext;
use crate::Result;
use align_losses::{Layer, PreferenceObjective};
use mlc_loss::{Mlc, PairwiseCosine, ProjectionHead};
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;
use std::fmt;
use toml::Table;

/// The `layer` key of a consistency term (`mlc`, `cosine`): which hidden state it reads.
///
/// In TOML, an integer (`layer = 14`) or the string `"auto"`; anything else is rejected with
/// the key named. `"auto"` is resolved to an index once, before the first step of a fresh
/// run, by [`crate::auto_layer`] (the rule is documented there), and read back from
/// `auto_layer.json` on resume; the term itself is always built with an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerChoice {
    /// `layer = N`: hidden-state index `N` (0 = embeddings, `i` = after decoder layer `i`).
    Index(usize),
    /// `layer = "auto"`: the index [`crate::auto_layer::choose_layer`] picks.
    Auto,
}

impl fmt::Display for LayerChoice {
    /// `14` or `"auto"`, as written in the config.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerChoice::Index(l) => write!(f, "{l}"),
            LayerChoice::Auto => f.write_str("\"auto\""),
        }
    }
}

impl<'de> Deserialize<'de> for LayerChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(LayerChoiceVisitor)
    }
}

/// Reads an integer >= 0 or the string `"auto"`.
struct LayerChoiceVisitor;

impl Visitor<'_> for LayerChoiceVisitor {
    type Value = LayerChoice;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a hidden-state index (an integer >= 0) or \"auto\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<LayerChoice, E> {
        usize::try_from(v).map(LayerChoice::Index).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<LayerChoice, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<LayerChoice, E> {
        match v {
            "auto" => Ok(LayerChoice::Auto),
            _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

/// The hidden state of a consistency term's `layer` key: the index checked against the
/// model's layer count; `"auto"` is an error here (the trainer resolves it first, see
/// [`crate::auto_layer`]).
fn consistency_layer(cx: &TermContext, choice: LayerChoice) -> Result<Layer> {
    match choice {
        LayerChoice::Index(l) => cx.layer("layer", l),
        LayerChoice::Auto => Err(cx.invalid(
            "layer",
            "\"auto\" must be resolved to an index before the term is built (align_train::train does it; \
             a caller building terms itself can use align_train::auto_layer::choose_layer)"
                .into(),
        )),
    }
}

/// `kind = "mlc"`.
pub(super) const MLC: KindEntry = KindEntry { name: "mlc", chosen_only: false, parse: parse_mlc, build: build_mlc };

/// MLC's parameters: `layer` is required (serde's missing field becomes `missing key`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlcParams {
    layer: LayerChoice,
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
    let mut mlc = Mlc::new(consistency_layer(cx, layer)?, tau).map_err(cx.loss_err())?.named(cx.name);
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
    layer: LayerChoice,
}

fn parse_cosine(t: Table, cx: &TableContext) -> Result<ObjectiveKind> {
    Ok(ObjectiveKind::Cosine { layer: cx.deserialize::<CosineParams>(t)?.layer })
}

fn build_cosine(kind: &ObjectiveKind, cx: &TermContext) -> Result<Box<dyn PreferenceObjective>> {
    let &ObjectiveKind::Cosine { layer } = kind else { return Err(cx.wrong_kind(kind, &COSINE)) };
    Ok(Box::new(PairwiseCosine::new(consistency_layer(cx, layer)?).named(cx.name)))
}
