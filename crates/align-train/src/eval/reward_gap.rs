//! The reward-gap eval (MPO Table 1): for every record and every language with both a chosen
//! and a rejected completion, the model's length-normalised log-probability of each and their
//! difference, `RG = logp(y_w|x)/|y_w| - logp(y_l|x)/|y_l|` (MPO eq. 4).
//!
//! Tokenisation follows the data contract ([`encode_pair`]): the completion tokens and the
//! EOS are scored. The prompt is the record's prompt in that language, or the
//! dominant-language prompt when the record has none in it. Batches are right-padded with
//! the tokenizer's pad id ([`crate::padding`]); log-softmax runs in float32 whatever the
//! model's dtype.

use super::Progress;
use crate::data::Record;
use crate::encode::{encode_pair, Encoded, TextEncoder};
use crate::padding::pad_pairs;
use crate::{Result, TrainError};
use align_losses::{PairLogps, SequenceLogps};
use lm_backend::{CausalLm, HiddenRequest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Options of [`evaluate_reward_gap`].
#[derive(Debug, Clone, PartialEq)]
pub struct RewardGapOptions {
    /// Language tags, dominant first (as in `[data] languages`). Languages of a record not
    /// listed here are not evaluated; an empty list evaluates every language.
    pub languages: Vec<String>,
    /// Preference pairs per forward pass (each pair is two rows), at least 1.
    pub batch_size: usize,
}

impl Default for RewardGapOptions {
    fn default() -> Self {
        RewardGapOptions { languages: vec![], batch_size: 4 }
    }
}

/// One evaluated (record, language) pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordGap {
    /// The record id.
    pub id: String,
    /// The language tag.
    pub lang: String,
    /// Summed log-prob of the chosen completion divided by its token count.
    pub chosen_avg_logp: f64,
    /// Summed log-prob of the rejected completion divided by its token count.
    pub rejected_avg_logp: f64,
    /// `chosen_avg_logp - rejected_avg_logp`.
    pub reward_gap: f64,
}

/// Means over the pairs of one language.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguageGap {
    /// Number of pairs.
    pub n: usize,
    /// Mean reward gap.
    pub reward_gap_mean: f64,
    /// Mean length-normalised log-prob of the chosen completions.
    pub chosen_avg_logp_mean: f64,
    /// Mean length-normalised log-prob of the rejected completions.
    pub rejected_avg_logp_mean: f64,
}

/// The output of `align eval reward-gap` (architecture.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardGapReport {
    /// Means by language tag.
    pub per_language: BTreeMap<String, LanguageGap>,
    /// Every evaluated pair, in record order (languages in option order within a record).
    pub records: Vec<RecordGap>,
}

/// One pair to score.
struct PairItem {
    id: String,
    lang: String,
    chosen: Encoded,
    rejected: Encoded,
}

/// Scores every (record, language) pair of `records` with `model`; see the module docs.
pub fn evaluate_reward_gap<M: CausalLm + ?Sized>(
    model: &M,
    encoder: &dyn TextEncoder,
    records: &[Record],
    options: &RewardGapOptions,
) -> Result<RewardGapReport> {
    evaluate_reward_gap_with_progress(model, encoder, records, options, &mut |_, _| {})
}

/// [`evaluate_reward_gap`], calling `progress(pairs done, pairs in total)` after each batch.
/// Pairs are batched by length (less padding); the report keeps record order.
pub fn evaluate_reward_gap_with_progress<M: CausalLm + ?Sized>(
    model: &M,
    encoder: &dyn TextEncoder,
    records: &[Record],
    options: &RewardGapOptions,
    progress: &mut Progress<'_>,
) -> Result<RewardGapReport> {
    if options.batch_size == 0 {
        return Err(TrainError::input("batch_size", "must be at least 1"));
    }
    let items = encode_items(encoder, records, &options.languages)?;
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].chosen.len().max(items[i].rejected.len()));
    let mut scored: Vec<Option<RecordGap>> = vec![None; items.len()];
    let mut done = 0;
    for chunk in order.chunks(options.batch_size) {
        let batch: Vec<&PairItem> = chunk.iter().map(|&i| &items[i]).collect();
        for (&i, gap) in chunk.iter().zip(score_chunk(model, encoder.pad_id(), &batch)?) {
            scored[i] = Some(gap);
        }
        done += chunk.len();
        progress(done, items.len());
    }
    Ok(summarise(scored.into_iter().flatten().collect()))
}

