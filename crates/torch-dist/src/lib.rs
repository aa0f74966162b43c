//! PyTorch's distributed engine, c10d, from Rust: the rendezvous store ([`Store`], c10d's
//! `TCPStore`) and process groups ([`ProcessGroup`], c10d's `ProcessGroupGloo` on CPU
//! tensors) with the collectives a data-parallel trainer needs: all-reduce, broadcast,
//! all-gather, reduce-scatter and barrier.
//!
//! Nothing here implements a collective, a wire protocol or a rendezvous: a C++ shim
//! (`cpp/shim.cpp`, compiled against the headers of the libtorch that `tch` links) forwards
//! each call to c10d inside `libtorch_cpu.so`, the same code `torch.distributed` runs. Tensors
//! cross by their libtorch handle (no copy). [`launch`] reads the variables torchrun and SLURM
//! set.
//!
//! ```no_run
//! use std::time::Duration;
//! use torch_dist::{GlooOptions, ProcessGroup, ReduceOp, Store};
//!
//! let (rank, world) = (0, 2);
//! let store = Store::tcp("127.0.0.1", 29500, world, rank == 0, Duration::from_secs(60))?;
//! let group = ProcessGroup::gloo(&store, rank, world, &GlooOptions::default())?;
//! let mut t = tch::Tensor::from_slice(&[1.0f32, 2.0]);
//! group.all_reduce(&mut t, ReduceOp::Sum)?; // every rank now holds the sum
//! # Ok::<(), torch_dist::DistError>(())
//! ```

pub mod launch;

use std::ffi::{c_char, c_void, CStr, CString};
use std::time::Duration;

use tch::{Device, Tensor};

pub use launch::{Launch, LaunchError};

/// Which gloo declarations the shim was compiled with: `"system"` (the system's gloo
/// headers) or `"compat"` (the crate's own, `cpp/gloo-compat`).
pub const GLOO_HEADERS: &str = env!("TORCH_DIST_GLOO_HEADERS");

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// c10d reported an error (a peer gone, a timeout, a refused connection...).
    #[error("{op}: {message}")]
    C10d {
        /// The operation, e.g. `all_reduce` or `TCPStore 10.0.0.1:29500`.
        op: String,
        /// c10d's message.
        message: String,
    },
    /// The arguments cannot work (a CUDA tensor on Gloo, mismatched sizes...).
    #[error("{op}: {message}")]
    Input {
        /// The operation.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The result type of this crate.
pub type Result<T, E = DistError> = std::result::Result<T, E>;

/// A reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise maximum.
    Max,
    /// Element-wise minimum.
    Min,
    /// Element-wise product.
    Product,
}

impl ReduceOp {
    fn code(self) -> i32 {
        match self {
            ReduceOp::Sum => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
            ReduceOp::Product => 3,
        }
    }
}

mod ffi {
    use std::ffi::{c_char, c_void};

    #[repr(C)]
    pub struct PdStore {
        _private: [u8; 0],
    }
    #[repr(C)]
    pub struct PdGroup {
        _private: [u8; 0],
    }

    extern "C" {
        pub fn pd_free(p: *mut c_void);
        pub fn pd_tcp_store_new(
            host: *const c_char,
            port: u16,
            world_size: i64,
            is_server: bool,
            timeout_ms: i64,
            err: *mut *mut c_char,
        ) -> *mut PdStore;
        pub fn pd_store_free(s: *mut PdStore);
        pub fn pd_store_set(s: *mut PdStore, key: *const c_char, data: *const u8, len: usize, err: *mut *mut c_char);
        pub fn pd_store_get(s: *mut PdStore, key: *const c_char, out: *mut *mut u8, err: *mut *mut c_char) -> usize;
        pub fn pd_store_add(s: *mut PdStore, key: *const c_char, value: i64, err: *mut *mut c_char) -> i64;
        pub fn pd_gloo_new(
            s: *mut PdStore,
            rank: i32,
            size: i32,
            timeout_ms: i64,
            interface: *const c_char,
            hostname: *const c_char,
            err: *mut *mut c_char,
        ) -> *mut PdGroup;
        pub fn pd_group_free(g: *mut PdGroup);
        pub fn pd_all_reduce(g: *mut PdGroup, t: *mut c_void, op: i32, err: *mut *mut c_char);
        pub fn pd_broadcast(g: *mut PdGroup, t: *mut c_void, root: i32, err: *mut *mut c_char);
        pub fn pd_all_gather(g: *mut PdGroup, out: *mut c_void, input: *mut c_void, err: *mut *mut c_char);
        pub fn pd_reduce_scatter(g: *mut PdGroup, out: *mut c_void, input: *mut c_void, op: i32, err: *mut *mut c_char);
        pub fn pd_barrier(g: *mut PdGroup, err: *mut *mut c_char);
    }
}

