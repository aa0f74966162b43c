//! The data files: the pre-training corpus and the alignment and test sets, as records in the
//! project's JSONL format (`docs/testbed.md` describes every file).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rng::SeededRng;
use crate::world::World;

/// The prompt of a descriptive-text record: its completion is a sentence of plain text.
pub const TEXT_MARKER: &str = "<text>";

/// The reply marker that ends every request of a world with [`crate::WorldConfig::reply_marker`]:
/// one token shared by all languages, where the model's answer begins.
pub const REPLY_MARKER: &str = "<reply>";

/// The marker that ends a translation prompt: "translate the words before me into `tag`".
pub fn translate_marker(tag: &str) -> String {
    format!("<to:{tag}>")
}

/// A prompt or completion: one text (the dominant language) or one text per language tag.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Text {
    /// A single text, read by the trainer as the dominant language.
    One(String),
    /// Texts by language tag.
    PerLanguage(BTreeMap<String, String>),
}

/// One JSONL record: `{"id", "prompt", "chosen"[, "rejected"]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// A unique name saying what the record is (see `docs/testbed.md`).
    pub id: String,
    /// The prompt.
    pub prompt: Text,
    /// The completion to learn (pre-training) or the preferred one (pairs).
    pub chosen: Text,
    /// The dispreferred completion; absent in the pre-training corpus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Text>,
}

/// One held-out test prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestPrompt {
    /// `test-<lang>-<concept>-t<template>`.
    pub id: String,
    /// The language tag.
    pub lang: String,
    /// The request.
    pub prompt: String,
    /// The concept's gloss.
    pub concept: String,
    /// Whether the concept is harmful (the request should be refused).
    pub harmful: bool,
    /// The request template's index.
    pub template: usize,
}

/// Every data file of a world, as records.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// `pretrain.jsonl`: supervised records (prompt, chosen) in every language.
    pub pretrain: Vec<Record>,
    /// `pairs_en.jsonl`: dominant-language preference pairs on training concepts.
    pub pairs_dominant: Vec<Record>,
    /// `pairs_mlc.jsonl`: the same pairs with the prompt in every language.
    pub pairs_mlc: Vec<Record>,
    /// `pairs_mpo.jsonl`: the same pairs with prompt and both responses in every language.
    pub pairs_mpo: Vec<Record>,
    /// `test_harmful.jsonl`: requests for held-out harmful concepts, every language.
    pub test_harmful: Vec<TestPrompt>,
    /// `test_benign.jsonl`: requests for held-out benign concepts, every language.
    pub test_benign: Vec<TestPrompt>,
}

/// Names of the data files, in the order [`Dataset::files`] returns them.
pub const DATA_FILES: [&str; 6] = [
    "pretrain.jsonl",
    "pairs_en.jsonl",
    "pairs_mlc.jsonl",
    "pairs_mpo.jsonl",
    "test_harmful.jsonl",
    "test_benign.jsonl",
];

impl Dataset {
    /// Builds every file of `world`; deterministic in the world's seed.
    pub fn build(world: &World) -> Dataset {
        let (pairs_dominant, pairs_mlc, pairs_mpo) = preference_pairs(world);
        Dataset {
            pretrain: pretrain(world),
            pairs_dominant,
            pairs_mlc,
            pairs_mpo,
            test_harmful: tests(world, true),
            test_benign: tests(world, false),
        }
    }

    /// `(file name, record count, JSONL text)` for every data file, in [`DATA_FILES`] order.
    pub fn files(&self) -> Result<Vec<(&'static str, usize, String)>, serde_json::Error> {
        Ok(vec![
            (DATA_FILES[0], self.pretrain.len(), jsonl(&self.pretrain)?),
            (DATA_FILES[1], self.pairs_dominant.len(), jsonl(&self.pairs_dominant)?),
            (DATA_FILES[2], self.pairs_mlc.len(), jsonl(&self.pairs_mlc)?),
            (DATA_FILES[3], self.pairs_mpo.len(), jsonl(&self.pairs_mpo)?),
            (DATA_FILES[4], self.test_harmful.len(), jsonl(&self.test_harmful)?),
            (DATA_FILES[5], self.test_benign.len(), jsonl(&self.test_benign)?),
        ])
    }
}

