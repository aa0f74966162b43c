//! The training loop: `align train --config run.toml`.
//!
//! One run: load the policy (and, when a term needs it, a frozen reference), encode every
//! record, compute the reference log-probs once (cached in the output folder), then take
//! optimizer steps of `grad_accum` micro-batches each, with AdamW, the learning-rate
//! schedule, gradient clipping, a NaN/inf guard, `metrics.jsonl`, checkpoints and resume.

use crate::atomic::write_file;
use crate::batch::{build_view, pad_pairs, ReferenceCache, StepModels, StepPlan};
use crate::config::{Dtype, ObjectiveKind, OnNonFinite, RunConfig};
use crate::data::load_records;
use crate::optim::{AdamW, AdamWConfig};
use crate::prepare::{prepare_records, PreparedRecord, RecordNeeds};
use crate::terms::{build_objective, ModelShape};
use crate::{DataOrder, LrSchedule, MetricsLog, Result, TrainError};
use align_losses::PreferenceObjective;
use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, LoadOptions, Tokenizer};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Files copied from the model folder into every checkpoint (when present).
pub const TOKENIZER_FILES: &[&str] =
    &["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

/// The file of a checkpoint holding the objective's own trainable tensors (MLC heads).
pub const OBJECTIVE_PARAMS: &str = "objective_params.safetensors";

/// How to run: where to write and whether to continue an interrupted run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The output folder (`metrics.jsonl`, `checkpoint-<step>/`, `final/`).
    pub output: PathBuf,
    /// Continue from the latest complete checkpoint in `output`.
    pub resume: bool,
    /// Show a progress bar (default: when stderr is a terminal); otherwise log lines.
    pub progress: Option<bool>,
}

/// What a finished (or interrupted) run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// Optimizer steps completed, in total.
    pub steps: u64,
    /// The last model folder written (`final/`, or the checkpoint of an interruption).
    pub saved: PathBuf,
    /// Bad data lines skipped (with `skip_bad_lines`).
    pub skipped_lines: usize,
    /// Steps skipped because loss or gradient was not finite (`on_nonfinite = "skip"`).
    pub nonfinite_steps: u64,
    /// True when Ctrl-C ended the run early (after saving).
    pub interrupted: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler once per process: the loop then saves and exits cleanly.
fn watch_ctrl_c() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    });
}

fn model_err(context: String) -> impl FnOnce(lm_backend::LmError) -> TrainError {
    move |source| TrainError::Model { context, source }
}

fn torch_err(context: &str) -> impl FnOnce(tch::TchError) -> TrainError + '_ {
    move |source| TrainError::Torch { context: context.to_string(), source }
}

/// The latest checkpoint of `output` whose `trainer_state.json` was written (the last file
/// of a checkpoint, so its presence means the checkpoint is complete).
pub fn latest_checkpoint(output: &Path) -> Option<(u64, PathBuf)> {
    std::fs::read_dir(output)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step: u64 = name.strip_prefix("checkpoint-")?.parse().ok()?;
            e.path().join("trainer_state.json").is_file().then(|| (step, e.path()))
        })
        .max_by_key(|(step, _)| *step)
}

