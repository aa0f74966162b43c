//! The batch-level view that objective terms read.
//!
//! A trainer fills a [`BatchView`] with what the terms of its objective asked for (see
//! [`Need`](crate::Need)); each term takes what it needs and fails with
//! [`LossError::MissingInput`] when something is absent. All log-prob tensors are float32
//! (use [`sequence_logps`](crate::sequence_logps) to get them from logits of any dtype).

use crate::check::{check_device, check_float, check_shape, loss_precision};
use crate::{LossError, Result};
use std::collections::BTreeMap;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// Sums over the processes of a data-parallel run: what an objective term needs to
/// normalise by the *global* batch instead of its rank's part.
///
/// A trainer that splits each batch across processes puts one in [`BatchView::ranks`]
/// (backed by an all-reduce); without one, a view is the whole batch. Terms reach it only
/// through [`BatchView::mean`], [`BatchView::ratio`], [`BatchView::global_mean`] and
/// [`BatchView::global_sums`], which every rank calls unconditionally and in the same
/// order, so the collectives match.
pub trait RankSum: std::fmt::Debug + Send + Sync {
    /// The element-wise sum of `t` over every rank (the same shape on each), on `t`'s device.
    /// `t` carries no gradient.
    fn all_sum(&self, t: &Tensor) -> Result<Tensor>;
}

/// Summed log-probability of the scored tokens of each of `N` sequences, and how many tokens
/// were scored. `logp(y|x)` in the papers is `sum`; `avg_logp` is `sum / count`.
#[derive(Debug)]
pub struct SequenceLogps {
    /// `[N]` float32 (or float64): summed log-probabilities of the scored (completion) tokens.
    pub sum: Tensor,
    /// `[N]`, same kind as `sum`: number of scored tokens of each sequence (> 0).
    pub count: Tensor,
}

impl SequenceLogps {
    /// Checks that `sum` and `count` are 1-D floating tensors of one length and device, and
    /// brings both to loss precision (half types become float32; f32 and f64 are kept).
    pub fn new(sum: Tensor, count: Tensor) -> Result<Self> {
        check_float(&sum, "sequence log-probs `sum`")?;
        check_shape(&sum, "sequence log-probs `sum`", &[None], "[N]")?;
        let n = sum.size()[0];
        check_shape(&count, "sequence log-probs `count`", &[Some(n)], "[N], N = len(sum)")?;
        check_device(&count, "sequence log-probs `count`", sum.device())?;
        let count = if count.kind() == sum.kind() { count } else { count.to_kind(sum.kind()) };
        Ok(Self { sum: loss_precision(&sum), count: loss_precision(&count) })
    }

    /// Number of sequences `N`.
    pub fn len(&self) -> i64 {
        self.sum.size()[0]
    }

    /// True when there are no sequences.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[N]`: length-normalised log-probability `sum / count` (SimPO's and MPO's `avg_logp`).
    pub fn mean(&self) -> Tensor {
        &self.sum / &self.count
    }

    /// Token-level mean negative log-likelihood over *all* scored tokens of all sequences,
    /// `-sum_n sum_n / sum_n count_n` (a scalar): the `NLL` of SFT, CPO and ORPO, as the
    /// reference Python trainer computes it (not a mean of per-sequence means).
    pub fn token_mean_nll(&self) -> Tensor {
        -(self.sum.sum(self.sum.kind()) / self.count.sum(self.count.kind()))
    }

    /// A shallow copy (the tensors share storage and autograd history).
    pub fn shallow_clone(&self) -> Self {
        Self { sum: self.sum.shallow_clone(), count: self.count.shallow_clone() }
    }
}

/// Log-probabilities of the chosen and rejected completions of `N` preference pairs.
#[derive(Debug)]
pub struct PairLogps {
    /// The preferred completions.
    pub chosen: SequenceLogps,
    /// The dispreferred completions.
    pub rejected: SequenceLogps,
}

impl PairLogps {
    /// Pairs up chosen and rejected log-probs; both must have the same length and device.
    pub fn new(chosen: SequenceLogps, rejected: SequenceLogps) -> Result<Self> {
        let n = chosen.len();
        check_shape(&rejected.sum, "rejected log-probs", &[Some(n)], &format!("[{n}] (as many as chosen)"))?;
        check_device(&rejected.sum, "rejected log-probs", chosen.sum.device())?;
        Ok(Self { chosen, rejected })
    }

    /// Builds pairs from four `[N]` tensors: summed log-probs and token counts.
    pub fn from_tensors(
        chosen_sum: Tensor,
        chosen_count: Tensor,
        rejected_sum: Tensor,
        rejected_count: Tensor,
    ) -> Result<Self> {
        Self::new(SequenceLogps::new(chosen_sum, chosen_count)?, SequenceLogps::new(rejected_sum, rejected_count)?)
    }