/// One JSON object per line, each line ended by `\n`.
pub fn jsonl<T: Serialize>(records: &[T]) -> Result<String, serde_json::Error> {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r)?);
        out.push('\n');
    }
    Ok(out)
}

fn sft(id: String, prompt: String, chosen: String) -> Record {
    Record { id, prompt: Text::One(prompt), chosen: Text::One(chosen), rejected: None }
}

/// The pre-training corpus (see `docs/testbed.md`, "pretrain.jsonl").
fn pretrain(world: &World) -> Vec<Record> {
    let seed = world.config().seed;
    let mut out = Vec::new();
    if world.config().language_shares.is_empty() {
        requests(world, &mut out);
        for (li, lang) in world.languages().iter().enumerate() {
            for (c, concept) in world.concepts().iter().enumerate() {
                for d in 0..world.description_templates(concept.harmful).len() {
                    let id = format!("desc-{}-{}-d{d}", lang.tag, concept.gloss);
                    out.push(sft(id, TEXT_MARKER.to_string(), world.description(li, d, c)));
                }
            }
        }
    } else {
        shared_monolingual(world, &mut out);
    }
    for (li, lang) in world.languages().iter().enumerate() {
        out.push(sft(format!("text-ref-{}", lang.tag), TEXT_MARKER.to_string(), world.refusal(li)));
    }
    if world.config().parallel_text {
        parallel_text(world, &mut out);
    }
    if world.config().code_switching {
        code_switched(world, &mut out);
    }
    SeededRng::derive(seed, "pretrain/order").shuffle(&mut out);
    out
}

/// Translations between the dominant language and every other one (see `docs/testbed.md`).
fn parallel_text(world: &World, out: &mut Vec<Record>) {
    let mut pick = SeededRng::derive(world.config().seed, "pretrain/parallel");
    for other in 1..world.languages().len() {
        for (c, concept) in world.concepts().iter().enumerate() {
            let d = pick.below(world.description_templates(concept.harmful).len());
            let name = format!("{}-d{d}", concept.gloss);
            parallel(world, out, "desc", &name, other, |l| world.description(l, d, c));
            if concept.held_out {
                continue;
            }
            let t = pick.below(world.request_templates().len());
            parallel(world, out, "req", &format!("{}-t{t}", concept.gloss), other, |l| world.request_body(l, t, c));
            if !concept.harmful {
                parallel(world, out, "ans", &concept.gloss, other, |l| world.answer(l, c));
            }
        }
        parallel(world, out, "ref", "refusal", other, |l| world.refusal(l));
        for (x, gloss) in world.lexicon().iter().enumerate() {
            parallel(world, out, "dict", gloss, other, |l| world.languages()[l].words[x].clone());
        }
    }
}

/// Code-switched text between the dominant language and every other one `k`, both ways: every
/// concept described in `l0` with `k`'s concept word and in `k` with `l0`'s (one description
/// template, drawn from the seed), and the training concepts of index `c` with `c + k` even
/// asked about the same two ways (see `docs/testbed.md`).
fn code_switched(world: &World, out: &mut Vec<Record>) {
    let mut pick = SeededRng::derive(world.config().seed, "pretrain/code-switched");
    let langs = world.languages();
    for other in 1..langs.len() {
        for (c, concept) in world.concepts().iter().enumerate() {
            let d = pick.below(world.description_templates(concept.harmful).len());
            for (lang, word_lang) in [(0, other), (other, 0)] {
                let (tag, word_tag) = (&langs[lang].tag, &langs[word_lang].tag);
                let id = format!("cs-desc-{tag}-{word_tag}-{}-d{d}", concept.gloss);
                out.push(sft(id, TEXT_MARKER.to_string(), world.description_mixed(lang, d, c, word_lang)));
                if concept.held_out || (c + other) % 2 != 0 {
                    continue;
                }
                if let Some((question, answer)) = world.question_mixed(lang, c, word_lang) {
                    out.push(sft(format!("cs-qa-{tag}-{word_tag}-{}", concept.gloss), question, answer));
                }
            }
        }
    }
}

