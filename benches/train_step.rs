//! Throughput of one training step (forward + backward of the mean next-token NLL over a
//! batch) of a model folder on the CPU, and the rate of a square GEMM in the same process,
//! so that the step can be compared with the FLOP floor `6 · params · tokens / GEMM rate`.
//! Compared with PyTorch/transformers by `scripts/bench/train_step.sh`.
//!
//! ```text
//! cargo bench --bench train_step -- MODEL_DIR \
//!     [--dtype f32|bf16] [--batch 4] [--seq 128] [--steps 5] [--threads 2] \
//!     [--loss full|selected] [--prompt 1] [--gemm 2048]
//! ```
//!
//! `cargo bench --bench train_step -- --gemm-only [--gemm 2048] [--threads 2]` measures only
//! the f32 and bf16 GEMM rates and names the CPU's bf16 instructions: whether `dtype = "bf16"`
//! pays on this CPU (it does with AVX-512 BF16 or AMX, several times over; without them bf16
//! runs slower than f32).
//!
//! In test mode (`cargo test`, which runs benches without `--bench`) it takes one small step
//! of each loss form on the tiny fixture checkpoint and checks that the two forms agree, so
//! CI keeps the bench working without timing anything.
//!
//! The first `--prompt P` tokens of each sequence are a prompt: the loss scores the `T - P`
//! completion tokens `P..T` (predicted from positions `P - 1..T - 1`), as a preference or SFT
//! step does; `P = 1` scores every next token. `--loss full` computes logits at every
//! position (`forward`) and selects the scored ones afterwards, as `transformers` does with
//! `labels` of -100 on the prompt; `--loss selected` projects only the scored positions
//! (`final_hidden` + `project_logits`) and uses `logsumexp - logit[target]`. Token ids are
//! random (seed 0), every position is real. Prints one JSON object.

use std::time::Instant;

use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, LoadOptions};
use tch::{Device, Kind, Tensor};

struct Options {
    dir: String,
    kind: Kind,
    batch: i64,
    seq: i64,
    steps: usize,
    threads: i32,
    selected: bool,
    prompt: i64,
    gemm: i64,
}

/// The fixture checkpoint of the test-mode pass.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crates/lm-backend/tests/fixtures/llama");

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut args = args.into_iter();
    let dir = args.next().ok_or("usage: cargo bench --bench train_step -- MODEL_DIR [--dtype f32|bf16] ...")?;
    let mut o = Options {
        dir,
        kind: Kind::Float,
        batch: 4,
        seq: 128,
        steps: 5,
        threads: 2,
        selected: false,
        prompt: 1,
        gemm: 2048,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<i64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--dtype" => o.kind = kind_of(&value)?,
            "--batch" => o.batch = number(&value)?,
            "--seq" => o.seq = number(&value)?,
            "--steps" => o.steps = number(&value)? as usize,
            "--threads" => o.threads = number(&value)? as i32,
            "--gemm" => o.gemm = number(&value)?,
            "--prompt" => o.prompt = number(&value)?,
            "--loss" => o.selected = value == "selected",
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if o.prompt < 1 || o.prompt >= o.seq {
        return Err(format!("--prompt {} must be in 1..{}", o.prompt, o.seq));
    }
    Ok(o)
}

fn kind_of(name: &str) -> Result<Kind, String> {
    match name {
        "f32" => Ok(Kind::Float),
        "bf16" => Ok(Kind::BFloat16),
        other => Err(format!("unknown dtype {other}")),
    }
}

