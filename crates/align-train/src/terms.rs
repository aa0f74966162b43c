//! Building a run's objective from its `[[objective]]` tables.

use crate::config::{MpoVariant, ObjectiveConfig, ObjectiveKind, RetainForm};
use crate::{Result, TrainError};
use align_losses::{
    Cpo, Dpo, Hinge, Ipo, Kto, Layer, ObjectiveStack, Orpo, PreferenceObjective, RDpo, RobustDpo, Sft, SimPo,
};
use mlc_loss::{Mlc, PairwiseCosine, ProjectionHead};
use mpo_loss::{Mpo, MpoConfig, Variant};
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

/// Builds the weighted stack of the config's terms. MLC projection heads are created under
/// `heads` (a path of the trainer's own VarStore), so they are optimised and saved with the
/// run. Parameter errors name the config file and the objective's table.
pub fn build_objective(
    objectives: &[ObjectiveConfig],
    shape: ModelShape,
    heads: &tch::nn::Path,
    config_path: &Path,
) -> Result<ObjectiveStack> {
    let mut stack = ObjectiveStack::new();
    for (i, o) in objectives.iter().enumerate() {
        let table = objective_table(i, o);
        let loss_err = |source| TrainError::Loss { context: format!("{}: {table}", config_path.display()), source };
        let layer = |key: &str, l: usize| -> Result<Layer> {
            if l > shape.num_layers {
                return Err(TrainError::InvalidValue {
                    path: config_path.to_path_buf(),
                    table: table.clone(),
                    key: key.into(),
                    why: format!("{l} is past the model's last hidden-state index {}", shape.num_layers),
                });
            }
            Ok(Layer::Index(l))
        };
        let term: Box<dyn PreferenceObjective> = match &o.kind {
            ObjectiveKind::Dpo { beta, label_smoothing } => {
                Box::new(Dpo::new(*beta, *label_smoothing).map_err(loss_err)?.named(&o.name))
            }
            ObjectiveKind::RobustDpo { beta, label_smoothing } => {
                Box::new(RobustDpo::new(*beta, *label_smoothing).map_err(loss_err)?.named(&o.name))
            }
            ObjectiveKind::Hinge { beta } => Box::new(Hinge::new(*beta).map_err(loss_err)?.named(&o.name)),
            ObjectiveKind::Ipo { beta } => Box::new(Ipo::new(*beta).map_err(loss_err)?.named(&o.name)),
            ObjectiveKind::RDpo { beta, alpha } => Box::new(RDpo::new(*beta, *alpha).map_err(loss_err)?.named(&o.name)),
            ObjectiveKind::Simpo { beta, gamma } => {
                Box::new(SimPo::new(*beta, *gamma).map_err(loss_err)?.named(&o.name))
            }
            ObjectiveKind::Cpo { beta, alpha } => Box::new(Cpo::new(*beta, *alpha).map_err(loss_err)?.named(&o.name)),
            ObjectiveKind::Orpo { beta } => Box::new(Orpo::new(*beta).map_err(loss_err)?.named(&o.name)),
            ObjectiveKind::Kto { beta, desirable_weight, undesirable_weight } => {
                Box::new(Kto::new(*beta, *desirable_weight, *undesirable_weight).map_err(loss_err)?.named(&o.name))
            }
            ObjectiveKind::Sft => Box::new(Sft::new().map_err(loss_err)?.named(&o.name)),
            ObjectiveKind::Mpo { beta, retain, retain_layer, retain_weight, variant, target_gap } => {
                let variant = match variant {
                    MpoVariant::Paper => Variant::Paper,
                    MpoVariant::ConstantTarget => Variant::ConstantTarget(target_gap.unwrap_or_default()),
                    MpoVariant::PolicyDominant => Variant::PolicyDominant,
                    MpoVariant::NoLengthNorm => Variant::NoLengthNorm,
                };
                let retain_layer = match retain_layer {
                    None => Layer::Last,
                    Some(l) => layer("retain_layer", *l)?,
                };
                let retain = match retain {
                    RetainForm::LastToken => mpo_loss::RetainForm::LastToken,
                    RetainForm::MeanPool => mpo_loss::RetainForm::MeanPool,
                };
                let config = MpoConfig { beta: *beta, retain, retain_layer, retain_weight: *retain_weight, variant };
                Box::new(Mpo::new(config).map_err(loss_err)?.named(&o.name))
            }
            ObjectiveKind::Mlc { layer: l, tau, head_dim } => {
                let mut mlc = Mlc::new(layer("layer", *l)?, *tau).map_err(loss_err)?.named(&o.name);
                if *head_dim > 0 {
                    let head =
                        ProjectionHead::new(&(heads / o.name.as_str()), shape.hidden_size as i64, *head_dim as i64)
                            .map_err(|e| loss_err(e.into_loss_error(&o.name)))?;
                    mlc = mlc.with_head(head);
                }
                Box::new(mlc)
            }
            ObjectiveKind::Cosine { layer: l } => Box::new(PairwiseCosine::new(layer("layer", *l)?).named(&o.name)),
        };
        stack.push(o.weight, term).map_err(loss_err)?;
    }
    Ok(stack)
}
