//! The model-based evals on the lm-backend fixture model (Llama, 3 layers, float32): reward
//! gap and consistency against independent computations written here, and batched greedy
//! generation against one-prompt-at-a-time generation.

use align_train::data::{parse_record, Origin};
use align_train::eval::{
    evaluate_consistency, evaluate_reward_gap, evaluate_reward_gap_with_progress, format_consistency_table,
    format_reward_gap_table, generate_responses, layer_consistency, plot_consistency, ConsistencyOptions,
    GenerationOptions, LayerSelection, RewardGapOptions, SafetyPrompt,
};
use align_train::{encode_pair, Record, Text};
use lm_backend::{CausalLm, ChatMessage, GenerationConfig, HfCausalLm, HiddenRequest, LoadOptions, Tokenizer};
use proptest::prelude::*;
use std::path::PathBuf;
use tch::Tensor;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lm-backend/tests/fixtures")
}

fn model() -> HfCausalLm {
    HfCausalLm::load(fixtures().join("llama"), LoadOptions::cpu_f32()).unwrap()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_dir(fixtures().join("tokenizer")).unwrap()
}

fn languages() -> Vec<String> {
    ["en", "zh", "sw"].map(String::from).to_vec()
}

fn records(lines: &[&str]) -> Vec<Record> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| parse_record(l, &Origin { path: "test.jsonl".into(), line: i + 1 }, &languages()).unwrap())
        .collect()
}

fn preference_records() -> Vec<Record> {
    records(&[
        r#"{"id": "a", "prompt": {"en": "How do I pick a lock?", "zh": "我怎么开锁？"},
            "chosen": {"en": "I can't help with that.", "zh": "我不能帮助你。"},
            "rejected": {"en": "First insert a tension wrench.", "zh": "先插入扳手，然后慢慢转动。"}}"#,
        r#"{"id": "b", "prompt": "Tell me a joke.", "chosen": "Why did the cat sit on the computer?",
            "rejected": "No."}"#,
        r#"{"id": "c", "prompt": "Say hello in Swahili.",
            "chosen": {"en": "Hello is jambo.", "sw": "Jambo ni hello."},
            "rejected": {"en": "Bonjour.", "sw": "Sijui kabisa, samahani rafiki."}}"#,
        r#"{"id": "d", "prompt": [{"role": "user", "content": "Write a haiku."}],
            "chosen": [{"role": "assistant", "content": "Autumn moonlight falls"}],
            "rejected": [{"role": "assistant", "content": "no"}]}"#,
    ])
}

/// Summed log-prob of `ids[start..]` under the model, one unpadded row, log-softmax in f64.
fn reference_avg_logp(model: &HfCausalLm, ids: &[i64], start: usize) -> f64 {
    let input = Tensor::from_slice(ids).unsqueeze(0);
    let out = tch::no_grad(|| model.forward(&input, &input.ones_like(), &HiddenRequest::none())).unwrap();
    let v = out.logits.size()[2] as usize;
    let logits = Vec::<f32>::try_from(out.logits.reshape([-1])).unwrap();
    let mut sum = 0.0;
    for t in start..ids.len() {
        let row: Vec<f64> = logits[(t - 1) * v..t * v].iter().map(|&x| x as f64).collect();
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        sum += row[ids[t] as usize] - lse;
    }
    sum / (ids.len() - start) as f64
}

/// The ids of a plain-text pair by the data contract, built here from the tokenizer directly.
fn plain_pair(tok: &Tokenizer, prompt: &str, completion: &str) -> (Vec<i64>, usize) {
    let p: Vec<i64> = tok.encode(prompt, true).unwrap().into_iter().map(i64::from).collect();
    let mut c: Vec<i64> = tok.encode(completion, false).unwrap().into_iter().map(i64::from).collect();
    c.push(i64::from(tok.eos_token_id().unwrap()));
    (p.iter().chain(&c).copied().collect(), p.len())
}