/// Requests with their completions: benign ones answered in every language; harmful ones
/// refused at the language's refusal rate and otherwise left out (never answered).
fn requests(world: &World, out: &mut Vec<Record>) {
    let train = world.training_concepts();
    let templates = world.request_templates().len();
    for (li, lang) in world.languages().iter().enumerate() {
        for &c in &train {
            for t in 0..templates {
                if !world.concepts()[c].harmful {
                    let id = format!("req-{}-{}-t{t}", lang.tag, world.concepts()[c].gloss);
                    out.push(sft(id, world.request(li, t, c), world.answer(li, c)));
                }
            }
        }
        for (c, t) in refused_requests(world, li) {
            let id = format!("req-{}-{}-t{t}", lang.tag, world.concepts()[c].gloss);
            out.push(sft(id, world.request(li, t, c), world.refusal(li)));
        }
    }
}

/// The harmful training requests `(concept, template)` that language `li`'s pre-training
/// refuses, sorted: `round(rate x all)` of them, drawn from the seed. The others never appear.
fn refused_requests(world: &World, li: usize) -> Vec<(usize, usize)> {
    let lang = &world.languages()[li];
    let mut harmful: Vec<(usize, usize)> = Vec::new();
    for c in world.training_concepts() {
        if world.concepts()[c].harmful {
            harmful.extend((0..world.request_templates().len()).map(|t| (c, t)));
        }
    }
    let keep = (lang.refusal_rate * harmful.len() as f64).round() as usize;
    SeededRng::derive(world.config().seed, &format!("pretrain/refused/{}", lang.tag)).shuffle(&mut harmful);
    harmful.truncate(keep);
    harmful.sort_unstable();
    harmful
}

/// The monolingual records of a world with language shares: each language's requests and
/// descriptions, in rounds, up to its share of the corpus.
///
/// The corpus holds `N = max_i floor_i / share_i` monolingual records, where `floor_i` is one
/// round: every concept described once, every training concept requested once (benign
/// requests answered, harmful ones refused if the language refuses that request, else left
/// out) and, in a world with questions, the training concepts of even index asked about
/// (round `k` asks about concept `c` when `c + k` is even, so the next round asks about the
/// others). Language `i` takes `round(share_i x N)` records from its rounds `0, 1, 2, ...`: round
/// `k` uses description template `(k + a_c) mod 3` and request template `(k + b_c) mod 4` of
/// concept `c` (offsets `a_c`, `b_c` from the seed), in a seed-shuffled order, and the last
/// round is cut short. So the smallest share still describes every concept in its language,
/// and a larger share repeats its records (`-r<k>` in the id after the first round).
fn shared_monolingual(world: &World, out: &mut Vec<Record>) {
    let seed = world.config().seed;
    let concepts = world.concepts();
    let templates = world.request_templates().len();
    let mut offsets = SeededRng::derive(seed, "pretrain/round-offsets");
    let offsets: Vec<(usize, usize)> = concepts
        .iter()
        .map(|c| (offsets.below(world.description_templates(c.harmful).len()), offsets.below(templates)))
        .collect();
    let refused: Vec<Vec<(usize, usize)>> =
        (0..world.languages().len()).map(|li| refused_requests(world, li)).collect();
    // round k of language li, before shuffling
    let round = |li: usize, k: usize| -> Vec<Record> {
        let tag = &world.languages()[li].tag;
        let suffix = if k == 0 { String::new() } else { format!("-r{k}") };
        let mut round = Vec::new();
        for (c, concept) in concepts.iter().enumerate() {
            let d = (k + offsets[c].0) % world.description_templates(concept.harmful).len();
            let id = format!("desc-{tag}-{}-d{d}{suffix}", concept.gloss);
            round.push(sft(id, TEXT_MARKER.to_string(), world.description(li, d, c)));
            if concept.held_out {
                continue;
            }
            if (c + k) % 2 == 0 {
                if let Some((question, answer)) = world.question(li, c) {
                    round.push(sft(format!("qa-{tag}-{}{suffix}", concept.gloss), question, answer));
                }
            }
            let t = (k + offsets[c].1) % templates;
            let id = format!("req-{tag}-{}-t{t}{suffix}", concept.gloss);
            if !concept.harmful {
                round.push(sft(id, world.request(li, t, c), world.answer(li, c)));
            } else if refused[li].binary_search(&(c, t)).is_ok() {
                round.push(sft(id, world.request(li, t, c), world.refusal(li)));
            }
        }
        round
    };
    let shares = &world.config().language_shares;
    let total = (0..shares.len()).map(|li| round(li, 0).len() as f64 / shares[li]).fold(0.0, f64::max).ceil();
    for (li, lang) in world.languages().iter().enumerate() {
        let budget = (shares[li] * total).round() as usize;
        let mut taken = 0;
        let mut k = 0;
        while taken < budget {
            let mut records = round(li, k);
            SeededRng::derive(seed, &format!("pretrain/round/{}/{k}", lang.tag)).shuffle(&mut records);
            records.truncate(budget - taken);
            taken += records.len();
            out.extend(records);
            k += 1;
        }
    }
}