/// Runs training as `config` (read from `config_path`) describes.
pub fn train(config: &RunConfig, config_path: &Path, opts: &TrainOptions) -> Result<TrainSummary> {
    watch_ctrl_c();
    INTERRUPTED.store(false, Ordering::SeqCst);
    let device = torch_device::device_from_str(&config.model.device)?;
    let kind = match config.model.dtype {
        Dtype::F32 => Kind::Float,
        Dtype::Bf16 => Kind::BFloat16,
    };
    tch::manual_seed(config.train.seed as i64);
    std::fs::create_dir_all(&opts.output).map_err(|source| TrainError::Io { path: opts.output.clone(), source })?;

    let base = &config.model.path;
    let tokenizer =
        Tokenizer::from_dir(base).map_err(model_err(format!("loading the tokenizer of {}", base.display())))?;
    let eos = tokenizer.eos_token_id().ok_or_else(|| TrainError::InvalidValue {
        path: config_path.to_path_buf(),
        table: "[model]".into(),
        key: "path".into(),
        why: format!("the tokenizer of {} has no EOS token to end completions with", base.display()),
    })?;
    let pad_id = tokenizer.pad_token_id().unwrap_or(eos) as i64;

    let resume_from = if opts.resume {
        let found = latest_checkpoint(&opts.output);
        if found.is_none() {
            return Err(TrainError::Resume {
                path: opts.output.clone(),
                why: "it holds no complete checkpoint-<step>/".into(),
            });
        }
        found
    } else {
        None
    };
    let load = LoadOptions::cpu_f32().with_dtype(kind).with_device(device);
    let policy_dir = resume_from.as_ref().map(|(_, p)| p.as_path()).unwrap_or(base);
    let policy = HfCausalLm::load(policy_dir, load)
        .map_err(model_err(format!("loading the policy from {}", policy_dir.display())))?;
    let shape = ModelShape { num_layers: policy.num_layers(), hidden_size: policy.config().hidden_size };

    let mut heads = tch::nn::VarStore::new(device);
    let objective = build_objective(&config.objectives, shape, &(heads.root() / "mlc_head"), config_path)?;
    let needs = objective.needs();
    let chosen_only = config.objectives.iter().all(|o| matches!(o.kind, ObjectiveKind::Sft));
    let plan = StepPlan::new(&needs, chosen_only);

    let data = load_records(&config.data.train, &config.data.languages, config.data.skip_bad_lines)?;
    let record_needs =
        RecordNeeds { rejected: !chosen_only, variants: !plan.variant_layers.is_empty(), targets: plan.targets };
    let (records, skipped_prep) = prepare_records(
        &data,
        &tokenizer,
        &config.data.languages,
        config.data.max_length,
        record_needs,
        config.data.skip_bad_lines,
    )?;
    let skipped_lines = data.skipped.len() + skipped_prep.len();
    for e in data.skipped.iter().chain(&skipped_prep) {
        eprintln!("skipped: {e}");
    }
    if skipped_lines > 0 {
        eprintln!("skipped {skipped_lines} bad record(s); training on {}", records.len());
    }

    let needs_reference_model = !plan.dominant_layers.is_empty();
    let reference_dir = config.model.reference.clone().unwrap_or_else(|| base.clone());
    let reference = if plan.reference || plan.kl || needs_reference_model {
        Some(
            HfCausalLm::load(&reference_dir, load)
                .map_err(model_err(format!("loading the reference from {}", reference_dir.display())))?,
        )
    } else {
        None
    };
    let cache = match (&reference, plan.reference || plan.kl) {
        (Some(r), true) => {
            Some(reference_cache(r, &records, &reference_dir, pad_id, config.train.batch_size, &opts.output, plan.kl)?)
        }
        _ => None,
    };
    let reference = if needs_reference_model { reference } else { None };

    policy.set_trainable(true);
    let mut params: Vec<(String, Tensor)> =
        policy.parameters().iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    for (n, t) in heads.variables() {
        params.push((format!("objective.{n}"), t));
    }
    let o = &config.optim;
    let mut optimizer = AdamW::new(params, AdamWConfig { betas: o.betas, eps: o.eps, weight_decay: o.weight_decay });

    let n = records.len();
    let per_step = config.train.batch_size * config.train.grad_accum;
    let total_steps = if config.train.max_steps > 0 {
        config.train.max_steps as u64
    } else {
        (config.train.epochs * n).div_ceil(per_step) as u64
    };
    let schedule = LrSchedule::new(o.lr, o.schedule, o.warmup_ratio, total_steps as usize);
    let order = DataOrder::new(n, config.train.seed);

    let mut start = 0;
    if let Some((step, dir)) = &resume_from {
        let state = Tensor::read_safetensors(dir.join("optimizer.safetensors"))
            .map_err(torch_err("reading optimizer.safetensors"))?;
        optimizer.load_state(&state, *step).map_err(|why| TrainError::Resume { path: dir.clone(), why })?;
        if !heads.variables().is_empty() {
            heads.load(dir.join(OBJECTIVE_PARAMS)).map_err(torch_err("reading objective_params.safetensors"))?;
        }
        start = *step;
        eprintln!("resuming from {} (step {step} of {total_steps})", dir.display());
    }
    let mut metrics_log = MetricsLog::open(&opts.output.join("metrics.jsonl"), resume_from.as_ref().map(|(s, _)| *s))?;
    let extra_files: Vec<PathBuf> = TOKENIZER_FILES.iter().map(|f| base.join(f)).filter(|p| p.is_file()).collect();
    let save = |dir: &Path, step: u64, optimizer: &AdamW| -> Result<()> {
        policy.save(dir, &extra_files).map_err(model_err(format!("saving {}", dir.display())))?;
        let state = optimizer.state();
        let tmp = dir.join("optimizer.safetensors.tmp");
        Tensor::write_safetensors(&state, &tmp).map_err(torch_err("writing optimizer.safetensors"))?;
        std::fs::rename(&tmp, dir.join("optimizer.safetensors"))
            .map_err(|source| TrainError::Io { path: dir.join("optimizer.safetensors"), source })?;
        if !heads.variables().is_empty() {
            let tmp = dir.join("objective_params.tmp.safetensors"); // the extension picks the format
            heads.save(&tmp).map_err(torch_err("writing objective_params.safetensors"))?;
            std::fs::rename(&tmp, dir.join(OBJECTIVE_PARAMS))
                .map_err(|source| TrainError::Io { path: dir.join(OBJECTIVE_PARAMS), source })?;
        }
        let trainer_state = serde_json::json!({ "step": step, "total_steps": total_steps, "seed": config.train.seed });
        write_file(&dir.join("trainer_state.json"), trainer_state.to_string().as_bytes())
    };

    let progress = Progress::new(opts.progress.unwrap_or_else(|| std::io::stderr().is_terminal()), total_steps, start);
    let models = StepModels {
        policy: &policy,
        reference: reference.as_ref(),
        cache: cache.as_ref(),
        pad_id,
        num_languages: config.data.languages.len(),
    };
    let mut nonfinite_steps = 0;
    let mut step = start;
    while step < total_steps {
        let t0 = Instant::now();
        let mut sums: Vec<(String, f64)> = Vec::new();
        let mut loss_total = 0.0;
        let mut tokens = 0usize;
        let mut bad: Option<(String, f64)> = None;
        for micro in 0..config.train.grad_accum {
            let first = (step as usize * config.train.grad_accum + micro) * config.train.batch_size;
            let indices: Vec<usize> =
                (first..first + config.train.batch_size).map(|p| order.epoch((p / n) as u64)[p % n]).collect();
            let batch: Vec<&PreparedRecord> = indices.iter().map(|&i| &records[i]).collect();
            let (view, t) = build_view(&models, &plan, &batch, &indices, &records)?;
            tokens += t;
            let out = objective
                .compute(&view)
                .map_err(|source| TrainError::Loss { context: format!("step {}", step + 1), source })?;
            let value = out.loss.double_value(&[]);
            if !value.is_finite() {
                bad = Some(("loss".into(), value));
                break;
            }
            loss_total += value / config.train.grad_accum as f64;
            (out.loss / config.train.grad_accum as f64).backward();
            for (k, v) in out.metrics.iter() {
                match sums.iter_mut().find(|(name, _)| name == k) {
                    Some((_, s)) => *s += v / config.train.grad_accum as f64,
                    None => sums.push((k.to_string(), v / config.train.grad_accum as f64)),
                }
            }
        }
        let grad_norm = if bad.is_none() { optimizer.grad_norm() } else { f64::NAN };
        if bad.is_none() && !grad_norm.is_finite() {
            bad = Some(("gradient norm".into(), grad_norm));
        }
        if let Some((what, value)) = bad {
            optimizer.zero_grad();
            match config.train.on_nonfinite {
                OnNonFinite::Skip => {
                    nonfinite_steps += 1;
                    eprintln!("step {}: {what} is not finite ({value}); step skipped", step + 1);
                    step += 1;
                    continue;
                }
                OnNonFinite::Stop => {
                    let dir = opts.output.join(format!("checkpoint-{step}"));
                    save(&dir, step, &optimizer)?;
                    return Err(TrainError::NonFinite { step: step + 1, what, value, saved: dir });
                }
            }
        }
        if o.max_grad_norm > 0.0 && grad_norm > o.max_grad_norm {
            optimizer.scale_grads(o.max_grad_norm / (grad_norm + 1e-6));
        }
        let lr = schedule.lr(step as usize);
        optimizer.step(lr);
        optimizer.zero_grad();
        step += 1;

        let mut line = vec![
            ("step".to_string(), step as f64),
            ("loss".to_string(), loss_total),
            ("lr".to_string(), lr),
            ("grad_norm".to_string(), grad_norm),
            ("step_time_s".to_string(), t0.elapsed().as_secs_f64()),
            ("tokens".to_string(), tokens as f64),
            ("epoch".to_string(), (step as usize * per_step) as f64 / n as f64),
        ];
        line.extend(sums);
        metrics_log.append(&line)?;
        progress.update(step, loss_total, tokens as f64 / t0.elapsed().as_secs_f64());

        let interrupted = INTERRUPTED.load(Ordering::SeqCst);
        let periodic = config.train.save_every > 0 && step % config.train.save_every as u64 == 0;
        if (periodic || interrupted) && step < total_steps {
            let dir = opts.output.join(format!("checkpoint-{step}"));
            save(&dir, step, &optimizer)?;
            if interrupted {
                progress.finish();
                eprintln!("interrupted: saved {} (continue with --resume)", dir.display());
                return Ok(TrainSummary { steps: step, saved: dir, skipped_lines, nonfinite_steps, interrupted: true });
            }
        }
    }
    progress.finish();
    let final_dir = opts.output.join("final");
    save(&final_dir, step, &optimizer)?;
    Ok(TrainSummary { steps: step, saved: final_dir, skipped_lines, nonfinite_steps, interrupted: false })
}