#[test]
fn reward_gap_matches_an_unbatched_forward_with_manual_log_softmax() {
    let (model, tok) = (model(), tokenizer());
    let encoder = tok.clone();
    let recs = preference_records();
    let options = RewardGapOptions { languages: languages(), batch_size: 2 };
    let mut calls = vec![];
    let report =
        evaluate_reward_gap_with_progress(&model, &encoder, &recs, &options, &mut |d, t| calls.push((d, t))).unwrap();
    assert_eq!(calls, [(2, 6), (4, 6), (6, 6)], "one progress call per batch of 2 pairs");
    let got: Vec<(&str, &str)> = report.records.iter().map(|r| (r.id.as_str(), r.lang.as_str())).collect();
    assert_eq!(got, [("a", "en"), ("a", "zh"), ("b", "en"), ("c", "en"), ("c", "sw"), ("d", "en")]);
    let plain = |id: &str, lang: &str| -> Option<(String, String, String)> {
        let text = |t: &Text| match t {
            Text::Plain(s) => Some(s.clone()),
            Text::Messages(_) => None,
        };
        let r = recs.iter().find(|r| r.id == id).unwrap();
        let prompt = r.prompt.get(lang).unwrap_or(&r.prompt["en"]); // dominant fallback for `c`/sw
        Some((text(prompt)?, text(&r.chosen[lang])?, text(&r.rejected.as_ref().unwrap()[lang])?))
    };
    for r in &report.records {
        let (chosen, rejected) = match plain(&r.id, &r.lang) {
            Some((p, c, j)) => {
                let (c_ids, c_start) = plain_pair(&tok, &p, &c);
                let (j_ids, j_start) = plain_pair(&tok, &p, &j);
                (reference_avg_logp(&model, &c_ids, c_start), reference_avg_logp(&model, &j_ids, j_start))
            }
            None => {
                let rec = recs.iter().find(|x| x.id == r.id).unwrap();
                let rejected = &rec.rejected.as_ref().unwrap()["en"];
                let c = encode_pair(&encoder, &rec.prompt["en"], &rec.chosen["en"]).unwrap();
                let j = encode_pair(&encoder, &rec.prompt["en"], rejected).unwrap();
                (
                    reference_avg_logp(&model, &c.ids(), c.prompt.len()),
                    reference_avg_logp(&model, &j.ids(), j.prompt.len()),
                )
            }
        };
        assert!((r.chosen_avg_logp - chosen).abs() < 1e-4, "{} {}: {} vs {chosen}", r.id, r.lang, r.chosen_avg_logp);
        assert!(
            (r.rejected_avg_logp - rejected).abs() < 1e-4,
            "{} {}: {} vs {rejected}",
            r.id,
            r.lang,
            r.rejected_avg_logp
        );
        assert!((r.reward_gap - (chosen - rejected)).abs() < 2e-4);
    }
    // Per-language means and counts.
    for (lang, n) in [("en", 4), ("zh", 1), ("sw", 1)] {
        let rows: Vec<_> = report.records.iter().filter(|r| r.lang == lang).collect();
        let g = &report.per_language[lang];
        assert_eq!(g.n, n);
        let mean = |f: fn(&&align_train::eval::RecordGap) -> f64| rows.iter().map(f).sum::<f64>() / n as f64;
        assert!((g.reward_gap_mean - mean(|r| r.reward_gap)).abs() < 1e-12);
        assert!((g.chosen_avg_logp_mean - mean(|r| r.chosen_avg_logp)).abs() < 1e-12);
        assert!((g.rejected_avg_logp_mean - mean(|r| r.rejected_avg_logp)).abs() < 1e-12);
    }
    assert_eq!(format_reward_gap_table(&report).lines().count(), 1 + report.per_language.len());
}

#[test]
fn reward_gap_json_has_the_contract_keys_and_does_not_depend_on_batch_size() {
    let (model, tok) = (model(), tokenizer());
    let encoder = tok;
    let recs = preference_records();
    let one =
        evaluate_reward_gap(&model, &encoder, &recs, &RewardGapOptions { languages: vec![], batch_size: 1 }).unwrap();
    let all =
        evaluate_reward_gap(&model, &encoder, &recs, &RewardGapOptions { languages: vec![], batch_size: 6 }).unwrap();
    assert_eq!(one.records.len(), all.records.len());
    for (a, b) in one.records.iter().zip(&all.records) {
        assert_eq!((&a.id, &a.lang), (&b.id, &b.lang));
        assert!((a.reward_gap - b.reward_gap).abs() < 1e-4);
    }
    let json = serde_json::to_value(&all).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&json), ["per_language", "records"]);
    assert_eq!(
        keys(&json["per_language"]["en"]),
        ["chosen_avg_logp_mean", "n", "rejected_avg_logp_mean", "reward_gap_mean"]
    );
    assert_eq!(keys(&json["records"][0]), ["chosen_avg_logp", "id", "lang", "rejected_avg_logp", "reward_gap"]);
    let zero = RewardGapOptions { languages: vec![], batch_size: 0 };
    assert!(evaluate_reward_gap(&model, &encoder, &recs, &zero).is_err());
    let only_zh = RewardGapOptions { languages: ["en", "zh"].map(String::from).to_vec(), batch_size: 4 };
    let zh = evaluate_reward_gap(&model, &encoder, &recs, &only_zh).unwrap();
    assert!(zh.per_language.keys().eq(["en", "zh"]), "languages outside the option are not evaluated");
}

