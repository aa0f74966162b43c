//! AdamW with its state sharded over the processes of a data-parallel run (ZeRO stage 1,
//! Rajbhandari et al. 2020): `[train] shard_optimizer = true`.
//!
//! The parameters, flattened and concatenated in order, are cut into buckets of `N x S`
//! elements (`N` processes, `S` = about [`BUCKET_BYTES`] / 4 / N,
//! or the model's size / N when smaller);
//! rank `r` owns the `r`-th `S` elements of every bucket, so each rank owns about `1/N` of
//! every large tensor. A step:
//! 1. reduce-scatters each bucket's gradients (float32): every rank receives the summed
//!    gradient of the elements it owns;
//! 2. takes the global gradient norm from the ranks' partial sums (one all-reduce), clips;
//! 3. applies AdamW to its own elements only (moments, and float32 master weights for
//!    half-precision parameters, exist for them alone);
//! 4. all-gathers each bucket's updated values, so every rank holds the whole model again.
//!
//! The update of each element is [`AdamW`](crate::optim::AdamW)'s, so results equal the
//! unsharded run's; [`ShardedAdamW::state`] gathers the state into the same named tensors,
//! so checkpoints are the same files and resume with any world size.

use crate::dist::{World, BUCKET_BYTES};
use crate::optim::{bias_corrections, AdamWConfig, Slot};
use crate::Result;
use std::ops::Range;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};
use torch_dist::ReduceOp;

/// The parameters (flattened, concatenated from `starts`) that overlap the elements `range` of
/// the concatenation: `(index, its elements, their offset within range)`.
fn spans<'a>(
    params: &'a [Tensor],
    starts: &'a [i64],
    range: Range<i64>,
) -> impl Iterator<Item = (usize, Range<i64>, i64)> + 'a {
    params.iter().zip(starts).enumerate().filter_map(move |(i, (p, &start))| {
        let (lo, hi) = (start.max(range.start), (start + p.numel() as i64).min(range.end));
        (lo < hi).then(|| (i, lo - start..hi - start, lo - range.start))
    })
}

/// A stretch of one parameter that this rank owns.
#[derive(Debug)]
struct Segment {
    /// Index of the parameter.
    param: usize,
    /// The elements of the (flattened) parameter.
    elems: Range<i64>,
    /// The bucket it lies in, and its offset within this rank's `S` elements of the bucket.
    bucket: usize,
    offset: i64,
    /// Its AdamW state; `slot.param` is a view of the parameter's elements.
    slot: Slot,
    /// Its summed gradient of the current step (`None`: no rank has a gradient for it).
    grad: Option<Tensor>,
}

/// AdamW whose state is sharded over a [`World`] (see the module documentation).
#[derive(Debug)]
pub struct ShardedAdamW {
    config: AdamWConfig,
    names: Vec<String>,
    params: Vec<Tensor>,
    /// Element offset of each parameter in the concatenation.
    starts: Vec<i64>,
    /// Elements per rank per bucket.
    per_rank: i64,
    /// Number of buckets.
    buckets: usize,
    segments: Vec<Segment>,
    world: Arc<World>,
    /// Steps taken (for bias correction).
    pub step: u64,
}

