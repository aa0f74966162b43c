//! `layer = "auto"` on the tiny real Llama checkpoint of lm-backend's fixtures (3 decoder
//! layers: candidates 1 and 2): the choice is the argmax of the centred collinearity ratio
//! that the public consistency eval computes on the first 64 multi-variant records; a run
//! records it in `auto_layer.json`, trains exactly as the same run with that index, and a
//! resumed run reads it back instead of computing it.

use align_train::auto_layer::{
    candidates, choose_layer, most_neutral_layer, read_auto_layers, AUTO_LAYER_FILE, MAX_GROUPS,
};
use align_train::data::{parse_record, Origin, Record};
use align_train::eval::{evaluate_consistency, ConsistencyOptions, LayerConsistency};
use align_train::{load_records, train, RunConfig, TrainError, TrainEvent, TrainOptions};
use lm_backend::{CausalLm, HfCausalLm, LoadOptions, Tokenizer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lm-backend/tests/fixtures");

const NOUNS: [(&str, &str); 10] = [
    ("door", "die Tür"),
    ("river", "der Fluss"),
    ("garden", "der Garten"),
    ("window", "das Fenster"),
    ("book", "das Buch"),
    ("city", "die Stadt"),
    ("horse", "das Pferd"),
    ("bridge", "die Brücke"),
    ("letter", "der Brief"),
    ("song", "das Lied"),
];

const QUESTIONS: [(&str, &str); 8] = [
    ("Where is the {}?", "Wo ist {}?"),
    ("How do I find the {}?", "Wie finde ich {}?"),
    ("Tell me about the {}.", "Erzähl mir von {}."),
    ("Why is the {} old?", "Warum ist {} alt?"),
    ("Can you draw the {}?", "Kannst du {} zeichnen?"),
    ("Who owns the {}?", "Wem gehört {}?"),
    ("What colour is the {}?", "Welche Farbe hat {}?"),
    ("Is the {} far away?", "Ist {} weit weg?"),
];

/// Records with a prompt in en and de.
const MULTI: usize = 72;

/// 90 JSONL lines: 72 records with en and de prompts and every fifth line an English-only
/// record, so that "the first 64 multi-variant records" ends at line 80 and leaves 8 out.
fn lines() -> Vec<String> {
    let mut out = vec![];
    let mut multi = 0;
    for line in 0..90 {
        let (noun, question) = (NOUNS[line % 10], QUESTIONS[(line / 10) % 8]);
        let en = question.0.replace("{}", noun.0);
        let record = if line % 5 == 4 {
            serde_json::json!({"id": format!("r{line}"), "prompt": en, "chosen": "Yes.", "rejected": "Go away."})
        } else {
            multi += 1;
            let de = question.1.replace("{}", noun.1);
            serde_json::json!({"id": format!("r{line}"), "prompt": {"en": en, "de": de},
                "chosen": {"en": "It is here.", "de": "Hier."}, "rejected": {"en": "No.", "de": "Nein."}})
        };
        out.push(record.to_string());
    }
    assert_eq!(multi, MULTI);
    out
}

fn languages() -> Vec<String> {
    vec!["en".into(), "de".into()]
}

fn records() -> Vec<Record> {
    let path = PathBuf::from("pairs.jsonl");
    lines()
        .iter()
        .enumerate()
        .map(|(i, l)| parse_record(l, &Origin { path: path.clone(), line: i + 1 }, &languages()).unwrap())
        .collect()
}

fn fixture_model() -> (HfCausalLm, Tokenizer) {
    let model = HfCausalLm::load(format!("{FIXTURES}/llama"), LoadOptions::cpu_f32()).unwrap();
    (model, Tokenizer::from_dir(format!("{FIXTURES}/tokenizer")).unwrap())
}

/// The argmax over `1..=L-1` of the centred ratio, the shallower on a tie, written out here.
fn expected_choice(report_layers: &[LayerConsistency], num_layers: usize) -> usize {
    let ratio = |l: usize| report_layers.iter().find(|c| c.layer == l).unwrap().centred_collinearity_ratio;
    let mut best = 1;
    for l in 2..num_layers {
        if ratio(l) > ratio(best) {
            best = l;
        }
    }
    best
}

#[test]
fn the_choice_is_the_argmax_of_the_centred_ratio_over_the_first_64_groups() {
    let (model, encoder) = fixture_model();
    let num_layers = model.config().num_layers;
    let records = records();
    let auto = choose_layer(&model, &encoder, &records, MAX_GROUPS).unwrap();

    let first: Vec<Record> = records.iter().filter(|r| r.prompt.len() >= 2).take(64).cloned().collect();
    let report = evaluate_consistency(&model, &encoder, &first, &ConsistencyOptions::default()).unwrap();
    assert_eq!(report.layers.len(), num_layers + 1, "the independent profile covers 0..=L");
    assert_eq!(auto.chosen, expected_choice(&report.layers, num_layers));
    assert_eq!(auto.candidates, (1..num_layers).collect::<Vec<_>>());
    assert_eq!((auto.n_groups, auto.n_prompts), (64, 128));
    assert_eq!(auto.profile.len(), num_layers - 1);
    for got in &auto.profile {
        let want = report.layers.iter().find(|c| c.layer == got.layer).unwrap();
        for (a, b) in [
            (got.centred_collinearity_ratio, want.centred_collinearity_ratio),
            (got.collinearity_ratio, want.collinearity_ratio),
            (got.mean_pairwise_cosine, want.mean_pairwise_cosine),
        ] {
            assert!((a - b).abs() < 1e-9, "layer {}: {a} vs {b}", got.layer);
        }
    }
    assert!(auto.rule.contains("centred collinearity ratio") && auto.rule.contains("64"), "{}", auto.rule);

    // Only the first 64 count: the profile of all 72 groups is another one.
    let all = evaluate_consistency(&model, &encoder, &records, &ConsistencyOptions::default()).unwrap();
    assert_eq!(all.n_groups, MULTI);
    let moved = auto.profile.iter().any(|p| {
        let a = all.layers.iter().find(|c| c.layer == p.layer).unwrap();
        (a.centred_collinearity_ratio - p.centred_collinearity_ratio).abs() > 1e-9
    });
    assert!(moved, "the profile must be that of the first 64 groups, not of all {MULTI}");
    // A smaller budget takes the first groups in file order.
    let two = choose_layer(&model, &encoder, &records, 2).unwrap();
    let first_two = evaluate_consistency(&model, &encoder, &first[..2], &ConsistencyOptions::default()).unwrap();
    assert_eq!((two.n_groups, two.chosen), (2, expected_choice(&first_two.layers, num_layers)));
}

#[test]
fn the_rule_prefers_the_shallower_layer_and_skips_what_it_cannot_measure() {
    let layer = |layer: usize, centred: f64| LayerConsistency {
        layer,
        collinearity_ratio: 0.9,
        mean_pairwise_cosine: 0.5,
        centred_collinearity_ratio: centred,
        centred_mean_pairwise_cosine: 0.1,
    };
    assert_eq!(most_neutral_layer(&[layer(1, 0.6), layer(2, 0.8), layer(3, 0.7)]), Some(2));
    assert_eq!(most_neutral_layer(&[layer(1, 0.7), layer(2, 0.7), layer(3, 0.5)]), Some(1), "tie: the shallower");
    assert_eq!(most_neutral_layer(&[layer(1, f64::NAN), layer(2, 0.5)]), Some(2), "NaN is never chosen");
    assert_eq!(most_neutral_layer(&[layer(1, f64::NAN)]), None);
    assert_eq!(candidates(3).unwrap(), [1, 2]);
    assert_eq!(candidates(2).unwrap(), [1]);
    for l in [0, 1] {
        let e = candidates(l).unwrap_err().to_string();
        assert!(e.contains("layer = \"auto\"") && e.contains(&format!("{l} decoder layer(s)")), "{e}");
    }

    let (model, encoder) = fixture_model();
    let english_only: Vec<Record> = records().into_iter().filter(|r| r.prompt.len() == 1).collect();
    let e = choose_layer(&model, &encoder, &english_only, MAX_GROUPS).unwrap_err().to_string();
    assert!(e.contains("two or more languages"), "{e}");
    let e = choose_layer(&model, &encoder, &records(), 0).unwrap_err().to_string();
    assert!(e.contains("max_groups"), "{e}");
}

/// A model folder (the tiny Llama with the fixture tokenizer) and the 90-line data file.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let base = root.join("base");
    std::fs::create_dir_all(&base).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(Path::new(FIXTURES).join("llama").join(f), base.join(f)).unwrap();
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(Path::new(FIXTURES).join("tokenizer").join(f), base.join(f)).unwrap();
    }
    std::fs::write(root.join("pairs.jsonl"), lines().join("\n")).unwrap();
    (dir, root)
}

