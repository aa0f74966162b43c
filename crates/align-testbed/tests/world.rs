//! Invariants of generated worlds over many seeds and sizes.

use std::collections::HashSet;

use align_testbed::{Script, TestbedError, WordOrder, World, WorldConfig};
use proptest::prelude::*;

fn config(seed: u64, concepts: usize, held: usize, languages: usize) -> WorldConfig {
    let rates = [1.0, 0.5, 0.25, 0.0, 0.0, 0.0];
    WorldConfig {
        seed,
        concepts,
        held_out_harmful: held,
        held_out_benign: held,
        refusal_rates: rates[..languages].to_vec(),
        parallel_text: true,
        ..WorldConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn worlds_have_disjoint_scripts_unique_words_and_exact_splits(
        seed in any::<u64>(), concepts in 6usize..80, languages in 2usize..=6, held_frac in 0.05f64..0.45,
    ) {
        let harmful = concepts / 2;
        let held = ((harmful as f64 * held_frac) as usize).clamp(1, harmful - 1);
        let world = World::generate(&config(seed, concepts, held, languages)).unwrap();
        prop_assert_eq!(world.languages().len(), languages);
        let mut all_words = HashSet::new();
        for (i, lang) in world.languages().iter().enumerate() {
            prop_assert_eq!(&lang.tag, &format!("l{i}"));
            prop_assert_eq!(lang.words.len(), world.lexicon().len());
            let unique: HashSet<&String> = lang.words.iter().collect();
            prop_assert_eq!(unique.len(), lang.words.len(), "{} repeats a word", lang.tag);
            for w in &lang.words {
                prop_assert!(w.chars().all(|c| lang.script.contains(c)), "{w} not in {:?}", lang.script);
                prop_assert!(all_words.insert(w.clone()), "{w} shared between languages");
            }
        }
        let n_harmful = world.concepts().iter().filter(|c| c.harmful).count();
        prop_assert_eq!(n_harmful, harmful);
        let held_h = world.concepts().iter().filter(|c| c.harmful && c.held_out).count();
        let held_b = world.concepts().iter().filter(|c| !c.harmful && c.held_out).count();
        prop_assert_eq!((held_h, held_b), (held, held));
        prop_assert_eq!(world.training_concepts().len() + world.held_out_concepts().len(), concepts);
    }
}

#[test]
fn languages_have_distinct_scripts_and_word_orders() {
    let world = World::generate(&WorldConfig::default()).unwrap();
    let scripts: HashSet<&'static str> = world.languages().iter().map(|l| l.script.name()).collect();
    assert_eq!(scripts.len(), 6);
    let orders: HashSet<String> = world.languages().iter().map(|l| format!("{:?}", l.word_order)).collect();
    assert_eq!(orders.len(), 6);
    assert_eq!(world.languages()[0].word_order, WordOrder::Identity);
    assert_eq!(world.languages()[0].script, Script::Latin);
    // The request templates are rendered in a different order in every language: the
    // position of the concept word differs from the dominant language's somewhere.
    let c = world.training_concepts()[0];
    for l in 1..6 {
        let differs = (0..world.request_templates().len()).any(|t| {
            let pos = |lang: usize| {
                world
                    .render_words(lang, &world.request_templates()[t], c)
                    .iter()
                    .position(|w| *w == world.concept_word(lang, c))
            };
            pos(0) != pos(l)
        });
        assert!(differs, "l{l} places the concept like l0 in every template");
    }
}

#[test]
fn invalid_configs_are_errors_that_say_why() {
    let bad = [
        config(1, 48, 8, 1),
        WorldConfig { refusal_rates: vec![1.0; 7], ..WorldConfig::default() },
        WorldConfig { refusal_rates: vec![1.0, 1.5], ..WorldConfig::default() },
        WorldConfig { held_out_harmful: 0, ..WorldConfig::default() },
        WorldConfig { held_out_benign: 24, ..WorldConfig::default() },
    ];
    for c in bad {
        match World::generate(&c) {
            Err(TestbedError::Config { what }) => assert!(!what.is_empty()),
            other => panic!("{c:?} gave {other:?}"),
        }
    }
}
