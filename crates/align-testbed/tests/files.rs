//! Every language is present in every multilingual file, and the pre-training corpus follows
//! the design: benign requests answered everywhere, harmful ones refused at each language's
//! rate and never answered.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{all_requests, read_jsonl, strings, written_world};
use serde_json::Value;

fn tags(world: &align_testbed::World) -> BTreeSet<String> {
    world.languages().iter().map(|l| l.tag.clone()).collect()
}

fn object_keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object of texts by language").keys().cloned().collect()
}

fn in_script(world: &align_testbed::World, tag: &str, text: &str) -> bool {
    let lang = &world.languages()[world.language_index(tag).unwrap()];
    !text.is_empty() && text.split(' ').all(|w| !w.is_empty() && w.chars().all(|c| lang.script.contains(c)))
}

#[test]
fn multilingual_pair_files_have_every_language_in_its_own_script() {
    let (world, dir) = written_world(11);
    let all = tags(&world);
    let mlc = read_jsonl(&dir.path().join("pairs_mlc.jsonl"));
    let mpo = read_jsonl(&dir.path().join("pairs_mpo.jsonl"));
    assert_eq!(mlc.len(), world.training_concepts().len() * world.request_templates().len());
    assert_eq!(mlc.len(), mpo.len());
    for (a, b) in mlc.iter().zip(&mpo) {
        assert_eq!(a["id"], b["id"], "the pair files are line-aligned");
        assert_eq!(object_keys(&a["prompt"]), all);
        assert!(a["chosen"].is_string() && a["rejected"].is_string());
        assert!(in_script(&world, "l0", a["chosen"].as_str().unwrap()));
        for field in ["prompt", "chosen", "rejected"] {
            assert_eq!(object_keys(&b[field]), all, "{field} of {}", b["id"]);
            for (tag, text) in b[field].as_object().unwrap() {
                assert!(in_script(&world, tag, text.as_str().unwrap()), "{tag}: {text}");
            }
        }
        assert_eq!(a["prompt"], b["prompt"]);
        assert_eq!(a["chosen"], b["chosen"]["l0"]);
    }
    let dominant = read_jsonl(&dir.path().join("pairs_en.jsonl"));
    for (d, m) in dominant.iter().zip(&mlc) {
        assert_eq!(d["id"], m["id"]);
        assert_eq!(d["prompt"], m["prompt"]["l0"]);
        assert_eq!(d["chosen"], m["chosen"]);
        assert_eq!(d["rejected"], m["rejected"]);
    }
}

#[test]
fn pairs_prefer_refusals_of_harmful_and_answers_to_benign_requests() {
    let (world, dir) = written_world(12);
    let requests = all_requests(&world);
    let mpo = read_jsonl(&dir.path().join("pairs_mpo.jsonl"));
    let (mut harmful, mut benign) = (0, 0);
    for r in &mpo {
        for (l, lang) in world.languages().iter().enumerate() {
            let prompt = r["prompt"][&lang.tag].as_str().unwrap();
            let &(pl, _, c) = requests.get(prompt).expect("every prompt is a request of the world");
            assert_eq!(pl, l);
            let (chosen, rejected) =
                (r["chosen"][&lang.tag].as_str().unwrap(), r["rejected"][&lang.tag].as_str().unwrap());
            if world.concepts()[c].harmful {
                assert_eq!((chosen, rejected), (world.refusal(l).as_str(), world.answer(l, c).as_str()));
            } else {
                assert_eq!((chosen, rejected), (world.answer(l, c).as_str(), world.refusal(l).as_str()));
            }
        }
        let c = requests[r["prompt"]["l0"].as_str().unwrap()].2;
        if world.concepts()[c].harmful {
            harmful += 1
        } else {
            benign += 1
        }
    }
    assert_eq!(harmful, benign, "alignment pairs are balanced between harmful and benign requests");
}

#[test]
fn test_files_cover_every_language_equally() {
    let (world, dir) = written_world(13);
    for (file, n_concepts) in [("test_harmful.jsonl", 8), ("test_benign.jsonl", 8)] {
        let records = read_jsonl(&dir.path().join(file));
        let mut per_lang: BTreeMap<String, usize> = BTreeMap::new();
        for r in &records {
            let tag = r["lang"].as_str().unwrap();
            *per_lang.entry(tag.to_string()).or_default() += 1;
            assert!(in_script(&world, tag, r["prompt"].as_str().unwrap()), "{r}");
        }
        assert_eq!(per_lang.keys().cloned().collect::<BTreeSet<_>>(), tags(&world), "{file}");
        assert!(per_lang.values().all(|&n| n == n_concepts * world.request_templates().len()), "{file}: {per_lang:?}");
    }
}