    /// Number of pairs `N`.
    pub fn len(&self) -> i64 {
        self.chosen.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A shallow copy (the tensors share storage and autograd history).
    pub fn shallow_clone(&self) -> Self {
        Self { chosen: self.chosen.shallow_clone(), rejected: self.rejected.shallow_clone() }
    }

    /// `[N]` each: the log-ratios `s_c = logp(y_c) - logp_ref(y_c)` and `s_r` likewise of these
    /// (policy) pairs against `reference` (summed log-probs; the DPO family's implicit rewards
    /// divided by beta).
    pub fn log_ratios(&self, reference: &PairLogps) -> (Tensor, Tensor) {
        (&self.chosen.sum - &reference.chosen.sum, &self.rejected.sum - &reference.rejected.sum)
    }
}

/// Which layer's hidden states a term asks for. Ordered so it can key a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// `hidden_states[i]`: 0 = embeddings, `i` = the output of decoder layer `i`.
    Index(usize),
    /// The output of the last decoder layer (before the final norm).
    Last,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Layer::Index(i) => write!(f, "{i}"),
            Layer::Last => write!(f, "last"),
        }
    }
}

/// Hidden states of the last prompt token of every language variant of `G` prompt groups at
/// one layer (what MLC and the pairwise-cosine ablation read).
#[derive(Debug)]
pub struct VariantStates {
    /// `[G, K, D]`: group, language variant, hidden size. Any float dtype.
    pub states: Tensor,
    /// `[G, K]` bool: which variants exist (`None`: all of them).
    pub mask: Option<Tensor>,
}

/// Hidden states of the policy and of the frozen reference on the same dominant-language
/// sequences at one layer (what MPO's retain term reads).
#[derive(Debug)]
pub struct DominantStates {
    /// `[B, T, D]`: policy hidden states.
    pub policy: Tensor,
    /// `[B, T, D]`: reference hidden states (no gradient).
    pub reference: Tensor,
    /// `[B, T]`: 1 for real tokens, 0 for padding (right-padded).
    pub attention_mask: Tensor,
}

/// The policy's log-probs on target-language pairs (MPO), with the record each belongs to.
#[derive(Debug)]
pub struct TargetPairs {
    /// `[P]` pairs: one per (record, target language).
    pub policy: PairLogps,
    /// `[P]` int64: index of each pair's record among the batch's `B` dominant pairs.
    pub record: Tensor,
    /// `P` language tags, one per pair.
    pub languages: Vec<String>,
}

/// Log-probs of mismatched prompt/completion pairs (KTO's KL baseline estimate).
#[derive(Debug)]
pub struct KlLogps {
    /// `[B]` float32: policy summed log-probs of each mismatched completion.
    pub policy: Tensor,
    /// `[B]` float32: reference summed log-probs of the same.
    pub reference: Tensor,
}

/// Everything the objective terms of one batch may read. Fields a run's terms do not need
/// stay `None`/empty.
#[derive(Debug, Default)]
pub struct BatchView {
    /// `[B]` policy log-probs of the dominant-language chosen/rejected completions.
    pub policy: Option<PairLogps>,
    /// `[B]` frozen-reference log-probs of the same completions (no gradient).
    pub reference: Option<PairLogps>,
    /// KTO's mismatched pairs.
    pub kl: Option<KlLogps>,
    /// MPO's target-language pairs.
    pub targets: Option<TargetPairs>,
    /// Last-prompt-token states of the language variants, by the layer that was asked for.
    pub prompt_variants: BTreeMap<Layer, VariantStates>,
    /// Policy and reference states on the dominant-language sequences, by layer.
    pub dominant_states: BTreeMap<Layer, DominantStates>,
    /// The run's languages, dominant first (terms that report per-language metrics over a
    /// split batch need one list that every rank shares; may be empty otherwise).
    pub languages: Vec<String>,
    /// Sums over the ranks of a data-parallel run; `None`: this view is the whole batch.
    ///
    /// With ranks, a term's loss is this rank's *share*: the shares of all ranks sum to the
    /// loss of the whole global batch (so summed gradients are its gradient), and its metrics
    /// are global values, equal on every rank.
    pub ranks: Option<Arc<dyn RankSum>>,
}

impl BatchView {
    /// A view with only policy and reference log-probs of the dominant pairs: enough for every
    /// base objective except KTO (which also needs [`BatchView::kl`]).
    pub fn from_pairs(policy: PairLogps, reference: Option<PairLogps>) -> Self {
        Self { policy: Some(policy), reference, ..Self::default() }
    }

    /// The mean of `values` (any shape, loss precision) over the whole global batch: with
    /// [`BatchView::ranks`], this rank's share `sum(values) / N` where `N` counts the elements
    /// of every rank (gradients flow through the local sum); without, `mean(values)`.
    pub fn mean(&self, values: &Tensor) -> Result<Tensor> {
        match &self.ranks {
            None => Ok(values.f_mean(values.kind())?),
            Some(ranks) => {
                let n = Tensor::from(values.numel() as f64).f_to_kind(values.kind())?.f_to_device(values.device())?;
                Ok(values.f_sum(values.kind())?.f_div(&ranks.all_sum(&n)?)?)
            }
        }
    }

