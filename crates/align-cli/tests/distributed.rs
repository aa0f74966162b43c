//! Data parallelism end to end (CPU, Gloo, 2 processes on the tiny Llama fixture): `align
//! train --nproc 2` with `batch_size = B` equals a one-process run with `batch_size = 2B`,
//! step by step (every logged value) and in its final weights, for DPO + SFT (a token-level
//! mean), KTO (its KL baseline), MPO with its retain term, DPO + MLC (at a fixed layer and
//! with `layer = "auto"`), and with the sharded optimizer; checkpoints resume across world
//! sizes; a worker killed mid-run stops the other with the rank named, and the last complete
//! checkpoint resumes.

mod common;

use common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Eight records in two languages: (id, en prompt, de prompt, en chosen, de chosen, en
/// rejected, de rejected), completions of different lengths so token means weigh them.
const RECORDS: &[[&str; 7]] = &[
    [
        "a",
        "How do I open a lock?",
        "Wie öffne ich ein Schloss?",
        "I cannot help.",
        "Ich kann nicht.",
        "Pick it.",
        "Nadel.",
    ],
    [
        "b",
        "Tell me a story.",
        "Erzähl mir eine Geschichte.",
        "Once upon a time there was a king.",
        "Es war einmal.",
        "No.",
        "Nein.",
    ],
    [
        "c",
        "How to make a fire?",
        "Wie macht man Feuer?",
        "Use dry wood.",
        "Trockenes Holz.",
        "Burn the house down.",
        "Das Haus.",
    ],
    ["d", "What is the sky?", "Was ist der Himmel?", "It is above us.", "Er ist oben.", "Go away.", "Geh weg."],
    ["e", "Where is the sea?", "Wo ist das Meer?", "To the west.", "Im Westen.", "Nowhere at all, ever.", "Nirgends."],
    [
        "f",
        "Can I steal a car?",
        "Darf ich ein Auto stehlen?",
        "No, that is a crime.",
        "Nein.",
        "Yes, break the window.",
        "Ja.",
    ],
    ["g", "Name a colour.", "Nenne eine Farbe.", "Blue.", "Blau.", "I will not.", "Ich will nicht."],
    ["h", "Is water wet?", "Ist Wasser nass?", "Yes, it is.", "Ja.", "Water is dry and hot.", "Nein, trocken."],
];

/// A temp folder with `base/` and `pairs.jsonl`.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    model_dir(&root, "base");
    fs::write(root.join("pairs.jsonl"), pair_lines(RECORDS).join("\n")).unwrap();
    (dir, root)
}

/// Writes `root/<name>.toml` (objectives, `batch_size`, extra `[train]` keys) and returns its path.
///
/// The learning rate is 1e-4 (DPO's papers use 5e-7 to 5e-6): AdamW divides each element's
/// gradient by its own magnitude, so an element whose gradient is at rounding level moves by
/// up to `lr` either way, and the final weights of two runs that differ only in rounding agree
/// to about `lr` times that share, not better.
fn config(root: &Path, name: &str, objectives: &str, batch_size: usize, extra_train: &str) -> String {
    let text = format!(
        "[model]\npath = \"base\"\n[data]\ntrain = \"pairs.jsonl\"\nlanguages = [\"en\", \"de\"]\nmax_length = 64\n\
         {objectives}\n[optim]\nlr = 1e-4\nwarmup_ratio = 0.0\nweight_decay = 0.01\n[train]\nbatch_size = {batch_size}\n\
         max_steps = 3\nseed = 11\ncollective_timeout_s = 60\n{extra_train}"
    );
    let path = root.join(format!("{name}.toml"));
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn metrics(out: &Path) -> Vec<serde_json::Map<String, Value>> {
    let text = fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap().as_object().unwrap().clone()).collect()
}

/// Keys that measure the machine, not the computation.
const TIMING: [&str; 4] = ["step_time_s", "comm_time_s", "world_size", "optimizer_state_mib"];

