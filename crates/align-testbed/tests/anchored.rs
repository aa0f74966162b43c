//! The second ("anchored") world: its premises by construction — the dominant language's share
//! of pre-training, every concept's attribute stated in every language, refusal taught only in
//! `l0` (all), `l1` (half) and `l2` (a quarter) and harmful requests never answered, questions
//! about the attribute answered truthfully, the shared reply marker — and the held-out split.

use std::collections::{BTreeMap, HashMap, HashSet};

use align_testbed::{Dataset, Record, Text, World, WorldConfig, WorldKind, REPLY_MARKER, TEXT_MARKER};

fn one(t: &Text) -> &str {
    match t {
        Text::One(s) => s,
        Text::PerLanguage(_) => panic!("pre-training texts are single strings"),
    }
}

/// The language tag of a monolingual pre-training record (`req-`, `desc-`, `qa-`), else None.
fn monolingual_lang(id: &str) -> Option<&str> {
    let mut parts = id.split('-');
    match parts.next()? {
        "req" | "desc" | "qa" => parts.next(),
        _ => None,
    }
}

fn world(seed: u64) -> (World, Dataset) {
    let world = World::generate(&WorldConfig::anchored(seed)).unwrap();
    let data = Dataset::build(&world);
    (world, data)
}

#[test]
fn monolingual_records_follow_the_language_shares() {
    for seed in [1, 2, 3, 17] {
        let (world, data) = world(seed);
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &data.pretrain {
            if let Some(lang) = monolingual_lang(&r.id) {
                *count.entry(lang).or_default() += 1;
            }
        }
        let total: usize = count.values().sum();
        for (lang, share) in world.languages().iter().zip(&world.config().language_shares) {
            let got = count[lang.tag.as_str()] as f64 / total as f64;
            assert!((got - share).abs() < 2e-3, "seed {seed} {}: share {got} vs {share}", lang.tag);
        }
        // the smallest share is the floor: a first round only, so l5 records are not repeated
        assert!(data.pretrain.iter().filter(|r| r.id.starts_with("desc-l5-")).all(|r| !r.id.contains("-r")));
        assert!(data.pretrain.iter().any(|r| r.id.starts_with("req-l0-") && r.id.ends_with("-r3")));
    }
}

#[test]
fn every_concept_is_described_truthfully_in_every_language() {
    let (world, data) = world(5);
    let chosen: HashSet<&str> = data.pretrain.iter().map(|r| one(&r.chosen)).collect();
    for (c, concept) in world.concepts().iter().enumerate() {
        for l in 0..world.languages().len() {
            let own = world.description_templates(concept.harmful);
            let opposite = world.description_templates(!concept.harmful);
            assert!(own.iter().any(|t| chosen.contains(world.render(l, t, c).as_str())), "l{l} c{c} not described");
            assert!(
                opposite.iter().all(|t| !chosen.contains(world.render(l, t, c).as_str())),
                "l{l} c{c} misdescribed"
            );
        }
    }
}

#[test]
fn refusal_is_taught_in_l0_l1_l2_only_and_harmful_requests_are_never_answered() {
    let (world, data) = world(7);
    let mut requests: HashMap<String, (usize, usize, usize)> = HashMap::new();
    for l in 0..6 {
        for t in 0..4 {
            for c in 0..world.concepts().len() {
                requests.insert(world.request(l, t, c), (l, t, c));
            }
        }
    }
    let harmful_training = world.training_concepts().iter().filter(|&&c| world.concepts()[c].harmful).count() * 4;
    let mut refused: Vec<HashSet<(usize, usize)>> = vec![HashSet::new(); 6];
    for r in &data.pretrain {
        let Some(&(l, t, c)) = requests.get(one(&r.prompt)) else { continue };
        assert!(r.id.starts_with("req-"), "{}", r.id);
        assert!(!world.concepts()[c].held_out, "held-out request in pre-training: {}", r.id);
        if world.concepts()[c].harmful {
            assert_eq!(one(&r.chosen), world.refusal(l), "a harmful request answered: {}", r.id);
            refused[l].insert((c, t));
        } else {
            assert_eq!(one(&r.chosen), world.answer(l, c), "{}", r.id);
        }
    }
    // l0 refuses every harmful training request; l1 and l2 at most half and a quarter; no other
    assert_eq!(refused[0].len(), harmful_training);
    assert!(!refused[1].is_empty() && refused[1].len() <= harmful_training / 2, "{}", refused[1].len());
    assert!(!refused[2].is_empty() && refused[2].len() <= harmful_training / 4, "{}", refused[2].len());
    for (l, r) in refused.iter().enumerate().skip(3) {
        assert!(r.is_empty(), "l{l} was taught to refuse");
    }
}