    /// `numerator / denominator` of two local sums (scalars), normalised by the global
    /// batch: with ranks, this rank's share `numerator / sum_ranks(denominator)`; without,
    /// the plain quotient. E.g. a token-level mean: the summed NLL over the summed count.
    pub fn ratio(&self, numerator: &Tensor, denominator: &Tensor) -> Result<Tensor> {
        match &self.ranks {
            None => Ok(numerator.f_div(denominator)?),
            Some(ranks) => Ok(numerator.f_div(&ranks.all_sum(&denominator.detach())?)?),
        }
    }

    /// The token-level mean negative log-likelihood of `seqs` over the global batch
    /// ([`SequenceLogps::token_mean_nll`] of the whole batch; this rank's share with ranks).
    pub fn token_mean_nll(&self, seqs: &SequenceLogps) -> Result<Tensor> {
        match &self.ranks {
            None => Ok(seqs.token_mean_nll()),
            Some(_) => {
                let nll = seqs.sum.f_sum(seqs.sum.kind())?.f_neg()?;
                self.ratio(&nll, &seqs.count.f_sum(seqs.count.kind())?)
            }
        }
    }

    /// Global means of `rows` (each a tensor of per-item values, any length, possibly
    /// different per row), without gradient, equal on every rank: one collective for all.
    /// A row with no element anywhere gives NaN, as the mean of nothing.
    pub fn global_means(&self, rows: &[&Tensor]) -> Result<Vec<f64>> {
        let _no_grad = tch::no_grad_guard();
        let mut parts = Vec::with_capacity(rows.len() * 2);
        for row in rows {
            let row = row.f_to_kind(Kind::Double)?;
            parts.push(row.f_sum(Kind::Double)?);
            parts.push(Tensor::from(row.numel() as f64).f_to_device(row.device())?);
        }
        let sums = self.global_sums(&Tensor::f_stack(&parts, 0)?)?;
        Ok(sums.chunks(2).map(|p| p[0] / p[1]).collect())
    }

    /// The value of a loss (a scalar) over the whole global batch: with ranks, the sum of every
    /// rank's share ([`BatchView::mean`], [`BatchView::ratio`]); without, its value.
    pub fn global_value(&self, share: &Tensor) -> Result<f64> {
        match &self.ranks {
            None => Ok(share.f_double_value(&[])?),
            Some(_) => Ok(self.global_sums(&share.f_reshape([1])?)?[0]),
        }
    }

    /// The global mean of `values` (see [`BatchView::global_means`]).
    pub fn global_mean(&self, values: &Tensor) -> Result<f64> {
        Ok(self.global_means(&[values])?[0])
    }

    /// `t` (a 1-D tensor of local sums) summed over every rank, as `f64`s, without gradient.
    pub fn global_sums(&self, t: &Tensor) -> Result<Vec<f64>> {
        let t = t.detach().f_to_kind(Kind::Double)?;
        let t = match &self.ranks {
            None => t,
            Some(ranks) => ranks.all_sum(&t)?.f_to_kind(Kind::Double)?,
        };
        Ok(Vec::<f64>::try_from(&t.f_to_device(tch::Device::Cpu)?.f_contiguous()?.f_view([-1])?)?)
    }

    /// The policy pairs, or [`LossError::MissingInput`] naming `term`.
    pub fn require_policy(&self, term: &str) -> Result<&PairLogps> {
        self.policy.as_ref().ok_or_else(|| missing(term, "policy log-probs of the chosen/rejected completions"))
    }

    /// The policy and reference pairs (checked to have equal length), or an error naming `term`.
    pub fn require_policy_and_reference(&self, term: &str) -> Result<(&PairLogps, &PairLogps)> {
        let policy = self.require_policy(term)?;
        let reference = self
            .reference
            .as_ref()
            .ok_or_else(|| missing(term, "reference log-probs of the chosen/rejected completions"))?;
        let n = policy.len();
        let words = format!("[{n}] (as many pairs as the policy's)");
        check_shape(&reference.chosen.sum, "reference log-probs", &[Some(n)], &words)?;
        check_device(&reference.chosen.sum, "reference log-probs", policy.chosen.sum.device())?;
        Ok((policy, reference))
    }

    /// The variant states at `layer`, or an error naming `term`.
    pub fn require_prompt_variants(&self, term: &str, layer: Layer) -> Result<&VariantStates> {
        self.prompt_variants.get(&layer).ok_or_else(|| {
            missing(term, &format!("last-prompt-token states of the language variants at layer {layer}"))
        })
    }

    /// The dominant-sequence states at `layer`, or an error naming `term`.
    pub fn require_dominant_states(&self, term: &str, layer: Layer) -> Result<&DominantStates> {
        self.dominant_states
            .get(&layer)
            .ok_or_else(|| missing(term, &format!("policy and reference hidden states at layer {layer}")))
    }
}

/// A [`LossError::MissingInput`] for `term`.
pub fn missing(term: &str, input: &str) -> LossError {
    LossError::MissingInput { term: term.to_string(), input: input.to_string() }
}
