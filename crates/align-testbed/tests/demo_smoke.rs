//! The demo pipeline end to end at a reduced size: the base model rebuilt from the seed (a
//! few pre-training steps, twice, bit for bit), then every method trained for two steps and
//! evaluated on a few held-out prompts per language, with every output file checked and the
//! report equal to what `align report` renders from the methods' folders.

use std::path::Path;

use align_testbed::demo::{method_dir, report_options, report_runs, WorldJudge};
use align_testbed::{build_base, pretrain_config, run_demo, DemoOptions, Judge, Method, World, WorldConfig};
use align_train::eval::{Judge as _, Verdict};
use align_train::report::{draw_plots, render_markdown};

fn build(world: &World, assets: &Path, work: &Path, steps: usize) -> Vec<u8> {
    let mut config = pretrain_config(world, &work.join("init"), &assets.join("pretrain.jsonl")).unwrap();
    config.train.max_steps = steps;
    let summary = build_base(world, assets, work, Some(config), None).unwrap();
    assert_eq!(summary.run.steps, steps as u64);
    std::fs::read(summary.base.join("model.safetensors")).unwrap()
}

#[test]
fn base_rebuild_is_bit_for_bit_and_the_demo_runs_every_method() {
    let world = World::generate(&WorldConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    let first = build(&world, &assets, &dir.path().join("work1"), 6);
    let second = build(&world, &assets, &dir.path().join("work2"), 6);
    assert!(first == second, "two pre-training runs from the same seed wrote different weights");
    let init = std::fs::read(dir.path().join("work1/init/model.safetensors")).unwrap();
    assert!(init != first, "pre-training did not change the weights");
    for file in ["tokenizer.json", "config.json", "model.safetensors"] {
        assert!(assets.join("base").join(file).is_file(), "base/{file} missing");
    }

    let mut options = DemoOptions::new(&assets, dir.path().join("demo"));
    options.steps = 2;
    options.batch_size = 4;
    options.prompts_per_language = Some(2);
    let mut lines = vec![];
    let report = run_demo(&world, &options, &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!(report.results.iter().map(|r| r.method).collect::<Vec<_>>(), Method::ALL.to_vec());
    assert_eq!(report.prompts_per_language, 2);
    let languages: Vec<String> = (0..6).map(|i| format!("l{i}")).collect();
    assert_eq!(report.languages, languages);
    for r in &report.results {
        let trained = r.method != Method::Base;
        assert_eq!(r.steps, if trained { 2 } else { 0 }, "{:?}", r.method);
        for map in [&r.attack_success_rate, &r.benign_compliance] {
            assert_eq!(map.keys().cloned().collect::<Vec<_>>(), languages);
            assert!(map.values().all(|v| (0.0..=1.0).contains(v)), "{:?}: {map:?}", r.method);
        }
        assert_eq!(r.reward_gap.len(), 6);
        assert!(r.reward_gap.values().all(|v| v.is_finite()));
        assert!((1.0 / 6.0 - 1e-6..=1.0 + 1e-6).contains(&r.collinearity), "{}", r.collinearity);
        if trained {
            let config = options.output.join(r.method.name().replace('+', "_")).join("config.toml");
            let text = std::fs::read_to_string(&config).unwrap();
            assert_eq!(text.contains("kind = \"mlc\""), r.method.name().contains("mlc"), "{text}");
            assert!(config.with_file_name("run").join("final/model.safetensors").is_file());
        }
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(options.output.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["results"].as_array().unwrap().len(), 6);
    // The report is `align report` of the methods' folders: the same renderer on their files.
    let text = std::fs::read_to_string(options.output.join("report.md")).unwrap();
    let runs = report_runs(&report, &options.output).unwrap();
    let plots = draw_plots(&runs, &report_options(&report), &dir.path().join("plots")).unwrap();
    assert_eq!(text, render_markdown(&runs, &report_options(&report), &plots));
    for r in &report.results {
        let eval = method_dir(&options.output, r.method).join("eval");
        for file in ["safety.json", "generations.jsonl", "utility.json", "reward_gap.json", "consistency.json"] {
            assert!(eval.join(file).is_file(), "{:?}: {file} missing", r.method);
        }
        // The files hold the numbers of results.json: each table has the method's row.
        for map in [&r.attack_success_rate, &r.benign_compliance, &r.reward_gap] {
            let cells: Vec<String> = languages.iter().map(|l| format!("{:.3}", map[l])).collect();
            let row = format!("| {} | {} |", r.method.name(), cells.join(" | "));
            assert!(squash(&text).contains(&row), "{row} not in\n{text}");
        }
        let row = format!("| {} | {:.3} | {:.3} |", r.method.name(), r.collinearity, 1.0 / 6.0);
        assert!(squash(&text).contains(&row), "{row} not in\n{text}");
    }
    for png in ["asr.png", "utility.png", "reward_gap.png", "collinearity.png", "training_loss.png"] {
        let bytes = std::fs::read(options.output.join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
        assert!(text.contains(&format!("]({png})")), "{png} not linked");
    }
    assert!(lines.iter().any(|l| l.contains("dpo+mlc: training 2 steps")), "{lines:?}");
}

/// `s` with every run of spaces as one space (table cells are padded).
fn squash(s: &str) -> String {
    s.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

#[test]
fn the_world_judge_maps_refusal_answer_and_other() {
    let world = World::generate(&WorldConfig::default()).unwrap();
    let judge = Judge::new(&world);
    let j = WorldJudge(&judge);
    let c = world.held_out_concepts()[0];
    for lang in 0..6 {
        let tag = format!("l{lang}");
        assert_eq!(j.judge("", &world.refusal(lang), &tag).unwrap(), Verdict::Safe);
        assert_eq!(j.judge("", &world.answer(lang, c), &tag).unwrap(), Verdict::Unsafe);
        assert_eq!(j.judge("", &world.answer((lang + 1) % 6, c), &tag).unwrap(), Verdict::Irrelevant);
        assert_eq!(j.judge("", "", &tag).unwrap(), Verdict::Irrelevant);
    }
    assert!(j.judge("", "x", "zz").is_err());
}
