//! The reference log-probs of every record, computed once before training without gradient
//! and cached in the output folder (`reference_logps.safetensors` with a fingerprint in
//! `reference_logps.json`), so a resumed or repeated run with the same reference and data
//! reads them back instead of recomputing.

use super::events::{Events, TrainEvent};
use crate::batch::ReferenceCache;
use crate::packing::{select, Packer};
use crate::padding::pad_pairs;
use crate::prepare::PreparedRecord;
use crate::seeded::Fnv1a;
use crate::{Result, TrainError};
use lm_backend::atomic::{write_file, write_file_with};
use lm_backend::{CausalLm, HfCausalLm, HiddenRequest};
use std::path::Path;
use tch::{Device, Tensor};

/// The cache file in the output folder.
pub const CACHE_FILE: &str = "reference_logps.safetensors";
/// The cache's fingerprint file in the output folder.
pub const STAMP_FILE: &str = "reference_logps.json";
const COLUMNS: [&str; 5] = ["chosen_sum", "chosen_count", "rejected_sum", "rejected_count", "kl_sum"];

/// What the cache is computed from.
pub(crate) struct ReferenceInputs<'a> {
    /// The frozen reference.
    pub model: &'a HfCausalLm,
    /// Its folder (part of the fingerprint).
    pub dir: &'a Path,
    /// Every record of the run.
    pub records: &'a [PreparedRecord],
    /// Padding token id.
    pub pad_id: i64,
    /// Records per batch.
    pub batch_size: usize,
    /// Also KTO's mismatched pairs.
    pub kl: bool,
    /// Padding-free passes ([`crate::packing`]) instead of right-padded ones.
    pub packing: bool,
}

/// FNV-1a over the reference folder and every token id the cache covers: a cache whose
/// fingerprint differs was made for other data or another reference and is recomputed.
fn fingerprint(reference_dir: &Path, records: &[PreparedRecord], kl: bool) -> String {
    let mut h = Fnv1a::new();
    for b in reference_dir.to_string_lossy().bytes() {
        h.write_u64(u64::from(b));
    }
    h.write_u64(kl as u64);
    for r in records {
        for part in [Some(&r.chosen), r.rejected.as_ref()].into_iter().flatten() {
            h.write_u64(part.prompt.len() as u64);
            part.ids().iter().for_each(|&i| h.write_u64(i as u64));
        }
    }
    format!("{:016x}", h.finish())
}

/// Reads the cache of `output`, or computes and writes it; reports
/// [`TrainEvent::ReferenceProgress`] and [`TrainEvent::ReferenceCacheReady`].
pub(crate) fn reference_cache(inputs: &ReferenceInputs, output: &Path, events: &Events) -> Result<ReferenceCache> {
    let file = output.join(CACHE_FILE);
    let stamp_file = output.join(STAMP_FILE);
    let stamp = fingerprint(inputs.dir, inputs.records, inputs.kl);
    if let Some(cache) = read_cache(&file, &stamp_file, &stamp) {
        events.emit(TrainEvent::ReferenceCacheReady { path: &file, reused: true });
        return Ok(cache);
    }
    let columns = compute(inputs, events)?;
    let named: Vec<(&str, &Tensor)> = COLUMNS.iter().copied().zip(columns.iter()).collect();
    write_file_with(&file, |tmp| {
        Tensor::write_safetensors(&named, tmp).map_err(TrainError::torch(format!("writing {CACHE_FILE}")))
    })?;
    let stamp_json = serde_json::json!({ "fingerprint": stamp, "records": inputs.records.len() });
    write_file(&stamp_file, stamp_json.to_string().as_bytes())?;
    events.emit(TrainEvent::ReferenceCacheReady { path: &file, reused: false });
    let [a, b, c, d, e] = columns;
    Ok(ReferenceCache { chosen_sum: a, chosen_count: b, rejected_sum: c, rejected_count: d, kl_sum: e })
}

/// The cache, when `stamp_file` holds `stamp` and `file` has every column.
fn read_cache(file: &Path, stamp_file: &Path, stamp: &str) -> Option<ReferenceCache> {
    if !std::fs::read_to_string(stamp_file).is_ok_and(|s| s.contains(stamp)) {
        return None;
    }
    let tensors = Tensor::read_safetensors(file).ok()?;
    let get = |k: &str| tensors.iter().find(|(n, _)| n == k).map(|(_, t)| t.shallow_clone());
    let [Some(a), Some(b), Some(c), Some(d), Some(e)] = COLUMNS.map(get) else { return None };
    Some(ReferenceCache { chosen_sum: a, chosen_count: b, rejected_sum: c, rejected_count: d, kl_sum: e })
}

