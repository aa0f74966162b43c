//! Test support shared by the step tests: the tiny real Llama checkpoint of lm-backend's
//! fixtures, random records of irregular lengths in three languages, a reference cache of
//! arbitrary values and the objective of a config's `[[objective]]` tables.

// Shared by several test crates, each using a part.
#![allow(dead_code)]

use align_losses::ObjectiveStack;
use align_train::batch::ReferenceCache;
use align_train::data::Origin;
use align_train::encode::Encoded;
use align_train::prepare::PreparedRecord;
use align_train::seeded::SeededRng;
use align_train::terms::{build_objective, ModelShape};
use align_train::RunConfig;
use lm_backend::{CausalLm, HfCausalLm, LoadOptions};
use std::path::Path;
use tch::{Device, Kind, Tensor};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lm-backend/tests/fixtures");
/// Languages of the records: the dominant one and two variants.
pub const LANGUAGES: usize = 3;

pub fn model(kind: Kind) -> HfCausalLm {
    HfCausalLm::load(format!("{FIXTURES}/llama"), LoadOptions::cpu_f32().with_dtype(kind)).unwrap()
}

/// Between 1 and `max` random token ids.
pub fn ids(rng: &mut SeededRng, max: usize, vocab: usize) -> Vec<i64> {
    let len = 1 + rng.below(max);
    (0..len).map(|_| 1 + rng.below(vocab - 1) as i64).collect()
}

/// `n` records of irregular lengths: a shared dominant prompt, chosen and rejected of
/// different lengths, prompt variants (always in `l1`, sometimes in `l2`), and target pairs
/// (MPO needs at least one per batch).
pub fn records(seed: u64, n: usize, vocab: usize) -> Vec<PreparedRecord> {
    let mut rng = SeededRng::new(seed);
    (0..n)
        .map(|i| {
            let prompt = ids(&mut rng, 12, vocab);
            let pair = |rng: &mut SeededRng, prompt: &[i64]| {
                let c = Encoded { prompt: prompt.to_vec(), completion: ids(rng, 9, vocab) };
                let r = Encoded { prompt: prompt.to_vec(), completion: ids(rng, 9, vocab) };
                (c, r)
            };
            let (chosen, rejected) = pair(&mut rng, &prompt);
            let mut variants = Vec::new();
            let mut targets = Vec::new();
            for lang in 1..LANGUAGES {
                if lang == 1 || rng.below(4) > 0 {
                    let variant = ids(&mut rng, 14, vocab);
                    variants.push((lang, variant.clone()));
                    let (c, r) = pair(&mut rng, &variant);
                    targets.push((format!("l{lang}"), c, r));
                }
            }
            let origin = Origin { path: "pairs.jsonl".into(), line: i + 1 };
            PreparedRecord { id: format!("r{i}"), origin, chosen, rejected: Some(rejected), variants, targets }
        })
        .collect()
}

/// A reference cache of arbitrary values (both layouts read it the same way), drawn from
/// the test's own generator: libtorch's global one is shared by the tests running at once.
pub fn cache(n: usize) -> ReferenceCache {
    let col = |seed: u64| {
        let mut rng = SeededRng::new(seed);
        let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32 - 20.0).collect();
        Tensor::from_slice(&values)
    };
    let counts = || Tensor::full([n as i64], 5.0, (Kind::Float, Device::Cpu));
    ReferenceCache {
        chosen_sum: col(1),
        chosen_count: counts(),
        rejected_sum: col(2),
        rejected_count: counts(),
        kl_sum: col(3),
    }
}

/// The objective of `stack`, and whether its terms read chosen completions alone.
pub fn objective(stack: &str, policy: &HfCausalLm) -> (ObjectiveStack, bool) {
    let (stack, chosen_only, _) = objective_with_heads(stack, policy);
    (stack, chosen_only)
}

/// The objective of `stack`, whether its terms read chosen completions alone, and the
/// variables of its own trainable tensors (MLC projection heads).
pub fn objective_with_heads(stack: &str, policy: &HfCausalLm) -> (ObjectiveStack, bool, tch::nn::VarStore) {
    let text =
        format!("[model]\npath = \"m\"\n[data]\ntrain = \"d.jsonl\"\nlanguages = [\"l0\", \"l1\", \"l2\"]\n{stack}");
    let config = RunConfig::parse(&text, Path::new("run.toml")).unwrap();
    let shape = ModelShape { num_layers: policy.num_layers(), hidden_size: policy.config().hidden_size };
    let heads = tch::nn::VarStore::new(Device::Cpu);
    let stack = build_objective(&config.objectives, shape, &(heads.root() / "h"), Path::new("run.toml")).unwrap();
    (stack, config.objectives.iter().all(|o| o.kind.is_chosen_only()), heads)
}