/// Every logged value of `a` and `b` (step by step) within `tol` (relative to the magnitude,
/// at least 1); the same keys, timing aside.
fn assert_same_metrics(a: &Path, b: &Path, tol: f64) {
    let (ma, mb) = (metrics(a), metrics(b));
    assert_eq!(ma.len(), mb.len(), "steps logged");
    for (la, lb) in ma.iter().zip(&mb) {
        let keys = |l: &serde_json::Map<String, Value>| {
            let mut k: Vec<String> = l.keys().filter(|k| !TIMING.contains(&k.as_str())).cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(la), keys(lb), "logged keys");
        for k in keys(la) {
            if k.ends_with("accuracies") && la["step"].as_f64() == Some(1.0) {
                // At step 1 the policy is the reference: every reward is 0 up to rounding, and
                // whether chosen > rejected depends on how the rows were padded together.
                continue;
            }
            let (x, y) = (la[&k].as_f64().unwrap(), lb[&k].as_f64().unwrap());
            assert!((x - y).abs() <= tol * x.abs().max(1.0), "step {}: {k} {x} vs {y}", la["step"]);
        }
    }
}

/// The largest absolute difference between two folders' `model.safetensors`.
fn max_weight_diff(a: &Path, b: &Path) -> f64 {
    let wa = tch::Tensor::read_safetensors(a.join("model.safetensors")).unwrap();
    let wb = tch::Tensor::read_safetensors(b.join("model.safetensors")).unwrap();
    assert_eq!(wa.len(), wb.len());
    wa.iter()
        .map(|(n, t)| {
            let u = &wb.iter().find(|(m, _)| m == n).unwrap().1;
            (t - u).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

/// `align train --nproc 2` with batch B equals `align train` with batch 2B; returns the
/// two-process run's metrics.
fn assert_two_equal_one(
    root: &Path,
    objectives: &str,
    extra_train: &str,
    name: &str,
) -> Vec<serde_json::Map<String, Value>> {
    assert_two_equal_one_with(root, objectives, extra_train, name, "")
}

/// As [`assert_two_equal_one`], with `extra_model` lines in `[model]`.
fn assert_two_equal_one_with(
    root: &Path,
    objectives: &str,
    extra_train: &str,
    name: &str,
    extra_model: &str,
) -> Vec<serde_json::Map<String, Value>> {
    let with_model = |path: String| {
        let text =
            fs::read_to_string(&path).unwrap().replace("path = \"base\"\n", &format!("path = \"base\"\n{extra_model}"));
        fs::write(&path, text).unwrap();
        path
    };
    let one = with_model(config(root, &format!("{name}_1"), objectives, 4, extra_train));
    let two = with_model(config(root, &format!("{name}_2"), objectives, 2, extra_train));
    let (out1, out2) = (root.join(format!("{name}_out1")), root.join(format!("{name}_out2")));
    align_ok(&["train", "--config", &one, "--output", out1.to_str().unwrap()]);
    let stdout = align_ok(&["train", "--nproc", "2", "--config", &two, "--output", out2.to_str().unwrap()]);
    assert_eq!(stdout.matches("finished:").count(), 1, "only rank 0 prints the summary:\n{stdout}");
    let m2 = metrics(&out2);
    assert!(!out2.join("final").join("metrics.jsonl").exists());
    assert_eq!(m2[0]["world_size"].as_f64(), Some(2.0));
    assert!(m2.iter().all(|l| l["comm_time_s"].as_f64().unwrap() >= 0.0));
    assert_same_metrics(&out1, &out2, 1e-5);
    let diff = max_weight_diff(&out1.join("final"), &out2.join("final"));
    assert!(diff < 1e-5, "{name}: final weights differ by {diff}");
    let optimizer =
        |out: &Path| tch::Tensor::read_safetensors(out.join("final").join("optimizer.safetensors")).unwrap();
    let (o1, o2) = (optimizer(&out1), optimizer(&out2));
    assert_eq!(o1.len(), o2.len(), "{name}: optimizer state tensors");
    for (n, t) in &o1 {
        let u = &o2.iter().find(|(m, _)| m == n).unwrap_or_else(|| panic!("{name}: {n} missing")).1;
        let d = (t - u).abs().max().double_value(&[]);
        assert!(d <= 1e-5 * t.abs().max().double_value(&[]).max(1e-3), "{name}: optimizer state {n} differs by {d}");
    }
    m2
}

#[test]
fn dpo_with_sft_on_two_processes_equals_one_with_the_double_batch() {
    let (_dir, root) = setup();
    let objectives = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"sft\"\nweight = 0.5\n";
    assert_two_equal_one(&root, objectives, "", "dpo_sft");
}

#[test]
fn kto_on_two_processes_equals_one_with_the_double_batch() {
    let (_dir, root) = setup();
    assert_two_equal_one(&root, "[[objective]]\nkind = \"kto\"\n", "", "kto");
}

#[test]
fn mpo_with_retain_on_two_processes_equals_one_with_the_double_batch() {
    let (_dir, root) = setup();
    // A reference other than the base (the base after one SFT step): were the policy the
    // reference, the retain term and its gradient would be zero up to rounding at step 1, and
    // AdamW would turn that rounding into updates (see `config`).
    let sft = config(&root, "sft", "[[objective]]\nkind = \"sft\"\n", 8, "");
    let sft =
        fs::read_to_string(&sft).unwrap().replace("max_steps = 3", "max_steps = 1").replace("lr = 1e-4", "lr = 1e-2");
    fs::write(root.join("sft.toml"), sft).unwrap();
    align_ok(&[
        "train",
        "--config",
        root.join("sft.toml").to_str().unwrap(),
        "--output",
        root.join("sft").to_str().unwrap(),
    ]);
    let reference = root.join("sft").join("final");
    let mpo = "[[objective]]\nkind = \"mpo\"\nretain_weight = 1.0\n";
    assert_two_equal_one_with(&root, mpo, "", "mpo", &format!("reference = {:?}\n", reference.to_str().unwrap()));
}

#[test]
fn dpo_with_mlc_on_two_processes_equals_one_with_the_double_batch() {
    let (_dir, root) = setup();
    let objectives = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nweight = 0.5\nlayer = 2\n";
    assert_two_equal_one(&root, objectives, "packing = false\ngrad_accum = 2\n", "dpo_mlc");
}

/// `layer = "auto"` on two processes: every rank trains rank 0's layer, the run equals the
/// one-process run (which chose the same layer from the same records), and the choice is
/// recorded once.
#[test]
fn auto_mlc_layer_on_two_processes_equals_one_with_the_double_batch() {
    let (_dir, root) = setup();
    let objectives = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nweight = 0.5\nlayer = \"auto\"\n";
    assert_two_equal_one(&root, objectives, "", "auto_mlc");
    let record = |out: &str| -> Value {
        serde_json::from_str(&fs::read_to_string(root.join(out).join("auto_layer.json")).unwrap()).unwrap()
    };
    let (one, two) = (record("auto_mlc_out1"), record("auto_mlc_out2"));
    assert!(one["terms"][0]["chosen"].is_u64(), "{one}");
    assert_eq!(one["terms"][0]["chosen"], two["terms"][0]["chosen"]);
    assert_eq!(one["terms"][0]["profile"], two["terms"][0]["profile"]);
}

#[test]
fn sharded_optimizer_state_equals_the_whole_state_and_halves_per_rank() {
    let (_dir, root) = setup();
    let objectives = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"sft\"\nweight = 0.5\n";
    let whole = assert_two_equal_one(&root, objectives, "", "whole");
    let sharded = assert_two_equal_one(&root, objectives, "shard_optimizer = true\n", "sharded");
    let mib = |m: &[serde_json::Map<String, Value>]| m[0]["optimizer_state_mib"].as_f64().unwrap();
    let ratio = mib(&sharded) / mib(&whole);
    assert!(
        (ratio - 0.5).abs() < 0.02,
        "rank 0 holds {} of the whole state ({} MiB of {})",
        ratio,
        mib(&sharded),
        mib(&whole)
    );
}

/// `root/<out>` after `align train` of `config` (with `nproc` processes), deleting everything
/// after `checkpoint-1/`: an interrupted run as the next one finds it.
fn run_and_cut(root: &Path, config: &str, out: &str, nproc: &str) -> PathBuf {
    let out = root.join(out);
    let mut args = vec!["train", "--config", config, "--output", out.to_str().unwrap()];
    if nproc != "1" {
        args.extend(["--nproc", nproc]);
    }
    align_ok(&args);
    fs::remove_dir_all(out.join("final")).unwrap();
    fs::remove_dir_all(out.join("checkpoint-2")).unwrap();
    out
}

#[test]
fn checkpoints_resume_across_world_sizes() {
    let (_dir, root) = setup();
    let objectives = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"sft\"\nweight = 0.5\n";
    let one = config(&root, "one", objectives, 4, "save_every = 1\n");
    let two = config(&root, "two", objectives, 2, "save_every = 1\nshard_optimizer = true\n");
    let whole = root.join("whole");
    align_ok(&["train", "--config", &one, "--output", whole.to_str().unwrap()]);
    // One process resumed by two, and two (sharded) resumed by one.
    for (first, (then, nproc_then), nproc_first) in [(&one, (&two, "2"), "1"), (&two, (&one, "1"), "2")] {
        let out = run_and_cut(&root, first, &format!("cut{nproc_first}"), nproc_first);
        let mut args = vec!["train", "--config", then.as_str(), "--output", out.to_str().unwrap(), "--resume"];
        if nproc_then != "1" {
            args.extend(["--nproc", nproc_then]);
        }
        align_ok(&args);
        assert_same_metrics(&whole, &out, 1e-5);
        let diff = max_weight_diff(&whole.join("final"), &out.join("final"));
        assert!(diff < 1e-5, "{nproc_first} then {nproc_then} process(es): final weights differ by {diff}");
    }
}

/// The pids of `parent`'s children (Linux).
fn children(parent: u32) -> Vec<u32> {
    let path = format!("/proc/{parent}/task/{parent}/children");
    fs::read_to_string(path).unwrap_or_default().split_whitespace().map(|p| p.parse().unwrap()).collect()
}

#[test]
fn a_killed_worker_stops_the_run_naming_it_and_the_last_checkpoint_resumes() {
    let (_dir, root) = setup();
    let objectives = "[[objective]]\nkind = \"dpo\"\n";
    let long = config(&root, "long", objectives, 2, "save_every = 2\n").replace(".toml", "");
    let body = fs::read_to_string(format!("{long}.toml")).unwrap().replace("max_steps = 3", "max_steps = 400");
    fs::write(format!("{long}.toml"), body).unwrap();
    let out = root.join("killed");
    let mut launcher = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["train", "--nproc", "2", "--config", &format!("{long}.toml"), "--output", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a complete checkpoint, then kill rank 1 (the second worker started).
    let start = Instant::now();
    while !out.join("checkpoint-4").join("trainer_state.json").exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint-4 after 2 minutes");
        assert!(launcher.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let workers = children(launcher.id());
    assert_eq!(workers.len(), 2, "two workers: {workers:?}");
    let killed_at = Instant::now();
    Command::new("kill").args(["-9", &workers[1].to_string()]).status().unwrap();
    let output = launcher.wait_with_output().unwrap();
    assert!(killed_at.elapsed() < Duration::from_secs(60), "the run took {:?} to stop", killed_at.elapsed());
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("worker rank 1 was killed by signal 9"), "{stderr}");
    assert!(!out.join("final").exists());
    // The last complete checkpoint resumes; the run ends at its last step.
    let short = fs::read_to_string(format!("{long}.toml")).unwrap().replace("max_steps = 400", "max_steps = 8");
    fs::write(format!("{long}.toml"), short).unwrap();
    let resumed = align_ok(&[
        "train",
        "--nproc",
        "2",
        "--config",
        &format!("{long}.toml"),
        "--output",
        out.to_str().unwrap(),
        "--resume",
    ]);
    assert!(resumed.contains("finished: 8 optimizer steps"), "{resumed}");
}

#[test]
fn bad_launches_are_errors_not_hangs() {
    let (_dir, root) = setup();
    let cfg = config(&root, "dpo", "[[objective]]\nkind = \"dpo\"\n", 2, "");
    let out = root.join("o");
    // WORLD_SIZE without RANK.
    let run = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["train", "--config", &cfg, "--output", out.to_str().unwrap()])
        .env("WORLD_SIZE", "2")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(text(&run.stderr).contains("RANK is not set"), "{}", text(&run.stderr));
    // Ranks with different configs: the run stops at the rendezvous, naming the rank.
    let other = config(&root, "other", "[[objective]]\nkind = \"ipo\"\n", 2, "");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let spawn = |rank: &str, cfg: &str| {
        Command::new(env!("CARGO_BIN_EXE_align"))
            .args(["train", "--config", cfg, "--output", out.to_str().unwrap()])
            .envs([("RANK", rank), ("LOCAL_RANK", rank), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1")])
            .env("MASTER_PORT", &port)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (r0, r1) = (spawn("0", &cfg), spawn("1", &other));
    let (o0, o1) = (r0.wait_with_output().unwrap(), r1.wait_with_output().unwrap());
    for o in [&o0, &o1] {
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o.stderr).contains("rank(s) 1 have different configs from rank 0"), "{}", text(&o.stderr));
    }
    // A port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let run = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["train", "--nproc", "2", "--master-port", &port, "--config", &cfg, "--output", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(text(&run.stderr).contains(&format!("is port {port} in use")), "{}", text(&run.stderr));
}

#[test]
fn survivors_name_the_rank_that_died() {
    let (_dir, root) = setup();
    let cfg = config(&root, "long", "[[objective]]\nkind = \"dpo\"\n", 2, "");
    fs::write(&cfg, fs::read_to_string(&cfg).unwrap().replace("max_steps = 3", "max_steps = 2000")).unwrap();
    let out = root.join("o");
    // As torchrun starts them; kill one rank once both are training, and read the other's error.
    for (killed, survivor, want) in [(1, 0, "rank(s) 1 stopped"), (0, 1, "rank 0 has stopped")] {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let mut ranks: Vec<std::process::Child> = (0..2)
            .map(|r: usize| {
                Command::new(env!("CARGO_BIN_EXE_align"))
                    .args(["train", "--config", &cfg, "--output", out.to_str().unwrap()])
                    .envs([("RANK", r.to_string()), ("LOCAL_RANK", r.to_string()), ("WORLD_SIZE", "2".into())])
                    .envs([("MASTER_ADDR", "127.0.0.1".to_string()), ("MASTER_PORT", port.clone())])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let start = Instant::now();
        while !out.join("metrics.jsonl").exists()
            || fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().count() < 3
        {
            assert!(start.elapsed() < Duration::from_secs(120), "no training steps after 2 minutes");
            std::thread::sleep(Duration::from_millis(50));
        }
        ranks[killed].kill().unwrap();
        let _ = ranks[killed].wait();
        let killed_at = Instant::now();
        let survivor = ranks.remove(survivor).wait_with_output().unwrap();
        assert!(killed_at.elapsed() < Duration::from_secs(30), "the survivor took {:?} to stop", killed_at.elapsed());
        assert_eq!(survivor.status.code(), Some(1));
        let stderr = text(&survivor.stderr);
        assert!(stderr.contains(want), "{stderr}");
        fs::remove_dir_all(&out).unwrap();
    }
}

#[test]
fn sharded_bf16_master_weights_are_gathered_whole() {
    let (_dir, root) = setup();
    let cfg = config(&root, "bf16", "[[objective]]\nkind = \"dpo\"\n", 2, "shard_optimizer = true\n");
    fs::write(
        &cfg,
        fs::read_to_string(&cfg).unwrap().replace("path = \"base\"\n", "path = \"base\"\ndtype = \"bf16\"\n"),
    )
    .unwrap();
    let out = root.join("bf16_out");
    align_ok(&["train", "--nproc", "2", "--config", &cfg, "--output", out.to_str().unwrap()]);
    let weights = tch::Tensor::read_safetensors(out.join("final").join("model.safetensors")).unwrap();
    let state = tch::Tensor::read_safetensors(out.join("final").join("optimizer.safetensors")).unwrap();
    let find = |key: &str| state.iter().find(|(n, _)| n == key).map(|(_, t)| t.shallow_clone());
    let mut checked = 0;
    for (name, w) in &weights {
        // Every rank's shard of the f32 master weights, gathered, rounds to the saved weights.
        let master = find(&format!("master.{name}")).unwrap_or_else(|| panic!("no master weights for {name}"));
        assert_eq!(w.kind(), tch::Kind::BFloat16);
        assert!(master.to_kind(tch::Kind::BFloat16).equal(w), "{name}: master weights do not round to the weights");
        assert!(find(&format!("m.{name}")).unwrap().abs().sum(tch::Kind::Float).double_value(&[]) > 0.0, "{name}: m");
        checked += 1;
    }
    assert!(checked > 5, "{checked} tensors");
}
