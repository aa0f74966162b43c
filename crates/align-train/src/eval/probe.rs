//! A linear probe per layer: is an attribute of the prompts (e.g. harmful vs benign) linearly
//! readable from the hidden state at the last prompt token, and does a probe trained on one
//! language read it in the others?
//!
//! The states are those the consistency eval and MLC read ([`super::consistency`]: the
//! prompt encoded like MLC encodes it, the state at its last token at each requested hidden
//! index). At each layer the probe is a ridge-regularised least-squares classifier fitted on the
//! training prompts' states, in closed form ([`RidgeProbe::fit`]): features standardised with
//! the training mean and standard deviation, targets `+1` (positive) and `-1`, weights
//! `w = (Z^T Z + ridge * n * I)^-1 Z^T (y - mean y)`, bias `mean y`; a state is predicted
//! positive when `z . w + b > 0`. The report gives the training accuracy and the accuracy on
//! the test prompts of each language. Deterministic: no sampling, float64 solve.
//!
//! A second, **language-centred** probe is fitted and tested the same way after subtracting,
//! from every state, the mean state of its language's prompts within its set (training or
//! test; no labels are used). It reads a feature that is shared across languages up to a
//! per-language offset, the offset that a consistency loss such as MLC removes.

use std::collections::BTreeMap;

use lm_backend::CausalLm;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::consistency::{last_prompt_token_states, LayerSelection};
use crate::data::Text;
use crate::encode::{encode_prompt, TextEncoder};
use crate::{Result, TrainError};

/// One prompt of a probe set: its language, text and label.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbePrompt {
    /// Language tag (test accuracy is reported per tag).
    pub lang: String,
    /// The prompt, encoded like MLC encodes prompts.
    pub prompt: Text,
    /// The attribute the probe reads (e.g. harmful).
    pub positive: bool,
}

/// Options of [`evaluate_probe`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOptions {
    /// The hidden-state indices to probe.
    pub layers: LayerSelection,
    /// Prompts per prompt-only forward pass, at least 1.
    pub batch_size: usize,
    /// Ridge strength, relative to the number of training prompts (>= 0).
    pub ridge: f64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions { layers: LayerSelection::All, batch_size: 32, ridge: 1e-2 }
    }
}

/// The probe of one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerProbe {
    /// Hidden-state index.
    pub layer: usize,
    /// Accuracy on the training prompts.
    pub train_accuracy: f64,
    /// Accuracy on the test prompts, per language.
    pub accuracy: BTreeMap<String, f64>,
    /// Accuracy of the language-centred probe on the training prompts.
    pub centred_train_accuracy: f64,
    /// Accuracy of the language-centred probe on the test prompts, per language.
    pub centred_accuracy: BTreeMap<String, f64>,
}

/// What [`evaluate_probe`] measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Training prompts.
    pub n_train: usize,
    /// Test prompts per language.
    pub n_test: BTreeMap<String, usize>,
    /// Ridge strength (relative to `n_train`).
    pub ridge: f64,
    /// One entry per probed layer, by increasing index.
    pub layers: Vec<LayerProbe>,
}

/// A fitted linear probe: `z = (x - mean) / scale`, positive when `z . weights + bias > 0`.
#[derive(Debug)]
pub struct RidgeProbe {
    mean: Tensor,
    scale: Tensor,
    weights: Tensor,
    bias: f64,
}