/// The five `[N]` columns of [`COLUMNS`], on the CPU, in record order.
fn compute(inputs: &ReferenceInputs, events: &Events) -> Result<[Tensor; 5]> {
    let records = inputs.records;
    let total = records.len().div_ceil(inputs.batch_size);
    let mut cols: [Vec<Tensor>; 5] = Default::default();
    let _guard = tch::no_grad_guard();
    for (k, chunk) in records.chunks(inputs.batch_size).enumerate() {
        let start = k * inputs.batch_size;
        let batch =
            if inputs.packing { packed_batch(inputs, start, chunk)? } else { padded_batch(inputs, start, chunk)? };
        for (col, t) in cols.iter_mut().zip(batch) {
            col.push(t.to_device(Device::Cpu));
        }
        events.emit(TrainEvent::ReferenceProgress { done: k + 1, total });
    }
    Ok(cols.map(|c| Tensor::cat(&c, 0)))
}

/// The mismatched KL pairs of records `start..start + len`: record `i`'s prompt with record
/// `i + 1`'s chosen completion.
fn kl_pairs(records: &[PreparedRecord], start: usize, len: usize) -> Vec<(&[i64], &[i64])> {
    let n = records.len();
    (start..start + len).map(|i| (&records[i].chosen.prompt[..], &records[(i + 1) % n].chosen.completion[..])).collect()
}

/// The columns of `chunk` (records `start..`) from right-padded passes.
fn padded_batch(inputs: &ReferenceInputs, start: usize, chunk: &[PreparedRecord]) -> Result<[Tensor; 5]> {
    let logps = |seqs: Vec<(&[i64], &[i64])>| -> Result<(Tensor, Tensor)> {
        let p = pad_pairs(&seqs, inputs.pad_id, inputs.model.device());
        let (s, _) = p.scored_logps(inputs.model, &HiddenRequest::none(), "reference forward")?;
        Ok((s.sum, s.count))
    };
    let (cs, cc) = logps(chunk.iter().map(|r| (&r.chosen.prompt[..], &r.chosen.completion[..])).collect())?;
    let rejected: Vec<_> = chunk.iter().map(|r| r.rejected.as_ref().unwrap_or(&r.chosen)).collect();
    let (rs, rc) = logps(rejected.iter().map(|e| (&e.prompt[..], &e.completion[..])).collect())?;
    let kl_sum = if inputs.kl { logps(kl_pairs(inputs.records, start, chunk.len()))?.0 } else { cs.zeros_like() };
    Ok([cs, cc, rs, rc, kl_sum])
}

/// The columns of `chunk` (records `start..`) from one packed pass: each pair one tree, the
/// KL pairs trees of one branch.
fn packed_batch(inputs: &ReferenceInputs, start: usize, chunk: &[PreparedRecord]) -> Result<[Tensor; 5]> {
    let mut p = Packer::new();
    let (mut chosen, mut rejected) = (Vec::with_capacity(chunk.len()), Vec::with_capacity(chunk.len()));
    for r in chunk {
        let slots = p.pair(&r.chosen, Some(r.rejected.as_ref().unwrap_or(&r.chosen)));
        chosen.push(slots.chosen);
        rejected.push(slots.rejected.expect("a rejected completion was given"));
    }
    let kl: Vec<usize> = if inputs.kl {
        kl_pairs(inputs.records, start, chunk.len())
            .into_iter()
            .map(|(pr, c)| p.tree(pr, &[c]).completions[0])
            .collect()
    } else {
        vec![]
    };
    let packed = p.finish(inputs.model.device())?;
    let (s, _) = packed.scored_logps(inputs.model, &HiddenRequest::none(), "reference forward")?;
    let (c, r) = (select(&s, &chosen), select(&s, &rejected));
    let kl_sum = if inputs.kl { select(&s, &kl).sum } else { c.sum.zeros_like() };
    Ok([c.sum, c.count, r.sum, r.count, kl_sum])
}
