//! Building a run's objective from its `[[objective]]` tables, through the registry of
//! objective kinds ([`crate::objectives`]).

use crate::config::ObjectiveConfig;
use crate::objectives::{KindEntry, ObjectiveKind};
use crate::{Result, TrainError};
use align_losses::{Layer, LossError, ObjectiveStack};
use std::path::Path;

/// What the objective builder needs to know about the model.
#[derive(Debug, Clone, Copy)]
pub struct ModelShape {
    /// Number of decoder layers `L` (hidden-state indices run `0..=L`).
    pub num_layers: usize,
    /// Hidden size `D` (input size of an MLC projection head).
    pub hidden_size: usize,
}

/// The label of the `index`-th (0-based) objective table in messages.
pub fn objective_table(index: usize, o: &ObjectiveConfig) -> String {
    format!("[[objective]] #{} (kind = \"{}\")", index + 1, o.kind.kind_name())
}

/// What a kind's `build` function ([`KindEntry::build`]) gets besides its parameters: the
/// term's name, the model's shape, where trainable tensors go, and the table for messages.
pub struct TermContext<'a> {
    /// The term's name (`loss/<name>` in metrics; the folder of its trainable tensors).
    pub name: &'a str,
    /// The model the term will be computed on.
    pub shape: ModelShape,
    /// The trainer's VarStore path under which a term creates trainable tensors (MLC heads).
    pub heads: &'a tch::nn::Path<'a>,
    /// The objective's table, e.g. `[[objective]] #2 (kind = "mlc")`.
    pub table: String,
    /// The config file, for messages.
    pub config_path: &'a Path,
}

impl TermContext<'_> {
    /// Wraps a loss crate's error with the config file and this term's table.
    pub fn loss_err(&self) -> impl Fn(LossError) -> TrainError + '_ {
        move |source| TrainError::Loss { context: format!("{}: {}", self.config_path.display(), self.table), source }
    }

    /// Hidden-state index `l` of config key `key`, checked against the model's layer count.
    pub fn layer(&self, key: &str, l: usize) -> Result<Layer> {
        if l > self.shape.num_layers {
            return Err(
                self.invalid(key, format!("{l} is past the model's last hidden-state index {}", self.shape.num_layers))
            );
        }
        Ok(Layer::Index(l))
    }

    /// The error of a `build` function handed a kind of another entry than `entry`.
    pub fn wrong_kind(&self, kind: &ObjectiveKind, entry: &KindEntry) -> TrainError {
        self.invalid("kind", format!("a `{}` term cannot be built as `{}`", kind.kind_name(), entry.name))
    }

    /// An [`TrainError::InvalidValue`] naming `key` of this term's table.
    pub(crate) fn invalid(&self, key: &str, why: String) -> TrainError {
        TrainError::InvalidValue {
            path: self.config_path.to_path_buf(),
            table: self.table.clone(),
            key: key.into(),
            why,
        }
    }
}

/// Builds the weighted stack of the config's terms, each by its kind's registry entry. MLC
/// projection heads are created under `heads` (a path of the trainer's own VarStore), so they
/// are optimised and saved with the run. Parameter errors name the config file and the
/// objective's table.
pub fn build_objective(
    objectives: &[ObjectiveConfig],
    shape: ModelShape,
    heads: &tch::nn::Path,
    config_path: &Path,
) -> Result<ObjectiveStack> {
    let mut stack = ObjectiveStack::new();
    for (i, o) in objectives.iter().enumerate() {
        let cx = TermContext { name: &o.name, shape, heads, table: objective_table(i, o), config_path };
        let term = (o.kind.entry().build)(&o.kind, &cx)?;
        stack.push(o.weight, term).map_err(cx.loss_err())?;
    }
    Ok(stack)
}
