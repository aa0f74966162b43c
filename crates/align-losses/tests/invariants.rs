//! Properties every implementation must have (methods.md §3): values at policy = reference,
//! symmetries, length-normalisation invariances, and finite losses and gradients at extreme
//! log-probs in f32 and f64.
// Index loops mirror the formulas' subscripts (pair i), which reads closer to the math.
#![allow(clippy::needless_range_loop)]

mod common;

use align_losses::{Cpo, Dpo, Hinge, Ipo, Kto, Orpo, PreferenceObjective, RDpo, RobustDpo, Sft, SimPo};
use common::{loss_and_gradient, loss_value, Inputs};
use proptest::prelude::*;
use std::f64::consts::LN_2;
use tch::Kind;

/// `x` with the reference equal to the policy (and the KL pairs' too, if any).
fn policy_as_reference(mut x: Inputs) -> Inputs {
    x.rc = x.pc.clone();
    x.rr = x.pr.clone();
    if let Some((p, _)) = &x.kl {
        x.kl = Some((p.clone(), p.clone()));
    }
    x
}

fn every_objective() -> Vec<Box<dyn PreferenceObjective>> {
    vec![
        Box::new(Dpo::new(0.1, 0.0).unwrap()),
        Box::new(Dpo::new(0.1, 0.3).unwrap().named("cdpo")),
        Box::new(RobustDpo::new(0.1, 0.1).unwrap()),
        Box::new(Hinge::new(0.1).unwrap()),
        Box::new(Ipo::new(0.1).unwrap()),
        Box::new(RDpo::new(0.1, 0.01).unwrap()),
        Box::new(SimPo::new(2.0, 1.0).unwrap()),
        Box::new(Cpo::new(0.1, 1.0).unwrap()),
        Box::new(Orpo::new(0.1).unwrap()),
        Box::new(Kto::new(0.1, 1.0, 1.0).unwrap()),
        Box::new(Sft::new().unwrap()),
    ]
}

/// All 16 sign patterns of (pc, pr, rc, rr) in {-600, +600}, counts 1 and 13 alternating,
/// KL pairs at +-600 too.
fn extreme_inputs() -> Inputs {
    let sign = |bits: usize, k: usize| if bits >> k & 1 == 1 { 600.0 } else { -600.0 };
    let n = 16;
    Inputs {
        pc: (0..n).map(|b| sign(b, 0)).collect(),
        pr: (0..n).map(|b| sign(b, 1)).collect(),
        rc: (0..n).map(|b| sign(b, 2)).collect(),
        rr: (0..n).map(|b| sign(b, 3)).collect(),
        nc: (0..n).map(|b| if b % 2 == 0 { 1.0 } else { 13.0 }).collect(),
        nr: (0..n).map(|b| if b % 3 == 0 { 13.0 } else { 1.0 }).collect(),
        kl: Some((vec![600.0, -600.0, 600.0], vec![-600.0, 600.0, -600.0])),
    }
}

#[test]
fn losses_and_gradients_are_finite_at_extreme_log_probs() {
    let all = extreme_inputs();
    let single_pairs: Vec<Inputs> = (0..all.len()).map(|i| all.pair(i)).collect();
    for kind in [Kind::Float, Kind::Double] {
        for objective in every_objective() {
            for x in std::iter::once(&all).chain(&single_pairs) {
                let (loss, grads) = loss_and_gradient(objective.as_ref(), x, kind);
                assert!(loss.is_finite(), "{} {kind:?}: loss {loss} on {x:?}", objective.name());
                for (g, name) in grads.iter().zip(common::INPUT_NAMES) {
                    assert!(
                        g.iter().all(|v| v.is_finite()),
                        "{} {kind:?}: d/d{name} = {g:?} on {x:?}",
                        objective.name()
                    );
                }
            }
        }
    }
}