/// FLOP/s of `[n, n] x [n, n]` in `kind`: best of 3 timed products after one warm-up.
fn gemm_rate(n: i64, kind: Kind) -> f64 {
    let a = Tensor::randn([n, n], (kind, Device::Cpu));
    let b = Tensor::randn([n, n], (kind, Device::Cpu));
    let _ = a.matmul(&b);
    let best = (0..3)
        .map(|_| {
            let start = Instant::now();
            let _ = a.matmul(&b);
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (n as f64).powi(3) / best
}

/// Mean NLL of the completion tokens `P..T` of `ids` `[B, T]` (predicted from positions
/// `P - 1..T - 1`), in f32.
fn loss(model: &HfCausalLm, ids: &Tensor, mask: &Tensor, selected: bool, prompt: i64) -> Tensor {
    let t = ids.size()[1];
    let n = t - prompt; // scored tokens per sequence
    let targets = ids.narrow(1, prompt, n).reshape([-1, 1]); // [N, 1]
    if selected {
        let hidden = model.final_hidden(ids, mask).unwrap(); // [B, T, D]
        let d = hidden.size()[2];
        let scored = hidden.narrow(1, prompt - 1, n).reshape([-1, d]); // [N, D]
        let logits = model.project_logits(&scored).unwrap().to_kind(Kind::Float); // [N, V]
        (logits.logsumexp([-1], false) - logits.gather(1, &targets, false).squeeze_dim(1)).mean(Kind::Float)
    } else {
        let logits = model.forward(ids, mask, &HiddenRequest::none()).unwrap().logits; // [B, T, V]
        let v = logits.size()[2];
        let logp = logits.narrow(1, prompt - 1, n).reshape([-1, v]).log_softmax(-1, Kind::Float); // [N, V]
        -logp.gather(1, &targets, false).mean(Kind::Float)
    }
}

/// Median step time, its samples, and the last loss of `o.steps` timed steps after a warm-up.
fn time_steps(o: &Options, model: &HfCausalLm) -> (f64, Vec<f64>, f64) {
    let vocab = model.config().vocab_size as i64;
    let ids = Tensor::randint(vocab, [o.batch, o.seq], (Kind::Int64, Device::Cpu));
    let mask = ids.ones_like();
    let mut times = vec![];
    let mut last_loss = f64::NAN;
    for step in 0..=o.steps {
        for p in model.parameters().values() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let start = Instant::now();
        let l = loss(model, &ids, &mask, o.selected, o.prompt);
        l.backward();
        let seconds = start.elapsed().as_secs_f64();
        last_loss = l.double_value(&[]);
        if step > 0 {
            times.push(seconds); // step 0 is a warm-up
        }
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times, last_loss)
}

/// One measured configuration, printed as a JSON line.
fn bench(o: &Options) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    tch::set_num_threads(o.threads);
    tch::manual_seed(0);
    let model = HfCausalLm::load(&o.dir, LoadOptions::cpu_f32().with_dtype(o.kind))?;
    model.set_trainable(true);
    let params: i64 = model.parameters().values().map(|p| p.numel() as i64).sum();
    let (median, times, last_loss) = time_steps(o, &model);
    let tokens = (o.batch * o.seq) as f64;
    let rate = gemm_rate(o.gemm, o.kind);
    let floor = 6.0 * params as f64 * tokens / rate;
    Ok(serde_json::json!({
        "impl": if o.selected { "polyalign (selected positions)" } else { "polyalign" },
        "dtype": if o.kind == Kind::Float { "f32" } else { "bf16" },
        "batch": o.batch, "seq": o.seq, "prompt": o.prompt, "threads": o.threads, "params": params,
        "step_s_median": median, "step_s_all": times, "tokens_per_s": tokens / median,
        "loss": last_loss, "gemm_n": o.gemm, "gemm_gflops": rate / 1e9,
        "flop_floor_s": floor, "floor_fraction": floor / median,
    }))
}

/// Test mode: one small step of each loss form on the fixture; both must give the same loss.
fn smoke() -> Result<(), Box<dyn std::error::Error>> {
    let args = |loss: &str| -> Vec<String> {
        [FIXTURE, "--batch", "2", "--seq", "12", "--steps", "1", "--threads", "1", "--prompt", "4", "--gemm", "64"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--loss".to_string(), loss.to_string()])
            .collect()
    };
    let full = bench(&parse(args("full"))?)?;
    let selected = bench(&parse(args("selected"))?)?;
    let (a, b) = (full["loss"].as_f64().unwrap_or(f64::NAN), selected["loss"].as_f64().unwrap_or(f64::NAN));
    if !(a.is_finite() && a > 0.0 && (a - b).abs() <= 1e-5 * a) {
        return Err(format!("the two loss forms disagree on the fixture: full {a}, selected {b}").into());
    }
    println!("{full}\n{selected}");
    Ok(())
}

/// `--gemm-only`: the f32 and bf16 GEMM rates of this CPU, and its bf16 instructions.
fn gemm_only(args: &[String]) -> Result<serde_json::Value, String> {
    let value = |flag: &str, default: i64| -> Result<i64, String> {
        match args.iter().position(|a| a == flag) {
            None => Ok(default),
            Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or(format!("{flag} needs a number")),
        }
    };
    let (n, threads) = (value("--gemm", 2048)?, value("--threads", 2)?);
    tch::set_num_threads(threads as i32);
    let (f32_rate, bf16_rate) = (gemm_rate(n, Kind::Float), gemm_rate(n, Kind::BFloat16));
    Ok(serde_json::json!({
        "gemm_n": n, "threads": threads, "f32_gflops": f32_rate / 1e9, "bf16_gflops": bf16_rate / 1e9,
        "bf16_over_f32": bf16_rate / f32_rate, "cpu_bf16_flags": torch_device::cpu_bf16_instructions(),
    }))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return smoke();
    }
    let args: Vec<String> = args.into_iter().filter(|a| a != "--bench").collect();
    if args.iter().any(|a| a == "--gemm-only") {
        println!("{}", gemm_only(&args)?);
        return Ok(());
    }
    let o = parse(args)?;
    println!("{}", bench(&o)?);
    Ok(())
}
