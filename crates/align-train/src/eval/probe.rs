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
//! Beside it, a **mean-difference** probe ([`MeanDifferenceProbe`]) is fitted on the same states:
//! its direction is the difference of the two classes' mean states, `w = mu+ - mu-`, and its
//! threshold the midpoint, so a state is predicted positive when `(x - (mu+ + mu-) / 2) . w > 0`.
//! It has no free parameter and uses no direction of small variance in the training set, which
//! is what a probe that must transfer to other languages needs: the least-squares probe weighs
//! every direction by the inverse of its training variance, so a language's offset along a
//! direction that barely varies in the training language can flip all of that language's
//! predictions (`docs/testbed.md` measures both on the testbed's base models).
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
    /// Accuracy of the mean-difference probe ([`MeanDifferenceProbe`]) on the training prompts.
    #[serde(default)]
    pub mean_difference_train_accuracy: f64,
    /// Accuracy of the mean-difference probe on the test prompts, per language.
    #[serde(default)]
    pub mean_difference_accuracy: BTreeMap<String, f64>,
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
        check_fit_input(states, labels)?;
        let size = states.size();
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
        share_right(&scores, labels)
    }

    /// The weights in standardised coordinates (`[D, 1]`, float64).
    pub fn weights(&self) -> &Tensor {
        &self.weights
    }
}

/// The share of `scores` whose sign (positive: the attribute) matches its label.
fn share_right(scores: &[f64], labels: &[bool]) -> Result<f64> {
    if scores.len() != labels.len() || labels.is_empty() {
        return Err(TrainError::input("probe", format!("{} states for {} labels", scores.len(), labels.len())));
    }
    let right = scores.iter().zip(labels).filter(|(s, &l)| (**s > 0.0) == l).count();
    Ok(right as f64 / labels.len() as f64)
}

/// The checks every probe fit makes: `states` is `[N, D]` with one label per row, both present.
fn check_fit_input(states: &Tensor, labels: &[bool]) -> Result<()> {
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
    Ok(())
}

/// A fitted mean-difference probe: direction `mu+ - mu-` (the two classes' mean states),
/// positive when `(x - midpoint) . direction > 0` with `midpoint = (mu+ + mu-) / 2`.
#[derive(Debug)]
pub struct MeanDifferenceProbe {
    midpoint: Tensor,
    direction: Tensor,
}

impl MeanDifferenceProbe {
    /// Fits the probe on `states` (`[N, D]`, any float kind) with `labels` (N of them, both
    /// classes present).
    pub fn fit(states: &Tensor, labels: &[bool]) -> Result<MeanDifferenceProbe> {
        check_fit_input(states, labels)?;
        let x = states.to_kind(Kind::Double).to_device(Device::Cpu);
        let class_mean = |positive: bool| {
            let rows: Vec<i64> = (0..labels.len() as i64).filter(|&i| labels[i as usize] == positive).collect();
            x.index_select(0, &Tensor::from_slice(&rows)).mean_dim(&[0i64][..], false, Kind::Double)
        };
        let (positive, negative) = (class_mean(true), class_mean(false));
        Ok(MeanDifferenceProbe { midpoint: (&positive + &negative) / 2.0, direction: positive - negative })
    }

    /// The scores `(x - midpoint) . direction` of `states` (`[N, D]`): positive means the attribute.
    pub fn scores(&self, states: &Tensor) -> Result<Vec<f64>> {
        let x = states.to_kind(Kind::Double).to_device(Device::Cpu);
        let s = (x - &self.midpoint).matmul(&self.direction);
        Vec::<f64>::try_from(s).map_err(TrainError::torch("reading probe scores"))
    }

    /// The share of `states` whose prediction equals its label.
    pub fn accuracy(&self, states: &Tensor, labels: &[bool]) -> Result<f64> {
        share_right(&self.scores(states)?, labels)
    }

    /// The direction `mu+ - mu-` (`[D]`, float64).
    pub fn direction(&self) -> &Tensor {
        &self.direction
    }

