//! Autograd gradients of every objective w.r.t. its log-prob (and token-count) inputs, checked
//! against gradients derived by hand and against central finite differences, in f64.
//!
//! Inputs, in order: policy chosen/rejected sums `pc`, `pr`; reference sums `rc`, `rr`;
//! token counts `nc`, `nr`. Every loss is a mean over `B` pairs, hence the `1/B` factors.
// Index loops mirror the formulas' subscripts (pair i), which reads closer to the math.
#![allow(clippy::needless_range_loop)]

mod common;

use align_losses::{Cpo, Dpo, Hinge, Ipo, Kto, Orpo, PreferenceObjective, RDpo, RobustDpo, Sft, SimPo};
use common::{check_gradients, sigmoid, Inputs};
use proptest::prelude::*;

/// An all-zero gradient for the six inputs.
fn zeros(x: &Inputs) -> [Vec<f64>; 6] {
    std::array::from_fn(|_| vec![0.0; x.len()])
}

/// Gradient of a loss `mean_i f(D_i)` with `D = (pc - rc) - (pr - rr)`, given `f'(D_i)`.
fn through_margin(x: &Inputs, df_dd: impl Fn(f64) -> f64) -> [Vec<f64>; 6] {
    let b = x.len() as f64;
    let mut g = zeros(x);
    for i in 0..x.len() {
        let d = (x.pc[i] - x.rc[i]) - (x.pr[i] - x.rr[i]);
        let k = df_dd(d) / b;
        g[0][i] = k;
        g[1][i] = -k;
        g[2][i] = -k;
        g[3][i] = k;
    }
    g
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn dpo(x in common::inputs_strategy(), beta in 0.01..1.0f64, eps in 0.0..=0.5f64) {
        // d/dD [-(1-eps) log sig(bD) - eps log sig(-bD)] = b [-(1-eps) sig(-bD) + eps sig(bD)]
        let analytic = through_margin(&x, |d| beta * (-(1.0 - eps) * sigmoid(-beta * d) + eps * sigmoid(beta * d)));
        check_gradients(&Dpo::new(beta, eps).unwrap(), &x, analytic);
    }

    #[test]
    fn robust_dpo(x in common::inputs_strategy(), beta in 0.01..1.0f64, eps in 0.0..0.45f64) {
        // d/dD [-(1-eps) log sig(bD) + eps log sig(-bD)] / (1-2eps) = b [-(1-eps) sig(-bD) - eps sig(bD)] / (1-2eps)
        let analytic = through_margin(&x, |d| {
            beta * (-(1.0 - eps) * sigmoid(-beta * d) - eps * sigmoid(beta * d)) / (1.0 - 2.0 * eps)
        });
        check_gradients(&RobustDpo::new(beta, eps).unwrap(), &x, analytic);
    }

    #[test]
    fn hinge(x in common::inputs_strategy(), beta in 0.01..1.0f64) {
        let away_from_kink = (0..x.len()).all(|i| {
            let d = (x.pc[i] - x.rc[i]) - (x.pr[i] - x.rr[i]);
            (1.0 - beta * d).abs() > 1e-3
        });
        prop_assume!(away_from_kink);
        // d/dD relu(1 - bD) = -b where bD < 1, else 0.
        let analytic = through_margin(&x, |d| if beta * d < 1.0 { -beta } else { 0.0 });
        check_gradients(&Hinge::new(beta).unwrap(), &x, analytic);
    }

    #[test]
    fn ipo(x in common::inputs_strategy(), beta in 0.05..1.0f64) {
        // u = (pc-rc)/nc - (pr-rr)/nr - 1/(2b); loss = mean u^2.
        let b = x.len() as f64;
        let mut g = zeros(&x);
        for i in 0..x.len() {
            let u = (x.pc[i] - x.rc[i]) / x.nc[i] - (x.pr[i] - x.rr[i]) / x.nr[i] - 1.0 / (2.0 * beta);
            let k = 2.0 * u / b;
            g[0][i] = k / x.nc[i];
            g[2][i] = -k / x.nc[i];
            g[1][i] = -k / x.nr[i];
            g[3][i] = k / x.nr[i];
            g[4][i] = -k * (x.pc[i] - x.rc[i]) / (x.nc[i] * x.nc[i]);
            g[5][i] = k * (x.pr[i] - x.rr[i]) / (x.nr[i] * x.nr[i]);
        }
        check_gradients(&Ipo::new(beta).unwrap(), &x, g);
    }

    #[test]
    fn r_dpo(x in common::inputs_strategy(), beta in 0.01..1.0f64, alpha in 0.0..0.5f64) {
        // t = bD + alpha (nc - nr); loss = mean -log sig(t); d/dt = -sig(-t).
        let b = x.len() as f64;
        let mut g = zeros(&x);
        for i in 0..x.len() {
            let d = (x.pc[i] - x.rc[i]) - (x.pr[i] - x.rr[i]);
            let k = -sigmoid(-(beta * d + alpha * (x.nc[i] - x.nr[i]))) / b;
            g[0][i] = k * beta;
            g[1][i] = -k * beta;
            g[2][i] = -k * beta;
            g[3][i] = k * beta;
            g[4][i] = k * alpha;
            g[5][i] = -k * alpha;
        }
        check_gradients(&RDpo::new(beta, alpha).unwrap(), &x, g);
    }

    #[test]
    fn simpo(x in common::inputs_strategy(), beta in 0.1..3.0f64, gamma in 0.0..2.0f64) {
        // t = b (pc/nc - pr/nr) - gamma; loss = mean -log sig(t).
        let b = x.len() as f64;
        let mut g = zeros(&x);
        for i in 0..x.len() {
            let k = -sigmoid(-(beta * (x.pc[i] / x.nc[i] - x.pr[i] / x.nr[i]) - gamma)) * beta / b;
            g[0][i] = k / x.nc[i];
            g[1][i] = -k / x.nr[i];
            g[4][i] = -k * x.pc[i] / (x.nc[i] * x.nc[i]);
            g[5][i] = k * x.pr[i] / (x.nr[i] * x.nr[i]);
        }
        check_gradients(&SimPo::new(beta, gamma).unwrap(), &x, g);
    }

    #[test]
    fn cpo(x in common::inputs_strategy(), beta in 0.01..1.0f64, alpha in 0.0..2.0f64) {
        // loss = mean -log sig(b (pc - pr)) - alpha sum(pc) / sum(nc).
        let b = x.len() as f64;
        let (sum_p, sum_n) = (x.pc.iter().sum::<f64>(), x.nc.iter().sum::<f64>());
        let mut g = zeros(&x);
        for i in 0..x.len() {
            let k = -sigmoid(-beta * (x.pc[i] - x.pr[i])) * beta / b;
            g[0][i] = k - alpha / sum_n;
            g[1][i] = -k;
            g[4][i] = alpha * sum_p / (sum_n * sum_n);
        }
        check_gradients(&Cpo::new(beta, alpha).unwrap(), &x, g);
    }

    #[test]
    fn orpo(x in common::inputs_strategy(), lambda in 0.0..1.0f64) {
        // a = p/n; log_odds = (a_c - a_r) - (log(1-e^a_c) - log(1-e^a_r));
        // d log_odds / d a_c = 1/(1 - e^a_c), d / d a_r = -1/(1 - e^a_r);
        // loss = -sum(pc)/sum(nc) - lambda mean log sig(log_odds).
        let b = x.len() as f64;
        let (sum_p, sum_n) = (x.pc.iter().sum::<f64>(), x.nc.iter().sum::<f64>());
        let mut g = zeros(&x);
        for i in 0..x.len() {
            let (a_c, a_r) = (x.pc[i] / x.nc[i], x.pr[i] / x.nr[i]);
            let log_odds = (a_c - a_r) - ((1.0 - a_c.exp()).ln() - (1.0 - a_r.exp()).ln());
            let k = -lambda * sigmoid(-log_odds) / b; // d loss / d log_odds
            let dl_dac = k / (1.0 - a_c.exp());
            let dl_dar = -k / (1.0 - a_r.exp());
            g[0][i] = -1.0 / sum_n + dl_dac / x.nc[i];
            g[4][i] = sum_p / (sum_n * sum_n) - dl_dac * x.pc[i] / (x.nc[i] * x.nc[i]);
            g[1][i] = dl_dar / x.nr[i];
            g[5][i] = -dl_dar * x.pr[i] / (x.nr[i] * x.nr[i]);
        }
        check_gradients(&Orpo::new(lambda).unwrap(), &x, g);
    }

    #[test]
    fn kto(x in common::inputs_with_kl_strategy(), beta in 0.01..1.0f64, dw in 0.1..2.0f64, uw in 0.1..2.0f64) {
        // z is detached. chosen: dw (1 - sig(b (s_c - z))), rejected: uw (1 - sig(b (z - s_r))),
        // mean over 2B. d/ds_c = -dw b sig'(.) / 2B, d/ds_r = +uw b sig'(.) / 2B.
        let (p, r) = x.kl.clone().unwrap();
        let z = (p.iter().zip(&r).map(|(p, r)| p - r).sum::<f64>() / p.len() as f64).max(0.0);
        let two_b = 2.0 * x.len() as f64;
        let mut g = zeros(&x);
        for i in 0..x.len() {
            let sc = sigmoid(beta * ((x.pc[i] - x.rc[i]) - z));
            let sr = sigmoid(beta * (z - (x.pr[i] - x.rr[i])));
            let kc = -dw * beta * sc * (1.0 - sc) / two_b;
            let kr = uw * beta * sr * (1.0 - sr) / two_b;
            g[0][i] = kc;
            g[2][i] = -kc;
            g[1][i] = kr;
            g[3][i] = -kr;
        }
        check_gradients(&Kto::new(beta, dw, uw).unwrap(), &x, g);
    }

    #[test]
    fn sft(x in common::inputs_strategy()) {
        // loss = -sum(pc) / sum(nc).
        let (sum_p, sum_n) = (x.pc.iter().sum::<f64>(), x.nc.iter().sum::<f64>());
        let mut g = zeros(&x);
        for i in 0..x.len() {
            g[0][i] = -1.0 / sum_n;
            g[4][i] = sum_p / (sum_n * sum_n);
        }
        check_gradients(&Sft::new().unwrap(), &x, g);
    }
}