/// DPO + MLC (with a projection head, whose random start would differ if choosing the layer
/// drew from the seeded generator) at `layer`; 3 steps of 2 records, a checkpoint at step 2.
fn config_text(layer: &str, max_steps: usize) -> String {
    format!(
        "[model]\npath = \"base\"\n[data]\ntrain = \"pairs.jsonl\"\nlanguages = [\"en\", \"de\"]\nmax_length = 64\n\
         [[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nweight = 0.5\nlayer = {layer}\nhead_dim = 8\n\
         [optim]\nlr = 1e-3\nwarmup_ratio = 0.0\n[train]\nbatch_size = 2\nmax_steps = {max_steps}\nsave_every = 2\nseed = 7\n"
    )
}

/// A `LayerChosen` event: the term, the layer, and whether it was computed (not read back).
type Chosen = (String, usize, bool);

fn run(root: &Path, text: &str, out: &str, resume: bool) -> Result<Vec<Chosen>, TrainError> {
    let path = root.join(format!("{out}.toml"));
    std::fs::write(&path, text).unwrap();
    let config = RunConfig::from_file(&path)?;
    let seen: Arc<Mutex<Vec<Chosen>>> = Arc::default();
    let log = seen.clone();
    let options = TrainOptions::new(root.join(out)).resume(resume).on_event(move |event| {
        if let TrainEvent::LayerChosen { term, layer, choice, record } = event {
            assert!(record.ends_with(AUTO_LAYER_FILE));
            log.lock().unwrap().push((term.to_string(), *layer, choice.is_some()));
        }
    });
    train(&config, &path, &options)?;
    let seen = seen.lock().unwrap().clone();
    Ok(seen)
}

