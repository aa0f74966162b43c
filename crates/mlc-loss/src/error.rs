//! The one error type of this crate.

use align_losses::LossError;
use tch::TchError;

/// Everything that can go wrong in this crate's functions.
///
/// Every failure of MLC is one of the shared vocabulary of the objective crates, so
/// [`MlcError::Input`] is its only variant: a tensor of the wrong shape, kind or device
/// (checked with [`align_losses::check`]), a parameter out of range (`tau`, the head's sizes;
/// named after the kind `mlc` here, since a plain function knows no term's name), or libtorch
/// rejecting an input. `mpo-loss`'s `MpoError` has the same variant and the same
/// [`MlcError::into_loss_error`], plus MPO's own failures.
#[derive(Debug, thiserror::Error)]
pub enum MlcError {
    /// A failure in the vocabulary shared with `align-losses` ([`LossError`]): its message
    /// names the input or parameter at fault.
    #[error(transparent)]
    Input(#[from] LossError),
}

impl From<TchError> for MlcError {
    /// A libtorch error, as [`LossError::Torch`].
    fn from(e: TchError) -> Self {
        MlcError::Input(LossError::Torch(e))
    }
}

impl MlcError {
    /// This error as a [`LossError`] of the objective term named `term`, for use inside an
    /// [`ObjectiveStack`](align_losses::ObjectiveStack): the shared-vocabulary error itself,
    /// attributed to `term` ([`LossError::attributed_to`]: a bad parameter or a missing input
    /// names `term`).
    pub fn into_loss_error(self, term: &str) -> LossError {
        match self {
            MlcError::Input(e) => e.attributed_to(term),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = MlcError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind, Tensor};

    #[test]
    fn into_loss_error_attributes_parameters_to_the_term_and_keeps_the_rest() {
        let states = Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu));
        let err = crate::mlc_loss(&states, None, 0.0).unwrap_err();
        assert!(err.to_string().starts_with("objective `mlc`: parameter `tau` = 0 is invalid"), "{err}");
        let err = err.into_loss_error("mlc_l14");
        assert!(matches!(err, LossError::InvalidParameter { ref term, .. } if term == "mlc_l14"), "{err}");

        let vs = nn::VarStore::new(Device::Cpu);
        let err = crate::ProjectionHead::new(&vs.root(), 16, 0).unwrap_err().into_loss_error("mlc_head");
        let LossError::InvalidParameter { ref term, ref parameter, .. } = err else { panic!("{err}") };
        assert_eq!((term.as_str(), parameter.as_str()), ("mlc_head", "output_dim"));

        let err = crate::mlc_loss(&states.select(0, 0), None, 1.0).unwrap_err().into_loss_error("mlc");
        assert!(matches!(err, LossError::Shape { ref what, .. } if what == "states"), "{err}");
    }
}
