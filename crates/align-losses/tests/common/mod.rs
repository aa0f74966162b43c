//! Shared test scaffolding: building batches from plain `f64` vectors, evaluating an objective,
//! its autograd gradient and a central finite difference, and `f64` reference math.
#![allow(dead_code)] // each test binary uses a different part

use align_losses::{BatchView, KlLogps, PairLogps, PreferenceObjective};
use proptest::prelude::*;
use tch::{Kind, Tensor};

/// Names of the six differentiable inputs, in the order of [`Inputs::columns`].
pub const INPUT_NAMES: [&str; 6] = [
    "policy.chosen.sum",
    "policy.rejected.sum",
    "reference.chosen.sum",
    "reference.rejected.sum",
    "chosen.count",
    "rejected.count",
];

/// Per-pair inputs of a batch of `B` pairs: summed log-probs and token counts.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub pc: Vec<f64>,
    pub pr: Vec<f64>,
    pub rc: Vec<f64>,
    pub rr: Vec<f64>,
    pub nc: Vec<f64>,
    pub nr: Vec<f64>,
    /// KTO's mismatched pairs: (policy, reference) summed log-probs, `[M]` each.
    pub kl: Option<(Vec<f64>, Vec<f64>)>,
}

impl Inputs {
    pub fn len(&self) -> usize {
        self.pc.len()
    }

    pub fn columns(&self) -> [&Vec<f64>; 6] {
        [&self.pc, &self.pr, &self.rc, &self.rr, &self.nc, &self.nr]
    }

    pub fn columns_mut(&mut self) -> [&mut Vec<f64>; 6] {
        [&mut self.pc, &mut self.pr, &mut self.rc, &mut self.rr, &mut self.nc, &mut self.nr]
    }

    /// Chosen and rejected swapped (policy and reference alike).
    pub fn swapped(&self) -> Self {
        Self {
            pc: self.pr.clone(),
            pr: self.pc.clone(),
            rc: self.rr.clone(),
            rr: self.rc.clone(),
            nc: self.nr.clone(),
            nr: self.nc.clone(),
            kl: self.kl.clone(),
        }
    }

    /// Pair `i` alone, as a batch of one.
    pub fn pair(&self, i: usize) -> Self {
        let c = self.columns();
        Self {
            pc: vec![c[0][i]],
            pr: vec![c[1][i]],
            rc: vec![c[2][i]],
            rr: vec![c[3][i]],
            nc: vec![c[4][i]],
            nr: vec![c[5][i]],
            kl: self.kl.clone(),
        }
    }
}

/// The six input tensors in `kind`, each a leaf with `requires_grad`.
pub fn leaves(inputs: &Inputs, kind: Kind, requires_grad: bool) -> Vec<Tensor> {
    inputs
        .columns()
        .iter()
        .map(|c| Tensor::from_slice(c).to_kind(kind).detach().set_requires_grad(requires_grad))
        .collect()
}

/// A batch view reading the six tensors (reference counts are detached copies of the policy's:
/// the reference scores the same tokens) and the KL pairs, if any.
pub fn batch_view(t: &[Tensor], kl: Option<&(Vec<f64>, Vec<f64>)>, kind: Kind) -> BatchView {
    let policy =
        PairLogps::from_tensors(t[0].shallow_clone(), t[4].shallow_clone(), t[1].shallow_clone(), t[5].shallow_clone())
            .unwrap();
    let reference =
        PairLogps::from_tensors(t[2].shallow_clone(), t[4].detach(), t[3].shallow_clone(), t[5].detach()).unwrap();
    let mut view = BatchView::from_pairs(policy, Some(reference));
    view.kl = kl.map(|(p, r)| KlLogps {
        policy: Tensor::from_slice(p).to_kind(kind),
        reference: Tensor::from_slice(r).to_kind(kind),
    });
    view
}

/// The objective's loss on `inputs`, in f64.
pub fn loss_value(objective: &dyn PreferenceObjective, inputs: &Inputs) -> f64 {
    let t = leaves(inputs, Kind::Double, false);
    let out = objective.compute(&batch_view(&t, inputs.kl.as_ref(), Kind::Double)).unwrap();
    assert_eq!(out.loss.kind(), Kind::Double, "f64 inputs keep f64 loss math");
    out.loss.double_value(&[])
}