impl ShardedAdamW {
    /// The sharded optimizer of `params` (the same list on every rank).
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig, world: Arc<World>) -> Self {
        let n = world.size() as i64;
        // A model smaller than one bucket is one bucket, split evenly.
        let total: i64 = params.iter().map(|(_, p)| p.numel() as i64).sum();
        let per_rank = ((BUCKET_BYTES / 4) as i64 / n).min((total + n - 1) / n).max(1);
        Self::with_bucket(params, config, world, per_rank)
    }

    /// As [`ShardedAdamW::new`] with `per_rank` elements per rank per bucket.
    pub fn with_bucket(params: Vec<(String, Tensor)>, config: AdamWConfig, world: Arc<World>, per_rank: i64) -> Self {
        let (names, params): (Vec<String>, Vec<Tensor>) = params.into_iter().unzip();
        let mut starts = Vec::with_capacity(params.len());
        let mut total = 0i64;
        for p in &params {
            starts.push(total);
            total += p.numel() as i64;
        }
        let (n, rank) = (world.size() as i64, world.rank() as i64);
        let bucket_len = n * per_rank;
        let buckets = (total.max(1) + bucket_len - 1) / bucket_len;
        let mut segments = Vec::new();
        for b in 0..buckets {
            let mine = b * bucket_len + rank * per_rank..b * bucket_len + (rank + 1) * per_rank;
            for (i, elems, offset) in spans(&params, &starts, mine) {
                let view = params[i].detach().view([-1]).narrow(0, elems.start, elems.end - elems.start);
                segments.push(Segment {
                    param: i,
                    elems,
                    bucket: b as usize,
                    offset,
                    slot: Slot::new(view),
                    grad: None,
                });
            }
        }
        Self { config, names, params, starts, per_rank, buckets: buckets as usize, segments, world, step: 0 }
    }

    /// The optimised tensors, in order (shallow copies).
    pub fn parameters(&self) -> Vec<Tensor> {
        self.params.iter().map(Tensor::shallow_clone).collect()
    }

    /// Bytes of optimizer state this rank holds (moments and master weights).
    pub fn state_bytes(&self) -> usize {
        self.segments.iter().map(|s| s.slot.state_bytes()).sum()
    }

    /// The elements `[b * N * S, (b + 1) * N * S)` of the concatenation, as a float32 vector
    /// filled by `value(param, elems)` where parameters lie and zeros elsewhere.
    fn bucket(&self, b: usize, value: impl Fn(usize, Range<i64>) -> Option<Tensor>) -> Tensor {
        let len = self.world.size() as i64 * self.per_rank;
        let flat = Tensor::zeros([len], (Kind::Float, Device::Cpu));
        for (i, elems, offset) in spans(&self.params, &self.starts, b as i64 * len..(b as i64 + 1) * len) {
            let n = elems.end - elems.start;
            if let Some(v) = value(i, elems) {
                flat.narrow(0, offset, n).copy_(&v.to_kind(Kind::Float).to_device(Device::Cpu));
            }
        }
        flat
    }

    /// Reduce-scatters the gradients: each of this rank's segments receives its summed
    /// gradient (parameters without a gradient on any rank keep none, and are not updated).
    pub fn reduce_gradients(&mut self) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let any = self.world.grads_defined_anywhere(&self.params)?;
        for b in 0..self.buckets {
            let flat = self.bucket(b, |i, elems| {
                let g = self.params[i].grad();
                g.defined().then(|| g.view([-1]).narrow(0, elems.start, elems.end - elems.start))
            });
            let mine = self.world.reduce_scatter(&flat, "reduce-scattering gradients")?;
            for s in self.segments.iter_mut().filter(|s| s.bucket == b) {
                let len = s.elems.end - s.elems.start;
                let device = s.slot.param.device();
                s.grad = any[s.param].then(|| mine.narrow(0, s.offset, len).to_device(device));
            }
        }
        Ok(())
    }

    /// The global L2 norm of the summed gradients (after [`ShardedAdamW::reduce_gradients`]).
    pub fn grad_norm(&self) -> Result<f64> {
        let mine: f64 = self
            .segments
            .iter()
            .filter_map(|s| s.grad.as_ref())
            .map(|g| g.square().sum(Kind::Float).double_value(&[]))
            .sum();
        Ok(self.world.all_reduce_f64(&[mine], ReduceOp::Sum, "summing the gradient norm")?[0].sqrt())
    }

    /// Scales this rank's summed gradients by `factor` (clipping).
    pub fn scale_grads(&mut self, factor: f64) {
        for s in &mut self.segments {
            if let Some(g) = &mut s.grad {
                let _ = g.g_mul_scalar_(factor);
            }
        }
    }

    /// Clears the gradients: the parameters' own and this rank's summed ones.
    pub fn zero_grad(&mut self) {
        for p in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        for s in &mut self.segments {
            s.grad = None;
        }
    }

    /// Updates this rank's elements with learning rate `lr`, then all-gathers every bucket so
    /// that each rank holds the updated parameters.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let c = bias_corrections(&self.config, self.step);
        for s in &mut self.segments {
            if let Some(g) = &s.grad {
                s.slot.update(g, lr, c, &self.config);
            }
        }
        for b in 0..self.buckets {
            let mine = Tensor::zeros([self.per_rank], (Kind::Float, Device::Cpu));
            for s in self.segments.iter().filter(|s| s.bucket == b) {
                let len = s.elems.end - s.elems.start;
                mine.narrow(0, s.offset, len).copy_(&s.slot.param.to_kind(Kind::Float).to_device(Device::Cpu));
            }
            let all = self.world.all_gather(&mine, "all-gathering updated parameters")?.view([-1]);
            self.scatter_bucket(b, &all, |_, p| p.detach());
        }
        Ok(())
    }

    /// Copies bucket `b`'s values `all` into the tensors `target(i, param)` (one per parameter,
    /// of its shape).
    fn scatter_bucket(&self, b: usize, all: &Tensor, target: impl Fn(usize, &Tensor) -> Tensor) {
        let len = self.world.size() as i64 * self.per_rank;
        for (i, elems, offset) in spans(&self.params, &self.starts, b as i64 * len..(b as i64 + 1) * len) {
            let n = elems.end - elems.start;
            let mut t = target(i, &self.params[i]).view([-1]).narrow(0, elems.start, n);
            t.copy_(&all.narrow(0, offset, n).to_kind(t.kind()).to_device(t.device()));
        }
    }

    /// The whole optimizer state as [`AdamW::state`](crate::optim::AdamW::state) names it
    /// (`m.<name>`, `v.<name>`, `master.<name>`), gathered from every rank: a collective, so
    /// every rank calls it. Rank 0 receives the tensors (on the CPU); the others an empty list.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let _guard = tch::no_grad_guard();
        let main = self.world.is_main();
        let half: Vec<bool> = self.params.iter().map(|p| matches!(p.kind(), Kind::BFloat16 | Kind::Half)).collect();
        type Pick = fn(&Slot) -> Option<&Tensor>;
        let mut picks: Vec<(&str, Pick)> = vec![("m", |s| Some(&s.m)), ("v", |s| Some(&s.v))];
        if half.iter().any(|&h| h) {
            picks.push(("master", |s| s.master.as_ref()));
        }
        let mut state = Vec::new();
        for (prefix, pick) in picks {
            let out: Vec<Tensor> = match main {
                true => self.params.iter().map(|p| Tensor::zeros(p.size(), (Kind::Float, Device::Cpu))).collect(),
                false => Vec::new(),
            };
            for b in 0..self.buckets {
                let mine = Tensor::zeros([self.per_rank], (Kind::Float, Device::Cpu));
                for s in self.segments.iter().filter(|s| s.bucket == b) {
                    if let Some(t) = pick(&s.slot) {
                        mine.narrow(0, s.offset, s.elems.end - s.elems.start).copy_(&t.to_device(Device::Cpu));
                    }
                }
                let all = self.world.all_gather(&mine, "gathering the optimizer state")?.view([-1]);
                if main {
                    self.scatter_bucket(b, &all, |i, _| out[i].shallow_clone());
                }
            }
            for (i, t) in out.into_iter().enumerate() {
                if prefix != "master" || half[i] {
                    state.push((format!("{prefix}.{}", self.names[i]), t));
                }
            }
        }
        Ok(state)
    }

    /// Restores a state written by [`AdamW::state`](crate::optim::AdamW::state) or
    /// [`ShardedAdamW::state`] (with any world size): this rank keeps its own elements.
    pub fn load_state(&mut self, state: &[(String, Tensor)], step: u64) -> std::result::Result<(), String> {
        let _guard = tch::no_grad_guard();
        let find = |key: &str| state.iter().find(|(n, _)| n == key).map(|(_, t)| t);
        for s in &mut self.segments {
            let (name, param) = (&self.names[s.param], &self.params[s.param]);
            let len = s.elems.end - s.elems.start;
            let mut keys = vec![("m", Some(&mut s.slot.m)), ("v", Some(&mut s.slot.v))];
            keys.push(("master", s.slot.master.as_mut()));
            for (prefix, target) in keys {
                let Some(target) = target else { continue };
                let key = format!("{prefix}.{name}");
                let t = find(&key).ok_or_else(|| format!("optimizer state lacks `{key}`"))?;
                if t.size() != param.size() {
                    return Err(format!(
                        "optimizer state `{key}` has shape {:?}, expected {:?}",
                        t.size(),
                        param.size()
                    ));
                }
                target
                    .copy_(&t.view([-1]).narrow(0, s.elems.start, len).to_kind(Kind::Float).to_device(target.device()));
            }
            if let Some(master) = &s.slot.master {
                s.slot.param.copy_(&master.to_kind(s.slot.param.kind()));
            }
        }
        self.step = step;
        Ok(())
    }
}