impl RidgeProbe {
    /// Fits the probe on `states` (`[N, D]`, any float kind) with `labels` (N of them, both
    /// classes present); see the module docs for the closed form.
    pub fn fit(states: &Tensor, labels: &[bool], ridge: f64) -> Result<RidgeProbe> {
        let size = states.size();
        if size.len() != 2 || size[0] as usize != labels.len() || labels.is_empty() {
            return Err(TrainError::input(
                "probe",
                format!("states {size:?} do not match {} labels (need [N, D])", labels.len()),
            ));
        }
        if labels.iter().all(|&l| l) || labels.iter().all(|&l| !l) {
            return Err(TrainError::input("probe", "the training prompts need both labels"));
        }
        if !(ridge.is_finite() && ridge >= 0.0) {
            return Err(TrainError::input("ridge", format!("{ridge} is not a finite number >= 0")));
        }
        let x = states.to_kind(Kind::Double).to_device(Device::Cpu);
        let n = size[0] as f64;
        let mean = x.mean_dim(&[0i64][..], true, Kind::Double);
        let scale = x.std_dim(&[0i64][..], false, true) + 1e-6;
        let z = (&x - &mean) / &scale;
        let targets: Vec<f64> = labels.iter().map(|&l| if l { 1.0 } else { -1.0 }).collect();
        let bias = targets.iter().sum::<f64>() / n;
        let y = Tensor::from_slice(&targets).view([-1, 1]) - bias;
        let d = size[1];
        let gram = z.transpose(0, 1).matmul(&z) + Tensor::eye(d, (Kind::Double, Device::Cpu)) * (ridge * n);
        let weights = Tensor::linalg_solve(&gram, &z.transpose(0, 1).matmul(&y), true);
        Ok(RidgeProbe { mean, scale, weights, bias })
    }

    /// The scores `z . w + b` of `states` (`[N, D]`): positive means the attribute.
    pub fn scores(&self, states: &Tensor) -> Result<Vec<f64>> {
        let x = states.to_kind(Kind::Double).to_device(Device::Cpu);
        let s = (((x - &self.mean) / &self.scale).matmul(&self.weights) + self.bias).view([-1]);
        Vec::<f64>::try_from(s).map_err(TrainError::torch("reading probe scores"))
    }

    /// The share of `states` whose prediction equals its label.
    pub fn accuracy(&self, states: &Tensor, labels: &[bool]) -> Result<f64> {
        let scores = self.scores(states)?;
        if scores.len() != labels.len() || labels.is_empty() {
            return Err(TrainError::input("probe", format!("{} states for {} labels", scores.len(), labels.len())));
        }
        let right = scores.iter().zip(labels).filter(|(s, &l)| (**s > 0.0) == l).count();
        Ok(right as f64 / labels.len() as f64)
    }

    /// The weights in standardised coordinates (`[D, 1]`, float64).
    pub fn weights(&self) -> &Tensor {
        &self.weights
    }
}

