//! The MPO objective term, eq. (9): `L = L1 + retain_weight * L2`.

use crate::retain::{retain_items, RetainForm};
use crate::reward_gap::{gap_squared_residuals, reward_gap};
use crate::{MpoError, Result, Variant};
use align_losses::check::{check_device, check_kind, check_parameter, check_shape};
use align_losses::{
    missing, objective_term, BatchView, Layer, Metrics, Need, PairLogps, PreferenceObjective, TargetPairs, TermOutput,
};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// The settings of an [`Mpo`] term: the config keys of an `[[objective]]` table with
/// `kind = "mpo"` (docs/mpo.md). The defaults are the paper's method.
///
/// ```
/// use align_losses::{Layer, Need, PreferenceObjective};
/// use mpo_loss::{Mpo, MpoConfig, RetainForm, Variant};
///
/// // From the config values `retain = "mean_pool"`, `variant = "constant_target"`, `target_gap = 1.58`.
/// let mpo = Mpo::new(MpoConfig {
///     beta: 1.5,
///     retain: "mean_pool".parse::<RetainForm>()?,
///     retain_layer: Layer::Index(20),
///     retain_weight: 1.0,
///     variant: Variant::from_config("constant_target", Some(1.58))?,
/// })?;
/// assert_eq!(mpo.needs(), vec![Need::TargetPairLogps, Need::DominantStates { layer: Layer::Index(20) }]);
/// # Ok::<(), mpo_loss::MpoError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MpoConfig {
    /// `beta` (1.0): multiplies the policy's target gap in eq. (5); the paper's best values are
    /// 1.0 and 1.5. Must be finite and > 0.
    pub beta: f64,
    /// `retain` (`"last_token"`): which form of the retain term eq. (8) to use.
    pub retain: RetainForm,
    /// `retain_layer` (`"last"`): the layer whose hidden states the retain term compares.
    pub retain_layer: Layer,
    /// `retain_weight` (1.0): multiplies `L2` in eq. (9). 0 drops the retain term, and with it
    /// the need for hidden states. Must be finite and >= 0.
    pub retain_weight: f64,
    /// `variant` (`"paper"`) and `target_gap`: the paper's ablations.
    pub variant: Variant,
}

impl Default for MpoConfig {
    fn default() -> Self {
        Self {
            beta: 1.0,
            retain: RetainForm::LastToken,
            retain_layer: Layer::Last,
            retain_weight: 1.0,
            variant: Variant::Paper,
        }
    }
}

objective_term! {
    /// Multilingual reward-gap optimisation (Zhao et al., ACL 2025), as one objective term:
    ///
    /// `L = mean_i (beta RG^t_i - RG^d_{r(i)})^2 + retain_weight * L2`
    ///
    /// where `i` runs over every (record, target language) pair of the batch
    /// ([`BatchView::targets`]), `r(i)` is the record of pair `i`, `RG^t` the policy's reward gap
    /// on the target-language pair ([`reward_gap`](crate::reward_gap)), `RG^d` the reference's on
    /// the record's dominant-language pair (or what the [`Variant`] puts there), and `L2` the
    /// retain term on the dominant-language states at `retain_layer`
    /// ([`retain_last_token`](crate::retain_last_token) or
    /// [`retain_mean_pool`](crate::retain_mean_pool)).
    ///
    /// Metrics: `<name>/gap_loss` (`L1`), `<name>/retain_loss` (`L2`, unweighted; only when
    /// `retain_weight > 0`), `reward_gap/<lang>` (the batch mean of the policy's `RG^t` over the
    /// pairs of each target language present) and `reward_gap/dominant` (the batch mean of `RG^d`
    /// over the dominant pairs; absent for a constant target). The gaps in the metrics are the ones
    /// the loss uses, so they are sums under [`Variant::NoLengthNorm`].
    #[derive(Debug, Clone)]
    pub struct Mpo as "mpo" {
        config: MpoConfig,
    }
}

