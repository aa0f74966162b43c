//! Per-group consistency diagnostics (methods.md §1, "Diagnostics"): how collinear the
//! language variants of each group are.

use crate::groups::Groups;
use crate::loss::pairwise_cosine_sums;
use crate::Result;
use tch::Tensor;

/// `[G]`: the collinearity ratio `s_1^2 / sum_i s_i^2` of each group's unit-normalised
/// present variants (methods.md §1 step 4). With `k` unit columns `sum_i s_i^2 = k`, so the
/// ratio lies in `[1/k, 1]`: `1/k` for mutually orthogonal variants, `1` when all are parallel
/// or antiparallel (the distance to the best rank-1 approximation, `sum_{i>=2} s_i^2`, is 0).
///
/// NaN for groups with fewer than 2 present variants (nothing to compare), and for a group
/// whose present vectors are all zero. `states` and `mask` as in [`mlc_loss`](crate::mlc_loss).
///
/// ```
/// use tch::{Kind, Tensor};
/// let states = Tensor::from_slice(&[1f32, 0., 0., 1.]).reshape([1, 2, 2]); // orthogonal
/// let ratio = mlc_loss::collinearity_ratio(&states, None)?;
/// assert!((ratio.double_value(&[0]) - 0.5).abs() < 1e-6);
/// # Ok::<(), mlc_loss::MlcError>(())
/// ```
pub fn collinearity_ratio(states: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let groups = Groups::new(states, mask)?;
    let s = groups.singular_values()?; // [G, K]
    collinearity_from_spectrum(&groups, &s)
}

/// `[G]`: `s_1^2 / sum_i s_i^2` from the padded spectrum `s` (`[G, K]`), NaN where not counted.
pub(crate) fn collinearity_from_spectrum(groups: &Groups, s: &Tensor) -> Result<Tensor> {
    let squares = s.f_square()?; // [G, K]
    let top = squares.f_select(1, 0)?; // [G]
    let total = squares.f_sum_dim_intlist(&[1i64][..], false, squares.kind())?; // [G]
    groups.nan_unless_counted(&top.f_div(&total)?)
}

/// `[G]`: the mean cosine similarity `z_i . z_j` over the pairs `i < j` of each group's present
/// variants, in `[-1, 1]`. NaN for groups with fewer than 2 present variants. `states` and
/// `mask` as in [`mlc_loss`](crate::mlc_loss).
///
/// ```
/// use tch::{Kind, Tensor};
/// let states = Tensor::from_slice(&[1f32, 0., -2., 0.]).reshape([1, 2, 2]); // opposite
/// let cosine = mlc_loss::mean_pairwise_cosine(&states, None)?;
/// assert!((cosine.double_value(&[0]) + 1.0).abs() < 1e-6);
/// # Ok::<(), mlc_loss::MlcError>(())
/// ```
pub fn mean_pairwise_cosine(states: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let groups = Groups::new(states, mask)?;
    groups.nan_unless_counted(&pairwise_cosine_sums(&groups)?)
}
