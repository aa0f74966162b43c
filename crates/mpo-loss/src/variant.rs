//! The paper's ablations of the gap-matching loss (MPO §5.1, Table 4, Appendix H.3).

use crate::{Mpo, MpoError, Result};
use align_losses::check::{check_parameter_where, invalid_parameter};

/// What `L1` matches the policy's target-language gap `beta * RG^t` against, and how the gaps
/// are computed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Variant {
    /// MPO as published (eq. 5-7): `RG^d` of each record's dominant-language pair, computed by
    /// the frozen reference (length-normalised, detached). Config `variant = "paper"`.
    #[default]
    Paper,
    /// A fixed target instead of `RG^d` (Figure 2, Table 13: `c` from 0.1 to 20; 1.58 was the
    /// training set's mean dominant gap): `L1 = mean (beta RG^t - c)^2`. Config
    /// `variant = "constant_target"` with `target_gap = c`.
    ConstantTarget(f64),
    /// "MPO - Policy" (Table 15, eq. 28): `RG^d` computed by the policy on the dominant pair,
    /// so the gradient flows through both gaps. Config `variant = "policy_dominant"`.
    PolicyDominant,
    /// "w/o LN" (Table 4): both gaps are plain differences of summed log-probs, without
    /// dividing by the completion lengths. Config `variant = "no_length_norm"`.
    NoLengthNorm,
}

impl Variant {
    /// The variant named by the config keys `variant` and `target_gap` (the latter required by
    /// `"constant_target"` and rejected by every other variant).
    pub fn from_config(variant: &str, target_gap: Option<f64>) -> Result<Self> {
        let parsed = match variant {
            "paper" => Variant::Paper,
            "policy_dominant" => Variant::PolicyDominant,
            "no_length_norm" => Variant::NoLengthNorm,
            "constant_target" => {
                let why = "variant \"constant_target\" needs `target_gap`, the constant that replaces RG^d";
                let c = target_gap.ok_or_else(|| invalid_parameter(Mpo::KIND, "target_gap", f64::NAN, why))?;
                Variant::ConstantTarget(c)
            }
            _ => {
                return Err(MpoError::UnknownOption {
                    key: "variant".into(),
                    value: variant.into(),
                    allowed: "\"paper\", \"constant_target\", \"policy_dominant\" or \"no_length_norm\"".into(),
                })
            }
        };
        if let (Some(value), false) = (target_gap, matches!(parsed, Variant::ConstantTarget(_))) {
            let why = format!("only variant \"constant_target\" reads it, not {variant:?}");
            return Err(invalid_parameter(Mpo::KIND, "target_gap", value, &why).into());
        }
        parsed.validate()?;
        Ok(parsed)
    }

    /// The value of the config key `variant` that selects this variant.
    pub fn config_name(&self) -> &'static str {
        match self {
            Variant::Paper => "paper",
            Variant::ConstantTarget(_) => "constant_target",
            Variant::PolicyDominant => "policy_dominant",
            Variant::NoLengthNorm => "no_length_norm",
        }
    }

    /// Whether the gaps are length-normalised (eq. 4); false only for
    /// [`Variant::NoLengthNorm`].
    pub fn length_normalised(&self) -> bool {
        !matches!(self, Variant::NoLengthNorm)
    }

    /// Whether `RG^d` is read from the reference's dominant-pair log-probs
    /// ([`align_losses::BatchView::reference`]).
    pub fn reads_reference(&self) -> bool {
        matches!(self, Variant::Paper | Variant::NoLengthNorm)
    }

    /// Whether `RG^d` is read from the policy's dominant-pair log-probs
    /// ([`align_losses::BatchView::policy`]).
    pub fn reads_policy(&self) -> bool {
        matches!(self, Variant::PolicyDominant)
    }

    /// Fails when a constant target is not finite.
    pub fn validate(&self) -> Result<()> {
        if let Variant::ConstantTarget(c) = self {
            check_parameter_where(Mpo::KIND, "target_gap", *c, "must be finite", f64::is_finite)?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Variant::ConstantTarget(c) => write!(f, "constant_target({c})"),
            other => f.write_str(other.config_name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use align_losses::LossError;

    #[test]
    fn config_names_round_trip() {
        for v in [Variant::Paper, Variant::ConstantTarget(1.58), Variant::PolicyDominant, Variant::NoLengthNorm] {
            let target_gap = match v {
                Variant::ConstantTarget(c) => Some(c),
                _ => None,
            };
            assert_eq!(Variant::from_config(v.config_name(), target_gap).unwrap(), v);
        }
        assert_eq!(Variant::default(), Variant::Paper);
        assert_eq!(Variant::ConstantTarget(2.0).to_string(), "constant_target(2)");
    }

    #[test]
    fn bad_config_is_an_error() {
        assert!(matches!(
            Variant::from_config("constant", None),
            Err(MpoError::UnknownOption { ref key, .. }) if key == "variant"
        ));
        let missing = Variant::from_config("constant_target", None);
        assert!(matches!(
            missing,
            Err(MpoError::Input(LossError::InvalidParameter { ref parameter, .. })) if parameter == "target_gap"
        ));
        assert!(matches!(
            Variant::from_config("paper", Some(1.0)),
            Err(MpoError::Input(LossError::InvalidParameter { .. }))
        ));
        assert!(matches!(
            Variant::from_config("constant_target", Some(f64::INFINITY)),
            Err(MpoError::Input(LossError::InvalidParameter { .. }))
        ));
    }

    #[test]
    fn what_each_variant_reads() {
        assert!(Variant::Paper.reads_reference() && !Variant::Paper.reads_policy());
        assert!(Variant::NoLengthNorm.reads_reference() && !Variant::NoLengthNorm.length_normalised());
        assert!(Variant::PolicyDominant.reads_policy() && !Variant::PolicyDominant.reads_reference());
        let constant = Variant::ConstantTarget(1.0);
        assert!(!constant.reads_policy() && !constant.reads_reference() && constant.length_normalised());
    }
}
