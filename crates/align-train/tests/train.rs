//! End-to-end training on the tiny real Llama checkpoint of lm-backend's fixtures: every
//! objective stack trains, DPO starts at ln 2, resume equals an uninterrupted run, and bad
//! input is reported with its file, line or key.

use align_train::{train, Interrupt, RunConfig, TrainError, TrainEvent, TrainOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lm-backend/tests/fixtures");

/// A model folder: the tiny Llama's weights and config with the fixture tokenizer.
fn model_dir(root: &Path) -> PathBuf {
    let dir = root.join("base");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(Path::new(FIXTURES).join("llama").join(f), dir.join(f)).unwrap();
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(Path::new(FIXTURES).join("tokenizer").join(f), dir.join(f)).unwrap();
    }
    dir
}

const RECORDS: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    (
        "How do I open a lock?",
        "Wie öffne ich ein Schloss?",
        "I cannot help with that.",
        "Ich kann nicht helfen.",
        "Pick it with a pin.",
        "Mit einer Nadel.",
        "a",
    ),
    ("Tell me a story.", "Erzähl mir eine Geschichte.", "Once upon a time.", "Es war einmal.", "No.", "Nein.", "b"),
    (
        "How to make a fire?",
        "Wie macht man Feuer?",
        "Use dry wood safely.",
        "Trockenes Holz.",
        "Burn the house.",
        "Das Haus.",
        "c",
    ),
    (
        "What is the sky?",
        "Was ist der Himmel?",
        "The sky is above us.",
        "Der Himmel ist oben.",
        "Go away.",
        "Geh weg.",
        "d",
    ),
];

