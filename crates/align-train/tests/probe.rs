//! The probe eval on a real tiny checkpoint: its per-layer, per-language accuracies equal a
//! probe fitted by hand on states taken one prompt at a time (no padding), with and without
//! the per-language centring.

use std::collections::BTreeMap;

use align_train::eval::{evaluate_probe, LayerSelection, MeanDifferenceProbe, ProbeOptions, ProbePrompt, RidgeProbe};
use align_train::{encode_prompt, Text};
use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, LoadOptions, Tokenizer};
use tch::{Kind, Tensor};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lm-backend/tests/fixtures");

fn prompt(lang: &str, text: &str, positive: bool) -> ProbePrompt {
    ProbePrompt { lang: lang.into(), prompt: Text::Plain(text.into()), positive }
}

/// The state at the last token of `text` at every hidden index, one unpadded pass.
fn states(model: &HfCausalLm, tokenizer: &Tokenizer, text: &str) -> Vec<Tensor> {
    let ids = encode_prompt(tokenizer, &Text::Plain(text.into())).unwrap();
    let n = ids.len() as i64;
    let input = Tensor::from_slice(&ids).view([1, n]);
    let mask = Tensor::ones([1, n], (Kind::Int64, tch::Device::Cpu));
    let layers = model.config().num_layers;
    let h = tch::no_grad(|| model.hidden_states(&input, &mask, &HiddenRequest::layers(0..=layers))).unwrap();
    (0..=layers).map(|l| h.layers[&l].get(0).get(n - 1).to_kind(Kind::Double)).collect()
}

#[test]
fn the_probe_equals_one_fitted_by_hand_on_unpadded_states() {
    let model = HfCausalLm::load(format!("{FIXTURES}/llama"), LoadOptions::cpu_f32()).unwrap();
    let tokenizer = Tokenizer::from_dir(format!("{FIXTURES}/tokenizer")).unwrap();
    let words = ["knife", "bread", "poison", "flower", "bomb", "apple", "virus", "chair", "acid", "music"];
    let train: Vec<ProbePrompt> =
        words.iter().enumerate().map(|(i, w)| prompt("en", &format!("How do I get a {w}?"), i % 2 == 0)).collect();
    let mut test = vec![];
    for (i, w) in words.iter().enumerate().take(6) {
        test.push(prompt("de", &format!("Wie bekomme ich {w} heute?"), i % 2 == 0));
        test.push(prompt("en", &format!("Tell me about the {w} please"), i % 3 == 0));
    }
    let options = ProbeOptions { layers: LayerSelection::All, batch_size: 4, ridge: 0.05 };
    let report = evaluate_probe(&model, &tokenizer, &train, &test, &options).unwrap();
    assert_eq!(report.n_train, 10);
    assert_eq!(report.n_test, BTreeMap::from([("de".to_string(), 6), ("en".to_string(), 6)]));
    let all: Vec<&ProbePrompt> = train.iter().chain(&test).collect();
    let per_prompt: Vec<Vec<Tensor>> = all
        .iter()
        .map(|p| {
            states(
                &model,
                &tokenizer,
                match &p.prompt {
                    Text::Plain(s) => s,
                    _ => unreachable!(),
                },
            )
        })
        .collect();
    let labels: Vec<bool> = train.iter().map(|p| p.positive).collect();
    let layers = model.config().num_layers;
    assert_eq!(report.layers.iter().map(|l| l.layer).collect::<Vec<_>>(), (0..=layers).collect::<Vec<_>>());
    for layer in 0..=layers {
        let x = Tensor::stack(&per_prompt.iter().map(|s| s[layer].shallow_clone()).collect::<Vec<_>>(), 0);
        // rows: train 0..10, then test alternating de / en
        let rows = |lang: &str| -> Vec<i64> {
            (0..test.len()).filter(|&i| test[i].lang == lang).map(|i| (train.len() + i) as i64).collect()
        };
        let groups: Vec<Vec<i64>> = vec![(0..train.len() as i64).collect(), rows("de"), rows("en")];
        let mut centred = x.copy();
        for g in &groups {
            let idx = Tensor::from_slice(g);
            let mean = x.index_select(0, &idx).mean_dim(&[0i64][..], true, Kind::Double);
            let _ = centred.index_copy_(0, &idx, &(x.index_select(0, &idx) - mean));
        }
        for (c, states) in [(false, &x), (true, &centred)] {
            let head = states.narrow(0, 0, train.len() as i64);
            let probe = RidgeProbe::fit(&head, &labels, 0.05).unwrap();
            let got = &report.layers[layer];
            let (train_acc, by_lang) = if c {
                (got.centred_train_accuracy, &got.centred_accuracy)
            } else {
                (got.train_accuracy, &got.accuracy)
            };
            assert_eq!(train_acc, probe.accuracy(&head, &labels).unwrap(), "layer {layer} centred {c}");
            for lang in ["de", "en"] {
                let idx = Tensor::from_slice(&rows(lang));
                let y: Vec<bool> = rows(lang).iter().map(|&r| test[r as usize - train.len()].positive).collect();
                let want = probe.accuracy(&states.index_select(0, &idx), &y).unwrap();
                assert!(
                    (by_lang[lang] - want).abs() < 1e-12,
                    "layer {layer} {lang} centred {c}: {} vs {want}",
                    by_lang[lang]
                );
            }
        }
        // the mean-difference probe, fitted by hand on the raw states
        let head = x.narrow(0, 0, train.len() as i64);
        let probe = MeanDifferenceProbe::fit(&head, &labels).unwrap();
        let got = &report.layers[layer];
        assert_eq!(got.mean_difference_train_accuracy, probe.accuracy(&head, &labels).unwrap(), "layer {layer}");
        for lang in ["de", "en"] {
            let y: Vec<bool> = rows(lang).iter().map(|&r| test[r as usize - train.len()].positive).collect();
            let want = probe.accuracy(&x.index_select(0, &Tensor::from_slice(&rows(lang))), &y).unwrap();
            assert!((got.mean_difference_accuracy[lang] - want).abs() < 1e-12, "layer {layer} {lang}");
        }
    }
    // every prompt of this fixture starts with <s> and ends differently, so no layer is degenerate
    assert!(report.layers.iter().skip(1).all(|l| l.train_accuracy > 0.5));
}
