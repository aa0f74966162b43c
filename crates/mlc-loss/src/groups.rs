//! Checked, normalised variant groups and their spectra: what every function of this crate
//! starts from.
//!
//! A batch of `G` groups of at most `K` language variants is a `[G, K, D]` tensor plus an
//! optional `[G, K]` bool mask of the variants that exist. Masked-out rows are replaced by
//! zeros *before* anything else (so whatever they hold, NaN included, cannot leak into the
//! result or its gradient), and every present row is scaled to unit length.

use crate::Result;
use align_losses::check::{check_device, check_float, check_kind, check_shape, check_shape_where};
use tch::{Kind, Tensor};

/// Vectors whose Euclidean norm is below this are divided by it instead of by their norm:
/// an exact zero vector stays zero (a zero column of `Z`, which adds a zero singular value)
/// and its gradient stays finite. Hidden states of real models are many orders of magnitude
/// longer.
pub const NORM_EPS: f64 = 1e-8;

/// Groups with fewer present variants than this contribute nothing to the losses (a single
/// vector is trivially collinear with itself) and are counted as skipped.
pub const MIN_VARIANTS: i64 = 2;

/// `G` groups of unit vectors.
#[derive(Debug)]
pub(crate) struct Groups {
    /// `[G, K, D]` in loss precision (f32, or f64 for f64 input): unit rows for present
    /// variants, zero rows for masked-out ones.
    pub z: Tensor,
    /// `[G]` int64: number of present variants `k_g` of each group.
    pub counts: Tensor,
}

impl Groups {
    /// Checks `states` (`[G, K, D]`, floating, `K, D >= 1`) and `mask` (`[G, K]` bool on the
    /// same device), zeroes masked-out rows and normalises the rest (methods.md §1 step 3).
    pub fn new(states: &Tensor, mask: Option<&Tensor>) -> Result<Self> {
        let words = "[G, K, D] (groups, language variants, hidden size; K, D >= 1)";
        check_shape_where(states, "states", words, |s| s.len() == 3 && s[1] >= 1 && s[2] >= 1)?;
        check_float(states, "states")?;
        let (g, k) = (states.size()[0], states.size()[1]);
        let precision = if states.kind() == Kind::Double { Kind::Double } else { Kind::Float };
        let x = states.f_to_kind(precision)?; // [G, K, D]
        let device = states.device();
        let present = match mask {
            None => Tensor::f_ones([g, k], (Kind::Bool, device))?,
            Some(mask) => {
                let words = format!("[G, K] = [{g}, {k}] (one flag per variant of `states`)");
                check_shape(mask, "mask", &[Some(g), Some(k)], &words)?;
                check_kind(mask, "mask", Kind::Bool)?;
                check_device(mask, "mask (must be on the device of `states`)", device)?;
                mask.shallow_clone()
            }
        }; // [G, K]
        let zero = Tensor::f_scalar_tensor(0.0, (precision, device))?;
        let x = x.f_where_self(&present.f_unsqueeze(-1)?, &zero)?; // [G, K, D]
        let norm = x.f_norm_scalaropt_dim(2, [-1], true)?.f_clamp_min(NORM_EPS)?; // [G, K, 1]
        let z = x.f_div(&norm)?;
        let counts = present.f_sum_dim_intlist(&[1i64][..], false, Kind::Int64)?; // [G]
        Ok(Self { z, counts })
    }

    /// Number of groups `G`.
    pub fn len(&self) -> i64 {
        self.z.size()[0]
    }

    /// `[G]` bool: groups with at least [`MIN_VARIANTS`] present variants.
    pub fn counted(&self) -> Result<Tensor> {
        Ok(self.counts.f_ge(MIN_VARIANTS)?)
    }

    /// Number of counted groups.
    pub fn n_counted(&self) -> Result<i64> {
        Ok(self.counted()?.f_sum(Kind::Int64)?.f_int64_value(&[])?)
    }

    /// `[G, K]`: singular values of each group's `D x K` matrix `Z_g` (descending), padded
    /// with zeros when `D < K`. Because masked-out columns are zero, the first `k_g` entries
    /// are exactly the singular values of the present columns (plus zeros when `k_g > D`)
    /// and the rest are zero.
    ///
    /// Computed by an SVD (`Tensor::svd`), whose backward through the singular values alone
    /// is `U diag(dL/ds) V^T`: finite for repeated and zero singular values. Never from
    /// `sqrt(eig(Z^T Z))`, whose gradient is infinite at zero.
    pub fn singular_values(&self) -> Result<Tensor> {
        let size = self.z.size();
        let (g, k, d) = (size[0], size[1], size[2]);
        // The SVD of the tall `D x K` matrices (the transposed view is already column-major,
        // as LAPACK wants it) is about 5x faster than that of the wide `K x D` ones.
        let (_, s, _) = self.z.f_transpose(1, 2)?.f_svd(true, true)?; // [G, min(K, D)]
        if d >= k {
            Ok(s)
        } else {
            let pad = Tensor::f_zeros([g, k - d], (s.kind(), s.device()))?;
            Ok(Tensor::f_cat(&[s, pad], 1)?) // [G, K]
        }
    }

