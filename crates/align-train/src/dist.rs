//! Data parallelism over PyTorch's own distributed engine (c10d, through [`torch_dist`]):
//! the process group of a run launched by torchrun, SLURM or `align train --nproc`, and the
//! collectives the trainer needs from it.
//!
//! Every rank runs the same program on its slice of each global batch. The objective terms
//! normalise by the global batch through [`RankSum`] ([`World::ranks`]), so the shares of the
//! ranks' losses sum to the loss of the whole batch, and summing the ranks' gradients
//! ([`World::all_reduce_grads`]) gives its gradient: a run on `N` processes takes the steps of
//! a one-process run with the `N`-times batch.
//!
//! Collectives run on the CPU (Gloo); tensors on another device are copied there and back.

use crate::{Result, TrainError};
use align_losses::{LossError, RankSum};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};
use torch_dist::{DistError, GlooOptions, Launch, ProcessGroup, ReduceOp, Store};

/// Gradients are all-reduced in buckets of about this many bytes (as float32), as
/// PyTorch's DistributedDataParallel does by default.
pub const BUCKET_BYTES: usize = 25 << 20;

/// How often each rank tells the store it is alive.
const HEARTBEAT: Duration = Duration::from_millis(500);

/// The store key of `rank`'s heartbeat counter.
fn heartbeat_key(rank: usize) -> String {
    format!("polyalign/heartbeat/{rank}")
}

/// The processes of a data-parallel run, as seen from one of them.
///
/// Each rank increments a counter in the rendezvous store every 0.5 s from a thread of its
/// own; when a collective fails, the rank reads the counters to name the ranks that stopped.
pub struct World {
    // Field order is drop order: the group goes before the store it rendezvoused through
    // (the heartbeat thread is stopped first, in `Drop`).
    group: ProcessGroup,
    store: Arc<Store>,
    heartbeat: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    launch: Launch,
    /// Time spent in collectives since the last [`World::take_comm_time`].
    comm: Mutex<Duration>,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.heartbeat.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World").field("rank", &self.rank()).field("size", &self.size()).finish()
    }
}

/// An error of forming the group as a [`TrainError`].
fn dist_error(op: &str, rank: usize) -> impl FnOnce(DistError) -> TrainError + '_ {
    move |e| TrainError::input(format!("rank {rank}: {op}"), e.to_string())
}