    /// The midpoint `(mu+ + mu-) / 2` (`[D]`, float64).
    pub fn midpoint(&self) -> &Tensor {
        &self.midpoint
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
        // (training accuracy, test accuracy per language) of the probe `accuracy` reads, on `x`
        let measure =
            |x: &Tensor, accuracy: &dyn Fn(&Tensor, &[bool]) -> Result<f64>| -> Result<(f64, BTreeMap<String, f64>)> {
                let train_accuracy = accuracy(&x.narrow(0, 0, train.len() as i64), &train_labels)?;
                let mut by_language = BTreeMap::new();
                for (lang, rows) in &by_lang {
                    let index = Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
                    let labels: Vec<bool> = rows.iter().map(|&r| test[r - train.len()].positive).collect();
                    by_language.insert(lang.clone(), accuracy(&x.index_select(0, &index), &labels)?);
                }
                Ok((train_accuracy, by_language))
            };
        let ridge = |x: &Tensor| -> Result<(f64, BTreeMap<String, f64>)> {
            let probe = RidgeProbe::fit(&x.narrow(0, 0, train.len() as i64), &train_labels, options.ridge)?;
            measure(x, &|s, l| probe.accuracy(s, l))
        };
        let (train_accuracy, accuracy) = ridge(states)?;
        let (centred_train_accuracy, centred_accuracy) = ridge(&centred)?;
        let difference = MeanDifferenceProbe::fit(&states.narrow(0, 0, train.len() as i64), &train_labels)?;
        let (mean_difference_train_accuracy, mean_difference_accuracy) =
            measure(states, &|s, l| difference.accuracy(s, l))?;
        out.push(LayerProbe {
            layer,
            train_accuracy,
            accuracy,
            centred_train_accuracy,
            centred_accuracy,
            mean_difference_train_accuracy,
            mean_difference_accuracy,
        });
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

    /// The direction and midpoint are the class means' difference and average, by hand, and a
    /// state's score is its offset from the midpoint along the direction.
    #[test]
    fn the_mean_difference_probe_is_the_class_means_difference() {
        let rows = [[1.0, 2.0, 0.5], [3.0, -1.0, 0.0], [0.0, 0.0, 4.0], [-2.0, 1.0, -1.0], [1.0, 1.0, 1.0]];
        let labels = [true, true, false, false, false];
        let probe = MeanDifferenceProbe::fit(&states(&rows).to_kind(Kind::Float), &labels).unwrap();
        // mu+ = (2, 0.5, 0.25), mu- = (-1/3, 2/3, 4/3)
        let (positive, negative) = ([2.0, 0.5, 0.25], [-1.0 / 3.0, 2.0 / 3.0, 4.0 / 3.0]);
        let direction = Vec::<f64>::try_from(probe.direction()).unwrap();
        let midpoint = Vec::<f64>::try_from(probe.midpoint()).unwrap();
        for j in 0..3 {
            assert!((direction[j] - (positive[j] - negative[j])).abs() < 1e-12);
            assert!((midpoint[j] - (positive[j] + negative[j]) / 2.0).abs() < 1e-12);
        }
        let scores = probe.scores(&states(&rows)).unwrap();
        for (row, score) in rows.iter().zip(&scores) {
            let want: f64 = (0..3).map(|j| (row[j] - midpoint[j]) * direction[j]).sum();
            assert!((score - want).abs() < 1e-12);
        }
        assert!(probe.scores(&states(&[[5.0 / 6.0, 7.0 / 12.0, 19.0 / 24.0]])).unwrap()[0].abs() < 1e-12);
        // by hand: [1, 1, 1] scores 7/18 - 5/72 - 65/288 = 0.094 > 0 although benign; the rest are right
        assert_eq!(probe.accuracy(&states(&rows), &labels).unwrap(), 0.8);
        assert!(MeanDifferenceProbe::fit(&states(&rows), &[true; 5]).unwrap_err().to_string().contains("both labels"));
        assert!(MeanDifferenceProbe::fit(&states(&rows), &labels[..4]).is_err());
    }

    /// Why the premise checks read the mean-difference probe: the least-squares probe leans on a
    /// direction that barely varies in training (here the second coordinate, +-0.01, perfectly
    /// predictive), so an offset along it in another set (a language's mean state) flips every
    /// prediction; the mean-difference probe weighs that direction by its 0.02 gap only.
    #[test]
    fn an_offset_along_a_flat_direction_misleads_least_squares_and_not_the_mean_difference() {
        let mut rows = vec![];
        let mut labels = vec![];
        for noise in [-0.9, -0.3, 0.3, 0.9] {
            rows.push([1.0 + noise, 0.01, noise]);
            labels.push(true);
            rows.push([-1.0 + noise, -0.01, -noise]);
            labels.push(false);
        }
        let train = states(&rows);
        let ridge = RidgeProbe::fit(&train, &labels, 1e-3).unwrap();
        let difference = MeanDifferenceProbe::fit(&train, &labels).unwrap();
        assert_eq!(ridge.accuracy(&train, &labels).unwrap(), 1.0);
        assert_eq!(difference.accuracy(&train, &labels).unwrap(), 1.0);
        // the same attribute, and an offset of 0.5 along the second coordinate
        let other = states(&[[1.0, 0.5, 0.0], [0.8, 0.5, 0.2], [-1.0, 0.5, 0.0], [-0.8, 0.5, -0.2]]);
        let other_labels = [true, true, false, false];
        assert_eq!(ridge.accuracy(&other, &other_labels).unwrap(), 0.5, "every state read as positive");
        assert_eq!(difference.accuracy(&other, &other_labels).unwrap(), 1.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = states(&[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        assert!(RidgeProbe::fit(&x, &[true, true], 0.1).unwrap_err().to_string().contains("both labels"));
        assert!(RidgeProbe::fit(&x, &[true], 0.1).is_err());
        assert!(RidgeProbe::fit(&x, &[true, false], f64::NAN).is_err());
    }
}