fn metrics(root: &Path, out: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root.join(out).join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn value(m: &[Value], step: usize, key: &str) -> f64 {
    m[step - 1][key].as_f64().unwrap_or_else(|| panic!("{key} at step {step}"))
}

/// A copy of `from`'s state after step 2 (its checkpoint, log and cache; a resumed run keeps
/// the log's lines up to its checkpoint) in `to`, with or without its `auto_layer.json`.
fn cut_after_step_2(root: &Path, from: &str, to: &str, with_record: bool) {
    let (from, to) = (root.join(from), root.join(to));
    std::fs::create_dir_all(to.join("checkpoint-2")).unwrap();
    for e in std::fs::read_dir(from.join("checkpoint-2")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join("checkpoint-2").join(e.file_name())).unwrap();
    }
    let mut files = vec!["metrics.jsonl", "reference_logps.safetensors", "reference_logps.json"];
    if with_record {
        files.push(AUTO_LAYER_FILE);
    }
    for f in files {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

#[test]
fn a_run_records_the_choice_trains_as_that_index_and_resumes_with_it() {
    let (_dir, root) = setup();
    let seen = run(&root, &config_text("\"auto\"", 3), "auto", false).unwrap();

    // The choice is the library's on the base model and the run's records.
    let (base, encoder) = (root.join("base"), Tokenizer::from_dir(root.join("base")).unwrap());
    let model = HfCausalLm::load(&base, LoadOptions::cpu_f32()).unwrap();
    let data = load_records(&[root.join("pairs.jsonl")], &languages(), false).unwrap();
    let expected = choose_layer(&model, &encoder, &data.records, MAX_GROUPS).unwrap();
    let chosen = expected.chosen;
    assert_eq!(seen, [("mlc".to_string(), chosen, true)]);

    // auto_layer.json holds the term, the rule, the candidates, the profile and the choice.
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("auto").join(AUTO_LAYER_FILE)).unwrap()).unwrap();
    let entry = &record["terms"][0];
    assert_eq!(record["terms"].as_array().unwrap().len(), 1);
    assert_eq!((entry["term"].as_str(), entry["chosen"].as_u64()), (Some("mlc"), Some(chosen as u64)));
    assert_eq!(entry["candidates"], serde_json::json!([1, 2]));
    assert_eq!(entry["n_groups"].as_u64(), Some(64));
    assert_eq!(entry["rule"].as_str(), Some(expected.rule.as_str()));
    let profile = entry["profile"].as_array().unwrap();
    assert_eq!(profile.len(), 2);
    for (p, e) in profile.iter().zip(&expected.profile) {
        assert_eq!(p["layer"].as_u64(), Some(e.layer as u64));
        let r = p["centred_collinearity_ratio"].as_f64().unwrap();
        assert!((r - e.centred_collinearity_ratio).abs() < 1e-12, "{r} vs {e:?}");
    }
    assert_eq!(read_auto_layers(&root.join("auto")).unwrap(), [("mlc".to_string(), chosen)]);

    // The same run with `layer = <chosen>` trains identically; the other candidate does not.
    let fixed = run(&root, &config_text(&chosen.to_string(), 3), "fixed", false).unwrap();
    assert!(fixed.is_empty(), "a fixed layer is not chosen");
    assert!(!root.join("fixed").join(AUTO_LAYER_FILE).exists());
    let (a, f) = (metrics(&root, "auto"), metrics(&root, "fixed"));
    for step in 1..=3 {
        for key in ["loss", "loss/dpo", "loss/mlc", "mlc/collinearity", "grad_norm"] {
            let (u, v) = (value(&a, step, key), value(&f, step, key));
            assert!((u - v).abs() <= 1e-6 * (1.0 + u.abs()), "step {step}: {key} {u} vs {v}");
        }
    }
    let other = 3 - chosen;
    run(&root, &config_text(&other.to_string(), 1), "other", false).unwrap();
    let o = metrics(&root, "other");
    let (u, v) = (value(&a, 1, "loss/mlc"), value(&o, 1, "loss/mlc"));
    assert!((u - v).abs() > 1e-6, "layers {chosen} and {other} must give different MLC losses ({u} vs {v})");

    // Resume reads the recorded layer and continues as the uninterrupted run.
    cut_after_step_2(&root, "auto", "part", true);
    let seen = run(&root, &config_text("\"auto\"", 3), "part", true).unwrap();
    assert_eq!(seen, [("mlc".to_string(), chosen, false)], "read back, not computed");
    let p = metrics(&root, "part");
    for key in ["loss", "loss/mlc", "grad_norm"] {
        let (u, v) = (value(&a, 3, key), value(&p, 3, key));
        assert!((u - v).abs() <= 1e-5 * (1.0 + u.abs()), "step 3: {key} {u} vs {v}");
    }

    // What the record says is what a resumed run trains: a record naming the other layer.
    cut_after_step_2(&root, "auto", "edited", true);
    let path = root.join("edited").join(AUTO_LAYER_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replace(&format!("\"chosen\": {chosen}"), &format!("\"chosen\": {other}"));
    assert_ne!(edited, text);
    std::fs::write(&path, edited).unwrap();
    let seen = run(&root, &config_text("\"auto\"", 3), "edited", true).unwrap();
    assert_eq!(seen, [("mlc".to_string(), other, false)]);
    let (u, v) = (value(&a, 3, "loss/mlc"), value(&metrics(&root, "edited"), 3, "loss/mlc"));
    assert!((u - v).abs() > 1e-6, "the edited record's layer is trained ({u} vs {v})");

    // Without the record a resume is an error that names the file.
    cut_after_step_2(&root, "auto", "lost", false);
    let e = run(&root, &config_text("\"auto\"", 3), "lost", true).unwrap_err().to_string();
    assert!(e.contains("cannot resume from") && e.contains(AUTO_LAYER_FILE), "{e}");
}

#[test]
fn a_run_without_multilingual_prompts_names_the_layer_key() {
    let (_dir, root) = setup();
    let english: Vec<String> = lines().into_iter().enumerate().filter(|(i, _)| i % 5 == 4).map(|(_, l)| l).collect();
    std::fs::write(root.join("pairs.jsonl"), english.join("\n")).unwrap();
    let e = run(&root, &config_text("\"auto\"", 3), "out", false).unwrap_err().to_string();
    assert!(e.contains("[[objective]] #2 (kind = \"mlc\") `layer`"), "{e}");
    assert!(e.contains("no record of [data] train has its prompt in two or more of [data] languages (en, de)"), "{e}");
    assert!(!root.join("out").join(AUTO_LAYER_FILE).exists());
}