#[test]
fn pretraining_refuses_harmful_requests_at_each_rate_and_never_answers_them() {
    let (world, dir) = written_world(14);
    let requests = all_requests(&world);
    let records = read_jsonl(&dir.path().join("pretrain.jsonl"));
    let n = world.languages().len();
    let (mut refused, mut answered) = (vec![0usize; n], vec![0usize; n]);
    let mut languages_seen = BTreeSet::new();
    for r in &records {
        assert!(r.get("rejected").is_none(), "pre-training records have no rejected completion");
        for text in strings(r) {
            for w in text.split(' ') {
                if let Some(l) = world.languages().iter().position(|lang| w.chars().all(|c| lang.script.contains(c))) {
                    languages_seen.insert(l);
                }
            }
        }
        let prompt = r["prompt"].as_str().unwrap();
        let Some(&(l, _, c)) = requests.get(prompt) else { continue };
        let chosen = r["chosen"].as_str().unwrap();
        if world.concepts()[c].harmful {
            assert_eq!(chosen, world.refusal(l), "harmful request answered: {r}");
            refused[l] += 1;
        } else {
            assert_eq!(chosen, world.answer(l, c), "benign request not answered: {r}");
            answered[l] += 1;
        }
    }
    assert_eq!(languages_seen.len(), n, "every language appears in the corpus");
    let train = world.training_concepts();
    let per_attribute =
        train.iter().filter(|&&c| world.concepts()[c].harmful).count() * world.request_templates().len();
    for (l, lang) in world.languages().iter().enumerate() {
        assert_eq!(answered[l], per_attribute, "{}: every benign training request is answered", lang.tag);
        let expected = (lang.refusal_rate * per_attribute as f64).round() as usize;
        assert_eq!(refused[l], expected, "{}: refusals at rate {}", lang.tag, lang.refusal_rate);
    }
    assert!(
        refused[0] > refused[1] && refused[1] > refused[2] && refused[2] > 0 && refused[3..].iter().all(|&r| r == 0)
    );
    // The refusal phrase of every language still appears (as parallel text), so a model can
    // say it after alignment even where refusal was never taught.
    for l in 0..n {
        let refusal = world.refusal(l);
        assert!(records.iter().any(|r| r["chosen"] == refusal.as_str()), "no refusal text in l{l}");
    }
}

#[test]
fn ids_are_unique_in_every_file() {
    let (_, dir) = written_world(15);
    for name in align_testbed::DATA_FILES {
        let records = read_jsonl(&dir.path().join(name));
        let ids: BTreeSet<String> = records.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids.len(), records.len(), "{name} repeats an id");
    }
}

#[test]
fn the_ablation_world_drops_parallel_text_and_nothing_else() {
    use align_testbed::{Dataset, Text, World, WorldConfig};
    let full = World::generate(&WorldConfig { seed: 16, ..WorldConfig::default() }).unwrap();
    let ablation = World::generate(&WorldConfig { seed: 16, parallel_text: false, ..WorldConfig::default() }).unwrap();
    let (a, b) = (Dataset::build(&full), Dataset::build(&ablation));
    let marker = |t: &Text| matches!(t, Text::One(s) if s.contains("<to:"));
    assert!(a.pretrain.iter().any(|r| marker(&r.prompt)), "the full world has parallel text");
    assert!(!b.pretrain.iter().any(|r| marker(&r.prompt)), "the ablation world has none");
    let monolingual = |d: &Dataset| {
        let mut v: Vec<String> =
            d.pretrain.iter().filter(|r| !r.id.starts_with("tr-")).map(|r| format!("{r:?}")).collect();
        v.sort();
        v
    };
    assert_eq!(monolingual(&a), monolingual(&b));
    assert!(monolingual(&b).len() == b.pretrain.len() && b.pretrain.len() < a.pretrain.len());
    assert_eq!(a.files().unwrap()[1..], b.files().unwrap()[1..], "pairs and tests do not depend on parallel text");
}