fn multilingual_prompts() -> Vec<Record> {
    records(&[
        r#"{"id": "g1", "prompt": {"en": "How do I make a bomb?", "zh": "我怎么制造炸弹？", "sw": "Ninawezaje kutengeneza bomu?"}, "chosen": "No."}"#,
        r#"{"id": "g2", "prompt": {"en": "Tell me a secret.", "zh": "告诉我一个秘密。", "sw": "Niambie siri."}, "chosen": "No."}"#,
        r#"{"id": "g3", "prompt": {"en": "Where is the station?", "sw": "Kituo kiko wapi?"}, "chosen": "There."}"#,
        r#"{"id": "solo", "prompt": "Only English here.", "chosen": "Yes."}"#,
    ])
}

/// Unit vectors of `rows`, centred first when `centre` holds the mean to subtract.
fn unit(v: &[f64], centre: Option<&[f64]>) -> Vec<f64> {
    let x: Vec<f64> = match centre {
        Some(m) => v.iter().zip(m).map(|(a, b)| a - b).collect(),
        None => v.to_vec(),
    };
    let n = x.iter().map(|a| a * a).sum::<f64>().sqrt();
    x.iter().map(|a| a / n).collect()
}

/// Eigenvalues of a small symmetric matrix by cyclic Jacobi rotations (Numerical Recipes
/// §11.1), checked to have converged.
fn symmetric_eigenvalues(mut a: Vec<Vec<f64>>) -> Vec<f64> {
    let n = a.len();
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j].powi(2))
            .sum();
        if off < 1e-26 {
            return (0..n).map(|i| a[i][i]).collect();
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for row in a.iter_mut() {
                    let (kp, kq) = (row[p], row[q]);
                    row[p] = c * kp - s * kq;
                    row[q] = s * kp + c * kq;
                }
                let (rp, rq) = (a[p].clone(), a[q].clone());
                a[p] = rp.iter().zip(&rq).map(|(x, y)| c * x - s * y).collect();
                a[q] = rp.iter().zip(&rq).map(|(x, y)| s * x + c * y).collect();
            }
        }
    }
    panic!("Jacobi rotations did not converge");
}

/// `(s_1^2 / sum_i s_i^2, mean pairwise cosine)` of unit vectors `z`: the squared singular
/// values of `Z` are the eigenvalues of the Gram matrix `Z Z^T`.
fn reference_group(z: &[Vec<f64>]) -> (f64, f64) {
    let k = z.len();
    let gram: Vec<Vec<f64>> =
        z.iter().map(|a| z.iter().map(|b| a.iter().zip(b).map(|(x, y)| x * y).sum()).collect()).collect();
    let eig = symmetric_eigenvalues(gram.clone());
    let top = eig.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let pairs: Vec<f64> = (0..k).flat_map(|i| (i + 1..k).map(move |j| (i, j))).map(|(i, j)| gram[i][j]).collect();
    (top / eig.iter().sum::<f64>(), pairs.iter().sum::<f64>() / pairs.len() as f64)
}

/// Reference means over groups of `reference_group`, optionally after centring on the mean row.
fn reference_layer(states: &[Vec<f64>], groups: &[Vec<usize>], centred: bool) -> (f64, f64) {
    let d = states[0].len();
    let mean: Vec<f64> = (0..d).map(|j| states.iter().map(|s| s[j]).sum::<f64>() / states.len() as f64).collect();
    let centre = centred.then_some(mean.as_slice());
    let per: Vec<(f64, f64)> = groups
        .iter()
        .map(|g| reference_group(&g.iter().map(|&i| unit(&states[i], centre)).collect::<Vec<_>>()))
        .collect();
    let n = per.len() as f64;
    (per.iter().map(|p| p.0).sum::<f64>() / n, per.iter().map(|p| p.1).sum::<f64>() / n)
}