impl Mpo {
    /// An MPO term with `config`, checked: `beta` finite and > 0, `retain_weight` finite and
    /// >= 0, a constant target finite.
    pub fn new(config: MpoConfig) -> align_losses::Result<Self> {
        check_parameter(Self::KIND, "beta", config.beta, 0.0, false)?;
        check_parameter(Self::KIND, "retain_weight", config.retain_weight, 0.0, true)?;
        config.variant.validate().map_err(|e| e.into_loss_error(Self::KIND))?;
        Ok(Self { name: Self::KIND.into(), config })
    }

    /// The term's settings.
    pub fn config(&self) -> &MpoConfig {
        &self.config
    }

    /// The whole computation, in this crate's error type.
    fn compute_checked(&self, batch: &BatchView) -> Result<TermOutput> {
        let targets = batch
            .targets
            .as_ref()
            .ok_or_else(|| missing(&self.name, "policy log-probs of the target-language pairs"))?;
        let records = checked_records(targets)?; // P record indices
        let length_normalised = self.config.variant.length_normalised();
        let target_gap = reward_gap(&targets.policy, length_normalised); // [P]
        let (target, dominant_per_record) = self.gap_targets(batch, targets, &records, &target_gap)?; // [P], [B]
        let gap = batch.mean(&gap_squared_residuals(&target_gap, &target, self.config.beta)?)?;
        let mut metrics = Metrics::new();
        metrics.push(format!("{}/gap_loss", self.name), batch.global_value(&gap.detach())?);
        let loss = if self.config.retain_weight > 0.0 {
            let states = batch.require_dominant_states(&self.name, self.config.retain_layer)?;
            check_device(&states.policy, "dominant-language hidden states", target_gap.device())?;
            let retain = batch.mean(&retain_items(self.config.retain, states)?)?;
            metrics.push(format!("{}/retain_loss", self.name), batch.global_value(&retain.detach())?);
            gap + retain * self.config.retain_weight
        } else {
            gap
        };
        push_language_gaps(batch, &mut metrics, &target_gap, &targets.languages)?;
        if let Some(per_record) = &dominant_per_record {
            let _no_grad = tch::no_grad_guard();
            let mean = match &batch.ranks {
                None => per_record.mean(Kind::Double).f_double_value(&[])?,
                Some(_) => batch.global_mean(per_record)?,
            };
            metrics.push("reward_gap/dominant", mean);
        }
        Ok(TermOutput { loss, metrics })
    }

    /// What each target pair's `beta RG^t` is matched against (`[P]`: the `RG^d` of its record,
    /// or the constant target), and `RG^d` of the batch's dominant pairs (`[B]`; `None` for a
    /// constant target). `target_gap` (`[P]`) gives the kind and device of a constant.
    fn gap_targets(
        &self,
        batch: &BatchView,
        targets: &TargetPairs,
        records: &[i64],
        target_gap: &Tensor,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let variant = self.config.variant;
        let (pairs, detach): (&PairLogps, bool) = match variant {
            Variant::ConstantTarget(c) => {
                let constant = Tensor::f_full([records.len() as i64], c, (target_gap.kind(), target_gap.device()))?;
                return Ok((constant, None));
            }
            Variant::PolicyDominant => (batch.require_policy(&self.name)?, false),
            Variant::Paper | Variant::NoLengthNorm => {
                let pairs = batch.reference.as_ref().ok_or_else(|| {
                    missing(&self.name, "reference log-probs of the dominant-language chosen/rejected completions")
                })?;
                (pairs, true)
            }
        };
        check_device(&pairs.chosen.sum, "dominant-pair log-probs", targets.policy.chosen.sum.device())?;
        let b = pairs.len();
        if let Some((pair, &record)) = records.iter().enumerate().find(|(_, &r)| r < 0 || r >= b) {
            return Err(MpoError::RecordOutOfRange { pair, record, records: b });
        }
        let gap = reward_gap(pairs, variant.length_normalised()); // [B]
        let per_record = if detach { gap.detach() } else { gap }; // [B]
        let per_target_pair = per_record.f_index_select(0, &targets.record)?; // [P]
        Ok((per_target_pair, Some(per_record)))
    }
}