impl World {
    /// Joins the run `launch` describes: connects to (on rank 0: starts) the rendezvous store
    /// at `MASTER_ADDR:MASTER_PORT` and forms a Gloo group. A collective that waits longer than
    /// `timeout` for a peer fails (a dead peer is usually noticed at once, by its closed
    /// connection).
    pub fn connect(launch: &Launch, timeout: Duration) -> Result<World> {
        let (addr, port, rank, size) = (&launch.master_addr, launch.master_port, launch.rank, launch.world_size);
        let store = Store::tcp(addr, port, size, launch.is_main(), timeout).map_err(|e| {
            let hint = if launch.is_main() {
                format!("is port {port} in use on this host? choose another with MASTER_PORT (or --master-port)")
            } else {
                format!("is rank 0 running, and {addr}:{port} reachable from here?")
            };
            TrainError::input(format!("rank {rank}: rendezvous at {addr}:{port}"), format!("{e}; {hint}"))
        })?;
        let options = GlooOptions {
            timeout,
            interface: std::env::var("GLOO_SOCKET_IFNAME").ok().filter(|s| !s.is_empty()),
            hostname: None,
        };
        let group =
            ProcessGroup::gloo(&store, rank, size, &options).map_err(dist_error("forming the Gloo group", rank))?;
        let store = Arc::new(store);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if store.add(&heartbeat_key(rank), 1).is_err() {
                        return; // the store is gone: rank 0 has ended
                    }
                    let until = Instant::now() + HEARTBEAT;
                    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        };
        let heartbeat = Some((stop, thread));
        Ok(World { group, store, heartbeat, launch: launch.clone(), comm: Mutex::new(Duration::ZERO) })
    }

    /// The other ranks whose heartbeat stopped (read twice, four beats apart); `None` when
    /// the store itself cannot be reached (rank 0, its host, has stopped).
    fn silent_ranks(&self) -> Option<Vec<usize>> {
        let read =
            || -> Option<Vec<i64>> { (0..self.size()).map(|r| self.store.add(&heartbeat_key(r), 0).ok()).collect() };
        let before = read()?;
        std::thread::sleep(HEARTBEAT * 4);
        let after = read()?;
        Some((0..self.size()).filter(|&r| r != self.rank() && before[r] == after[r]).collect())
    }

    /// A failed collective `op` as a [`TrainError`] naming the ranks that stopped.
    fn collective_error(&self, op: &str, e: DistError) -> TrainError {
        let cause = match self.silent_ranks() {
            None => "rank 0 has stopped: the rendezvous store it hosts cannot be reached".to_string(),
            Some(r) if r.is_empty() => "every rank is still alive: a rank failed this collective, or did not reach \
                                        it within [train] collective_timeout_s"
                .to_string(),
            Some(r) => format!(
                "rank(s) {} stopped (no heartbeat for {:.0} s); the launcher (align train --nproc, torchrun, srun) \
                 reports how they ended",
                r.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
                (HEARTBEAT * 4).as_secs_f64()
            ),
        };
        TrainError::input(format!("rank {}: {op}", self.rank()), format!("{cause} ({e})"))
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// The number of processes.
    pub fn size(&self) -> usize {
        self.group.size()
    }

    /// Rank 0: the one that writes the run's outputs.
    pub fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// The launch this world was formed from.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// Seconds spent in collectives since the last call.
    pub fn take_comm_time(&self) -> f64 {
        let mut c = self.comm.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *c).as_secs_f64()
    }

    /// Runs `f` (a collective) and adds its duration to the communication time.
    fn timed<T>(&self, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let out = f();
        *self.comm.lock().unwrap_or_else(|p| p.into_inner()) += t0.elapsed();
        out
    }

    /// `t` reduced over ranks by `op`, as a new tensor on `t`'s device (its kind kept).
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp, what: &str) -> Result<Tensor> {
        self.all_reduce_owned(t.detach().copy(), op, what)
    }

    /// `t` (a tensor nothing else reads) reduced over ranks by `op`: in place when it is a
    /// contiguous CPU tensor, else through a host copy; returned on its device.
    fn all_reduce_owned(&self, t: Tensor, op: ReduceOp, what: &str) -> Result<Tensor> {
        let device = t.device();
        let mut local = if device == Device::Cpu { t.contiguous() } else { t.to_device(Device::Cpu).contiguous() };
        self.timed(|| self.group.all_reduce(&mut local, op)).map_err(|e| self.collective_error(what, e))?;
        Ok(local.to_device(device))
    }

    /// `values` reduced over ranks by `op` (in float64).
    pub fn all_reduce_f64(&self, values: &[f64], op: ReduceOp, what: &str) -> Result<Vec<f64>> {
        let t = self.all_reduce(&Tensor::from_slice(values), op, what)?;
        Ok(Vec::<f64>::try_from(&t).expect("a float64 vector"))
    }

    /// Every rank's `input` (same shape everywhere), stacked in rank order: `[size, ...]`.
    pub fn all_gather(&self, input: &Tensor, what: &str) -> Result<Tensor> {
        let input = input.detach().to_device(Device::Cpu).contiguous();
        let mut shape = vec![self.size() as i64];
        shape.extend(input.size());
        let mut out = Tensor::zeros(&shape, (input.kind(), Device::Cpu));
        self.timed(|| self.group.all_gather(&mut out, &input)).map_err(|e| self.collective_error(what, e))?;
        Ok(out)
    }

    /// Rank `root`'s `t`, on every rank (same shape and kind everywhere).
    pub fn broadcast(&self, t: &Tensor, root: usize, what: &str) -> Result<Tensor> {
        let mut local = t.detach().to_device(Device::Cpu).contiguous().copy();
        self.timed(|| self.group.broadcast(&mut local, root)).map_err(|e| self.collective_error(what, e))?;
        Ok(local.to_device(t.device()))
    }

    /// `input` (`size * k` elements) summed over ranks; this rank's `k`-element slice of the sum.
    pub fn reduce_scatter(&self, input: &Tensor, what: &str) -> Result<Tensor> {
        let input = input.detach().to_device(Device::Cpu).contiguous();
        let k = input.numel() as i64 / self.size() as i64;
        let mut out = Tensor::zeros([k], (input.kind(), Device::Cpu));
        self.timed(|| self.group.reduce_scatter(&mut out, &input, ReduceOp::Sum))
            .map_err(|e| self.collective_error(what, e))?;
        Ok(out)
    }

    /// An error unless every rank passes the same `fingerprint` of `what` (e.g. the config):
    /// the error names the ranks that differ from rank 0.
    pub fn check_same(&self, what: &str, fingerprint: u64) -> Result<()> {
        let mine = Tensor::from_slice(&[fingerprint as i64]);
        let all = self.all_gather(&mine, &format!("comparing {what} across ranks"))?;
        let all = Vec::<i64>::try_from(&all.view([-1])).expect("an int64 vector");
        let differ: Vec<String> =
            all.iter().enumerate().filter(|(_, &f)| f != all[0]).map(|(r, _)| r.to_string()).collect();
        if differ.is_empty() {
            return Ok(());
        }
        Err(TrainError::input(
            format!("rank {}: comparing {what} across ranks", self.rank()),
            format!(
                "rank(s) {} have different {what} from rank 0 (fingerprints {}); every rank must run the same \
                 config on the same data",
                differ.join(", "),
                all.iter().map(|f| format!("{:016x}", *f as u64)).collect::<Vec<_>>().join(", ")
            ),
        ))
    }

    /// The [`RankSum`] that objective terms normalise through.
    pub fn ranks(self: &Arc<Self>) -> Arc<dyn RankSum> {
        Arc::new(WorldSum(Arc::clone(self)))
    }

    /// Sums the gradients of `params` over ranks, in place, in buckets of about
    /// [`BUCKET_BYTES`] (as float32). A parameter whose gradient is undefined on this rank but
    /// defined on another gets one (zeros, then the sum); one without a gradient anywhere keeps
    /// none, so the optimizer skips it as a one-process run would.
    pub fn all_reduce_grads(&self, params: &[Tensor]) -> Result<()> {
        let defined = self.defined_anywhere(params)?;
        let grads: Vec<Tensor> = params.iter().zip(&defined).filter(|(_, &d)| d).map(|(p, _)| p.grad()).collect();
        let _guard = tch::no_grad_guard();
        for bucket in buckets(&grads, BUCKET_BYTES / 4) {
            let flat = Tensor::cat(&bucket.iter().map(|g| g.to_kind(Kind::Float).view([-1])).collect::<Vec<_>>(), 0);
            let summed = self.all_reduce_owned(flat, ReduceOp::Sum, "all-reducing gradients")?;
            let mut offset = 0;
            for g in bucket {
                let n = g.numel() as i64;
                let mut g = g.shallow_clone();
                g.copy_(&summed.narrow(0, offset, n).view(g.size().as_slice()).to_kind(g.kind()));
                offset += n;
            }
        }
        Ok(())
    }

    /// Which of `params` has a gradient on some rank (one collective).
    pub fn grads_defined_anywhere(&self, params: &[Tensor]) -> Result<Vec<bool>> {
        let flags: Vec<f64> = params.iter().map(|p| f64::from(u8::from(p.grad().defined()))).collect();
        let any = self.all_reduce_f64(&flags, ReduceOp::Max, "comparing which parameters have gradients")?;
        Ok(any.iter().map(|&a| a > 0.0).collect())
    }

    /// Which of `params` has a gradient on some rank; gives those without one here a zero
    /// gradient.
    fn defined_anywhere(&self, params: &[Tensor]) -> Result<Vec<bool>> {
        let anywhere = self.grads_defined_anywhere(params)?;
        for (p, &any) in params.iter().zip(&anywhere) {
            if any && !p.grad().defined() {
                // A zero gradient through autograd itself (tch cannot assign `.grad`).
                (p * 0.0).sum(Kind::Float).backward();
            }
        }
        Ok(anywhere)
    }
}

