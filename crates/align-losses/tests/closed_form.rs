//! Loss values against published vectors and against independent plain-f64 computations of
//! each objective's formula (methods.md §3).
// Index loops mirror the formulas' subscripts (pair i), which reads closer to the math.
#![allow(clippy::needless_range_loop)]

mod common;

use align_losses::{Cpo, Dpo, Hinge, Ipo, Kto, Orpo, PreferenceObjective, RDpo, RobustDpo, Sft, SimPo};
use common::{log_sigmoid, loss_value, mean, sigmoid, Inputs};
use proptest::prelude::*;

/// torchtune's DPO test vectors (beta 0.1): D = [0, 10, 20].
fn torchtune_inputs() -> Inputs {
    Inputs {
        pc: vec![-0.5, -10.0, -1.0],
        pr: vec![-0.1, -30.0, -21.0],
        rc: vec![-0.5, -10.1, -0.1],
        rr: vec![-0.1, -20.1, -0.1],
        nc: vec![1.0; 3],
        nr: vec![1.0; 3],
        kl: None,
    }
}

#[test]
#[allow(clippy::approx_constant)] // the published vectors, as printed (0.693147 is ln 2 rounded)
fn torchtune_dpo_and_hinge_vectors() {
    let inputs = torchtune_inputs();
    let dpo_expected = [0.693147, 0.313262, 0.126928];
    let hinge_expected = [1.0, 0.0, 0.0];
    let dpo = Dpo::new(0.1, 0.0).unwrap();
    let hinge = Hinge::new(0.1).unwrap();
    for i in 0..3 {
        let pair = inputs.pair(i);
        assert!((loss_value(&dpo, &pair) - dpo_expected[i]).abs() < 1e-6, "dpo pair {i}");
        assert!((loss_value(&hinge, &pair) - hinge_expected[i]).abs() < 1e-9, "hinge pair {i}");
    }
    assert!((loss_value(&dpo, &inputs) - mean(&dpo_expected)).abs() < 1e-6);
    assert!((loss_value(&hinge, &inputs) - mean(&hinge_expected)).abs() < 1e-9);
    // rDPO at eps = 0 is DPO.
    assert!((loss_value(&RobustDpo::new(0.1, 0.0).unwrap(), &inputs) - mean(&dpo_expected)).abs() < 1e-6);
}

/// `D = s_c - s_r` per pair.
fn margins(x: &Inputs) -> Vec<f64> {
    (0..x.len()).map(|i| (x.pc[i] - x.rc[i]) - (x.pr[i] - x.rr[i])).collect()
}

fn dpo_f64(x: &Inputs, beta: f64, eps: f64) -> f64 {
    mean(
        &margins(x)
            .iter()
            .map(|d| -(1.0 - eps) * log_sigmoid(beta * d) - eps * log_sigmoid(-beta * d))
            .collect::<Vec<_>>(),
    )
}

fn robust_dpo_f64(x: &Inputs, beta: f64, eps: f64) -> f64 {
    let per: Vec<f64> = margins(x)
        .iter()
        .map(|d| (-(1.0 - eps) * log_sigmoid(beta * d) + eps * log_sigmoid(-beta * d)) / (1.0 - 2.0 * eps))
        .collect();
    mean(&per)
}

fn hinge_f64(x: &Inputs, beta: f64) -> f64 {
    mean(&margins(x).iter().map(|d| (1.0 - beta * d).max(0.0)).collect::<Vec<_>>())
}

fn ipo_f64(x: &Inputs, beta: f64) -> f64 {
    let per: Vec<f64> = (0..x.len())
        .map(|i| {
            let h = (x.pc[i] - x.rc[i]) / x.nc[i] - (x.pr[i] - x.rr[i]) / x.nr[i];
            (h - 1.0 / (2.0 * beta)).powi(2)
        })
        .collect();
    mean(&per)
}

fn r_dpo_f64(x: &Inputs, beta: f64, alpha: f64) -> f64 {
    let d = margins(x);
    mean(&(0..x.len()).map(|i| -log_sigmoid(beta * d[i] + alpha * (x.nc[i] - x.nr[i]))).collect::<Vec<_>>())
}

fn simpo_f64(x: &Inputs, beta: f64, gamma: f64) -> f64 {
    let per: Vec<f64> =
        (0..x.len()).map(|i| -log_sigmoid(beta * (x.pc[i] / x.nc[i] - x.pr[i] / x.nr[i]) - gamma)).collect();
    mean(&per)
}

/// Token-level mean NLL of the chosen completions: `-sum(pc) / sum(nc)`.
fn nll_f64(x: &Inputs) -> f64 {
    -x.pc.iter().sum::<f64>() / x.nc.iter().sum::<f64>()
}

