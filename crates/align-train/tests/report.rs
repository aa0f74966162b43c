//! `align_train::report`: run folders are found by content (model and checkpoint folders
//! skipped, two files of one kind or none at all are errors naming the folder), the Markdown
//! tables hold the numbers of the files with the average and variance computed here, and the
//! charts are PNG files of the asked size linked from report.md.

use align_train::report::{draw_plots, load_run, mean_and_variance, render_markdown, write_report, ReportOptions};
use align_train::TrainError;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

fn write(path: &Path, value: &serde_json::Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

fn safety(en: f64, sw: f64) -> serde_json::Value {
    let lang = |asr: f64| json!({"n": 4, "attack_success_rate": asr, "refused": 0, "unsafe": 0, "irrelevant": 0});
    json!({"per_language": {"en": lang(en), "sw": lang(sw)}, "judge": "refusal-phrases",
           "overall_attack_success_rate": (en + sw) / 2.0})
}

fn utility(en: f64, sw: f64) -> serde_json::Value {
    json!({"metric": "exact_number", "per_language": {"en": {"n": 4, "accuracy": en, "no_number": 1},
           "sw": {"n": 4, "accuracy": sw, "no_number": 0}}, "records": []})
}

fn reward_gap(en: f64, sw: f64) -> serde_json::Value {
    let lang = |g: f64| json!({"n": 2, "reward_gap_mean": g, "chosen_avg_logp_mean": -1.0, "rejected_avg_logp_mean": -1.0 - g});
    json!({"per_language": {"en": lang(en), "sw": lang(sw)}, "records": []})
}

fn consistency(ratios: &[(usize, f64, f64)]) -> serde_json::Value {
    let layers: Vec<serde_json::Value> = ratios
        .iter()
        .map(|&(layer, r, c)| {
            json!({"layer": layer, "collinearity_ratio": r, "mean_pairwise_cosine": r,
                                     "centred_collinearity_ratio": c, "centred_mean_pairwise_cosine": c})
        })
        .collect();
    json!({"n_groups": 3, "n_prompts": 6, "orthogonal_ratio": 0.5, "layers": layers})
}

fn metrics(dir: &Path, losses: &[f64]) {
    let lines: Vec<String> = losses
        .iter()
        .enumerate()
        .map(|(i, l)| {
            json!({"step": i + 1, "loss": l, "loss/dpo": l * 0.9, "loss/mlc": 0.1, "lr": 1e-5, "tokens": 100,
                   "step_time_s": 0.5, "epoch": 1.0, "note": "text fields are left out"})
            .to_string()
        })
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("metrics.jsonl"), lines.join("\n") + "\n").unwrap();
}

/// A run folder as `align train` and the evals leave it, plus decoys that must be skipped.
fn full_run(root: &Path) {
    metrics(root, &[0.69, 0.6, 0.5]);
    write(&root.join("eval/safety/safety.json"), &safety(0.25, 0.75));
    write(&root.join("eval/utility/utility.json"), &utility(0.5, 0.25));
    write(&root.join("eval/gap.json"), &reward_gap(1.5, -0.5));
    write(&root.join("eval/consistency.json"), &consistency(&[(0, 0.9, 0.6), (1, 0.8, 0.7), (2, 0.7, 0.75)]));
    write(&root.join("config.json"), &json!({"note": "other JSON is passed over"}));
    // A model folder and a checkpoint with report-shaped files: not searched.
    write(&root.join("final/config.json"), &json!({"hidden_size": 8}));
    std::fs::write(root.join("final/model.safetensors"), b"weights").unwrap();
    write(&root.join("final/safety.json"), &safety(1.0, 1.0));
    write(&root.join("checkpoint-2/safety.json"), &safety(1.0, 1.0));
}

#[test]
fn a_run_folder_is_read_by_content() {
    let dir = tempfile::tempdir().unwrap();
    full_run(dir.path());
    let run = load_run(dir.path(), "dpo").unwrap();
    assert_eq!(run.name, "dpo");
    let map = |en: f64, sw: f64| BTreeMap::from([("en".to_string(), en), ("sw".to_string(), sw)]);
    assert_eq!(run.attack_success_rate, Some(map(0.25, 0.75)));
    let u = run.utility.as_ref().unwrap();
    assert_eq!((u.metric.as_str(), &u.accuracy), ("exact_number", &map(0.5, 0.25)));
    assert_eq!(run.reward_gap, Some(map(1.5, -0.5)));
    assert_eq!(run.consistency.as_ref().unwrap().layers.len(), 3);
    let training = run.training.as_ref().unwrap();
    assert_eq!(training.len(), 3);
    assert_eq!(training[2]["loss"], 0.5);
    assert!(!training[0].contains_key("note"));
    assert_eq!(run.files.len(), 5, "{:?}", run.files);
    assert!(run.files.iter().all(|f| !f.starts_with(dir.path().join("final"))));
}

#[test]
fn ambiguous_empty_and_broken_folders_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a/safety.json"), &safety(0.0, 1.0));
    write(&dir.path().join("b/safety.json"), &safety(0.0, 1.0));
    let err = load_run(dir.path(), "x").unwrap_err().to_string();
    assert!(
        err.contains("two safety reports") && err.contains("a/safety.json") && err.contains("b/safety.json"),
        "{err}"
    );
    assert!(load_run(&dir.path().join("a"), "a").is_ok());

    let empty = tempfile::tempdir().unwrap();
    let err = load_run(empty.path(), "x").unwrap_err().to_string();
    assert!(err.contains("no safety, utility") && err.contains(&empty.path().display().to_string()), "{err}");
    assert!(load_run(&empty.path().join("missing"), "x").unwrap_err().to_string().contains("not a folder"));

    std::fs::write(empty.path().join("metrics.jsonl"), "{\"step\": 1}\n[1, 2]\n").unwrap();
    let err = load_run(empty.path(), "x").unwrap_err();
    assert!(
        matches!(err, TrainError::BadRecord { line: 2, .. }) && err.to_string().contains("metrics.jsonl:2"),
        "{err}"
    );
    std::fs::write(empty.path().join("metrics.jsonl"), "{\"step\": 1, \"loss\": 0.5}\n").unwrap();
    std::fs::write(empty.path().join("broken.json"), "{not json").unwrap();
    let err = load_run(empty.path(), "x").unwrap_err().to_string();
    assert!(err.contains("broken.json") && err.contains("not JSON"), "{err}");
}