/// Runs `f` with an error slot; turns a message the shim left there into [`DistError::C10d`].
fn checked<T>(op: impl FnOnce() -> String, f: impl FnOnce(*mut *mut c_char) -> T) -> Result<T> {
    let mut err: *mut c_char = std::ptr::null_mut();
    let value = f(&mut err);
    if err.is_null() {
        return Ok(value);
    }
    // SAFETY: the shim sets `err` to a NUL-terminated malloc'd string, freed here once.
    let message = unsafe {
        let text = CStr::from_ptr(err).to_string_lossy().trim_end().to_string();
        ffi::pd_free(err as *mut c_void);
        text
    };
    Err(DistError::C10d { op: op(), message })
}

fn c_string(op: &'static str, what: &str, text: &str) -> Result<CString> {
    CString::new(text).map_err(|_| DistError::Input { op, message: format!("{what} `{text}` contains a NUL byte") })
}

fn millis(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX)
}

/// c10d's `TCPStore`: the key-value store through which ranks find each other. Rank 0 runs
/// the server; every rank (rank 0 included) connects as a client.
#[derive(Debug)]
pub struct Store {
    raw: *mut ffi::PdStore,
    address: String,
}

// SAFETY: c10d's TCPStore is used from several threads in PyTorch; its client serialises
// requests internally.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// Connects to (and, when `is_server`, first starts) the store at `host:port` for
    /// `world_size` processes; waits up to `timeout` for the server and, on the server, for
    /// every worker to connect.
    pub fn tcp(host: &str, port: u16, world_size: usize, is_server: bool, timeout: Duration) -> Result<Store> {
        let address = format!("{host}:{port}");
        let c_host = c_string("TCPStore", "host", host)?;
        let raw = checked(
            || format!("TCPStore {address}"),
            |err| unsafe {
                ffi::pd_tcp_store_new(c_host.as_ptr(), port, world_size as i64, is_server, millis(timeout), err)
            },
        )?;
        Ok(Store { raw, address })
    }

    /// The store's `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let c_key = c_string("Store::set", "key", key)?;
        checked(
            || format!("Store::set({key})"),
            |err| unsafe { ffi::pd_store_set(self.raw, c_key.as_ptr(), value.as_ptr(), value.len(), err) },
        )
    }

    /// The value of `key`, waiting for another rank to set it (up to the store's timeout).
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let c_key = c_string("Store::get", "key", key)?;
        let mut data: *mut u8 = std::ptr::null_mut();
        let len = checked(
            || format!("Store::get({key})"),
            |err| unsafe { ffi::pd_store_get(self.raw, c_key.as_ptr(), &mut data, err) },
        )?;
        // SAFETY: on success the shim returned a malloc'd buffer of `len` bytes.
        let value = unsafe {
            let v = std::slice::from_raw_parts(data, len).to_vec();
            ffi::pd_free(data as *mut c_void);
            v
        };
        Ok(value)
    }

    /// Adds `delta` to the integer at `key` (created at 0) and returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64> {
        let c_key = c_string("Store::add", "key", key)?;
        checked(
            || format!("Store::add({key})"),
            |err| unsafe { ffi::pd_store_add(self.raw, c_key.as_ptr(), delta, err) },
        )
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: `raw` came from pd_tcp_store_new and is freed once.
        unsafe { ffi::pd_store_free(self.raw) }
    }
}

/// How a Gloo group's transport binds.
#[derive(Debug, Clone)]
pub struct GlooOptions {
    /// How long a collective waits for its peers before failing (default 30 minutes, as
    /// c10d's default).
    pub timeout: Duration,
    /// A network interface to bind to (torchrun users set `GLOO_SOCKET_IFNAME`).
    pub interface: Option<String>,
    /// A hostname or address to bind to, when no interface is given; default: this
    /// machine's resolved hostname, else loopback.
    pub hostname: Option<String>,
}

impl Default for GlooOptions {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(30 * 60), interface: None, hostname: None }
    }
}

/// A process group: `size` processes, this one of rank `rank`, running collectives.
#[derive(Debug)]
pub struct ProcessGroup {
    raw: *mut ffi::PdGroup,
    rank: usize,
    size: usize,
    device: Device,
}

