//! `align convert --from mgsm`, `align eval utility` and `align report` through the binary: the
//! converter writes what `read_mgsm_folder` reads, the eval writes what the library computes on
//! the lm-backend fixture model, the report prints what it writes with a chart per metric, and
//! bad input exits with 1 naming the file, line or folder.

mod common;

use common::*;

use std::fs;
use std::path::{Path, PathBuf};

use align_train::eval::{evaluate_utility, load_utility_items, read_mgsm_folder, UtilityOptions, UtilityReport};
use lm_backend::{HfCausalLm, LoadOptions, Tokenizer};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn convert_mgsm_writes_the_question_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("mgsm");
    fs::create_dir_all(&tsv).unwrap();
    fs::write(tsv.join("mgsm_en.tsv"), "How many eggs?\t18\nHow much profit?\t70,000\n").unwrap();
    fs::write(tsv.join("mgsm_sw.tsv"), "Mayai mangapi?\t18\nFaida ni kiasi gani?\t70000\n").unwrap();
    let out = dir.path().join("mgsm.jsonl");
    let stdout = align_ok(&["convert", "--from", "mgsm", s(&tsv), "--output", s(&out)]);
    assert!(stdout.contains("questions: 4") && stdout.contains("languages: en 2, sw 2"), "{stdout}");
    assert_eq!(load_utility_items(&out, None).unwrap(), read_mgsm_folder(&tsv, None).unwrap());
    let first = fs::read_to_string(&out).unwrap().lines().next().unwrap().to_string();
    assert_eq!(first, r#"{"id":"mgsm-001","lang":"en","question":"How many eggs?","answer":18}"#);

    let err = align_fails(&["convert", "--from", "mgsm", s(&tsv), "--output", s(&out)]);
    assert!(err.contains("--overwrite"), "{err}");
    align_ok(&["convert", "--from", "mgsm", s(&tsv), "--output", s(&out), "--overwrite", "--languages", "sw"]);
    assert_eq!(load_utility_items(&out, None).unwrap().len(), 2);
    let err =
        align_fails(&["convert", "--from", "mgsm", s(&tsv), "--output", s(&out), "--overwrite", "--dtype", "bf16"]);
    assert!(err.contains("--dtype"), "{err}");
    fs::write(tsv.join("mgsm_fr.tsv"), "Combien ?\tbeaucoup\n").unwrap();
    let err = align_fails(&["convert", "--from", "mgsm", s(&tsv), "--output", s(&out), "--overwrite"]);
    assert!(err.contains("mgsm_fr.tsv:1") && err.contains("beaucoup"), "{err}");
    let err = align_fails(&["convert", "--from", "mgsm", s(&dir.path().join("none")), "--output", s(&out)]);
    assert!(err.contains("none"), "{err}");
}

#[test]
fn convert_mgsm_reads_the_real_files_when_present() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let found = [root.join("shared/data/mgsm"), root.join("../shared/data/mgsm"), "/work/shared/data/mgsm".into()]
        .into_iter()
        .find(|p: &PathBuf| p.join("mgsm_en.tsv").is_file());
    let Some(mgsm) = found else {
        eprintln!("skipped: shared/data/mgsm not found (the shared data folder is absent on this machine)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mgsm.jsonl");
    let stdout = align_ok(&["convert", "--from", "mgsm", s(&mgsm), "--output", s(&out)]);
    assert!(stdout.contains("questions: 2750"), "{stdout}");
    assert!(stdout.contains("bn 250, de 250, en 250, es 250, fr 250, ja 250, ru 250, sw 250, te 250, th 250, zh 250"));
    assert_eq!(fs::read_to_string(&out).unwrap().lines().count(), 2750);
}

const QUESTIONS: &str = r#"{"id": "q1", "lang": "en", "question": "How many eggs are left?", "answer": 18}
{"id": "q2", "lang": "en", "question": "What is two plus two?", "answer": 4}
{"id": "q1", "lang": "sw", "question": "Mayai mangapi yamebaki?", "answer": 18}
"#;