/// Multilingual records (en dominant, de variant/target) in the project's JSONL format.
fn write_data(root: &Path) -> PathBuf {
    let path = root.join("pairs.jsonl");
    let lines: Vec<String> = RECORDS
        .iter()
        .map(|(pe, pd, ce, cd, re, rd, id)| {
            serde_json::json!({"id": id, "prompt": {"en": pe, "de": pd}, "chosen": {"en": ce, "de": cd}, "rejected": {"en": re, "de": rd}})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn config_text(objectives: &str, extra_train: &str) -> String {
    format!(
        "[model]\npath = \"base\"\n[data]\ntrain = \"pairs.jsonl\"\nlanguages = [\"en\", \"de\"]\nmax_length = 64\n\
         {objectives}\n[optim]\nlr = 1e-3\nwarmup_ratio = 0.0\n[train]\nbatch_size = 2\nmax_steps = 3\nseed = 7\n{extra_train}"
    )
}

struct Run {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn setup() -> Run {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    model_dir(&root);
    write_data(&root);
    Run { _dir: dir, root }
}

fn run(root: &Path, text: &str, out: &str, resume: bool) -> Result<align_train::TrainSummary, TrainError> {
    let path = root.join("run.toml");
    std::fs::write(&path, text).unwrap();
    let config = RunConfig::from_file(&path)?;
    train(&config, &path, &TrainOptions::new(root.join(out)).resume(resume))
}

fn metrics(root: &Path, out: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root.join(out).join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn weights(dir: &Path) -> Vec<(String, tch::Tensor)> {
    tch::Tensor::read_safetensors(dir.join("model.safetensors")).unwrap()
}

fn max_weight_change(a: &Path, b: &Path) -> f64 {
    let (wa, wb) = (weights(a), weights(b));
    wa.iter()
        .map(|(n, t)| {
            let u = &wb.iter().find(|(m, _)| m == n).unwrap().1;
            (t - u).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

#[test]
fn every_objective_stack_trains_three_steps() {
    let stacks = [
        ("dpo_mlc", "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nweight = 0.5\nlayer = 2\n"),
        ("simpo_mlc", "[[objective]]\nkind = \"simpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 1\nhead_dim = 8\n"),
        ("orpo_mlc", "[[objective]]\nkind = \"orpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 2\n"),
        ("sft_mlc", "[[objective]]\nkind = \"sft\"\n[[objective]]\nkind = \"mlc\"\nlayer = 2\n"),
        ("mpo", "[[objective]]\nkind = \"mpo\"\n"),
        ("mpo_mlc", "[[objective]]\nkind = \"mpo\"\nretain = \"mean_pool\"\nretain_layer = 2\n[[objective]]\nkind = \"mlc\"\nlayer = 2\n"),
        ("kto", "[[objective]]\nkind = \"kto\"\n"),
        ("ipo_cpo", "[[objective]]\nkind = \"ipo\"\n[[objective]]\nkind = \"cpo\"\n"),
        ("rdpo_hinge_cosine", "[[objective]]\nkind = \"r_dpo\"\n[[objective]]\nkind = \"hinge\"\n[[objective]]\nkind = \"cosine\"\nlayer = 1\n"),
        ("robust_sft", "[[objective]]\nkind = \"robust_dpo\"\n[[objective]]\nkind = \"sft\"\n"),
    ];
    let r = setup();
    for (name, objectives) in stacks {
        let summary = run(&r.root, &config_text(objectives, ""), name, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(summary.steps, 3, "{name}");
        let lines = metrics(&r.root, name);
        assert_eq!(lines.len(), 3, "{name}: one line per step");
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line["step"].as_u64(), Some(i as u64 + 1), "{name}");
            for key in ["loss", "lr", "grad_norm", "step_time_s", "tokens"] {
                let v = line[key].as_f64().unwrap_or_else(|| panic!("{name}: `{key}` missing in {line}"));
                assert!(v.is_finite(), "{name}: {key} = {v}");
            }
            assert!(line["tokens"].as_f64().unwrap() > 0.0);
            for term in objectives.lines().filter_map(|l| l.strip_prefix("kind = \"")) {
                let term = term.trim_end_matches('"');
                assert!(
                    line[format!("loss/{term}")].as_f64().is_some_and(f64::is_finite),
                    "{name}: loss/{term} in {line}"
                );
            }
        }
        let change = max_weight_change(&r.root.join("base"), &summary.saved);
        assert!(change > 1e-6, "{name}: parameters changed by {change}");
        assert!(summary.saved.join("tokenizer.json").is_file(), "{name}: checkpoint is a complete HF folder");
    }
}

/// The model families with their own tokenizers (lm-backend's qwen3, mistral, gemma3 and
/// llama-tied fixtures) train DPO + MLC through the whole pipeline: DPO starts at ln 2, every
/// logged value is finite, the parameters move and the checkpoint reloads. Gemma 3 also runs
/// on conversational records, through its own chat template.
#[test]
fn model_families_train_dpo_and_mlc() {
    let stack = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nweight = 0.5\nlayer = 1\n";
    for (family, conversational) in
        [("qwen3", false), ("mistral", false), ("gemma3", false), ("gemma3", true), ("llama-tied", false)]
    {
        let r = setup();
        let base = r.root.join("base");
        std::fs::remove_dir_all(&base).unwrap();
        std::fs::create_dir_all(&base).unwrap();
        for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(Path::new(FIXTURES).join(family).join(f), base.join(f)).unwrap();
        }
        if conversational {
            let lines: Vec<String> = RECORDS
                .iter()
                .map(|(pe, pd, ce, cd, re, rd, id)| {
                    let user = |t: &str| serde_json::json!([{"role": "user", "content": t}]);
                    let assistant = |t: &str| serde_json::json!([{"role": "assistant", "content": t}]);
                    serde_json::json!({"id": id, "prompt": {"en": user(pe), "de": user(pd)},
                        "chosen": {"en": assistant(ce), "de": assistant(cd)},
                        "rejected": {"en": assistant(re), "de": assistant(rd)}})
                    .to_string()
                })
                .collect();
            std::fs::write(r.root.join("pairs.jsonl"), lines.join("\n")).unwrap();
        }
        let name = format!("{family}{}", if conversational { "-chat" } else { "" });
        let summary = run(&r.root, &config_text(stack, ""), &name, false).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(summary.steps, 3, "{name}");
        let lines = metrics(&r.root, &name);
        let dpo = lines[0]["loss/dpo"].as_f64().unwrap();
        assert!((dpo - std::f64::consts::LN_2).abs() < 1e-5, "{name}: step 1 loss/dpo = {dpo}");
        for line in &lines {
            for key in ["loss", "loss/dpo", "loss/mlc", "grad_norm", "tokens"] {
                let v = line[key].as_f64().unwrap_or_else(|| panic!("{name}: `{key}` missing in {line}"));
                assert!(v.is_finite(), "{name}: {key} = {v}");
            }
        }
        let change = max_weight_change(&base, &summary.saved);
        assert!(change > 1e-6, "{name}: parameters changed by {change}");
        let reloaded = lm_backend::HfCausalLm::load(&summary.saved, lm_backend::LoadOptions::cpu_f32()).unwrap();
        let original = lm_backend::HfCausalLm::load(&base, lm_backend::LoadOptions::cpu_f32()).unwrap();
        assert_eq!(lm_backend::CausalLm::config(&reloaded), lm_backend::CausalLm::config(&original), "{name}");
    }
}

#[test]
fn dpo_starts_at_ln2_through_the_whole_pipeline() {
    let r = setup();
    run(&r.root, &config_text("[[objective]]\nkind = \"dpo\"\nbeta = 0.5\n", ""), "out", false).unwrap();
    let first = &metrics(&r.root, "out")[0];
    let loss = first["loss/dpo"].as_f64().unwrap();
    assert!((loss - std::f64::consts::LN_2).abs() < 1e-5, "step 1 loss/dpo = {loss}");
    assert!((first["rewards/margins"].as_f64().unwrap()).abs() < 1e-5);
    assert!(r.root.join("out/reference_logps.safetensors").is_file(), "reference log-probs cached");
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let r = setup();
    let text = config_text(
        "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 2\nhead_dim = 8\n",
        "save_every = 2\n",
    )
    .replace("max_steps = 3", "max_steps = 5");
    run(&r.root, &text, "full", false).unwrap();
    // An interrupted run: only what existed after step 2 (its checkpoint, the cache, the log).
    let part = r.root.join("part");
    std::fs::create_dir_all(&part).unwrap();
    let copy_dir = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    };
    copy_dir(&r.root.join("full/checkpoint-2"), &part.join("checkpoint-2"));
    for f in ["metrics.jsonl", "reference_logps.safetensors", "reference_logps.json"] {
        std::fs::copy(r.root.join("full").join(f), part.join(f)).unwrap();
    }
    let summary = run(&r.root, &text, "part", true).unwrap();
    assert_eq!(summary.steps, 5);
    let (a, b) = (metrics(&r.root, "full"), metrics(&r.root, "part"));
    assert_eq!(a.len(), 5);
    assert_eq!(b.len(), 5, "steps 1-2 kept, 3-5 logged by the resumed run");
    for (x, y) in a.iter().zip(&b) {
        for key in ["loss", "loss/dpo", "loss/mlc", "grad_norm", "lr"] {
            let (u, v) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!((u - v).abs() <= 1e-5 * (1.0 + u.abs()), "step {}: {key} {u} vs {v}", x["step"]);
        }
    }
    let change = max_weight_change(&r.root.join("full/final"), &r.root.join("part/final"));
    assert!(change < 1e-5, "final weights differ by {change}");
}

/// A run interrupted through its handle (as `align train` does on Ctrl-C) saves a checkpoint
/// after the step in progress, reports it, and resumes to the same result as a run that was
/// never interrupted; the events tell the caller each step and checkpoint.
#[test]
fn interrupt_saves_a_resumable_checkpoint_and_events_report_the_run() {
    let r = setup();
    let text = config_text("[[objective]]\nkind = \"dpo\"\n", "").replace("max_steps = 3", "max_steps = 4");
    run(&r.root, &text, "full", false).unwrap();

    let path = r.root.join("run.toml");
    let config = RunConfig::from_file(&path).unwrap();
    let interrupt = Interrupt::new();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (handle, log) = (interrupt.clone(), seen.clone());
    let options = TrainOptions::new(r.root.join("part")).with_interrupt(interrupt).on_event(move |event| {
        let line = match event {
            TrainEvent::StepFinished { step, total_steps, .. } => {
                if *step == 2 {
                    handle.trigger();
                }
                format!("step {step}/{total_steps}")
            }
            TrainEvent::CheckpointSaved { step, reason, .. } => format!("saved {step} {reason:?}"),
            TrainEvent::ReferenceCacheReady { reused, .. } => format!("cache reused={reused}"),
            TrainEvent::Started { start, total_steps, records } => format!("start {start}/{total_steps} {records}"),
            _ => return,
        };
        log.lock().unwrap().push(line);
    });
    let summary = train(&config, &path, &options).unwrap();
    assert!(summary.interrupted);
    assert_eq!(summary.steps, 2);
    assert_eq!(summary.saved, r.root.join("part/checkpoint-2"));
    assert!(r.root.join("part/checkpoint-2/trainer_state.json").is_file());
    assert!(!r.root.join("part/final").exists(), "an interrupted run writes no final model");
    assert_eq!(
        *seen.lock().unwrap(),
        ["cache reused=false", "start 0/4 4", "step 1/4", "step 2/4", "saved 2 Interrupted"]
    );

    let resumed = run(&r.root, &text, "part", true).unwrap();
    assert!(!resumed.interrupted);
    assert_eq!(resumed.steps, 4);
    let (a, b) = (metrics(&r.root, "full"), metrics(&r.root, "part"));
    assert_eq!(b.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        let (u, v) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!((u - v).abs() <= 1e-5 * (1.0 + u.abs()), "step {}: loss {u} vs {v}", x["step"]);
    }
    let change = max_weight_change(&r.root.join("full/final"), &r.root.join("part/final"));
    assert!(change < 1e-5, "final weights differ by {change}");
}

/// The packed layout (the default) and the padded one train the same run: the same metrics
/// at every step, up to float32 rounding; grouping by length changes only the order.
#[test]
fn packed_and_padded_runs_agree_and_grouping_by_length_trains() {
    let r = setup();
    let stack = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 1\nweight = 0.5\n";
    run(&r.root, &config_text(stack, ""), "packed", false).unwrap();
    run(&r.root, &config_text(stack, "packing = false\n"), "padded", false).unwrap();
    let (a, b) = (metrics(&r.root, "packed"), metrics(&r.root, "padded"));
    assert_eq!(a.len(), 3);
    for (x, y) in a.iter().zip(&b) {
        for key in ["loss", "loss/dpo", "loss/mlc", "grad_norm", "rewards/margins"] {
            let (u, v) = (x[key].as_f64().unwrap(), y[key].as_f64().unwrap());
            assert!((u - v).abs() <= 1e-4 * (1.0 + u.abs()), "step {}: {key} {u} vs {v}", x["step"]);
        }
        assert!(x["tokens"].as_f64() < y["tokens"].as_f64(), "packed forwards each prompt once");
    }
    let summary = run(&r.root, &config_text(stack, "group_by_length = true\n"), "grouped", false).unwrap();
    assert_eq!(summary.steps, 3);
    assert!(metrics(&r.root, "grouped").iter().all(|l| l["loss"].as_f64().is_some_and(f64::is_finite)));
}

/// The metrics of two runs agree at every step within `tol` (relative), and so do their
/// final weights (absolute: every weight is O(1)).
fn assert_same_run(root: &Path, a: &str, b: &str, tol: f64) {
    let (x, y) = (metrics(root, a), metrics(root, b));
    assert_eq!(x.len(), y.len());
    for (u, v) in x.iter().zip(&y) {
        for key in ["loss", "loss/dpo", "loss/mlc", "grad_norm", "rewards/margins"] {
            let (p, q) = (u[key].as_f64().unwrap(), v[key].as_f64().unwrap());
            assert!((p - q).abs() <= tol * (1.0 + p.abs()), "{a} vs {b}, step {}: {key} {p} vs {q}", u["step"]);
        }
        assert_eq!(u["tokens"], v["tokens"]);
    }
    let change = max_weight_change(&root.join(a).join("final"), &root.join(b).join("final"));
    assert!(change < tol, "{a} vs {b}: final weights differ by {change}");
}

/// `[model] attention = "eager"` trains the run the default `sdpa` trains, packed and padded,
/// up to float32 rounding.
#[test]
fn eager_and_sdpa_attention_train_the_same_run() {
    let r = setup();
    let stack = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 1\nweight = 0.5\n";
    let eager = |text: String| text.replace("path = \"base\"\n", "path = \"base\"\nattention = \"eager\"\n");
    for (name, train) in [("packed", ""), ("padded", "packing = false\n")] {
        run(&r.root, &config_text(stack, train), &format!("{name}-sdpa"), false).unwrap();
        run(&r.root, &eager(config_text(stack, train)), &format!("{name}-eager"), false).unwrap();
        assert_same_run(&r.root, &format!("{name}-sdpa"), &format!("{name}-eager"), 1e-4);
    }
}

/// `[train] gradient_checkpointing = true` trains the run the ordinary passes train: the
/// same metrics at every step and the same final weights, up to float32 rounding, packed and
/// padded, with two accumulated micro-batches per step.
#[test]
fn checkpointed_run_equals_the_ordinary_run() {
    let r = setup();
    let stack = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 1\nweight = 0.5\n";
    for (name, layout) in [("packed", ""), ("padded", "packing = false\n")] {
        let train = format!("grad_accum = 2\nbatch_size = 1\n{layout}");
        let plain = config_text(stack, &train).replace("batch_size = 2\n", "");
        run(&r.root, &plain, &format!("{name}-plain"), false).unwrap();
        let checkpointed = format!("{plain}gradient_checkpointing = true\n");
        run(&r.root, &checkpointed, &format!("{name}-checkpointed"), false).unwrap();
        assert_same_run(&r.root, &format!("{name}-plain"), &format!("{name}-checkpointed"), 1e-5);
    }
}

#[test]
fn resume_without_checkpoint_is_an_error() {
    let r = setup();
    let e = run(&r.root, &config_text("[[objective]]\nkind = \"sft\"\n", ""), "none", true).unwrap_err().to_string();
    assert!(e.contains("cannot resume") && e.contains("no complete checkpoint"), "{e}");
}

#[test]
fn bad_input_is_reported_with_file_line_or_key() {
    let r = setup();
    let dpo = "[[objective]]\nkind = \"dpo\"\n";
    let data = r.root.join("pairs.jsonl");
    let good = std::fs::read_to_string(&data).unwrap();

    std::fs::write(&data, format!("{good}\n{{\"prompt\": \"x\", \"chosen\": ")).unwrap();
    let e = run(&r.root, &config_text(dpo, ""), "o1", false).unwrap_err().to_string();
    assert!(e.contains("pairs.jsonl:5: not valid JSON"), "{e}");

    // Unselected languages are left out (tests/data.rs); the dominant one is required.
    std::fs::write(
        &data,
        format!("{good}\n{{\"prompt\": {{\"de\": \"x\", \"sw\": \"y\"}}, \"chosen\": \"a\", \"rejected\": \"b\"}}"),
    )
    .unwrap();
    let e = run(&r.root, &config_text(dpo, ""), "o2", false).unwrap_err().to_string();
    assert!(e.contains("pairs.jsonl:5:") && e.contains("dominant language `en`"), "{e}");

    std::fs::write(&data, "").unwrap();
    let e = run(&r.root, &config_text(dpo, ""), "o3", false).unwrap_err().to_string();
    assert!(e.contains("pairs.jsonl: no records"), "{e}");

    let long = "word ".repeat(200);
    std::fs::write(&data, format!("{good}\n{}", serde_json::json!({"prompt": long, "chosen": "a", "rejected": "b"})))
        .unwrap();
    let e = run(&r.root, &config_text(dpo, ""), "o4", false).unwrap_err().to_string();
    assert!(e.contains("pairs.jsonl:5:") && e.contains("longer than [data] max_length = 64"), "{e}");
    // ... and with skip_bad_lines the run trains on the rest and counts the skip.
    let skipping = config_text(dpo, "").replace("max_length = 64", "max_length = 64\nskip_bad_lines = true");
    assert_eq!(run(&r.root, &skipping, "o5", false).unwrap().skipped_lines, 1);

    std::fs::write(&data, &good).unwrap();
    let e = run(&r.root, &config_text(dpo, "").replace("[optim]", "[optim]\nlearning_rate = 1.0"), "o6", false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown key `learning_rate` in [optim]"), "{e}");

    let e = run(&r.root, &config_text("[[objective]]\nkind = \"mlc\"\nlayer = 9\n", ""), "o7", false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer") && e.contains("past the model's last hidden-state index 3"), "{e}");

    let e = run(&r.root, &config_text("[[objective]]\nkind = \"dpo\"\nbeta = -1.0\n", ""), "o8", false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[[objective]] #1 (kind = \"dpo\")") && e.contains("beta"), "{e}");
}

#[test]
fn non_finite_loss_stops_and_saves_the_last_good_state() {
    let r = setup();
    // A learning rate this large blows the weights up after one step.
    let text = config_text("[[objective]]\nkind = \"sft\"\n", "")
        .replace("lr = 1e-3", "lr = 1e30")
        .replace("max_grad_norm", "x");
    let text = text.replace("[optim]\n", "[optim]\nmax_grad_norm = 0.0\n");
    match run(&r.root, &text, "nan", false) {
        Err(TrainError::NonFinite { step, saved, .. }) => {
            assert!(step >= 2, "the first step starts from finite weights");
            assert!(saved.join("trainer_state.json").is_file() && saved.join("model.safetensors").is_file());
        }
        other => panic!("expected a non-finite stop, got {other:?}"),
    }
    let skip = text.replace("seed = 7", "seed = 7\non_nonfinite = \"skip\"");
    let summary = run(&r.root, &skip, "nan_skip", false).unwrap();
    assert!(summary.nonfinite_steps >= 1 && summary.steps == 3, "{summary:?}");
}

#[test]
fn trains_on_cuda_in_f32_and_bf16_when_a_gpu_is_present() {
    if torch_device::cuda_if_available().is_none() {
        eprintln!("no CUDA device: skipped");
        return;
    }
    let r = setup();
    let stack = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 2\n";
    for dtype in ["f32", "bf16"] {
        let text = config_text(stack, "")
            .replace("path = \"base\"", &format!("path = \"base\"\ndevice = \"cuda\"\ndtype = \"{dtype}\""));
        let out = format!("cuda_{dtype}");
        let summary = run(&r.root, &text, &out, false).unwrap_or_else(|e| panic!("{dtype}: {e}"));
        let lines = metrics(&r.root, &out);
        assert_eq!(lines.len(), 3);
        let first = lines[0]["loss/dpo"].as_f64().unwrap();
        assert!((first - std::f64::consts::LN_2).abs() < 1e-4, "{dtype}: step 1 loss/dpo = {first}");
        assert!(lines.iter().all(|l| l["loss"].as_f64().is_some_and(f64::is_finite)));
        assert!(max_weight_change(&r.root.join("base"), &summary.saved) > 1e-6);
    }
}