/// FNV-1a over the reference folder and every token id the cache covers: a cache whose
/// fingerprint differs was made for other data or another reference and is recomputed.
fn fingerprint(reference_dir: &Path, records: &[PreparedRecord], kl: bool) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for b in reference_dir.to_string_lossy().bytes() {
        eat(b as u64);
    }
    eat(kl as u64);
    for r in records {
        for part in [Some(&r.chosen), r.rejected.as_ref()].into_iter().flatten() {
            eat(part.prompt.len() as u64);
            part.ids().iter().for_each(|&i| eat(i as u64));
        }
    }
    format!("{h:016x}")
}

/// Reference log-probs of every record (and of the mismatched KL pairs when `kl`), computed
/// in batches without gradient, or read back from `output/reference_logps.safetensors` when
/// it was computed for the same reference and data.
fn reference_cache(
    reference: &HfCausalLm,
    records: &[PreparedRecord],
    reference_dir: &Path,
    pad_id: i64,
    batch_size: usize,
    output: &Path,
    kl: bool,
) -> Result<ReferenceCache> {
    let file = output.join("reference_logps.safetensors");
    let stamp_file = output.join("reference_logps.json");
    let stamp = fingerprint(reference_dir, records, kl);
    let names = ["chosen_sum", "chosen_count", "rejected_sum", "rejected_count", "kl_sum"];
    if std::fs::read_to_string(&stamp_file).is_ok_and(|s| s.contains(&stamp)) {
        if let Ok(tensors) = Tensor::read_safetensors(&file) {
            let get = |k: &str| tensors.iter().find(|(n, _)| n == k).map(|(_, t)| t.shallow_clone());
            if let [Some(a), Some(b), Some(c), Some(d), Some(e)] = names.map(get) {
                eprintln!("reference log-probs: reusing {}", file.display());
                return Ok(ReferenceCache {
                    chosen_sum: a,
                    chosen_count: b,
                    rejected_sum: c,
                    rejected_count: d,
                    kl_sum: e,
                });
            }
        }
    }
    let n = records.len();
    let progress = Progress::new(std::io::stderr().is_terminal(), n.div_ceil(batch_size) as u64, 0);
    let mut cols: [Vec<Tensor>; 5] = Default::default();
    let device = reference.device();
    let _guard = tch::no_grad_guard();
    for (k, chunk) in records.chunks(batch_size).enumerate() {
        let logps = |seqs: Vec<(&[i64], &[i64])>| -> Result<(Tensor, Tensor)> {
            let p = pad_pairs(&seqs, pad_id, device);
            let (s, _) = p.scored_logps(reference, &HiddenRequest::none(), "reference forward")?;
            Ok((s.sum.to_device(Device::Cpu), s.count.to_device(Device::Cpu)))
        };
        let (cs, cc) = logps(chunk.iter().map(|r| (&r.chosen.prompt[..], &r.chosen.completion[..])).collect())?;
        let rejected: Vec<_> = chunk.iter().map(|r| r.rejected.as_ref().unwrap_or(&r.chosen)).collect();
        let (rs, rc) = logps(rejected.iter().map(|e| (&e.prompt[..], &e.completion[..])).collect())?;
        let kl_sum = if kl {
            let start = k * batch_size;
            let seqs = (start..start + chunk.len())
                .map(|i| (&records[i].chosen.prompt[..], &records[(i + 1) % n].chosen.completion[..]))
                .collect();
            logps(seqs)?.0
        } else {
            cs.zeros_like()
        };
        for (col, t) in cols.iter_mut().zip([cs, cc, rs, rc, kl_sum]) {
            col.push(t);
        }
        progress.update(k as u64 + 1, f64::NAN, f64::NAN);
    }
    progress.finish();
    let [a, b, c, d, e] = cols.map(|c| Tensor::cat(&c, 0));
    let named: Vec<(&str, &Tensor)> = names.iter().copied().zip([&a, &b, &c, &d, &e]).collect();
    let tmp = output.join("reference_logps.safetensors.tmp");
    Tensor::write_safetensors(&named, &tmp).map_err(torch_err("writing reference_logps.safetensors"))?;
    std::fs::rename(&tmp, &file).map_err(|source| TrainError::Io { path: file.clone(), source })?;
    write_file(&stamp_file, serde_json::json!({ "fingerprint": stamp, "records": n }).to_string().as_bytes())?;
    Ok(ReferenceCache { chosen_sum: a, chosen_count: b, rejected_sum: c, rejected_count: d, kl_sum: e })
}

/// A progress bar on a terminal, plain log lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    every: u64,
    started: Instant,
}

impl Progress {
    fn new(terminal: bool, total: u64, position: u64) -> Self {
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]")
                    .expect("valid template"),
            );
            bar.set_position(position);
            bar
        });
        Self { bar, total, every: (total / 20).max(1), started: Instant::now() }
    }

    fn update(&self, step: u64, loss: f64, tokens_per_s: f64) {
        let msg = if loss.is_nan() { String::new() } else { format!("loss {loss:.4}  {tokens_per_s:.0} tok/s") };
        match &self.bar {
            Some(bar) => {
                bar.set_position(step);
                bar.set_message(msg);
            }
            None if step % self.every == 0 || step == self.total => {
                eprintln!("[{step}/{}] {msg}  ({:.1}s)", self.total, self.started.elapsed().as_secs_f64());
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