/// Fits a probe per layer on `train` and reports its accuracy on `test`, per language.
pub fn evaluate_probe<M: CausalLm + ?Sized>(
    model: &M,
    encoder: &dyn TextEncoder,
    train: &[ProbePrompt],
    test: &[ProbePrompt],
    options: &ProbeOptions,
) -> Result<ProbeReport> {
    if options.batch_size == 0 {
        return Err(TrainError::input("batch_size", "must be at least 1"));
    }
    if test.is_empty() {
        return Err(TrainError::input("probe", "no test prompts"));
    }
    let layers = options.layers.resolve(model.config().num_layers)?;
    let encode = |p: &ProbePrompt, i: usize| {
        encode_prompt(encoder, &p.prompt).map_err(|why| TrainError::Encode {
            id: format!("probe prompt {}", i + 1),
            lang: p.lang.clone(),
            why,
        })
    };
    let ids = train.iter().chain(test).enumerate().map(|(i, p)| encode(p, i)).collect::<Result<Vec<_>>>()?;
    let states = last_prompt_token_states(model, encoder.pad_id(), &ids, &layers, options.batch_size, &mut |_, _| {})?;
    let train_labels: Vec<bool> = train.iter().map(|p| p.positive).collect();
    let mut by_lang: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, p) in test.iter().enumerate() {
        by_lang.entry(p.lang.clone()).or_default().push(train.len() + i);
    }
    // rows of each (set, language): the groups whose mean the centred probe subtracts
    let mut groups: BTreeMap<(bool, &str), Vec<i64>> = BTreeMap::new();
    for (i, p) in train.iter().chain(test).enumerate() {
        groups.entry((i < train.len(), p.lang.as_str())).or_default().push(i as i64);
    }
    let mut out = vec![];
    for (&layer, states) in layers.iter().zip(&states) {
        let mut centred = states.to_kind(Kind::Double);
        for rows in groups.values() {
            let index = Tensor::from_slice(rows);
            let mean = centred.index_select(0, &index).mean_dim(&[0i64][..], true, Kind::Double);
            let _ = centred.index_add_(0, &index, &(-mean).expand([rows.len() as i64, -1], false));
        }
        let fit = |x: &Tensor| -> Result<(f64, BTreeMap<String, f64>)> {
            let head = x.narrow(0, 0, train.len() as i64);
            let probe = RidgeProbe::fit(&head, &train_labels, options.ridge)?;
            let train_accuracy = probe.accuracy(&head, &train_labels)?;
            let mut accuracy = BTreeMap::new();
            for (lang, rows) in &by_lang {
                let index = Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
                let labels: Vec<bool> = rows.iter().map(|&r| test[r - train.len()].positive).collect();
                accuracy.insert(lang.clone(), probe.accuracy(&x.index_select(0, &index), &labels)?);
            }
            Ok((train_accuracy, accuracy))
        };
        let (train_accuracy, accuracy) = fit(states)?;
        let (centred_train_accuracy, centred_accuracy) = fit(&centred)?;
        out.push(LayerProbe { layer, train_accuracy, accuracy, centred_train_accuracy, centred_accuracy });
    }
    Ok(ProbeReport {
        n_train: train.len(),
        n_test: by_lang.iter().map(|(l, rows)| (l.clone(), rows.len())).collect(),
        ridge: options.ridge,
        layers: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(rows: &[[f64; 3]]) -> Tensor {
        Tensor::from_slice(&rows.concat()).view([rows.len() as i64, 3])
    }

    /// The closed form is the minimiser: the ridge objective's gradient vanishes there.
    #[test]
    fn the_fit_solves_the_ridge_normal_equations() {
        let x = Tensor::randn([40, 3], (Kind::Double, Device::Cpu));
        let labels: Vec<bool> = (0..40).map(|i| i % 3 == 0).collect();
        let ridge = 0.05;
        let probe = RidgeProbe::fit(&x, &labels, ridge).unwrap();
        let z = (&x - &probe.mean) / &probe.scale;
        let y = Tensor::from_slice(&labels.iter().map(|&l| if l { 1.0 } else { -1.0 }).collect::<Vec<f64>>())
            .view([-1, 1])
            - probe.bias;
        // d/dw ( |z w - y|^2 + ridge n |w|^2 ) / 2 = z^T (z w - y) + ridge n w
        let grad = z.transpose(0, 1).matmul(&(z.matmul(&probe.weights) - y)) + &probe.weights * (ridge * 40.0);
        assert!(grad.abs().max().double_value(&[]) < 1e-9, "{grad}");
        assert!((probe.bias - (14.0 - 26.0) / 40.0).abs() < 1e-12);
    }

    #[test]
    fn separable_states_are_read_and_transferred() {
        // the attribute is the sign of the first coordinate; the others are noise
        let train = states(&[[1.0, 0.3, -2.0], [2.0, -1.0, 0.5], [-1.5, 0.2, 1.0], [-0.5, -0.7, -1.0]]);
        let labels = [true, true, false, false];
        let probe = RidgeProbe::fit(&train, &labels, 1e-3).unwrap();
        assert_eq!(probe.accuracy(&train, &labels).unwrap(), 1.0);
        let shifted = states(&[[3.0, 0.0, 0.0], [-3.0, 0.1, 0.0]]);
        assert_eq!(probe.accuracy(&shifted, &[true, false]).unwrap(), 1.0);
        assert_eq!(probe.accuracy(&shifted, &[false, true]).unwrap(), 0.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = states(&[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        assert!(RidgeProbe::fit(&x, &[true, true], 0.1).unwrap_err().to_string().contains("both labels"));
        assert!(RidgeProbe::fit(&x, &[true], 0.1).is_err());
        assert!(RidgeProbe::fit(&x, &[true, false], f64::NAN).is_err());
    }
}