// SAFETY: c10d backends are driven from any thread in PyTorch; each call here waits for its
// work to finish before returning.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl ProcessGroup {
    /// A Gloo group (CPU tensors) of `size` processes over `store`; every rank must call it.
    pub fn gloo(store: &Store, rank: usize, size: usize, options: &GlooOptions) -> Result<ProcessGroup> {
        if rank >= size {
            let message = format!("rank {rank} is not below the world size {size}");
            return Err(DistError::Input { op: "ProcessGroupGloo", message });
        }
        let interface =
            options.interface.as_deref().map(|i| c_string("ProcessGroupGloo", "interface", i)).transpose()?;
        let hostname = options.hostname.as_deref().map(|h| c_string("ProcessGroupGloo", "hostname", h)).transpose()?;
        let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        let raw = checked(
            || format!("ProcessGroupGloo (rank {rank} of {size}, store {})", store.address),
            |err| unsafe {
                ffi::pd_gloo_new(
                    store.raw,
                    rank as i32,
                    size as i32,
                    millis(options.timeout),
                    ptr(&interface),
                    ptr(&hostname),
                    err,
                )
            },
        )?;
        Ok(ProcessGroup { raw, rank, size, device: Device::Cpu })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of processes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Checks that `t` can take part in a collective of this group.
    fn check(&self, op: &'static str, name: &str, t: &Tensor) -> Result<()> {
        let problem = if !t.defined() {
            Some("is undefined".to_string())
        } else if t.device() != self.device {
            Some(format!("is on {:?}; this group runs on {:?}", t.device(), self.device))
        } else if !t.is_contiguous() {
            Some("is not contiguous".to_string())
        } else {
            None
        };
        match problem {
            Some(p) => Err(DistError::Input { op, message: format!("{name} {p}") }),
            None => Ok(()),
        }
    }

    fn call(&self, op: &'static str, f: impl FnOnce(*mut *mut c_char)) -> Result<()> {
        checked(|| format!("{op} (rank {} of {})", self.rank, self.size), f)
    }

    /// Reduces `t` over all ranks in place: afterwards every rank holds the result.
    pub fn all_reduce(&self, t: &mut Tensor, op: ReduceOp) -> Result<()> {
        self.check("all_reduce", "the tensor", t)?;
        let handle = t.as_mut_ptr() as *mut c_void;
        self.call("all_reduce", |err| unsafe { ffi::pd_all_reduce(self.raw, handle, op.code(), err) })
    }

    /// Copies rank `root`'s `t` into every rank's `t`.
    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<()> {
        self.check("broadcast", "the tensor", t)?;
        if root >= self.size {
            return Err(DistError::Input {
                op: "broadcast",
                message: format!("root {root} >= world size {}", self.size),
            });
        }
        let handle = t.as_mut_ptr() as *mut c_void;
        self.call("broadcast", |err| unsafe { ffi::pd_broadcast(self.raw, handle, root as i32, err) })
    }

    /// Fills `output` (`size * numel(input)` elements, flat or `[size, ...]`) with every
    /// rank's `input`, in rank order.
    pub fn all_gather(&self, output: &mut Tensor, input: &Tensor) -> Result<()> {
        self.check("all_gather", "output", output)?;
        self.check("all_gather", "input", input)?;
        self.check_sizes("all_gather", output, input)?;
        // c10d splits the output along dim 0 into pieces shaped like the input: flat views
        // (sharing storage) make any shapes of matching sizes work.
        let (mut output, input) = (output.view([-1]), input.view([-1]));
        let (out, inp) = (output.as_mut_ptr() as *mut c_void, input.as_ptr() as *mut c_void);
        self.call("all_gather", |err| unsafe { ffi::pd_all_gather(self.raw, out, inp, err) })
    }

    /// Reduces `input` (`size * numel(output)` elements) over ranks and leaves this rank's
    /// slice (`rank * numel(output)..`) of the result in `output`.
    pub fn reduce_scatter(&self, output: &mut Tensor, input: &Tensor, op: ReduceOp) -> Result<()> {
        self.check("reduce_scatter", "output", output)?;
        self.check("reduce_scatter", "input", input)?;
        self.check_sizes("reduce_scatter", input, output)?;
        let (mut output, input) = (output.view([-1]), input.view([-1]));
        let (out, inp) = (output.as_mut_ptr() as *mut c_void, input.as_ptr() as *mut c_void);
        self.call("reduce_scatter", |err| unsafe { ffi::pd_reduce_scatter(self.raw, out, inp, op.code(), err) })
    }

    /// `whole` must hold `size` times the elements of `part`, of the same kind.
    fn check_sizes(&self, op: &'static str, whole: &Tensor, part: &Tensor) -> Result<()> {
        if whole.kind() != part.kind() {
            let message = format!("kinds differ: {:?} and {:?}", whole.kind(), part.kind());
            return Err(DistError::Input { op, message });
        }
        if whole.numel() != part.numel() * self.size {
            let message = format!(
                "the whole has {} elements, the part {}: the whole must have world size ({}) x part",
                whole.numel(),
                part.numel(),
                self.size
            );
            return Err(DistError::Input { op, message });
        }
        Ok(())
    }

    /// Waits until every rank has reached the barrier.
    pub fn barrier(&self) -> Result<()> {
        self.call("barrier", |err| unsafe { ffi::pd_barrier(self.raw, err) })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from pd_gloo_new and is freed once.
        unsafe { ffi::pd_group_free(self.raw) }
    }
}
