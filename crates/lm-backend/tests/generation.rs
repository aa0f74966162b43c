//! Generation with the key/value cache equals the greedy decoding of `transformers`
//! (tests/fixtures/*/expected.safetensors: `generation_<i>_prompt`/`_output`) token for
//! token, alone and batched with left padding; it stops at EOS; sampling is reproducible.
//! Each test runs with each attention implementation (`sdpa` and `eager`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lm_backend::{AttentionImpl, CausalLm, GenerationConfig, HfCausalLm, HiddenRequest, LoadOptions, Sampling};
use tch::{Kind, Tensor};

const MODELS: [&str; 3] = ["llama", "qwen2", "gemma2"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Each fixture model with each attention implementation.
fn models() -> impl Iterator<Item = (&'static str, AttentionImpl)> {
    MODELS.into_iter().flat_map(|name| AttentionImpl::ALL.map(|a| (name, a)))
}

fn load(name: &str, attention: AttentionImpl) -> (HfCausalLm, BTreeMap<String, Tensor>) {
    let model = HfCausalLm::load(fixture(name), LoadOptions::cpu_f32().with_attention(attention)).unwrap();
    let e = Tensor::read_safetensors(fixture(name).join("expected.safetensors")).unwrap().into_iter().collect();
    (model, e)
}

fn ids(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t).unwrap()
}

/// (prompt, reference continuation) pairs of a fixture.
fn cases(e: &BTreeMap<String, Tensor>) -> Vec<(Vec<i64>, Vec<i64>)> {
    (0..2).map(|i| (ids(&e[&format!("generation_{i}_prompt")]), ids(&e[&format!("generation_{i}_output")]))).collect()
}

#[test]
fn greedy_matches_transformers_one_prompt_at_a_time() {
    for (name, attention) in models() {
        let (model, e) = load(name, attention);
        let config = GenerationConfig::greedy(&model, 12);
        for (prompt, want) in cases(&e) {
            assert_eq!(want.len(), 12);
            let got = model.generate(&[prompt], &config).unwrap();
            assert_eq!(got, vec![want], "{name} ({attention})");
        }
    }
}

#[test]
fn greedy_batched_with_left_padding_matches() {
    for (name, attention) in models() {
        let (model, e) = load(name, attention);
        let cases = cases(&e);
        assert_ne!(cases[0].0.len(), cases[1].0.len(), "the prompts must differ in length");
        let prompts: Vec<Vec<i64>> = cases.iter().map(|c| c.0.clone()).collect();
        let got = model.generate(&prompts, &GenerationConfig::greedy(&model, 12)).unwrap();
        for (r, (_, want)) in cases.iter().enumerate() {
            assert_eq!(&got[r], want, "{name} ({attention}) row {r}");
        }
    }
}

/// The cached step logits equal those of a full forward over prompt + generated tokens:
/// greedy continuation computed without any cache, one full pass per token.
#[test]
fn cached_generation_equals_uncached_recomputation() {
    for (name, attention) in models() {
        let (model, e) = load(name, attention);
        let (prompt, _) = cases(&e).remove(1);
        let got =
            model.generate(std::slice::from_ref(&prompt), &GenerationConfig::greedy(&model, 8)).unwrap().remove(0);
        let mut seq = prompt;
        for _ in 0..8 {
            let input = Tensor::from_slice(&seq).unsqueeze(0);
            let logits = model.forward(&input, &input.ones_like(), &HiddenRequest::none()).unwrap().logits;
            seq.push(logits.get(0).get(seq.len() as i64 - 1).argmax(-1, false).int64_value(&[]));
        }
        assert_eq!(got, seq[seq.len() - 8..].to_vec(), "{name} ({attention})");
    }
}

#[test]
fn stops_at_eos_and_batch_rows_stop_independently() {
    for attention in AttentionImpl::ALL {
        stops_at_eos_with(attention);
    }
}

fn stops_at_eos_with(attention: AttentionImpl) {
    let (model, e) = load("llama", attention);
    let cases = cases(&e);
    let reference = &cases[1].1;
    // The first token that does not occur earlier: as EOS, it ends the row right there.
    let k = (1..reference.len()).find(|&k| !reference[..k].contains(&reference[k])).unwrap();
    let mut config = GenerationConfig::greedy(&model, 12);
    config.eos_token_ids = vec![reference[k]];
    let alone = model.generate(&[cases[1].0.clone()], &config).unwrap();
    assert_eq!(alone[0], reference[..=k].to_vec());
    let prompts: Vec<Vec<i64>> = cases.iter().map(|c| c.0.clone()).collect();
    let batched = model.generate(&prompts, &config).unwrap();
    assert_eq!(batched[1], alone[0]);
    assert_eq!(batched[0], model.generate(&[cases[0].0.clone()], &config).unwrap()[0]);
}

#[test]
fn sampling_is_reproducible_under_a_seed() {
    for attention in AttentionImpl::ALL {
        sampling_is_reproducible_with(attention);
    }
}

fn sampling_is_reproducible_with(attention: AttentionImpl) {
    let (model, e) = load("qwen2", attention);
    let prompts: Vec<Vec<i64>> = cases(&e).into_iter().map(|c| c.0).collect();
    let mut config = GenerationConfig::greedy(&model, 10);
    config.eos_token_ids.clear();
    let sample = |seed, top_p| {
        let mut c = config.clone();
        c.sampling = Sampling::TopP { temperature: 1.5, top_p, seed };
        model.generate(&prompts, &c).unwrap()
    };
    assert_eq!(sample(11, 0.9), sample(11, 0.9));
    assert_ne!(sample(11, 0.9), sample(12, 0.9));
    // A vanishing nucleus keeps only the top token: greedy.
    assert_eq!(sample(5, 1e-9), model.generate(&prompts, &config).unwrap());
    let bad = GenerationConfig { sampling: Sampling::TopP { temperature: 0.0, top_p: 0.9, seed: 0 }, ..config };
    assert!(model.generate(&prompts, &bad).unwrap_err().to_string().contains("temperature"));
}

#[test]
fn bf16_generation_runs() {
    for attention in AttentionImpl::ALL {
        let options = LoadOptions::cpu_f32().with_dtype(Kind::BFloat16).with_attention(attention);
        let model = HfCausalLm::load(fixture("gemma2"), options).unwrap();
        let out = model.generate(&[vec![1, 40, 50]], &GenerationConfig::greedy(&model, 4)).unwrap();
        assert!(out[0].len() <= 4 && !out[0].is_empty());
        assert!(out[0].iter().all(|&t| t >= 0 && (t as usize) < model.config().vocab_size));
    }
}