impl PreferenceObjective for Mpo {
    objective_term!(fn name);

    fn needs(&self) -> Vec<Need> {
        let mut needs = vec![Need::TargetPairLogps];
        if self.config.variant.reads_reference() {
            needs.push(Need::ReferenceLogps);
        }
        if self.config.variant.reads_policy() {
            needs.push(Need::PolicyLogps);
        }
        if self.config.retain_weight > 0.0 {
            needs.push(Need::DominantStates { layer: self.config.retain_layer });
        }
        needs
    }

    fn compute(&self, batch: &BatchView) -> align_losses::Result<TermOutput> {
        self.compute_checked(batch).map_err(|e| e.into_loss_error(&self.name))
    }
}

/// Checks `targets` (at least one pair, one language tag per pair, `record` a `[P]` int64
/// tensor on the pairs' device) and returns the record indices.
fn checked_records(targets: &TargetPairs) -> Result<Vec<i64>> {
    let p = targets.policy.len();
    if p == 0 {
        return Err(MpoError::NoTargetPairs);
    }
    if targets.languages.len() as i64 != p {
        return Err(MpoError::LanguageCount { languages: targets.languages.len(), pairs: p });
    }
    check_shape(&targets.record, "target pairs' `record`", &[Some(p)], "[P], one per target pair")?;
    check_kind(&targets.record, "target pairs' `record`", Kind::Int64)?;
    check_device(&targets.record, "target pairs' `record`", targets.policy.chosen.sum.device())?;
    Ok(Vec::<i64>::try_from(&targets.record.contiguous())?)
}

/// Pushes `reward_gap/<lang>`: the mean of `target_gap` (`[P]`) over the pairs of each
/// language, in the order of the tags' first appearance. Over a batch split across ranks, the
/// global mean of every target language of [`BatchView::languages`] (in its order) that has a
/// pair on some rank: one collective, whatever languages this rank holds.
fn push_language_gaps(
    batch: &BatchView,
    metrics: &mut Metrics,
    target_gap: &Tensor,
    languages: &[String],
) -> Result<()> {
    let values = Vec::<f64>::try_from(&target_gap.detach().f_to_kind(Kind::Double)?.contiguous())?;
    let mut order: Vec<&str> = Vec::new();
    let mut sums: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for (lang, value) in languages.iter().zip(values) {
        let entry = sums.entry(lang.as_str()).or_insert_with(|| {
            order.push(lang.as_str());
            (0.0, 0)
        });
        entry.0 += value;
        entry.1 += 1;
    }
    if batch.ranks.is_none() {
        for lang in order {
            let (sum, n) = sums[lang];
            metrics.push(format!("reward_gap/{lang}"), sum / n as f64);
        }
        return Ok(());
    }
    let run_languages = batch.languages.get(1..).unwrap_or_default();
    if let Some(stray) = order.iter().find(|l| !run_languages.iter().any(|r| r == *l)) {
        return Err(MpoError::UnknownLanguage { language: stray.to_string(), languages: run_languages.to_vec() });
    }
    let local: Vec<f64> =
        run_languages.iter().flat_map(|l| sums.get(l.as_str()).map_or([0.0, 0.0], |&(s, n)| [s, n as f64])).collect();
    let global = batch.global_sums(&Tensor::from_slice(&local).f_to_device(target_gap.device())?)?;
    for (lang, pair) in run_languages.iter().zip(global.chunks(2)) {
        if pair[1] > 0.0 {
            metrics.push(format!("reward_gap/{lang}"), pair[0] / pair[1]);
        }
    }
    Ok(())
}