/// Loss and autograd gradient w.r.t. the six inputs in `kind` (an input the loss does not
/// depend on gets zeros).
pub fn loss_and_gradient(objective: &dyn PreferenceObjective, inputs: &Inputs, kind: Kind) -> (f64, [Vec<f64>; 6]) {
    let t = leaves(inputs, kind, true);
    let out = objective.compute(&batch_view(&t, inputs.kl.as_ref(), kind)).unwrap();
    out.loss.backward();
    let grads = std::array::from_fn(|i| {
        let g = t[i].grad();
        if g.defined() {
            Vec::<f64>::try_from(&g.to_kind(Kind::Double)).unwrap()
        } else {
            vec![0.0; inputs.len()]
        }
    });
    (out.loss.double_value(&[]), grads)
}

/// Central finite difference of the f64 loss w.r.t. each of the six inputs.
pub fn finite_difference(objective: &dyn PreferenceObjective, inputs: &Inputs) -> [Vec<f64>; 6] {
    std::array::from_fn(|column| {
        (0..inputs.len())
            .map(|i| {
                let x = inputs.columns()[column][i];
                let h = 1e-6 * x.abs().max(1.0);
                let mut plus = inputs.clone();
                plus.columns_mut()[column][i] = x + h;
                let mut minus = inputs.clone();
                minus.columns_mut()[column][i] = x - h;
                (loss_value(objective, &plus) - loss_value(objective, &minus)) / (2.0 * h)
            })
            .collect()
    })
}

/// Asserts `|got - expected| <= tol * (1 + |expected|)` elementwise for all six gradients.
pub fn assert_gradients_close(got: &[Vec<f64>; 6], expected: &[Vec<f64>; 6], tol: f64, what: &str) {
    for (column, name) in INPUT_NAMES.iter().enumerate() {
        for (i, (g, e)) in got[column].iter().zip(&expected[column]).enumerate() {
            assert!(
                (g - e).abs() <= tol * (1.0 + e.abs()),
                "{what}: d loss / d {name}[{i}] = {g}, expected {e}\n got {got:?}\n expected {expected:?}"
            );
        }
    }
}

/// Checks an objective's autograd gradient against a hand-derived one and a finite difference.
pub fn check_gradients(objective: &dyn PreferenceObjective, inputs: &Inputs, analytic: [Vec<f64>; 6]) {
    let (_, autograd) = loss_and_gradient(objective, inputs, Kind::Double);
    assert_gradients_close(&autograd, &analytic, 1e-9, &format!("{} autograd vs analytic", objective.name()));
    let numeric = finite_difference(objective, inputs);
    assert_gradients_close(&autograd, &numeric, 1e-6, &format!("{} autograd vs finite difference", objective.name()));
}

/// `log sig(x)` in f64, stable for large `|x|`.
pub fn log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

/// `sig(x)` in f64.
pub fn sigmoid(x: f64) -> f64 {
    log_sigmoid(x).exp()
}

/// Mean of a slice.
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Random batches of 1..=4 pairs: log-prob sums in [-60, -0.5], counts in [1, 40].
pub fn inputs_strategy() -> impl Strategy<Value = Inputs> {
    let pair = (-60.0..-0.5f64, -60.0..-0.5f64, -60.0..-0.5f64, -60.0..-0.5f64, 1.0..40.0f64, 1.0..40.0f64);
    prop::collection::vec(pair, 1..=4).prop_map(|pairs| Inputs {
        pc: pairs.iter().map(|p| p.0).collect(),
        pr: pairs.iter().map(|p| p.1).collect(),
        rc: pairs.iter().map(|p| p.2).collect(),
        rr: pairs.iter().map(|p| p.3).collect(),
        nc: pairs.iter().map(|p| p.4).collect(),
        nr: pairs.iter().map(|p| p.5).collect(),
        kl: None,
    })
}

/// Like [`inputs_strategy`], with 1..=4 KL pairs in [-60, -0.5].
pub fn inputs_with_kl_strategy() -> impl Strategy<Value = Inputs> {
    (inputs_strategy(), prop::collection::vec((-60.0..-0.5f64, -60.0..-0.5f64), 1..=4)).prop_map(|(mut inputs, kl)| {
        inputs.kl = Some((kl.iter().map(|p| p.0).collect(), kl.iter().map(|p| p.1).collect()));
        inputs
    })
}
