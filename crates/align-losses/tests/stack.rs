//! `ObjectiveStack`: weighted sums, metric naming, needs and errors.

mod common;

use align_losses::{BatchView, Cpo, Dpo, Kto, LossError, Need, ObjectiveStack, Orpo, PreferenceObjective, Sft, SimPo};
use common::{loss_value, Inputs};
use tch::Kind;

fn inputs() -> Inputs {
    Inputs {
        pc: vec![-4.0, -12.5, -7.25],
        pr: vec![-6.0, -11.0, -9.5],
        rc: vec![-4.5, -12.0, -8.0],
        rr: vec![-5.0, -10.0, -9.0],
        nc: vec![3.0, 9.0, 5.0],
        nr: vec![4.0, 7.0, 6.0],
        kl: Some((vec![-8.0, -9.0], vec![-8.5, -9.25])),
    }
}

fn view(x: &Inputs) -> BatchView {
    let t = common::leaves(x, Kind::Double, false);
    common::batch_view(&t, x.kl.as_ref(), Kind::Double)
}

#[test]
fn loss_is_the_weighted_sum_and_metrics_are_unweighted() {
    let x = inputs();
    let stack = ObjectiveStack::new()
        .with(1.0, Dpo::new(0.1, 0.0).unwrap())
        .unwrap()
        .with(0.5, Sft::new().unwrap())
        .unwrap()
        .with(-0.25, SimPo::new(2.0, 1.0).unwrap())
        .unwrap();
    let dpo = loss_value(&Dpo::new(0.1, 0.0).unwrap(), &x);
    let sft = loss_value(&Sft::new().unwrap(), &x);
    let simpo = loss_value(&SimPo::new(2.0, 1.0).unwrap(), &x);
    let out = stack.compute(&view(&x)).unwrap();
    let expected = dpo + 0.5 * sft - 0.25 * simpo;
    assert!((out.loss.double_value(&[]) - expected).abs() < 1e-12, "{} vs {expected}", out.loss.double_value(&[]));
    assert!((out.metrics.get("loss/dpo").unwrap() - dpo).abs() < 1e-12);
    assert!((out.metrics.get("loss/sft").unwrap() - sft).abs() < 1e-12);
    assert!((out.metrics.get("loss/simpo").unwrap() - simpo).abs() < 1e-12);
    assert_eq!(stack.terms().len(), 3);
    assert_eq!(stack.name(), "stack");
}

#[test]
fn colliding_metric_names_are_prefixed_with_the_term_name() {
    let x = inputs();
    let stack = ObjectiveStack::new()
        .with(1.0, Dpo::new(0.1, 0.0).unwrap())
        .unwrap()
        .with(1.0, Cpo::new(0.2, 1.0).unwrap())
        .unwrap()
        .with(1.0, Orpo::new(0.1).unwrap())
        .unwrap();
    let out = stack.compute(&view(&x)).unwrap();
    let dpo = Dpo::new(0.1, 0.0).unwrap().compute(&view(&x)).unwrap().metrics;
    let cpo = Cpo::new(0.2, 1.0).unwrap().compute(&view(&x)).unwrap().metrics;
    let orpo = Orpo::new(0.1).unwrap().compute(&view(&x)).unwrap().metrics;
    // The first term keeps the plain names; later ones get `<name>/` where a name repeats.
    assert_eq!(out.metrics.get("rewards/chosen"), dpo.get("rewards/chosen"));
    assert_eq!(out.metrics.get("cpo/rewards/chosen"), cpo.get("rewards/chosen"));
    assert_eq!(out.metrics.get("orpo/rewards/chosen"), orpo.get("rewards/chosen"));
    assert_ne!(dpo.get("rewards/chosen"), cpo.get("rewards/chosen"));
    // `nll` is first reported by CPO, then again by ORPO.
    assert_eq!(out.metrics.get("nll"), cpo.get("nll"));
    assert_eq!(out.metrics.get("orpo/nll"), orpo.get("nll"));
    assert_eq!(out.metrics.get("log_odds_ratio"), orpo.get("log_odds_ratio"));
    // Every name appears once.
    let mut names: Vec<&str> = out.metrics.iter().map(|(n, _)| n).collect();
    let total = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), total);
}

#[test]
fn duplicate_names_are_rejected_and_renamed_terms_accepted() {
    let stack = ObjectiveStack::new().with(1.0, Dpo::new(0.1, 0.0).unwrap()).unwrap();
    let err = stack.with(1.0, Dpo::new(0.2, 0.0).unwrap()).err().unwrap();
    assert!(matches!(err, LossError::DuplicateName(ref n) if n == "dpo"), "{err}");
    let stack = ObjectiveStack::new()
        .with(1.0, Dpo::new(0.1, 0.0).unwrap())
        .unwrap()
        .with(1.0, Dpo::new(0.2, 0.1).unwrap().named("cdpo"))
        .unwrap();
    let out = stack.compute(&view(&inputs())).unwrap();
    assert!(out.metrics.get("loss/cdpo").is_some() && out.metrics.get("loss/dpo").is_some());
    assert!(ObjectiveStack::new().with(f64::NAN, Sft::new().unwrap()).is_err());
}

#[test]
fn needs_are_deduplicated() {
    let stack = ObjectiveStack::new()
        .with(1.0, Dpo::new(0.1, 0.0).unwrap())
        .unwrap()
        .with(1.0, Kto::new(0.1, 1.0, 1.0).unwrap())
        .unwrap()
        .with(1.0, Sft::new().unwrap())
        .unwrap();
    assert_eq!(stack.needs(), vec![Need::PolicyLogps, Need::ReferenceLogps, Need::KlLogps]);
}

#[test]
fn a_missing_input_names_the_term() {
    let mut x = inputs();
    x.kl = None;
    let stack = ObjectiveStack::new()
        .with(1.0, Dpo::new(0.1, 0.0).unwrap())
        .unwrap()
        .with(1.0, Kto::new(0.1, 1.0, 1.0).unwrap().named("kto_reg"))
        .unwrap();
    let err = stack.compute(&view(&x)).unwrap_err();
    assert!(matches!(err, LossError::MissingInput { ref term, .. } if term == "kto_reg"), "{err}");
    let err = ObjectiveStack::new().compute(&view(&x)).unwrap_err();
    assert!(matches!(err, LossError::MissingInput { .. }), "{err}");
    let err = ObjectiveStack::new().with(1.0, Sft::new().unwrap()).unwrap().compute(&BatchView::default()).unwrap_err();
    assert!(matches!(err, LossError::MissingInput { ref term, .. } if term == "sft"), "{err}");
}

#[test]
fn gradient_of_the_stack_is_the_weighted_sum_of_gradients() {
    let x = inputs();
    let stack =
        ObjectiveStack::new().with(2.0, Dpo::new(0.1, 0.0).unwrap()).unwrap().with(0.5, Sft::new().unwrap()).unwrap();
    let (_, g_stack) = common::loss_and_gradient(&stack, &x, Kind::Double);
    let (_, g_dpo) = common::loss_and_gradient(&Dpo::new(0.1, 0.0).unwrap(), &x, Kind::Double);
    let (_, g_sft) = common::loss_and_gradient(&Sft::new().unwrap(), &x, Kind::Double);
    let expected: [Vec<f64>; 6] =
        std::array::from_fn(|c| g_dpo[c].iter().zip(&g_sft[c]).map(|(a, b)| 2.0 * a + 0.5 * b).collect());
    common::assert_gradients_close(&g_stack, &expected, 1e-12, "stack");
}