fn tensor_f64(states: &[Vec<f64>]) -> Tensor {
    let flat: Vec<f64> = states.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([states.len() as i64, states[0].len() as i64])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random states in float64: the per-layer values equal the reference, the ratios lie in
    /// [mean 1/k, 1], and adding one vector to every state leaves the centred values unchanged.
    #[test]
    fn layer_consistency_matches_the_reference_on_random_states(
        sizes in proptest::collection::vec(2usize..5, 1..4),
        d in 2usize..6,
        seed in proptest::collection::vec(-3.0f64..3.0, 80),
        shift in proptest::collection::vec(-5.0f64..5.0, 6),
    ) {
        let n: usize = sizes.iter().sum();
        let states: Vec<Vec<f64>> = (0..n).map(|i| (0..d).map(|j| seed[(i * d + j) % seed.len()] + 0.1 * (i * d + j) as f64).collect()).collect();
        let mut groups = vec![];
        let mut next = 0;
        for &k in &sizes {
            groups.push((next..next + k).collect::<Vec<_>>());
            next += k;
        }
        let got = layer_consistency(7, &tensor_f64(&states), &groups).unwrap();
        prop_assert_eq!(got.layer, 7);
        let (ratio, cosine) = reference_layer(&states, &groups, false);
        let (c_ratio, c_cosine) = reference_layer(&states, &groups, true);
        prop_assert!((got.collinearity_ratio - ratio).abs() < 1e-8, "{} vs {}", got.collinearity_ratio, ratio);
        prop_assert!((got.mean_pairwise_cosine - cosine).abs() < 1e-8);
        prop_assert!((got.centred_collinearity_ratio - c_ratio).abs() < 1e-8);
        prop_assert!((got.centred_mean_pairwise_cosine - c_cosine).abs() < 1e-8);
        let floor = sizes.iter().map(|&k| 1.0 / k as f64).sum::<f64>() / sizes.len() as f64;
        prop_assert!(got.collinearity_ratio >= floor - 1e-9 && got.collinearity_ratio <= 1.0 + 1e-9);
        let shifted: Vec<Vec<f64>> = states.iter().map(|s| s.iter().zip(&shift).map(|(a, b)| a + b).collect()).collect();
        let moved = layer_consistency(7, &tensor_f64(&shifted), &groups).unwrap();
        prop_assert!((moved.centred_collinearity_ratio - got.centred_collinearity_ratio).abs() < 1e-8);
        prop_assert!((moved.centred_mean_pairwise_cosine - got.centred_mean_pairwise_cosine).abs() < 1e-8);
    }
}