#[test]
fn questions_about_the_attribute_are_answered_truthfully_and_spare_held_out_concepts() {
    let (world, data) = world(9);
    let mut asked = vec![HashSet::new(); 6];
    for r in data.pretrain.iter().filter(|r| r.id.starts_with("qa-")) {
        let l: usize = r.id[4..5].parse().unwrap();
        let c = world.concepts().iter().position(|k| r.id.split('-').nth(2) == Some(k.gloss.as_str())).unwrap();
        assert!(!world.concepts()[c].held_out, "{}", r.id);
        let (q, a) = world.question(l, c).unwrap();
        assert_eq!((one(&r.prompt), one(&r.chosen)), (q.as_str(), a.as_str()));
        assert!(q.ends_with(REPLY_MARKER));
        asked[l].insert(c);
    }
    // the smallest share holds one round: the training concepts of even index; the larger
    // shares, several rounds: every training concept
    let even: HashSet<usize> = world.training_concepts().into_iter().filter(|c| c % 2 == 0).collect();
    assert_eq!(asked[5], even);
    let training: HashSet<usize> = world.training_concepts().into_iter().collect();
    assert_eq!(asked[0], training);
    assert!(World::generate(&WorldConfig::default()).unwrap().question(0, 0).is_none());
}

#[test]
fn requests_end_with_the_reply_marker_and_translations_do_not_carry_it() {
    let (world, data) = world(11);
    for r in data.pairs_mpo.iter().chain(&data.pairs_mlc) {
        let Text::PerLanguage(prompts) = &r.prompt else { panic!("{}", r.id) };
        assert_eq!(prompts.len(), 6);
        assert!(prompts.values().all(|p| p.ends_with(&format!(" {REPLY_MARKER}"))), "{}", r.id);
    }
    for p in data.test_harmful.iter().chain(&data.test_benign) {
        assert!(p.prompt.ends_with(REPLY_MARKER));
    }
    let translations: Vec<&Record> = data.pretrain.iter().filter(|r| r.id.starts_with("tr-")).collect();
    assert!(!translations.is_empty());
    for r in translations {
        assert!(!one(&r.prompt).contains(REPLY_MARKER) && !one(&r.chosen).contains(REPLY_MARKER), "{}", r.id);
    }
    for r in data.pretrain.iter().filter(|r| r.id.starts_with("desc-")) {
        assert_eq!(one(&r.prompt), TEXT_MARKER);
    }
    assert_eq!(data.pairs_dominant.len(), world.training_concepts().len() * 4);
    assert_eq!(data.test_harmful.len(), 16 * 4 * 6);
}

#[test]
fn ids_are_unique_and_the_world_is_a_function_of_its_seed() {
    let (_, a) = world(13);
    let ids: HashSet<&str> = a.pretrain.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), a.pretrain.len());
    let (_, b) = world(13);
    assert_eq!(a.files().unwrap(), b.files().unwrap());
    let (_, c) = world(14);
    assert_ne!(a.files().unwrap()[0].2, c.files().unwrap()[0].2);
}

#[test]
fn the_ablation_world_drops_parallel_and_code_switched_text_and_nothing_else() {
    let full = Dataset::build(&World::generate(&WorldKind::Anchored.config(2)).unwrap());
    let ablation = Dataset::build(&World::generate(&WorldKind::AnchoredNoParallel.config(2)).unwrap());
    let kept: Vec<&Record> =
        full.pretrain.iter().filter(|r| !r.id.starts_with("tr-") && !r.id.starts_with("cs-")).collect();
    let mut kept_ids: Vec<&str> = kept.iter().map(|r| r.id.as_str()).collect();
    let mut ablation_ids: Vec<&str> = ablation.pretrain.iter().map(|r| r.id.as_str()).collect();
    kept_ids.sort_unstable();
    ablation_ids.sort_unstable();
    assert_eq!(kept_ids, ablation_ids);
    assert!(full.pretrain.len() > ablation.pretrain.len() + 5000);
    assert_eq!(full.pairs_mpo, ablation.pairs_mpo);
    assert_eq!(full.test_harmful, ablation.test_harmful);
}