#[test]
fn eval_utility_writes_what_the_library_computes() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir(dir.path(), "model");
    let data = dir.path().join("questions.jsonl");
    fs::write(&data, QUESTIONS).unwrap();
    let out = dir.path().join("utility");
    let stdout = align_ok(&[
        "eval",
        "utility",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--max-new-tokens",
        "5",
        "--batch-size",
        "2",
        "--output",
        s(&out),
    ]);
    let written: UtilityReport = serde_json::from_str(&fs::read_to_string(out.join("utility.json")).unwrap()).unwrap();
    let lm = HfCausalLm::load(&model, LoadOptions::cpu_f32()).unwrap();
    let tok = Tokenizer::from_dir(&model).unwrap();
    let items = load_utility_items(&data, None).unwrap();
    let options = UtilityOptions { max_new_tokens: 5, batch_size: 2, shots: 0, use_chat_template: true };
    let want = evaluate_utility(&lm, &tok, &items, &[], &options).unwrap();
    assert_eq!(written, want);
    assert!(stdout.contains("lang") && stdout.contains("overall accuracy"), "{stdout}");
    assert!(written.records[0].prompt.contains("<|im_start|>user"), "the chat template is applied");

    // --languages, --no-chat-template and exemplars.
    let exemplars = dir.path().join("exemplars.jsonl");
    fs::write(&exemplars, "{\"id\": \"e\", \"lang\": \"sw\", \"question\": \"Moja na moja?\", \"answer\": 2}\n")
        .unwrap();
    align_ok(&[
        "eval",
        "utility",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--languages",
        "sw",
        "--shots",
        "1",
        "--exemplars",
        s(&exemplars),
        "--no-chat-template",
        "--max-new-tokens",
        "3",
        "--output",
        s(&out),
    ]);
    let written: UtilityReport = serde_json::from_str(&fs::read_to_string(out.join("utility.json")).unwrap()).unwrap();
    assert_eq!(written.records.len(), 1);
    assert!(
        written.records[0].prompt.starts_with("Swali: Moja na moja?\nJibu: 2\n\nSwali: Mayai"),
        "{:?}",
        written.records[0]
    );

    let err = align_fails(&["eval", "utility", "--model", s(&model), "--data", s(&data), "--shots", "2"]);
    assert!(err.contains("--exemplars"), "{err}");
    let err = align_fails(&[
        "eval",
        "utility",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--shots",
        "2",
        "--exemplars",
        s(&exemplars),
        "--languages",
        "sw",
    ]);
    assert!(err.contains("`sw`"), "{err}");
    fs::write(&data, format!("{QUESTIONS}{{\"id\": \"q3\", \"lang\": \"en\", \"question\": \"?\"}}\n")).unwrap();
    let err = align_fails(&["eval", "utility", "--model", s(&model), "--data", s(&data)]);
    assert!(err.contains("questions.jsonl:4") && err.contains("answer"), "{err}");
}

#[test]
fn report_prints_what_it_writes_with_a_chart_per_metric() {
    let dir = tempfile::tempdir().unwrap();
    let safety = |en: f64, sw: f64| {
        let lang =
            |a: f64| serde_json::json!({"n": 2, "attack_success_rate": a, "refused": 0, "unsafe": 0, "irrelevant": 0});
        serde_json::json!({"per_language": {"en": lang(en), "sw": lang(sw)}, "judge": "refusal-phrases",
                           "overall_attack_success_rate": 0.5})
    };
    for (run, en, sw) in [("base", 0.0, 1.0), ("aligned", 0.0, 0.5)] {
        let eval = dir.path().join(run).join("eval");
        fs::create_dir_all(&eval).unwrap();
        fs::write(eval.join("safety.json"), safety(en, sw).to_string()).unwrap();
        let utility = serde_json::json!({"metric": "exact_number", "records": [],
            "per_language": {"en": {"n": 2, "accuracy": 0.5, "no_number": 0}, "sw": {"n": 2, "accuracy": sw, "no_number": 1}}});
        fs::write(eval.join("utility.json"), utility.to_string()).unwrap();
    }
    fs::write(
        dir.path().join("aligned/metrics.jsonl"),
        "{\"step\": 1, \"loss\": 0.7, \"tokens\": 10, \"step_time_s\": 0.1}\n{\"step\": 2, \"loss\": 0.5, \"tokens\": 12, \"step_time_s\": 0.1}\n",
    )
    .unwrap();
    let out = dir.path().join("report");
    let base = dir.path().join("base");
    let aligned = format!("{}/", dir.path().join("aligned").display());
    let stdout = align_ok(&["report", s(&base), &aligned, "--output", s(&out), "--title", "Two runs"]);
    assert_eq!(stdout, fs::read_to_string(out.join("report.md")).unwrap());
    assert!(stdout.starts_with("# Two runs\n"), "{stdout}");
    let aligned_label = aligned.trim_end_matches('/');
    assert!(stdout.contains(&format!("| {aligned_label} | 0.000 | 0.500 | 0.250 | 0.0625 |")), "{stdout}");
    for png in ["asr.png", "utility.png", "training_loss.png"] {
        let bytes = fs::read(out.join(png)).unwrap();
        assert_eq!(&bytes[..4], b"\x89PNG", "{png}");
        assert!(stdout.contains(&format!("]({png})")), "{png}");
    }
    assert!(!out.join("reward_gap.png").exists());
    let ordered = align_ok(&["report", s(&base), "--output", s(&out), "--languages", "sw,en"]);
    assert!(ordered.contains("| run") && ordered.contains("|    sw |    en |"), "{ordered}");

    let missing = dir.path().join("missing");
    let err = align_fails(&["report", s(&base), s(&missing), "--output", s(&out)]);
    assert!(err.contains("missing") && err.contains("not a folder"), "{err}");
    let err = align_fails(&["report", s(&base), s(&base), "--output", s(&out)]);
    assert!(err.contains("given twice"), "{err}");
    let err = align_fails(&["report", s(dir.path()), "--output", s(&out)]);
    assert!(err.contains("two safety reports"), "{err}");
}
