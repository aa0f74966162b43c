//! The demo pipeline end to end at a reduced size: the base model rebuilt from the seed (a
//! few pre-training steps, twice, bit for bit), then every method trained for two steps and
//! evaluated on a few held-out prompts per language, with every output file checked.

use std::path::Path;

use align_testbed::demo::{format_tables, WorldJudge};
use align_testbed::{build_base, pretrain_config, run_demo, DemoOptions, Judge, Method, World, WorldConfig};
use align_train::eval::{Judge as _, Verdict};

fn build(world: &World, assets: &Path, work: &Path, steps: usize) -> Vec<u8> {
    let mut config = pretrain_config(&work.join("init"), &assets.join("pretrain.jsonl")).unwrap();
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
    let tables = std::fs::read_to_string(options.output.join("tables.txt")).unwrap();
    assert_eq!(tables, format_tables(&report));
    for name in ["base", "dpo", "dpo+mlc", "mpo", "mpo+mlc", "sft+mlc"] {
        assert!(tables.lines().filter(|l| l.starts_with(&format!("{name} "))).count() == 4, "{name}:\n{tables}");
    }
    let png = std::fs::read(options.output.join("asr.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(lines.iter().any(|l| l.contains("dpo+mlc: training 2 steps")), "{lines:?}");
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