#[test]
fn the_markdown_has_a_row_per_run_with_average_and_variance() {
    let dir = tempfile::tempdir().unwrap();
    full_run(&dir.path().join("dpo"));
    write(&dir.path().join("base/safety.json"), &safety(0.5, 1.0));
    write(&dir.path().join("base/utility.json"), &utility(0.75, 0.5));
    let runs =
        vec![load_run(&dir.path().join("base"), "base").unwrap(), load_run(&dir.path().join("dpo"), "dpo").unwrap()];
    let mut options = ReportOptions::new("Base against DPO");
    options.intro = vec!["Two runs.".into()];
    let text = render_markdown(&runs, &options, &[]);
    assert!(text.starts_with("# Base against DPO\n\nTwo runs.\n\n"), "{text}");
    // ASR: base mean 0.75, var 0.0625; dpo mean 0.5, var 0.0625.
    let asr = "| run  |    en |    sw |   avg |    var |\n|:-----|------:|------:|------:|-------:|\n\
               | base | 0.500 | 1.000 | 0.750 | 0.0625 |\n| dpo  | 0.250 | 0.750 | 0.500 | 0.0625 |\n";
    assert!(text.contains(asr), "{text}");
    assert!(text.contains("## Utility: exact-answer accuracy (higher is better)"));
    assert!(text.contains("| base | 0.750 | 0.500 | 0.625 | 0.0156 |"), "{text}");
    // Reward gap and consistency: dpo only.
    assert!(text.contains("| dpo | 1.500 | -0.500 | 0.500 | 1.0000 |"), "{text}");
    assert!(squash(&text).contains(&squash("| dpo | 0.900 | 0.800 | 0.700 | 0.500 |")), "{text}");
    assert!(squash(&text).contains(&squash("| dpo | 0.600 | 0.700 | 0.750 | 0.500 |")), "{text}");
    assert!(squash(&text).contains(&squash("layer 0 | layer 1 | layer 2 | floor")), "{text}");
    // Training: last step 3, loss 0.5, dpo 0.45, mlc 0.1, 300 tokens, 1.5 s.
    assert!(
        squash(&text).contains(&squash("| dpo |     3 | 0.5000 |   0.4500 |   0.1000 |    300 |         1.5 |")),
        "{text}"
    );
    assert!(text.contains("## Sources") && text.contains("gap.json"));

    let mut ordered = ReportOptions::new("t");
    ordered.languages = Some(vec!["sw".into(), "en".into(), "xx".into()]);
    let text = render_markdown(&runs[..1], &ordered, &[]);
    assert!(squash(&text).contains(&squash("| base | 1.000 | 0.500 |  – | 0.750 | 0.0625 |")), "{text}");

    let values = BTreeMap::from([("a".to_string(), 1.0), ("b".to_string(), 3.0)]);
    assert_eq!(mean_and_variance(&values, &["a".into(), "b".into(), "c".into()]), (2.0, 1.0));
    assert!(mean_and_variance(&values, &["c".into()]).0.is_nan());
}

/// `s` with every run of spaces as one space (table cells are padded).
fn squash(s: &str) -> String {
    s.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    let be = |r: std::ops::Range<usize>| u32::from_be_bytes(bytes[r].try_into().unwrap());
    (be(16..20), be(20..24))
}

#[test]
fn the_report_folder_has_report_md_and_a_chart_per_metric() {
    let dir = tempfile::tempdir().unwrap();
    full_run(&dir.path().join("dpo"));
    full_run(&dir.path().join("mpo"));
    write(&dir.path().join("mpo/eval/safety/safety.json"), &safety(0.0, 0.25));
    metrics(&dir.path().join("mpo"), &[0.69, 0.4, 0.3, 0.2]);
    let runs =
        vec![load_run(&dir.path().join("dpo"), "dpo").unwrap(), load_run(&dir.path().join("mpo"), "mpo").unwrap()];
    let out = dir.path().join("report");
    let files = write_report(&runs, &ReportOptions::new("Report"), &out).unwrap();
    let names: Vec<String> =
        files.plots.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["asr.png", "utility.png", "reward_gap.png", "collinearity.png", "training_loss.png"]);
    let text = std::fs::read_to_string(&files.markdown).unwrap();
    for (plot, name) in files.plots.iter().zip(&names) {
        assert_eq!(png_size(plot), (960, 520));
        assert!(text.contains(&format!("]({name})")), "{name} not linked:\n{text}");
    }
    // Only the charts with data are drawn.
    let only_safety = vec![align_train::report::RunSummary {
        attack_success_rate: runs[0].attack_success_rate.clone(),
        ..align_train::report::RunSummary::named("a")
    }];
    let plots = draw_plots(&only_safety, &ReportOptions::new("t"), &dir.path().join("one")).unwrap();
    assert_eq!(plots.iter().map(|p| p.file.as_str()).collect::<Vec<_>>(), ["asr.png"]);
}
