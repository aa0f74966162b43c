//! Whether a plan fits a device, and which switches of the config would make it fit.
//!
//! A device of `M` bytes fits a peak of `P` bytes when `P + P * percent / 100 +
//! HEADROOM_FIXED <= M`: the fixed part is the CUDA context, cuBLAS workspaces and libtorch's
//! own kernels (on a CPU: the process's code and libraries, measured at 0.11 GiB), the
//! proportional part the allocator's fragmentation: [`HEADROOM_PERCENT`] for CUDA's caching
//! allocator (packed rows change shape every step), [`HEADROOM_PERCENT_CPU`] on a CPU, where
//! glibc's `malloc` keeps freed blocks below its mmap threshold and the measured peak resident
//! memory was 14-18% above the live bytes (docs/benchmarks.md).
//!
//! Switches are tried in an order of preference (those that leave the results unchanged
//! first): `packing = true`, `attention = "sdpa"`, `gradient_checkpointing = true`, with more
//! than one process `shard_optimizer = true`, halving
//! `batch_size` while doubling `grad_accum` (the same optimizer step), `dtype = "bf16"`, and
//! `[lora]` with its defaults. The first prefix that fits is then pruned of the switches it
//! does not need.

use super::{estimate, MemoryPlan, PlanInputs};
use crate::config::{AttentionImpl, Dtype, LoraConfig, RunConfig};
use serde::Serialize;

/// Fixed headroom: CUDA context, library workspaces and kernels (1 GiB).
pub const HEADROOM_FIXED: u64 = 1 << 30;
/// Proportional headroom for a CUDA device's allocator, in percent of the peak.
pub const HEADROOM_PERCENT: u64 = 10;
/// Proportional headroom on a CPU (glibc's `malloc`), in percent of the peak.
pub const HEADROOM_PERCENT_CPU: u64 = 20;

/// The proportional headroom for `[model] device`.
pub fn headroom_percent(device: &str) -> u64 {
    if device == "cpu" {
        HEADROOM_PERCENT_CPU
    } else {
        HEADROOM_PERCENT
    }
}

/// The bytes a device needs for a peak of `peak` bytes with `percent` of proportional headroom
/// and [`HEADROOM_FIXED`].
pub fn required_bytes(peak: u64, percent: u64) -> u64 {
    peak + peak * percent / 100 + HEADROOM_FIXED
}

/// One change of the config that lowers the peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Switch {
    /// `[train] packing = true`.
    Packing,
    /// `[model] attention = "sdpa"`.
    Sdpa,
    /// `[train] gradient_checkpointing = true`.
    GradientCheckpointing,
    /// `[train] shard_optimizer = true` (data-parallel runs only).
    ShardOptimizer,
    /// `[train] batch_size` halved (to 1 when odd), `grad_accum` multiplied to keep the
    /// optimizer step's batch.
    SmallerBatch,
    /// `[model] dtype = "bf16"`.
    Bf16,
    /// `[lora]` with its defaults (r = 16, every projection).
    Lora,
}

impl Switch {
    /// The order in which switches are tried.
    pub const ORDER: [Switch; 7] = [
        Switch::Packing,
        Switch::Sdpa,
        Switch::GradientCheckpointing,
        Switch::ShardOptimizer,
        Switch::SmallerBatch,
        Switch::Bf16,
        Switch::Lora,
    ];

    /// Applies the switch to `run`; false when it does not apply (already set).
    pub fn apply(self, run: &mut RunConfig, softcapped: bool) -> bool {
        let t = &mut run.train;
        match self {
            Switch::Packing => !std::mem::replace(&mut t.packing, true),
            Switch::Sdpa => {
                !softcapped && std::mem::replace(&mut run.model.attention, AttentionImpl::Sdpa) == AttentionImpl::Eager
            }
            Switch::GradientCheckpointing => !std::mem::replace(&mut t.gradient_checkpointing, true),
            Switch::ShardOptimizer => !std::mem::replace(&mut t.shard_optimizer, true),
            Switch::SmallerBatch if t.batch_size > 1 => {
                let factor = if t.batch_size % 2 == 0 { 2 } else { t.batch_size };
                t.batch_size /= factor;
                t.grad_accum *= factor;
                true
            }
            Switch::SmallerBatch => false,
            Switch::Bf16 => std::mem::replace(&mut run.model.dtype, Dtype::Bf16) == Dtype::F32,
            Switch::Lora => run.lora.is_none() && run.lora.replace(LoraConfig::default()).is_none(),
        }
    }

