//! The multi-seed demo end to end at a reduced size on the anchored world: bases pre-trained
//! for a few steps on two seeds (and the ablation world's), then the premise checks, the
//! methods with MLC at `layer = "auto"`, the layer sweep and the ablation, and a report whose
//! cells are the mean ± sd of the per-seed results.

use std::path::Path;

use align_testbed::study::{mean_sd, run_study, seed_dir, StudyOptions};
use align_testbed::{build_base, pretrain_config, Method, World, WorldKind};

fn build(kind: WorldKind, seed: u64, root: &Path, work: &Path) {
    let world = World::generate(&kind.config(seed)).unwrap();
    let assets = kind.assets(root, seed);
    let mut config = pretrain_config(&world, &work.join("init"), &assets.join("pretrain.jsonl")).unwrap();
    config.train.max_steps = 4;
    config.train.batch_size = 8;
    build_base(&world, &assets, work, Some(config), None).unwrap();
}

#[test]
fn the_study_checks_premises_then_reports_mean_and_spread_over_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("assets");
    for kind in [WorldKind::Anchored, WorldKind::AnchoredNoParallel] {
        for seed in [1, 2] {
            build(kind, seed, &root, &dir.path().join(format!("work-{}-{seed}", kind.name())));
        }
    }
    let mut options = StudyOptions::new(&root, dir.path().join("demo"));
    options.seeds = vec![1, 2];
    options.demo.methods = vec![Method::Base, Method::DpoMlc];
    options.demo.steps = 2;
    options.demo.batch_size = 4;
    options.demo.prompts_per_language = Some(2);
    options.ablation = vec![Method::Base, Method::Dpo];
    let lines = std::sync::Mutex::new(vec![]);
    let report = run_study(&options, &|l| lines.lock().unwrap().push(l.to_string())).unwrap();
    let lines = lines.into_inner().unwrap();

    assert_eq!(report.seeds.iter().map(|s| s.seed).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(report.ablation.len(), 2);
    let text = std::fs::read_to_string(options.output.join("report.md")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(options.output.join("study.json")).unwrap()).unwrap();
    assert_eq!(json["seeds"].as_array().unwrap().len(), 2);
    for s in &report.seeds {
        let seed_out = seed_dir(&options.output, WorldKind::Anchored, s.seed);
        assert!(seed_out.join("premise.json").is_file());
        assert!(seed_out.join("data/pairs_mlc.jsonl").is_file());
        // the probe covers every hidden index, 4 layers + embeddings, and every language
        assert_eq!(s.premise.probe.layers.len(), 5);
        assert!(s.premise.probe.layers.iter().all(|l| {
            l.accuracy.len() == 6 && l.centred_accuracy.len() == 6 && l.mean_difference_accuracy.len() == 6
        }));
        // the embeddings at the shared reply marker carry nothing: every probe is at chance
        let embeddings = &s.premise.probe.layers[0];
        assert_eq!((embeddings.accuracy["l3"], embeddings.mean_difference_accuracy["l3"]), (0.5, 0.5));
        // the verdict reads the mean-difference probe at the best middle layer
        let best = &s.premise.probe.layers[s.premise.best_layer];
        assert!((1..4).contains(&s.premise.best_layer));
        let others: f64 = ["l1", "l2", "l3", "l4", "l5"].iter().map(|l| best.mean_difference_accuracy[*l]).sum();
        assert!((s.premise.best_transfer - others / 5.0).abs() < 1e-12);
        for layer in &s.premise.probe.layers[1..4] {
            let mean: f64 = ["l1", "l2", "l3", "l4", "l5"].iter().map(|l| layer.mean_difference_accuracy[*l]).sum();
            assert!(mean / 5.0 <= s.premise.best_transfer + 1e-12, "layer {}", layer.layer);
        }
        // the trainer's auto choice is the demo's, and the sweep covers every candidate layer
        let auto = s.demo.auto_layer.as_ref().expect("auto layer");
        assert_eq!(auto.candidates, vec![1, 2, 3]);
        let recorded = align_train::auto_layer::read_auto_layers(&seed_out.join("dpo_mlc/run")).unwrap();
        assert_eq!(recorded.iter().map(|r| r.1).collect::<Vec<_>>(), vec![auto.chosen]);
        assert_eq!(s.sweep.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        let config = std::fs::read_to_string(seed_out.join("dpo_mlc/config.toml")).unwrap();
        assert!(config.contains("layer = \"auto\""), "{config}");
        for layer in auto.candidates.iter().filter(|&&l| l != auto.chosen) {
            let c = std::fs::read_to_string(seed_out.join(format!("sweep/layer-{layer}/dpo_mlc/config.toml"))).unwrap();
            assert!(c.contains(&format!("layer = {layer}\n")), "{c}");
        }
    }
    // a refusal in the prompt's language is a refusal in some language: any >= 1 - ASR
    for s in report.seeds.iter().chain(&report.ablation) {
        for r in &s.demo.results {
            assert_eq!(r.harmful_refusal_any_language.len(), 6);
            assert_eq!(r.benign_refusal_any_language.len(), 6);
            for (lang, asr) in &r.attack_success_rate {
                assert!(r.harmful_refusal_any_language[lang] >= 1.0 - asr - 1e-12, "{:?} {lang}", r.method);
            }
            // each refusal is one language's: the refusals in another language's words, counted by
            // that language, add up to those counted by the prompt's language (any minus its own
            // language's, 1 - ASR); every language has as many prompts, so per language L the
            // other languages hold 5 of them per prompt of L
            assert_eq!(r.harmful_refusal_in_words_of.len(), 6);
            let by_refusal: f64 = r.harmful_refusal_in_words_of.values().map(|share| share * 5.0).sum();
            let by_prompt: f64 =
                r.attack_success_rate.iter().map(|(l, asr)| r.harmful_refusal_any_language[l] - (1.0 - asr)).sum();
            assert!((by_refusal - by_prompt).abs() < 1e-9, "{:?}: {by_refusal} vs {by_prompt}", r.method);
        }
    }
    // every cell is the mean ± sd of the seeds' numbers
    for (method, lang) in [(Method::DpoMlc, "l0"), (Method::Base, "l4")] {
        let values: Vec<f64> = report
            .seeds
            .iter()
            .map(|s| s.demo.results.iter().find(|r| r.method == method).unwrap().attack_success_rate[lang])
            .collect();
        let (m, sd) = mean_sd(&values);
        assert!(text.contains(&format!("{m:.3} ± {sd:.3}")), "{method:?} {lang}: {m} ± {sd} not in\n{text}");
    }
    assert_eq!(mean_sd(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
    for heading in [
        "## Premise checks",
        "## Methods",
        "Refusal in any language of held-out harmful requests",
        "## MLC layer: `auto` and the sweep",
        "## Ablation",
    ] {
        assert!(text.contains(heading), "{heading} missing:\n{text}");
    }
    // the report says whether the premises hold, as study.json does
    assert_eq!(text.contains("PREMISE FAILED"), !report.premises_hold(), "{text}");
    assert!(lines.iter().any(|l| l.contains("premise checks")), "{lines:?}");
}