/// The device of the process with local rank `local_rank` for `[model] device`: `"cuda"`
/// becomes `cuda:<local_rank>` (one GPU per process on its node, as torchrun's `LOCAL_RANK`
/// says); anything else (`"cpu"`, an explicit `"cuda:3"`) is kept.
pub fn process_device(device: &str, local_rank: usize) -> String {
    match device {
        "cuda" => format!("cuda:{local_rank}"),
        other => other.to_string(),
    }
}

/// `tensors` in consecutive groups of at most `max_elems` elements (a larger tensor alone).
pub fn buckets(tensors: &[Tensor], max_elems: usize) -> Vec<Vec<&Tensor>> {
    let mut out: Vec<Vec<&Tensor>> = Vec::new();
    let mut size = 0;
    for t in tensors {
        let n = t.numel();
        if out.is_empty() || size + n > max_elems {
            out.push(Vec::new());
            size = 0;
        }
        out.last_mut().expect("pushed above").push(t);
        size += n;
    }
    out
}

/// [`RankSum`] over a [`World`]: an all-reduce.
struct WorldSum(Arc<World>);

impl fmt::Debug for WorldSum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl RankSum for WorldSum {
    fn all_sum(&self, t: &Tensor) -> align_losses::Result<Tensor> {
        self.0.all_reduce(t, ReduceOp::Sum, "summing the loss's normaliser over ranks").map_err(|e| LossError::Term {
            term: "data-parallel sum".into(),
            source: Box::new(std::io::Error::other(e.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_takes_the_gpu_of_its_local_rank() {
        assert_eq!(process_device("cuda", 3), "cuda:3");
        assert_eq!(process_device("cpu", 3), "cpu");
        assert_eq!(process_device("cuda:1", 3), "cuda:1");
    }

    #[test]
    fn buckets_keep_order_and_size() {
        let ts: Vec<Tensor> =
            [3, 4, 10, 1, 1, 2].iter().map(|&n| Tensor::zeros([n], (Kind::Float, Device::Cpu))).collect();
        let b = buckets(&ts, 7);
        let sizes: Vec<Vec<usize>> = b.iter().map(|g| g.iter().map(|t| t.numel()).collect()).collect();
        assert_eq!(sizes, vec![vec![3, 4], vec![10], vec![1, 1, 2]]);
    }
}
