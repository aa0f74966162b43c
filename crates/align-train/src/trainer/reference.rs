//! The reference log-probs of every record, computed once before training without gradient
//! and cached in the output folder (`reference_logps.safetensors` with a fingerprint in
//! `reference_logps.json`), so a resumed or repeated run with the same reference and data
//! reads them back instead of recomputing.

use super::events::{Events, TrainEvent};
use crate::batch::ReferenceCache;
use crate::dist::World;
use crate::packing::{select, Packer};
use crate::padding::pad_pairs;
use crate::prepare::PreparedRecord;
use crate::seeded::Fnv1a;
use crate::{Result, TrainError};
use lm_backend::atomic::{write_file, write_file_with};
use lm_backend::{CausalLm, HfCausalLm, HiddenRequest};
use std::path::Path;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};
use torch_dist::ReduceOp;

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
    /// The processes of a data-parallel run: each computes a contiguous shard of the
    /// records, and every rank gathers the whole cache; only rank 0 writes it.
    pub world: Option<&'a Arc<World>>,
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
    let found = read_cache(&file, &stamp_file, &stamp);
    // Every rank reuses the file, or none does (a rank that cannot read it must not wait
    // alone in the gather below).
    let everywhere = match inputs.world {
        None => found.is_some(),
        Some(w) => {
            w.all_reduce_f64(&[f64::from(u8::from(found.is_some()))], ReduceOp::Min, "reading the reference cache")?[0]
                > 0.0
        }
    };
    if let (true, Some(cache)) = (everywhere, found) {
        events.emit(TrainEvent::ReferenceCacheReady { path: &file, reused: true });
        return Ok(cache);
    }
    let columns = match inputs.world {
        None => compute(inputs, 0..inputs.records.len(), events)?,
        Some(world) => sharded(inputs, world, events)?,
    };
    if inputs.world.is_none_or(|w| w.is_main()) {
        let named: Vec<(&str, &Tensor)> = COLUMNS.iter().copied().zip(columns.iter()).collect();
        write_file_with(&file, |tmp| {
            Tensor::write_safetensors(&named, tmp).map_err(TrainError::torch(format!("writing {CACHE_FILE}")))
        })?;
        let stamp_json = serde_json::json!({ "fingerprint": stamp, "records": inputs.records.len() });
        write_file(&stamp_file, stamp_json.to_string().as_bytes())?;
    }
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

/// The columns of the whole cache from every rank's contiguous shard of the records (the
/// last ones shorter or empty), gathered in rank order.
fn sharded(inputs: &ReferenceInputs, world: &World, events: &Events) -> Result<[Tensor; 5]> {
    let n = inputs.records.len();
    let per = n.div_ceil(world.size());
    let shard = |r: usize| (r * per).min(n)..((r + 1) * per).min(n);
    let mine = compute(inputs, shard(world.rank()), events)?;
    let len = mine[0].size()[0];
    let padded = Tensor::stack(&mine.map(|c| c.to_kind(Kind::Double).constant_pad_nd([0, per as i64 - len])), 0);
    let all = world.all_gather(&padded, "gathering the reference cache")?; // [size, 5, per]
    let column = |c: i64| {
        let parts: Vec<Tensor> = (0..world.size())
            .map(|r| all.get(r as i64).get(c).narrow(0, 0, shard(r).len() as i64).to_kind(Kind::Float))
            .collect();
        Tensor::cat(&parts, 0)
    };
    Ok([column(0), column(1), column(2), column(3), column(4)])
}

/// The five columns of [`COLUMNS`] for records `range`, on the CPU, in record order.
fn compute(inputs: &ReferenceInputs, range: std::ops::Range<usize>, events: &Events) -> Result<[Tensor; 5]> {
    let records = &inputs.records[range.clone()];
    let total = records.len().div_ceil(inputs.batch_size);
    let mut cols: [Vec<Tensor>; 5] = Default::default();
    let _guard = tch::no_grad_guard();
    if records.is_empty() {
        return Ok(std::array::from_fn(|_| Tensor::zeros([0], (Kind::Float, Device::Cpu))));
    }
    for (k, chunk) in records.chunks(inputs.batch_size).enumerate() {
        let start = range.start + k * inputs.batch_size;
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
