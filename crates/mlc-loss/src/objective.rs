//! MLC and the pairwise-cosine ablation as [`PreferenceObjective`] terms, to stack with a
//! base objective (`DPO + lambda * MLC`).

use crate::diagnostics::collinearity_from_spectrum;
use crate::groups::Groups;
use crate::loss::{check_tau, mlc_per_group, pairwise_cosine_sums};
use crate::{MlcError, ProjectionHead};
use align_losses::{objective_term, BatchView, Layer, Metrics, Need, PreferenceObjective, Result, TermOutput};
use tch::{Kind, Tensor};

objective_term! {
    /// The MLC consistency term (config `kind = "mlc"`): [`mlc_loss`](crate::mlc_loss) of the
    /// last-prompt-token states of every language variant at one `layer`, optionally through a
    /// trainable [`ProjectionHead`].
    ///
    /// Stack it with a base objective: the stack's weight of this term is the paper's `lambda`
    /// in `L = L_align + lambda * L_mlc` (methods.md §1 step 6; the paper saw utility drop for
    /// `lambda >= 0.8`). Two MLC terms in one stack (e.g. at two layers) need distinct names
    /// ([`Mlc::named`]).
    ///
    /// Metrics (with `<name>` = `mlc` unless renamed): `<name>/collinearity` (mean collinearity
    /// ratio over the counted groups), `<name>/pairwise_cosine` (mean pairwise cosine over the
    /// counted groups), `<name>/groups` (groups with >= 2 variants), `<name>/groups_skipped`
    /// (groups with fewer). The first two are NaN when no group counts. They are computed on the
    /// head's output, i.e. on what the loss sees.
    #[derive(Debug)]
    pub struct Mlc as "mlc" {
        layer: Layer,
        tau: f64,
        head: Option<ProjectionHead>,
    }
}

impl Mlc {
    /// MLC on the states at `layer` with temperature `tau` (finite, `> 0`; 1.0 is a good
    /// start), no head.
    pub fn new(layer: Layer, tau: f64) -> Result<Self> {
        check_tau(tau)?;
        Ok(Self { name: Self::KIND.into(), layer, tau, head: None })
    }

    /// Applies `head` to the states before the loss (config `head_dim > 0`).
    pub fn with_head(mut self, head: ProjectionHead) -> Self {
        self.head = Some(head);
        self
    }

    /// The layer whose states the term reads.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// The softmax temperature.
    pub fn tau(&self) -> f64 {
        self.tau
    }

    /// The projection head, if any.
    pub fn head(&self) -> Option<&ProjectionHead> {
        self.head.as_ref()
    }

    fn evaluate(&self, batch: &BatchView, states: &Tensor, mask: Option<&Tensor>) -> crate::Result<TermOutput> {
        let projected = match &self.head {
            Some(head) => head.forward(states)?, // [G, K, d]
            None => states.shallow_clone(),      // [G, K, D]
        };
        let groups = Groups::new(&projected, mask)?;
        let s = groups.singular_values()?; // [G, K]
        let loss = mean_over_counted(batch, &groups, &mlc_per_group(&groups, &s, self.tau)?)?;
        let _guard = tch::no_grad_guard();
        let collinearity = collinearity_from_spectrum(&groups, &s)?; // [G], NaN where skipped
        let cosine = pairwise_cosine_sums(&groups)?; // [G]
        let metrics = consistency_metrics(batch, &self.name, &groups, &collinearity, &cosine)?;
        Ok(TermOutput { loss, metrics })
    }
}

impl PreferenceObjective for Mlc {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PromptVariantStates { layer: self.layer }]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let variants = batch.require_prompt_variants(&self.name, self.layer)?;
        self.evaluate(batch, &variants.states, variants.mask.as_ref()).map_err(|e| e.into_loss_error(&self.name))
    }

    fn trainable_variables(&self) -> Vec<Tensor> {
        self.head.as_ref().map(ProjectionHead::variables).unwrap_or_default()
    }
}