fn cpo_f64(x: &Inputs, beta: f64, alpha: f64) -> f64 {
    mean(&(0..x.len()).map(|i| -log_sigmoid(beta * (x.pc[i] - x.pr[i]))).collect::<Vec<_>>()) + alpha * nll_f64(x)
}

/// `log(p / (1 - p))` for `p = exp(a)`, by the naive formula (fine for the test's `a <= -0.01`).
fn log_odds_f64(a: f64) -> f64 {
    a - (1.0 - a.exp()).ln()
}

fn orpo_log_odds(x: &Inputs) -> Vec<f64> {
    (0..x.len()).map(|i| log_odds_f64(x.pc[i] / x.nc[i]) - log_odds_f64(x.pr[i] / x.nr[i])).collect()
}

fn orpo_f64(x: &Inputs, lambda: f64) -> f64 {
    nll_f64(x) - lambda * mean(&orpo_log_odds(x).iter().map(|l| log_sigmoid(*l)).collect::<Vec<_>>())
}

fn kto_z(x: &Inputs) -> f64 {
    let (p, r) = x.kl.as_ref().unwrap();
    mean(&p.iter().zip(r).map(|(p, r)| p - r).collect::<Vec<_>>()).max(0.0)
}

fn kto_f64(x: &Inputs, beta: f64, dw: f64, uw: f64) -> f64 {
    let z = kto_z(x);
    let mut all = Vec::new();
    for i in 0..x.len() {
        all.push(dw * (1.0 - sigmoid(beta * ((x.pc[i] - x.rc[i]) - z))));
    }
    for i in 0..x.len() {
        all.push(uw * (1.0 - sigmoid(beta * (z - (x.pr[i] - x.rr[i])))));
    }
    mean(&all)
}

/// `|got - expected| <= rel * (1 + |expected|)`.
fn close(got: f64, expected: f64, rel: f64) -> bool {
    (got - expected).abs() <= rel * (1.0 + expected.abs())
}

fn assert_rel(got: f64, expected: f64, what: &str) {
    assert!((got - expected).abs() <= 1e-10 * (1.0 + expected.abs()), "{what}: got {got}, expected {expected}");
}