    /// `[G, K]` bool: the positions `j < max(k_g, 1)` of the spectrum that belong to the
    /// present variants (position 0 is always kept so every row has a finite log-sum-exp).
    pub fn spectrum_positions(&self) -> Result<Tensor> {
        let k = self.z.size()[1];
        let j = Tensor::f_arange(k, (Kind::Int64, self.z.device()))?.f_unsqueeze(0)?; // [1, K]
        Ok(j.f_lt_tensor(&self.counts.f_clamp_min(1)?.f_unsqueeze(1)?)?) // [G, K]
    }

    /// Mean of the `[G]` per-group values `per_group` over the counted groups, as a scalar
    /// connected to the graph; zero (still connected) when no group is counted. Values of
    /// groups that are not counted must be finite (they are multiplied by zero).
    pub fn mean_over_counted(&self, per_group: &Tensor) -> Result<Tensor> {
        let counted = self.counted()?.f_to_kind(per_group.kind())?; // [G]
        let n = counted.f_sum(per_group.kind())?.f_clamp_min(1.0)?;
        Ok(per_group.f_mul(&counted)?.f_sum(per_group.kind())?.f_div(&n)?)
    }

    /// `[G]`: `values` where the group is counted, NaN elsewhere (diagnostics).
    pub fn nan_unless_counted(&self, values: &Tensor) -> Result<Tensor> {
        let nan = Tensor::f_scalar_tensor(f64::NAN, (values.kind(), values.device()))?;
        Ok(values.f_where_self(&self.counted()?, &nan)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MlcError;
    use align_losses::LossError;
    use tch::Device;

    fn states(shape: &[i64], kind: Kind) -> Tensor {
        Tensor::ones(shape, (kind, Device::Cpu))
    }

    #[test]
    fn rejects_wrong_rank_and_empty_dimensions() {
        for shape in [&[3, 4][..], &[2, 3, 4, 5], &[2, 0, 4], &[2, 3, 0]] {
            let err = Groups::new(&states(shape, Kind::Float), None).unwrap_err();
            assert!(
                matches!(err, MlcError::Input(LossError::Shape { ref what, .. }) if what == "states"),
                "{shape:?}: {err}"
            );
        }
    }

    #[test]
    fn rejects_integer_states() {
        let err = Groups::new(&states(&[2, 3, 4], Kind::Int64), None).unwrap_err();
        assert!(matches!(err, MlcError::Input(LossError::Kind { .. })), "{err}");
    }

    #[test]
    fn rejects_masks_of_the_wrong_shape_or_kind() {
        let x = states(&[2, 3, 4], Kind::Float);
        for shape in [&[3, 2][..], &[2, 3, 1], &[2]] {
            let mask = Tensor::ones(shape, (Kind::Bool, Device::Cpu));
            let err = Groups::new(&x, Some(&mask)).unwrap_err();
            assert!(
                matches!(err, MlcError::Input(LossError::Shape { ref what, .. }) if what == "mask"),
                "{shape:?}: {err}"
            );
        }
        let mask = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        assert!(matches!(Groups::new(&x, Some(&mask)).unwrap_err(), MlcError::Input(LossError::Kind { .. })));
    }

    #[test]
    fn keeps_f64_and_lifts_half_types_to_f32() {
        for (kind, expected) in [
            (Kind::Double, Kind::Double),
            (Kind::Float, Kind::Float),
            (Kind::BFloat16, Kind::Float),
            (Kind::Half, Kind::Float),
        ] {
            assert_eq!(Groups::new(&states(&[1, 2, 3], kind), None).unwrap().z.kind(), expected);
        }
    }

    #[test]
    fn rows_are_unit_or_zero_and_counts_follow_the_mask() {
        let x = Tensor::from_slice(&[3.0f64, 4.0, 0.0, 0.0, 1.0, 1.0]).reshape([1, 3, 2]);
        let mask = Tensor::from_slice(&[true, true, false]).reshape([1, 3]);
        let groups = Groups::new(&x, Some(&mask)).unwrap();
        let z = Vec::<f64>::try_from(&groups.z.flatten(0, -1)).unwrap();
        assert_eq!(z, vec![0.6, 0.8, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(groups.counts.int64_value(&[0]), 2);
    }
}