/// KTO's reference point is detached: no gradient reaches the mismatched pairs' log-probs.
#[test]
fn kto_reference_point_is_detached() {
    use tch::{Kind, Tensor};
    let x = Inputs {
        pc: vec![-3.0, -4.0],
        pr: vec![-5.0, -2.0],
        rc: vec![-3.5, -4.0],
        rr: vec![-4.0, -2.5],
        nc: vec![2.0, 3.0],
        nr: vec![4.0, 1.0],
        kl: None,
    };
    let t = common::leaves(&x, Kind::Double, true);
    let mut view = common::batch_view(&t, None, Kind::Double);
    let kl_policy = Tensor::from_slice(&[-1.0f64, -2.0]).set_requires_grad(true);
    let kl_reference = Tensor::from_slice(&[-3.0f64, -3.0]).set_requires_grad(true);
    view.kl =
        Some(align_losses::KlLogps { policy: kl_policy.shallow_clone(), reference: kl_reference.shallow_clone() });
    let out = Kto::new(0.5, 1.0, 1.0).unwrap().compute(&view).unwrap();
    assert!((out.metrics.get("kl").unwrap() - 1.5).abs() < 1e-12);
    out.loss.backward();
    assert!(!kl_policy.grad().defined() || kl_policy.grad().abs().sum(Kind::Double).double_value(&[]) == 0.0);
    assert!(!kl_reference.grad().defined() || kl_reference.grad().abs().sum(Kind::Double).double_value(&[]) == 0.0);
    assert!(t[0].grad().defined());
}