/// An objective with the per-pair implicit rewards it should report for chosen and rejected
/// (rejected empty: not checked).
type RewardCase<'a> = (Box<dyn PreferenceObjective>, &'a [f64], &'a [f64]);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_objective_matches_its_f64_formula(
        x in common::inputs_with_kl_strategy(),
        beta in 0.01..2.0f64,
        eps in 0.0..0.5f64,
        alpha in 0.0..0.5f64,
        gamma in 0.0..2.0f64,
        dw in 0.1..2.0f64,
        uw in 0.1..2.0f64,
    ) {
        assert_rel(loss_value(&Dpo::new(beta, eps).unwrap(), &x), dpo_f64(&x, beta, eps), "dpo");
        let eps_r = eps * 0.9; // rDPO needs eps < 0.5
        let robust = RobustDpo::new(beta, eps_r).unwrap();
        assert_rel(loss_value(&robust, &x), robust_dpo_f64(&x, beta, eps_r), "robust_dpo");
        assert_rel(loss_value(&Hinge::new(beta).unwrap(), &x), hinge_f64(&x, beta), "hinge");
        assert_rel(loss_value(&Ipo::new(beta).unwrap(), &x), ipo_f64(&x, beta), "ipo");
        assert_rel(loss_value(&RDpo::new(beta, alpha).unwrap(), &x), r_dpo_f64(&x, beta, alpha), "r_dpo");
        assert_rel(loss_value(&SimPo::new(beta, gamma).unwrap(), &x), simpo_f64(&x, beta, gamma), "simpo");
        assert_rel(loss_value(&Cpo::new(beta, alpha).unwrap(), &x), cpo_f64(&x, beta, alpha), "cpo");
        assert_rel(loss_value(&Orpo::new(beta).unwrap(), &x), orpo_f64(&x, beta), "orpo");
        assert_rel(loss_value(&Kto::new(beta, dw, uw).unwrap(), &x), kto_f64(&x, beta, dw, uw), "kto");
        assert_rel(loss_value(&Sft::new().unwrap(), &x), nll_f64(&x), "sft");
    }

    #[test]
    fn reward_metrics_are_each_objectives_implicit_reward(
        x in common::inputs_with_kl_strategy(),
        beta in 0.01..2.0f64,
    ) {
        let n = x.len();
        let s_c: Vec<f64> = (0..n).map(|i| beta * (x.pc[i] - x.rc[i])).collect();
        let s_r: Vec<f64> = (0..n).map(|i| beta * (x.pr[i] - x.rr[i])).collect();
        let h_c: Vec<f64> = (0..n).map(|i| beta * (x.pc[i] - x.rc[i]) / x.nc[i]).collect();
        let a_c: Vec<f64> = (0..n).map(|i| beta * x.pc[i] / x.nc[i]).collect();
        let a_r: Vec<f64> = (0..n).map(|i| beta * x.pr[i] / x.nr[i]).collect();
        let l_c: Vec<f64> = x.pc.iter().map(|p| beta * p).collect();
        let l_r: Vec<f64> = x.pr.iter().map(|p| beta * p).collect();
        let cases: Vec<RewardCase> = vec![
            (Box::new(Dpo::new(beta, 0.0).unwrap()), &s_c, &s_r),
            (Box::new(RobustDpo::new(beta, 0.2).unwrap()), &s_c, &s_r),
            (Box::new(Hinge::new(beta).unwrap()), &s_c, &s_r),
            (Box::new(RDpo::new(beta, 0.1).unwrap()), &s_c, &s_r),
            (Box::new(Kto::new(beta, 1.0, 1.0).unwrap()), &s_c, &s_r),
            (Box::new(Ipo::new(beta).unwrap()), &h_c, &[]),
            (Box::new(SimPo::new(beta, 1.0).unwrap()), &a_c, &a_r),
            (Box::new(Orpo::new(beta).unwrap()), &a_c, &a_r),
            (Box::new(Cpo::new(beta, 1.0).unwrap()), &l_c, &l_r),
        ];
        for (objective, chosen, rejected) in cases {
            let t = common::leaves(&x, tch::Kind::Double, false);
            let m = objective.compute(&common::batch_view(&t, x.kl.as_ref(), tch::Kind::Double)).unwrap().metrics;
            let name = objective.name().to_string();
            // Metrics are float32 batch means.
            prop_assert!(close(m.get("rewards/chosen").unwrap(), mean(chosen), 1e-4), "{}", name);
            if !rejected.is_empty() {
                let margin = mean(chosen) - mean(rejected);
                prop_assert!(close(m.get("rewards/margins").unwrap(), margin, 1e-4), "{}", name);
                let wins: Vec<f64> = chosen.iter().zip(rejected).map(|(c, r)| f64::from(u8::from(c > r))).collect();
                let accuracy = mean(&wins);
                prop_assert!((m.get("rewards/accuracies").unwrap() - accuracy).abs() < 1e-6, "{}", name);
            }
            prop_assert!((m.get("logps/chosen").unwrap() - mean(&x.pc)).abs() < 1e-4 * (1.0 + mean(&x.pc).abs()));
        }
        let t = common::leaves(&x, tch::Kind::Double, false);
        let view = common::batch_view(&t, x.kl.as_ref(), tch::Kind::Double);
        let kto = Kto::new(beta, 1.0, 1.0).unwrap().compute(&view).unwrap().metrics;
        prop_assert!((kto.get("kl").unwrap() - kto_z(&x)).abs() < 1e-9 * (1.0 + kto_z(&x)));
        let orpo = Orpo::new(beta).unwrap().compute(&view).unwrap().metrics;
        let log_odds = orpo_log_odds(&x);
        prop_assert!(close(orpo.get("log_odds_chosen").unwrap(), mean(&log_odds), 1e-5));
        let ratio = mean(&log_odds.iter().map(|l| log_sigmoid(*l)).collect::<Vec<_>>());
        prop_assert!((orpo.get("log_odds_ratio").unwrap() - ratio).abs() < 1e-5 * (1.0 + ratio.abs()));
        prop_assert!((orpo.get("nll").unwrap() - nll_f64(&x)).abs() < 1e-5 * (1.0 + nll_f64(&x)));
        let cpo = Cpo::new(beta, 1.0).unwrap().compute(&view).unwrap().metrics;
        prop_assert!((cpo.get("nll").unwrap() - nll_f64(&x)).abs() < 1e-5 * (1.0 + nll_f64(&x)));
    }
}

#[test]
fn parameters_are_validated() {
    assert!(RobustDpo::new(0.1, 0.5).is_err());
    assert!(RobustDpo::new(0.1, -0.1).is_err());
    assert!(RobustDpo::new(0.0, 0.1).is_err());
    assert!(RobustDpo::new(0.1, 0.49).is_ok());
    assert!(Hinge::new(-1.0).is_err());
    assert!(Ipo::new(f64::NAN).is_err());
    assert!(RDpo::new(0.1, -0.01).is_err());
    assert!(SimPo::new(2.0, -1.0).is_err());
    assert!(SimPo::new(f64::INFINITY, 1.0).is_err());
    assert!(Cpo::new(0.1, -1.0).is_err());
    assert!(Orpo::new(-0.1).is_err());
    assert!(Kto::new(0.1, -1.0, 1.0).is_err());
    assert!(Kto::new(0.1, 1.0, f64::NAN).is_err());
    assert!(Kto::new(0.0, 1.0, 1.0).is_err());
}

