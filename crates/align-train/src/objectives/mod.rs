//! The registry of objective kinds: the one table that says which `kind = "…"` a
//! `[[objective]]` may name, which parameters it takes and which loss term it builds.
//!
//! Each kind has one entry in the `objective_kinds!` table below (its [`ObjectiveKind`]
//! variant with the parameter fields, and its [`KindEntry`]) and lives in its family's module:
//! a serde struct of its parameters with their defaults (`deny_unknown_fields`, so serde finds
//! unknown keys), a `parse` function from that struct to the variant (cross-field rules go
//! there) and a `build` function from the variant to the loss term. Adding a kind touches the
//! table and its module, nothing else: the config parser, the error messages (allowed keys,
//! the list of kinds) and the objective builder all read the registry.
//!
//! ```
//! use align_train::objectives::{kind_entry, KINDS};
//!
//! assert_eq!(KINDS[0].name, "dpo");
//! assert!(kind_entry("mlc").is_some() && kind_entry("dop").is_none());
//! ```

mod consistency;
mod mpo;
mod preference;

pub use consistency::LayerChoice;
pub use mpo::{MpoVariant, RetainForm};

use crate::config::TableContext;
use crate::terms::TermContext;
use crate::Result;
use align_losses::PreferenceObjective;
use toml::Table;

/// One objective kind: its config name, how its parameters are read and how its term is built.
#[derive(Debug)]
pub struct KindEntry {
    /// The config name (`kind = "dpo"`), also the term's default `name`.
    pub name: &'static str,
    /// True when the term learns from the chosen completion alone (SFT): a run made only of
    /// such terms needs no `rejected` completions.
    pub chosen_only: bool,
    /// Reads the kind's parameters: the `[[objective]]` table without `kind`, `weight` and
    /// `name`. Errors name the key and `cx`'s table.
    pub parse: fn(Table, &TableContext) -> Result<ObjectiveKind>,
    /// Builds the loss term of an [`ObjectiveKind`] of this entry.
    pub build: fn(&ObjectiveKind, &TermContext) -> Result<Box<dyn PreferenceObjective>>,
}