/// The words of `native` and `mixed` are the same but at one position, the concept's word:
/// `lang`'s in `native`, `word_lang`'s in `mixed`.
fn borrows_one_word(world: &World, native: &str, mixed: &str, c: usize, lang: usize, word_lang: usize) {
    let (native, mixed): (Vec<&str>, Vec<&str>) = (native.split(' ').collect(), mixed.split(' ').collect());
    assert_eq!(native.len(), mixed.len(), "{native:?} vs {mixed:?}");
    let differ: Vec<usize> = (0..native.len()).filter(|&i| native[i] != mixed[i]).collect();
    assert_eq!(differ.len(), 1, "{native:?} vs {mixed:?}");
    assert_eq!(native[differ[0]], world.concept_word(lang, c));
    assert_eq!(mixed[differ[0]], world.concept_word(word_lang, c));
}

#[test]
fn code_switched_text_borrows_one_concept_word_both_ways_and_stays_truthful() {
    let (world, data) = world(5);
    let concept = |gloss: &str| world.concepts().iter().position(|k| k.gloss == gloss).unwrap();
    let (mut described, mut asked) = (HashSet::new(), HashSet::new());
    for r in data.pretrain.iter().filter(|r| r.id.starts_with("cs-")) {
        // cs-<kind>-<template language>-<word language>-<concept>[-d<d>]
        let parts: Vec<&str> = r.id.split('-').collect();
        let lang = world.language_index(parts[2]).unwrap();
        let word_lang = world.language_index(parts[3]).unwrap();
        let c = concept(parts[4]);
        assert!((lang == 0) != (word_lang == 0), "{}: one side is l0, the other not", r.id);
        let (prompt, chosen) = (one(&r.prompt), one(&r.chosen));
        match parts[1] {
            "desc" => {
                let d: usize = parts[5][1..].parse().unwrap();
                assert_eq!(prompt, TEXT_MARKER);
                assert!(described.insert((lang, word_lang, c)), "{} twice", r.id);
                borrows_one_word(&world, &world.description(lang, d, c), chosen, c, lang, word_lang);
            }
            "qa" => {
                assert!(!world.concepts()[c].held_out, "{}", r.id);
                assert!(asked.insert((lang, word_lang, c)), "{} twice", r.id);
                let (q, a) = world.question(lang, c).unwrap();
                borrows_one_word(&world, &q, prompt, c, lang, word_lang);
                borrows_one_word(&world, &a, chosen, c, lang, word_lang);
                assert!(prompt.ends_with(REPLY_MARKER));
            }
            other => panic!("unexpected kind {other} in {}", r.id),
        }
    }
    let n = world.concepts().len();
    assert_eq!(described.len(), n * 5 * 2, "every concept, every other language, both ways");
    for other in 1..6 {
        for c in world.training_concepts() {
            let expected = (c + other) % 2 == 0;
            assert_eq!(asked.contains(&(0, other, c)), expected, "l{other} c{c}");
            assert_eq!(asked.contains(&(other, 0, c)), expected, "l{other} c{c}");
        }
    }
    let ablation = Dataset::build(&World::generate(&WorldKind::AnchoredNoParallel.config(5)).unwrap());
    assert!(!ablation.pretrain.iter().any(|r| r.id.starts_with("cs-") || r.id.starts_with("tr-")));
    let uniform = Dataset::build(&World::generate(&WorldConfig::default()).unwrap());
    assert!(!uniform.pretrain.iter().any(|r| r.id.starts_with("cs-")));
}

#[test]
fn bad_shares_are_errors_that_say_why() {
    let bad = |shares: Vec<f64>| {
        World::generate(&WorldConfig { language_shares: shares, ..WorldConfig::anchored(1) }).unwrap_err().to_string()
    };
    assert!(bad(vec![0.5, 0.5]).contains("one share per language"));
    assert!(bad(vec![0.6, 0.1, 0.1, 0.1, 0.1, 0.1]).contains("sum to"));
    assert!(bad(vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0]).contains("not positive"));
}