#[test]
fn needs_and_names() {
    use align_losses::Need::{KlLogps, PolicyLogps, ReferenceLogps};
    let cases: Vec<(Box<dyn PreferenceObjective>, &str, Vec<align_losses::Need>)> = vec![
        (Box::new(RobustDpo::new(0.1, 0.1).unwrap()), "robust_dpo", vec![PolicyLogps, ReferenceLogps]),
        (Box::new(Hinge::new(0.1).unwrap()), "hinge", vec![PolicyLogps, ReferenceLogps]),
        (Box::new(Ipo::new(0.1).unwrap()), "ipo", vec![PolicyLogps, ReferenceLogps]),
        (Box::new(RDpo::new(0.1, 0.01).unwrap()), "r_dpo", vec![PolicyLogps, ReferenceLogps]),
        (Box::new(SimPo::new(2.0, 1.0).unwrap()), "simpo", vec![PolicyLogps]),
        (Box::new(Cpo::new(0.1, 1.0).unwrap()), "cpo", vec![PolicyLogps]),
        (Box::new(Orpo::new(0.1).unwrap()), "orpo", vec![PolicyLogps]),
        (Box::new(Kto::new(0.1, 1.0, 1.0).unwrap()), "kto", vec![PolicyLogps, ReferenceLogps, KlLogps]),
        (Box::new(Sft::new().unwrap()), "sft", vec![PolicyLogps]),
    ];
    for (objective, name, needs) in cases {
        assert_eq!(objective.name(), name);
        assert_eq!(objective.needs(), needs, "{name}");
    }
    assert_eq!(SimPo::new(2.0, 1.0).unwrap().named("simpo_b").name(), "simpo_b");
}

#[test]
fn reference_free_objectives_run_without_a_reference() {
    let x = torchtune_inputs();
    let t = common::leaves(&x, tch::Kind::Float, false);
    let policy = align_losses::PairLogps::from_tensors(
        t[0].shallow_clone(),
        t[4].shallow_clone(),
        t[1].shallow_clone(),
        t[5].shallow_clone(),
    )
    .unwrap();
    let view = align_losses::BatchView::from_pairs(policy, None);
    for objective in [
        Box::new(SimPo::new(2.0, 1.0).unwrap()) as Box<dyn PreferenceObjective>,
        Box::new(Cpo::new(0.1, 1.0).unwrap()),
        Box::new(Orpo::new(0.1).unwrap()),
        Box::new(Sft::new().unwrap()),
    ] {
        assert!(objective.compute(&view).is_ok(), "{}", objective.name());
    }
    for objective in [
        Box::new(RobustDpo::new(0.1, 0.1).unwrap()) as Box<dyn PreferenceObjective>,
        Box::new(Hinge::new(0.1).unwrap()),
        Box::new(Ipo::new(0.1).unwrap()),
        Box::new(RDpo::new(0.1, 0.01).unwrap()),
        Box::new(Kto::new(0.1, 1.0, 1.0).unwrap()),
    ] {
        let err = objective.compute(&view).unwrap_err();
        assert!(matches!(err, align_losses::LossError::MissingInput { .. }), "{}: {err}", objective.name());
    }
}

#[test]
fn kto_without_kl_pairs_is_a_missing_input() {
    let x = torchtune_inputs();
    let t = common::leaves(&x, tch::Kind::Float, false);
    let view = common::batch_view(&t, None, tch::Kind::Float);
    let err = Kto::new(0.1, 1.0, 1.0).unwrap().compute(&view).unwrap_err();
    assert!(matches!(err, align_losses::LossError::MissingInput { ref term, .. } if term == "kto"), "{err}");
    let empty = (vec![], vec![]);
    let view = common::batch_view(&t, Some(&empty), tch::Kind::Float);
    assert!(matches!(Kto::new(0.1, 1.0, 1.0).unwrap().compute(&view), Err(align_losses::LossError::Shape { .. })));
    let ragged = (vec![-1.0, -2.0], vec![-1.0]);
    let view = common::batch_view(&t, Some(&ragged), tch::Kind::Float);
    assert!(matches!(Kto::new(0.1, 1.0, 1.0).unwrap().compute(&view), Err(align_losses::LossError::Shape { .. })));
}