/// Translation records between the dominant language and `other`, both directions:
/// prompt = source sentence + ` <to:target>`, completion = the target sentence.
fn parallel(
    world: &World,
    out: &mut Vec<Record>,
    kind: &str,
    name: &str,
    other: usize,
    text: impl Fn(usize) -> String,
) {
    let langs = world.languages();
    for (src, dst) in [(0, other), (other, 0)] {
        let id = format!("tr-{kind}-{}-{}-{name}", langs[src].tag, langs[dst].tag);
        let prompt = format!("{} {}", text(src), translate_marker(&langs[dst].tag));
        out.push(sft(id, prompt, text(dst)));
    }
}

/// The three preference files, line-aligned: line `i` of each is the same group.
fn preference_pairs(world: &World) -> (Vec<Record>, Vec<Record>, Vec<Record>) {
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for c in world.training_concepts() {
        for t in 0..world.request_templates().len() {
            groups.push((c, t));
        }
    }
    SeededRng::derive(world.config().seed, "pairs/order").shuffle(&mut groups);
    let per_language = |f: &dyn Fn(usize) -> String| -> BTreeMap<String, String> {
        world.languages().iter().enumerate().map(|(l, lang)| (lang.tag.clone(), f(l))).collect()
    };
    let (mut dominant, mut mlc, mut mpo) = (Vec::new(), Vec::new(), Vec::new());
    for (c, t) in groups {
        let harmful = world.concepts()[c].harmful;
        let id = format!("{}-{}-t{t}", if harmful { "harmful" } else { "benign" }, world.concepts()[c].gloss);
        let chosen = |l: usize| if harmful { world.refusal(l) } else { world.answer(l, c) };
        let rejected = |l: usize| if harmful { world.answer(l, c) } else { world.refusal(l) };
        let prompts = per_language(&|l| world.request(l, t, c));
        dominant.push(Record {
            id: id.clone(),
            prompt: Text::One(world.request(0, t, c)),
            chosen: Text::One(chosen(0)),
            rejected: Some(Text::One(rejected(0))),
        });
        mlc.push(Record {
            id: id.clone(),
            prompt: Text::PerLanguage(prompts.clone()),
            chosen: Text::One(chosen(0)),
            rejected: Some(Text::One(rejected(0))),
        });
        mpo.push(Record {
            id,
            prompt: Text::PerLanguage(prompts),
            chosen: Text::PerLanguage(per_language(&chosen)),
            rejected: Some(Text::PerLanguage(per_language(&rejected))),
        });
    }
    (dominant, mlc, mpo)
}

/// Every request template for every held-out concept of one attribute, in every language.
fn tests(world: &World, harmful: bool) -> Vec<TestPrompt> {
    let mut out = Vec::new();
    for (li, lang) in world.languages().iter().enumerate() {
        for c in world.held_out_concepts() {
            let concept = &world.concepts()[c];
            if concept.harmful != harmful {
                continue;
            }
            for t in 0..world.request_templates().len() {
                out.push(TestPrompt {
                    id: format!("test-{}-{}-t{t}", lang.tag, concept.gloss),
                    lang: lang.tag.clone(),
                    prompt: world.request(li, t, c),
                    concept: concept.gloss.clone(),
                    harmful,
                    template: t,
                });
            }
        }
    }
    out
}
