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

    fn evaluate(&self, states: &Tensor, mask: Option<&Tensor>) -> crate::Result<TermOutput> {
        let projected = match &self.head {
            Some(head) => head.forward(states)?, // [G, K, d]
            None => states.shallow_clone(),      // [G, K, D]
        };
        let groups = Groups::new(&projected, mask)?;
        let s = groups.singular_values()?; // [G, K]
        let loss = groups.mean_over_counted(&mlc_per_group(&groups, &s, self.tau)?)?;
        let _guard = tch::no_grad_guard();
        let collinearity = collinearity_from_spectrum(&groups, &s)?; // [G], NaN where skipped
        let cosine = pairwise_cosine_sums(&groups)?; // [G]
        let metrics = consistency_metrics(&self.name, &groups, &collinearity, &cosine)?;
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
        self.evaluate(&variants.states, variants.mask.as_ref()).map_err(|e| e.into_loss_error(&self.name))
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

    fn evaluate(&self, states: &Tensor, mask: Option<&Tensor>) -> crate::Result<TermOutput> {
        let groups = Groups::new(states, mask)?;
        let cosine = pairwise_cosine_sums(&groups)?; // [G]
        let loss = groups.mean_over_counted(&cosine.f_neg()?.f_add_scalar(1.0)?)?;
        let _guard = tch::no_grad_guard();
        let collinearity = collinearity_from_spectrum(&groups, &groups.singular_values()?)?;
        let metrics = consistency_metrics(&self.name, &groups, &collinearity, &cosine)?;
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
        self.evaluate(&variants.states, variants.mask.as_ref()).map_err(|e| e.into_loss_error(&self.name))
    }
}

/// `<name>/collinearity`, `<name>/pairwise_cosine`, `<name>/groups`, `<name>/groups_skipped`
/// from `[G]` per-group collinearity (NaN where skipped) and pairwise cosine.
fn consistency_metrics(
    name: &str,
    groups: &Groups,
    collinearity: &Tensor,
    cosine: &Tensor,
) -> Result<Metrics, MlcError> {
    let counted = groups.counted()?; // [G] bool
    let n = groups.n_counted()?;
    let mean = |values: &Tensor| -> Result<f64, MlcError> {
        if n == 0 {
            return Ok(f64::NAN);
        }
        let picked = values.f_masked_select(&counted)?;
        Ok(picked.f_mean(Kind::Double)?.f_double_value(&[])?)
    };
    let mut metrics = Metrics::new();
    metrics.push(format!("{name}/collinearity"), mean(collinearity)?);
    metrics.push(format!("{name}/pairwise_cosine"), mean(cosine)?);
    metrics.push(format!("{name}/groups"), n as f64);
    metrics.push(format!("{name}/groups_skipped"), (groups.len() - n) as f64);
    Ok(metrics)
}
