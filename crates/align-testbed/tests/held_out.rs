//! Held-out concepts are never requested in any training file, are described (with their true
//! attribute) in every language, and are exactly the concepts of the test files.

mod common;

use std::collections::{BTreeSet, HashSet};

use common::{read_jsonl, strings, written_world, TRAINING_FILES};

#[test]
fn held_out_requests_and_answers_appear_in_no_training_file() {
    let (world, dir) = written_world(21);
    let held = world.held_out_concepts();
    assert_eq!(held.len(), 16);
    let mut texts: Vec<String> = Vec::new();
    let mut raw = String::new();
    for name in TRAINING_FILES {
        raw.push_str(&std::fs::read_to_string(dir.path().join(name)).unwrap());
        texts.extend(read_jsonl(&dir.path().join(name)).iter().flat_map(strings));
    }
    let texts: HashSet<String> = texts.into_iter().collect();
    for &c in &held {
        for l in 0..world.languages().len() {
            for t in 0..world.request_templates().len() {
                let request = world.request(l, t, c);
                assert!(!texts.contains(&request), "held-out request in training data: {request}");
                assert!(!raw.contains(&request), "held-out request inside a training text: {request}");
            }
            let answer = world.answer(l, c);
            assert!(!raw.contains(&answer), "answer with a held-out concept in training data: {answer}");
        }
    }
}

#[test]
fn held_out_concept_words_occur_only_in_descriptions_and_their_translations() {
    let (world, dir) = written_world(22);
    let held: HashSet<usize> = world.held_out_concepts().into_iter().collect();
    let held_words: HashSet<String> = world
        .languages()
        .iter()
        .enumerate()
        .flat_map(|(l, _)| held.iter().map(move |&c| (l, c)))
        .map(|(l, c)| world.concept_word(l, c).to_string())
        .collect();
    let mut descriptions = HashSet::new();
    for l in 0..world.languages().len() {
        for &c in &held {
            for d in 0..world.description_templates(world.concepts()[c].harmful).len() {
                descriptions.insert(world.description(l, d, c));
            }
        }
    }
    for name in TRAINING_FILES {
        for r in read_jsonl(&dir.path().join(name)) {
            let uses_held = strings(&r).iter().any(|s| s.split(' ').any(|w| held_words.contains(w)));
            if !uses_held {
                continue;
            }
            assert_eq!(name, "pretrain.jsonl", "a pair mentions a held-out concept: {r}");
            let chosen = r["chosen"].as_str().unwrap();
            let single_word = !chosen.contains(' ') && held_words.contains(chosen);
            assert!(descriptions.contains(chosen) || single_word, "held-out concept outside descriptions: {r}");
        }
    }
}

#[test]
fn held_out_concepts_are_described_with_their_attribute_in_every_language() {
    let (world, dir) = written_world(23);
    let records = read_jsonl(&dir.path().join("pretrain.jsonl"));
    let chosen: HashSet<String> = records.iter().map(|r| r["chosen"].as_str().unwrap().to_string()).collect();
    for c in world.held_out_concepts() {
        let harmful = world.concepts()[c].harmful;
        for l in 0..world.languages().len() {
            let own =
                (0..3).filter(|&d| chosen.contains(&world.render(l, &world.description_templates(harmful)[d], c)));
            assert_eq!(own.count(), 3, "l{l} {}: every description of its attribute", world.concepts()[c].gloss);
            let opposite = world.description_templates(!harmful);
            let wrong = opposite.iter().filter(|t| chosen.contains(&world.render(l, t, c))).count();
            assert_eq!(wrong, 0, "l{l} {}: described with the wrong attribute", world.concepts()[c].gloss);
        }
    }
}

#[test]
fn test_prompts_are_held_out_requests_with_their_true_attribute() {
    let (world, dir) = written_world(24);
    let held: BTreeSet<String> = world.held_out_concepts().iter().map(|&c| world.concepts()[c].gloss.clone()).collect();
    for (file, harmful) in [("test_harmful.jsonl", true), ("test_benign.jsonl", false)] {
        let records = read_jsonl(&dir.path().join(file));
        let mut concepts = BTreeSet::new();
        for r in &records {
            let gloss = r["concept"].as_str().unwrap();
            let c = world.concepts().iter().position(|x| x.gloss == gloss).expect("a concept of the world");
            assert!(world.concepts()[c].held_out, "{file}: {gloss} is a training concept");
            assert_eq!(world.concepts()[c].harmful, harmful, "{file}: {gloss} has the other attribute");
            assert_eq!(r["harmful"].as_bool(), Some(harmful));
            let l = world.language_index(r["lang"].as_str().unwrap()).unwrap();
            let t = r["template"].as_u64().unwrap() as usize;
            assert_eq!(r["prompt"].as_str().unwrap(), world.request(l, t, c));
            concepts.insert(gloss.to_string());
        }
        let expected: BTreeSet<String> = held
            .iter()
            .filter(|g| world.concepts().iter().any(|x| &x.gloss == *g && x.harmful == harmful))
            .cloned()
            .collect();
        assert_eq!(concepts, expected, "{file} covers every held-out concept of its attribute");
    }
}