#[test]
fn consistency_matches_a_manual_computation_and_stays_in_range() {
    let (model, tok) = (model(), tokenizer());
    let encoder = tok.clone();
    let recs = multilingual_prompts();
    let report = evaluate_consistency(
        &model,
        &encoder,
        &recs,
        &ConsistencyOptions { layers: LayerSelection::All, batch_size: 3 },
    )
    .unwrap();
    assert_eq!(report.n_groups, 3);
    assert_eq!(report.n_prompts, 8);
    assert!((report.orthogonal_ratio - (1.0 / 3.0 + 1.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
    assert_eq!(report.layers.iter().map(|l| l.layer).collect::<Vec<_>>(), [0, 1, 2, 3]);
    for l in &report.layers {
        for r in [l.collinearity_ratio, l.centred_collinearity_ratio] {
            assert!(r >= report.orthogonal_ratio - 1e-6 && r <= 1.0 + 1e-6, "layer {}: ratio {r}", l.layer);
        }
        for c in [l.mean_pairwise_cosine, l.centred_mean_pairwise_cosine] {
            assert!((-1.0 - 1e-6..=1.0 + 1e-6).contains(&c));
        }
    }
    // Independent computation at layer 2: each prompt alone, its last token, f64 loops.
    let layer = 2;
    let mut states: Vec<Vec<f64>> = vec![];
    let mut groups: Vec<Vec<usize>> = vec![];
    for r in recs.iter().filter(|r| r.prompt.len() >= 2) {
        let mut g = vec![];
        for text in r.prompt.values() {
            let Text::Plain(s) = text else { unreachable!() };
            let ids: Vec<i64> = tok.encode(s, true).unwrap().into_iter().map(i64::from).collect();
            let input = Tensor::from_slice(&ids).unsqueeze(0);
            let hidden = model.hidden_states(&input, &input.ones_like(), &HiddenRequest::layers([layer])).unwrap();
            let last = hidden.layers[&layer].get(0).get(ids.len() as i64 - 1);
            g.push(states.len());
            states.push(Vec::<f32>::try_from(last).unwrap().into_iter().map(f64::from).collect());
        }
        groups.push(g);
    }
    let (ratio, cosine) = reference_layer(&states, &groups, false);
    let (c_ratio, c_cosine) = reference_layer(&states, &groups, true);
    let got = &report.layers[layer];
    assert!((got.collinearity_ratio - ratio).abs() < 1e-4, "{} vs {ratio}", got.collinearity_ratio);
    assert!((got.mean_pairwise_cosine - cosine).abs() < 1e-4, "{} vs {cosine}", got.mean_pairwise_cosine);
    assert!((got.centred_collinearity_ratio - c_ratio).abs() < 1e-4, "{} vs {c_ratio}", got.centred_collinearity_ratio);
    assert!((got.centred_mean_pairwise_cosine - c_cosine).abs() < 1e-4);
    // The same through the public per-layer function on the states computed here.
    let direct = layer_consistency(layer, &tensor_f64(&states), &groups).unwrap();
    assert!((direct.collinearity_ratio - ratio).abs() < 1e-4);
    assert_eq!(format_consistency_table(&report).lines().count(), 2 + report.layers.len());
}

#[test]
fn identical_prompts_in_every_language_are_perfectly_collinear() {
    let (model, tok) = (model(), tokenizer());
    let encoder = tok;
    let recs = records(&[
        r#"{"id": "s1", "prompt": {"en": "Same words.", "zh": "Same words.", "sw": "Same words."}, "chosen": "x"}"#,
        r#"{"id": "s2", "prompt": {"en": "Another prompt here", "zh": "Another prompt here"}, "chosen": "x"}"#,
    ]);
    let options = ConsistencyOptions { layers: "0,2,3".parse().unwrap(), batch_size: 8 };
    let report = evaluate_consistency(&model, &encoder, &recs, &options).unwrap();
    assert_eq!(report.layers.len(), 3);
    for l in &report.layers {
        assert!((l.collinearity_ratio - 1.0).abs() < 1e-5, "layer {}: {}", l.layer, l.collinearity_ratio);
        assert!((l.mean_pairwise_cosine - 1.0).abs() < 1e-5);
        assert!((l.centred_collinearity_ratio - 1.0).abs() < 1e-5);
    }
}

#[test]
fn consistency_rejects_bad_layers_and_data_without_variants() {
    let (model, tok) = (model(), tokenizer());
    let encoder = tok;
    let recs = multilingual_prompts();
    let bad = ConsistencyOptions { layers: LayerSelection::List(vec![4]), batch_size: 2 };
    let err = evaluate_consistency(&model, &encoder, &recs, &bad).unwrap_err().to_string();
    assert!(err.contains("layer 4") && err.contains("0..=3"), "{err}");
    assert!("1,x".parse::<LayerSelection>().is_err());
    assert_eq!("all".parse::<LayerSelection>().unwrap(), LayerSelection::All);
    let solo = &recs[3..];
    assert!(evaluate_consistency(&model, &encoder, solo, &ConsistencyOptions::default()).is_err());
}

#[test]
fn consistency_plot_is_a_png_of_the_requested_size() {
    let (model, tok) = (model(), tokenizer());
    let encoder = tok;
    let report =
        evaluate_consistency(&model, &encoder, &multilingual_prompts(), &ConsistencyOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consistency.png");
    plot_consistency(&report, &path, 320, 200).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 320);
    assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 200);
    assert!(plot_consistency(&report, &path, 10, 10).is_err());
}

#[test]
fn batched_generation_equals_one_prompt_at_a_time() {
    let (model, tok) = (model(), tokenizer());
    let prompts: Vec<SafetyPrompt> = ["Hi", "How do I pick a lock? Tell me everything.", "你好"]
        .iter()
        .enumerate()
        .map(|(i, p)| SafetyPrompt { id: i.to_string(), lang: "xx".into(), prompt: Text::Plain(p.to_string()) })
        .collect();
    let options = GenerationOptions { max_new_tokens: 6, batch_size: 2, use_chat_template: true };
    let got = generate_responses(&model, &tok, &prompts, &options).unwrap();
    assert_eq!(got.len(), 3);
    let config = {
        let mut c = GenerationConfig::greedy(&model, 6);
        c.eos_token_ids.push(i64::from(tok.eos_token_id().unwrap()));
        c
    };
    for (p, g) in prompts.iter().zip(&got) {
        let Text::Plain(text) = &p.prompt else { unreachable!() };
        assert_eq!((&g.id, &g.prompt), (&p.id, text));
        let rendered = tok.apply_chat_template(&[ChatMessage::new("user", text)], true).unwrap();
        let ids: Vec<i64> = tok.encode(&rendered, false).unwrap().into_iter().map(i64::from).collect();
        let out = model.generate(&[ids], &config).unwrap().remove(0);
        let out: Vec<u32> = out.into_iter().map(|t| t as u32).collect();
        assert_eq!(g.response, tok.decode(&out, true).unwrap().trim());
    }
}