/// Declares [`ObjectiveKind`] (one variant per kind, with its parameter fields), [`KINDS`]
/// and [`ObjectiveKind::entry`] from one table of `Variant { fields } => ENTRY` lines.
macro_rules! objective_kinds {
    ($(
        $(#[$doc:meta])*
        $variant:ident $({ $($(#[$field_doc:meta])* $field:ident : $ty:ty),* $(,)? })? => $entry:path
    ),* $(,)?) => {
        /// The objective kinds of architecture.md with their parameters (defaults as
        /// documented there and in each kind's parameter struct).
        #[derive(Debug, Clone, PartialEq)]
        pub enum ObjectiveKind {
            $( $(#[$doc])* $variant $({ $($(#[$field_doc])* $field: $ty),* })?, )*
        }

        /// Every objective kind, in the order of architecture.md's table.
        pub static KINDS: &[&KindEntry] = &[$(&$entry),*];

        impl ObjectiveKind {
            /// This kind's registry entry.
            pub fn entry(&self) -> &'static KindEntry {
                match self {
                    $( Self::$variant { .. } => &$entry, )*
                }
            }
        }
    };
}

objective_kinds! {
    /// `dpo`: DPO, or cDPO when `label_smoothing > 0`.
    Dpo {
        /// KL strength (0.1).
        beta: f64,
        /// Assumed share of flipped labels (0: plain DPO).
        label_smoothing: f64,
    } => preference::DPO,
    /// `robust_dpo`: the unbiased DPO under label noise.
    RobustDpo {
        /// KL strength (0.1).
        beta: f64,
        /// Assumed share of flipped labels (0.1).
        label_smoothing: f64,
    } => preference::ROBUST_DPO,
    /// `hinge`: the SLiC hinge on the DPO margin.
    Hinge {
        /// Inverse margin (0.1).
        beta: f64,
    } => preference::HINGE,
    /// `ipo`: IPO's squared loss.
    Ipo {
        /// Regularisation strength (0.1).
        beta: f64,
    } => preference::IPO,
    /// `r_dpo`: DPO with a length penalty.
    RDpo {
        /// KL strength (0.1).
        beta: f64,
        /// Length-penalty weight (0.01).
        alpha: f64,
    } => preference::R_DPO,
    /// `simpo`: reference-free, length-normalised margin loss.
    Simpo {
        /// Reward scale (2.0).
        beta: f64,
        /// Target margin (1.0; the margin itself, not a ratio).
        gamma: f64,
    } => preference::SIMPO,
    /// `cpo`: reference-free preference loss plus NLL of the chosen completion.
    Cpo {
        /// Reward scale (0.1).
        beta: f64,
        /// NLL weight (1.0).
        alpha: f64,
    } => preference::CPO,
    /// `orpo`: NLL plus the odds-ratio term.
    Orpo {
        /// Odds-ratio weight, the paper's lambda (0.1).
        beta: f64,
    } => preference::ORPO,
    /// `kto`: prospect-theoretic loss against a KL baseline.
    Kto {
        /// KL strength (0.1).
        beta: f64,
        /// Weight of chosen (desirable) completions (1.0).
        desirable_weight: f64,
        /// Weight of rejected (undesirable) completions (1.0).
        undesirable_weight: f64,
    } => preference::KTO,
    /// `sft`: NLL of the chosen completion; no parameters.
    Sft => preference::SFT,
    /// `mpo`: reward-gap MSE towards the dominant language, plus the retain term.
    Mpo {
        /// Reward scale (1.0).
        beta: f64,
        /// The retain term's form (`last_token`).
        retain: RetainForm,
        /// Hidden-state index of the retain term (default: the last).
        retain_layer: Option<usize>,
        /// Retain-term weight (1.0).
        retain_weight: f64,
        /// The paper's method or one of its ablations (`paper`).
        variant: MpoVariant,
        /// The constant target gap (required with `variant = "constant_target"` only).
        target_gap: Option<f64>,
    } => mpo::MPO,
    /// `mlc`: the spectral consistency term over the prompt's language variants.
    Mlc {
        /// Hidden-state index, or `"auto"` (required): 0 = embeddings, i = after decoder
        /// layer i; `"auto"`: chosen by [`crate::auto_layer`].
        layer: LayerChoice,
        /// Softmax temperature (1.0).
        tau: f64,
        /// Output size of a trainable projection head; 0: none (0).
        head_dim: usize,
    } => consistency::MLC,
    /// `cosine`: the pairwise-cosine consistency ablation.
    Cosine {
        /// Hidden-state index, or `"auto"` (required), as MLC's.
        layer: LayerChoice,
    } => consistency::COSINE,
}

impl ObjectiveKind {
    /// The config name of this kind (`"dpo"`, `"mlc"`, …).
    pub fn kind_name(&self) -> &'static str {
        self.entry().name
    }

    /// True when the term learns from the chosen completion alone (SFT); see
    /// [`KindEntry::chosen_only`].
    pub fn is_chosen_only(&self) -> bool {
        self.entry().chosen_only
    }

    /// The `layer` of a consistency term (`mlc`, `cosine`); `None` for the other kinds.
    pub fn layer_choice(&self) -> Option<LayerChoice> {
        match self {
            ObjectiveKind::Mlc { layer, .. } | ObjectiveKind::Cosine { layer } => Some(*layer),
            _ => None,
        }
    }

    /// This kind with `layer = "auto"` replaced by hidden-state index `index`; a fixed
    /// `layer`, and every other kind, unchanged.
    pub fn with_auto_layer(&self, index: usize) -> ObjectiveKind {
        let mut kind = self.clone();
        if let ObjectiveKind::Mlc { layer, .. } | ObjectiveKind::Cosine { layer } = &mut kind {
            if *layer == LayerChoice::Auto {
                *layer = LayerChoice::Index(index);
            }
        }
        kind
    }
}

/// The registry entry of config name `name`, if it is a kind.
pub fn kind_entry(name: &str) -> Option<&'static KindEntry> {
    KINDS.iter().copied().find(|k| k.name == name)
}

/// Every kind's config name, in registry order (for messages: `"x" is not one of …`).
pub fn kind_names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name).collect()
}