    /// How the switch reads in a config, e.g. `gradient_checkpointing = true`.
    pub fn describe(self) -> &'static str {
        match self {
            Switch::Packing => "[train] packing = true",
            Switch::Sdpa => "[model] attention = \"sdpa\"",
            Switch::GradientCheckpointing => "[train] gradient_checkpointing = true",
            Switch::ShardOptimizer => "[train] shard_optimizer = true",
            Switch::SmallerBatch => "[train] batch_size / 2 with grad_accum x 2",
            Switch::Bf16 => "[model] dtype = \"bf16\"",
            Switch::Lora => "[lora] (r = 16, all projections)",
        }
    }
}

/// A plan against a device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fit {
    /// The device's memory.
    pub device_bytes: u64,
    /// The proportional headroom used (percent of the peak; the device's).
    pub headroom_percent: u64,
    /// The peak with the headroom.
    pub required_bytes: u64,
    /// Whether it fits.
    pub fits: bool,
    /// Each applicable switch alone and the peak it gives.
    pub single_switches: Vec<(Switch, u64)>,
    /// A small set of switches that fits (empty when the run fits as it is), with the
    /// resulting `batch_size` and `grad_accum`.
    pub suggestion: Option<Suggestion>,
}

/// Switches that make a run fit, or the smallest peak they reach.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    /// The switches, in order (`SmallerBatch` may repeat).
    pub switches: Vec<Switch>,
    /// The peak with them.
    pub peak: u64,
    /// Whether they make it fit (false: even every switch is not enough).
    pub fits: bool,
    /// `batch_size` with them.
    pub batch_size: usize,
    /// `grad_accum` with them.
    pub grad_accum: usize,
}

/// The peak of `inputs` with `run` instead of its config.
fn peak_with(inputs: &PlanInputs, run: &RunConfig) -> u64 {
    estimate(&PlanInputs { run, ..inputs.clone() }).phases.peak
}

/// `run` with `switches` applied in order.
fn applied(base: &RunConfig, switches: &[Switch], softcapped: bool) -> RunConfig {
    let mut run = base.clone();
    for s in switches {
        s.apply(&mut run, softcapped);
    }
    run
}

/// Checks `plan` (of `inputs`) against a device of `device_bytes`, and finds switches that
/// make it fit when it does not (see the module documentation).
pub fn check_fit(inputs: &PlanInputs, plan: &MemoryPlan, device_bytes: u64) -> Fit {
    let percent = headroom_percent(&inputs.run.model.device);
    let required = required_bytes(plan.phases.peak, percent);
    let fits = required <= device_bytes;
    let base = inputs.run;
    let softcapped = inputs.model.attn_logit_softcap.is_some();
    let fits_with = |run: &RunConfig| required_bytes(peak_with(inputs, run), percent) <= device_bytes;
    // Sharding the optimizer state needs more than one process.
    let order: Vec<Switch> =
        Switch::ORDER.into_iter().filter(|&s| s != Switch::ShardOptimizer || inputs.world_size > 1).collect();
    let single_switches = order
        .iter()
        .copied()
        .filter_map(|s| {
            let mut run = base.clone();
            s.apply(&mut run, softcapped).then(|| (s, peak_with(inputs, &run)))
        })
        .collect();
    let suggestion = (!fits).then(|| {
        let mut switches = vec![];
        let mut run = base.clone();
        'search: for &s in &order {
            loop {
                if fits_with(&run) {
                    break 'search;
                }
                if !s.apply(&mut run, softcapped) {
                    break;
                }
                switches.push(s);
                if s != Switch::SmallerBatch {
                    break;
                }
            }
        }
        let found = fits_with(&run);
        if found {
            // Drop what the fitting set does not need, latest first.
            let mut i = switches.len();
            while i > 0 {
                i -= 1;
                let mut fewer = switches.clone();
                fewer.remove(i);
                if fits_with(&applied(base, &fewer, softcapped)) {
                    switches = fewer;
                }
            }
            run = applied(base, &switches, softcapped);
        }
        Suggestion {
            peak: peak_with(inputs, &run),
            fits: found,
            batch_size: run.train.batch_size,
            grad_accum: run.train.grad_accum,
            switches,
        }
    });
    Fit { device_bytes, headroom_percent: percent, required_bytes: required, fits, single_switches, suggestion }
}