/// The pairs to score: per record, each listed language with chosen and rejected text.
fn encode_items(encoder: &dyn TextEncoder, records: &[Record], languages: &[String]) -> Result<Vec<PairItem>> {
    let mut items = vec![];
    for record in records {
        let Some(rejected) = &record.rejected else { continue };
        let mut langs: Vec<&String> = record.chosen.keys().filter(|l| rejected.contains_key(*l)).collect();
        if !languages.is_empty() {
            langs.retain(|l| languages.contains(l));
            langs.sort_by_key(|l| languages.iter().position(|x| x == *l));
        }
        for lang in langs {
            let prompt = match record.prompt.get(lang) {
                Some(p) => p,
                None => dominant_prompt(record, languages).ok_or_else(|| TrainError::Encode {
                    id: record.id.clone(),
                    lang: lang.clone(),
                    why: "no prompt in this language and no dominant language given to fall back on".into(),
                })?,
            };
            let encode = |completion| {
                encode_pair(encoder, prompt, completion).map_err(|why| TrainError::Encode {
                    id: record.id.clone(),
                    lang: lang.clone(),
                    why,
                })
            };
            items.push(PairItem {
                id: record.id.clone(),
                lang: lang.clone(),
                chosen: encode(&record.chosen[lang])?,
                rejected: encode(&rejected[lang])?,
            });
        }
    }
    Ok(items)
}

fn dominant_prompt<'a>(record: &'a Record, languages: &[String]) -> Option<&'a crate::data::Text> {
    match languages.first() {
        Some(dominant) => record.prompt.get(dominant),
        None if record.prompt.len() == 1 => record.prompt.values().next(),
        None => None,
    }
}

/// The scores of the pairs of `chunk`, from one right-padded forward pass over
/// `2 * chunk.len()` rows (chosen rows first, then rejected), logits only where a completion
/// token is predicted.
fn score_chunk<M: CausalLm + ?Sized>(model: &M, pad_id: i64, chunk: &[&PairItem]) -> Result<Vec<RecordGap>> {
    let seqs: Vec<(&[i64], &[i64])> = chunk
        .iter()
        .map(|p| &p.chosen)
        .chain(chunk.iter().map(|p| &p.rejected))
        .map(|e| (&e.prompt[..], &e.completion[..]))
        .collect();
    let batch = pad_pairs(&seqs, pad_id, model.device());
    let n = chunk.len() as i64;
    let (logps, _) = tch::no_grad(|| batch.scored_logps(model, &HiddenRequest::none(), "reward-gap forward"))?; // [2N]
    let rows = |start: i64| {
        SequenceLogps::new(logps.sum.narrow(0, start, n), logps.count.narrow(0, start, n))
            .map_err(TrainError::loss("reward gap"))
    };
    let (chosen, rejected) = (rows(0)?, rows(n)?);
    let chosen_avg = to_f64(&chosen.mean())?;
    let rejected_avg = to_f64(&rejected.mean())?;
    let pair = PairLogps::new(chosen, rejected).map_err(TrainError::loss("reward gap"))?;
    let gap = to_f64(&mpo_loss::reward_gap(&pair, true))?; // MPO eq. (4)
    Ok(chunk
        .iter()
        .enumerate()
        .map(|(i, item)| RecordGap {
            id: item.id.clone(),
            lang: item.lang.clone(),
            chosen_avg_logp: chosen_avg[i],
            rejected_avg_logp: rejected_avg[i],
            reward_gap: gap[i],
        })
        .collect())
}

fn to_f64(t: &tch::Tensor) -> Result<Vec<f64>> {
    Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).to_device(tch::Device::Cpu))
        .map_err(TrainError::torch("reading reward gaps"))
}

/// Groups the per-pair results into the report's per-language means.
fn summarise(records: Vec<RecordGap>) -> RewardGapReport {
    let mut sums: BTreeMap<String, (usize, f64, f64, f64)> = BTreeMap::new();
    for r in &records {
        let e = sums.entry(r.lang.clone()).or_default();
        *e = (e.0 + 1, e.1 + r.reward_gap, e.2 + r.chosen_avg_logp, e.3 + r.rejected_avg_logp);
    }
    let per_language = sums
        .into_iter()
        .map(|(lang, (n, gap, c, r))| {
            let k = n as f64;
            let means =
                LanguageGap { n, reward_gap_mean: gap / k, chosen_avg_logp_mean: c / k, rejected_avg_logp_mean: r / k };
            (lang, means)
        })
        .collect();
    RewardGapReport { per_language, records }
}

/// The per-language means as an aligned text table (for stdout).
pub fn format_reward_gap_table(report: &RewardGapReport) -> String {
    let mut s = format!("{:<8} {:>6} {:>12} {:>12} {:>12}\n", "lang", "n", "reward_gap", "chosen", "rejected");
    for (lang, g) in &report.per_language {
        let _ = writeln!(
            s,
            "{lang:<8} {:>6} {:>12.4} {:>12.4} {:>12.4}",
            g.n, g.reward_gap_mean, g.chosen_avg_logp_mean, g.rejected_avg_logp_mean
        );
    }
    s
}