objective_term! {
    /// The pairwise-cosine ablation term (config `kind = "cosine"`):
    /// [`pairwise_cosine_loss`](crate::pairwise_cosine_loss) of the variant states at `layer`.
    /// Same metrics as [`Mlc`], under its own name (default `cosine`).
    #[derive(Debug, Clone)]
    pub struct PairwiseCosine as "cosine" {
        layer: Layer,
    }
}

impl PairwiseCosine {
    /// The ablation on the states at `layer`.
    pub fn new(layer: Layer) -> Self {
        Self { name: Self::KIND.into(), layer }
    }

    /// The layer whose states the term reads.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    fn evaluate(&self, batch: &BatchView, states: &Tensor, mask: Option<&Tensor>) -> crate::Result<TermOutput> {
        let groups = Groups::new(states, mask)?;
        let cosine = pairwise_cosine_sums(&groups)?; // [G]
        let loss = mean_over_counted(batch, &groups, &cosine.f_neg()?.f_add_scalar(1.0)?)?;
        let _guard = tch::no_grad_guard();
        let collinearity = collinearity_from_spectrum(&groups, &groups.singular_values()?)?;
        let metrics = consistency_metrics(batch, &self.name, &groups, &collinearity, &cosine)?;
        Ok(TermOutput { loss, metrics })
    }
}

impl PreferenceObjective for PairwiseCosine {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        vec![Need::PromptVariantStates { layer: self.layer }]
    }

    fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
        let variants = batch.require_prompt_variants(&self.name, self.layer)?;
        self.evaluate(batch, &variants.states, variants.mask.as_ref()).map_err(|e| e.into_loss_error(&self.name))
    }
}

/// The mean of `[G]` per-group values over the counted groups of the batch
/// ([`Groups::mean_over_counted`]); with [`BatchView::ranks`], this rank's share of the mean
/// over the counted groups of every rank.
fn mean_over_counted(batch: &BatchView, groups: &Groups, per_group: &Tensor) -> Result<Tensor, MlcError> {
    if batch.ranks.is_none() {
        return groups.mean_over_counted(per_group);
    }
    let counted = groups.counted()?.f_to_kind(per_group.kind())?; // [G]
    let n = batch.global_sums(&counted.f_sum(Kind::Double)?.f_reshape([1])?)?[0].max(1.0);
    Ok(per_group.f_mul(&counted)?.f_sum(per_group.kind())?.f_div_scalar(n)?)
}

/// `<name>/collinearity`, `<name>/pairwise_cosine`, `<name>/groups`, `<name>/groups_skipped`
/// from `[G]` per-group collinearity (NaN where skipped) and pairwise cosine: over the counted
/// groups of the global batch when it is split across ranks.
fn consistency_metrics(
    batch: &BatchView,
    name: &str,
    groups: &Groups,
    collinearity: &Tensor,
    cosine: &Tensor,
) -> Result<Metrics, MlcError> {
    let counted = groups.counted()?; // [G] bool
    let picked_sum = |values: &Tensor| -> Result<Tensor, MlcError> {
        Ok(values.f_masked_select(&counted)?.f_sum(Kind::Double)?.f_reshape([1])?)
    };
    let n = groups.n_counted()? as f64;
    let skipped = groups.len() as f64 - n;
    let local = Tensor::f_cat(
        &[
            picked_sum(collinearity)?,
            picked_sum(cosine)?,
            Tensor::from_slice(&[n, skipped]).f_to_device(cosine.device())?,
        ],
        0,
    )?;
    let sums = batch.global_sums(&local)?; // the four local values, summed over ranks
    let (collinearity_sum, cosine_sum, n, skipped) = (sums[0], sums[1], sums[2], sums[3]);
    let mean = |sum: f64| if n == 0.0 { f64::NAN } else { sum / n };
    let mut metrics = Metrics::new();
    metrics.push(format!("{name}/collinearity"), mean(collinearity_sum));
    metrics.push(format!("{name}/pairwise_cosine"), mean(cosine_sum));
    metrics.push(format!("{name}/groups"), n);
    metrics.push(format!("{name}/groups_skipped"), skipped);
    Ok(metrics)
}