#[test]
fn losses_are_float32_for_half_precision_inputs() {
    let x = extreme_inputs();
    for objective in every_objective() {
        let t = common::leaves(&x, Kind::BFloat16, false);
        let out = objective.compute(&common::batch_view(&t, x.kl.as_ref(), Kind::BFloat16)).unwrap();
        assert_eq!(out.loss.kind(), Kind::Float, "{}", objective.name());
        assert!(out.loss.double_value(&[]).is_finite());
    }
}

#[test]
fn orpo_is_finite_when_the_chosen_completion_is_certain() {
    // avg_logp = 0 exactly: the odds are infinite; the ceiling keeps loss and gradient finite.
    let x = Inputs {
        pc: vec![0.0, -1e-9],
        pr: vec![-3.0, 0.0],
        rc: vec![0.0; 2],
        rr: vec![0.0; 2],
        nc: vec![4.0, 2.0],
        nr: vec![5.0, 3.0],
        kl: None,
    };
    for kind in [Kind::Float, Kind::Double] {
        let (loss, grads) = loss_and_gradient(&Orpo::new(0.5).unwrap(), &x, kind);
        assert!(loss.is_finite(), "{kind:?}");
        assert!(grads.iter().flatten().all(|g| g.is_finite()), "{kind:?}: {grads:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn at_policy_equal_reference(x in common::inputs_with_kl_strategy(), beta in 0.01..2.0f64, eps in 0.0..0.5f64,
                                 dw in 0.1..2.0f64, uw in 0.1..2.0f64) {
        let x = policy_as_reference(x);
        prop_assert!((loss_value(&Dpo::new(beta, 0.0).unwrap(), &x) - LN_2).abs() < 1e-12);
        prop_assert!((loss_value(&Dpo::new(beta, eps).unwrap(), &x) - LN_2).abs() < 1e-12);
        prop_assert!((loss_value(&RobustDpo::new(beta, eps * 0.9).unwrap(), &x) - LN_2).abs() < 1e-12);
        prop_assert!((loss_value(&Hinge::new(beta).unwrap(), &x) - 1.0).abs() < 1e-12);
        let ipo = 1.0 / (4.0 * beta * beta);
        prop_assert!((loss_value(&Ipo::new(beta).unwrap(), &x) - ipo).abs() < 1e-12 * ipo);
        prop_assert!((loss_value(&Kto::new(beta, 1.0, 1.0).unwrap(), &x) - 0.5).abs() < 1e-12);
        prop_assert!((loss_value(&Kto::new(beta, dw, uw).unwrap(), &x) - (dw + uw) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn cdpo_at_half_smoothing_is_symmetric(x in common::inputs_strategy(), beta in 0.01..2.0f64) {
        let cdpo = Dpo::new(beta, 0.5).unwrap();
        let (a, b) = (loss_value(&cdpo, &x), loss_value(&cdpo, &x.swapped()));
        prop_assert!((a - b).abs() < 1e-12 * (1.0 + a.abs()), "{} vs {}", a, b);
        // ... and a real constraint: without smoothing the swap changes the loss.
        let dpo = Dpo::new(beta, 0.0).unwrap();
        let d: f64 = (0..x.len()).map(|i| (x.pc[i] - x.rc[i]) - (x.pr[i] - x.rr[i])).map(f64::abs).sum();
        if beta * d > 1e-3 {
            prop_assert!((loss_value(&dpo, &x) - loss_value(&dpo, &x.swapped())).abs() > 1e-9);
        }
    }

    #[test]
    fn r_dpo_with_equal_lengths_or_zero_alpha_is_dpo(
        x in common::inputs_strategy(),
        beta in 0.01..2.0f64,
        alpha in 0.0..0.5f64,
    ) {
        let dpo = loss_value(&Dpo::new(beta, 0.0).unwrap(), &x);
        prop_assert!((loss_value(&RDpo::new(beta, 0.0).unwrap(), &x) - dpo).abs() < 1e-12);
        let mut equal = x.clone();
        equal.nr = equal.nc.clone();
        let dpo_equal = loss_value(&Dpo::new(beta, 0.0).unwrap(), &equal);
        prop_assert!((loss_value(&RDpo::new(beta, alpha).unwrap(), &equal) - dpo_equal).abs() < 1e-12);
    }

    #[test]
    fn r_dpo_weakens_pairs_whose_chosen_completion_is_longer(x in common::inputs_strategy(), beta in 0.01..2.0f64,
                                                            alpha in 0.01..0.5f64, extra in 1.0..20.0f64) {
        // The paper's length term lowers the loss (and its pull) when the chosen completion is
        // the longer one, so the policy gains nothing by preferring length.
        let r_dpo = RDpo::new(beta, alpha).unwrap();
        let mut longer = x.clone();
        longer.nc.iter_mut().for_each(|n| *n += extra);
        prop_assert!(loss_value(&r_dpo, &longer) < loss_value(&r_dpo, &x));
    }

    #[test]
    fn length_normalised_objectives_ignore_scaling_sum_and_count_together(
        x in common::inputs_strategy(),
        k_chosen in prop::collection::vec(0.2..5.0f64, 4),
        k_rejected in prop::collection::vec(0.2..5.0f64, 4),
    ) {
        let mut scaled = x.clone();
        for i in 0..x.len() {
            scaled.pc[i] *= k_chosen[i];
            scaled.rc[i] *= k_chosen[i];
            scaled.nc[i] *= k_chosen[i];
            scaled.pr[i] *= k_rejected[i];
            scaled.rr[i] *= k_rejected[i];
            scaled.nr[i] *= k_rejected[i];
        }
        let normalised: [Box<dyn PreferenceObjective>; 2] =
            [Box::new(Ipo::new(0.1).unwrap()), Box::new(SimPo::new(2.0, 1.0).unwrap())];
        for objective in normalised {
            let (a, b) = (loss_value(objective.as_ref(), &x), loss_value(objective.as_ref(), &scaled));
            prop_assert!((a - b).abs() < 1e-9 * (1.0 + a.abs()), "{}: {} vs {}", objective.name(), a, b);
        }
        // ORPO's NLL is a token mean over the batch: scale all chosen sequences by one factor.
        let mut orpo_scaled = x.clone();
        for i in 0..x.len() {
            orpo_scaled.pc[i] *= k_chosen[0];
            orpo_scaled.nc[i] *= k_chosen[0];
            orpo_scaled.pr[i] *= k_rejected[i];
            orpo_scaled.nr[i] *= k_rejected[i];
        }
        let orpo = Orpo::new(0.5).unwrap();
        let (a, b) = (loss_value(&orpo, &x), loss_value(&orpo, &orpo_scaled));
        prop_assert!((a - b).abs() < 1e-9 * (1.0 + a.abs()), "orpo: {} vs {}", a, b);
        // DPO uses sums: scaling does change it (unless the margin is unchanged).
        let dpo = Dpo::new(0.1, 0.0).unwrap();
        let changed = (0..x.len()).any(|i| {
            let d = (x.pc[i] - x.rc[i]) - (x.pr[i] - x.rr[i]);
            let d2 = (scaled.pc[i] - scaled.rc[i]) - (scaled.pr[i] - scaled.rr[i]);
            (d - d2).abs() > 1e-3
        });
        if changed && x.len() == 1 {
            prop_assert!((loss_value(&dpo, &x) - loss_value(&dpo, &scaled)).abs() > 1e-12);
        }
    }

    #[test]
    fn sft_is_minus_sum_over_count(x in common::inputs_strategy()) {
        let expected = -x.pc.iter().sum::<f64>() / x.nc.iter().sum::<f64>();
        prop_assert!((loss_value(&Sft::new().unwrap(), &x) - expected).abs() < 1e-12 * (1.0 + expected.abs()));
        // Only the chosen half is read.
        let mut other = x.clone();
        other.pr.iter_mut().for_each(|p| *p -= 7.0);
        other.nr.iter_mut().for_each(|n| *n += 3.0);
        prop_assert_eq!(loss_value(&Sft::new().unwrap(), &x), loss_value(&Sft::new().unwrap(), &other));
    }
}
