//! The `Mpo` objective term: every variant's value and metrics against f64 formulas, the
//! retain term's weight, `needs()`, stacking, and errors.

mod fixtures;

use align_losses::{DominantStates, Dpo, Layer, LossError, Need, ObjectiveStack, PreferenceObjective};
use fixtures::{batch, case, close, gap_f64, l1_f64, target_f64, values, Case};
use mpo_loss::{reward_gap, Mpo, MpoConfig, MpoError, RetainForm, Variant};
use proptest::prelude::*;
use tch::{Kind, Tensor};

fn mpo(config: MpoConfig) -> Mpo {
    Mpo::new(config).unwrap()
}

fn variants(c: f64) -> [Variant; 4] {
    [Variant::Paper, Variant::ConstantTarget(c), Variant::PolicyDominant, Variant::NoLengthNorm]
}

/// Dominant-language states for `case`: policy = reference + `shift` at every real position
/// of a right-padded batch whose sequence `b` has `b + 1` real tokens out of `B + 1`.
fn with_states(case: &Case, shift: f64, layer: Layer) -> align_losses::BatchView {
    let (mut view, _) = batch(case, false);
    let b = case.policy.len() as i64;
    let (t, d) = (b + 1, 3);
    let reference = Tensor::arange(b * t * d, (Kind::Double, tch::Device::Cpu)).view([b, t, d]) / 7.0;
    let mask = Tensor::arange(t, (Kind::Int64, tch::Device::Cpu))
        .unsqueeze(0)
        .lt_tensor(&(Tensor::arange(b, (Kind::Int64, tch::Device::Cpu)) + 1).unsqueeze(1)); // [B, T]
    let policy = &reference + mask.unsqueeze(-1).to_kind(Kind::Double) * shift;
    view.dominant_states.insert(layer, DominantStates { policy, reference, attention_mask: mask });
    view
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Each variant's loss equals its f64 formula (eq. 5 with the variant's target and
    /// normalisation), and the per-language and dominant gap metrics equal f64 means.
    #[test]
    fn every_variant_matches_its_f64_formula(case in case(), c in -5.0f64..20.0) {
        for variant in variants(c) {
            let (view, _) = batch(&case, false);
            let config = MpoConfig { beta: case.beta, retain_weight: 0.0, variant, ..MpoConfig::default() };
            let out = mpo(config).compute(&view).unwrap();
            let expected = l1_f64(&case, variant);
            prop_assert!(close(out.loss.double_value(&[]), expected, 1e-10), "{variant}: {} vs {expected}", out.loss.double_value(&[]));
            prop_assert!(close(out.metrics.get("mpo/gap_loss").unwrap(), expected, 1e-10));
            prop_assert!(out.metrics.get("mpo/retain_loss").is_none());
            let ln = variant.length_normalised();
            for lang in fixtures::LANGUAGES {
                let gaps: Vec<f64> = (0..case.targets.len())
                    .filter(|&i| case.languages[i] == lang)
                    .map(|i| gap_f64(&case.targets[i], ln))
                    .collect();
                let metric = out.metrics.get(&format!("reward_gap/{lang}"));
                if gaps.is_empty() {
                    prop_assert!(metric.is_none());
                } else {
                    prop_assert!(close(metric.unwrap(), gaps.iter().sum::<f64>() / gaps.len() as f64, 1e-12));
                }
            }
            let dominant = out.metrics.get("reward_gap/dominant");
            match variant {
                Variant::ConstantTarget(_) => prop_assert!(dominant.is_none()),
                _ => {
                    let pairs = if variant == Variant::PolicyDominant { &case.policy } else { &case.reference };
                    let mean = pairs.iter().map(|p| gap_f64(p, ln)).sum::<f64>() / pairs.len() as f64;
                    prop_assert!(close(dominant.unwrap(), mean, 1e-12));
                }
            }
        }
    }

    /// The retain term adds `retain_weight * L2` at the configured layer: with policy states
    /// shifted by `s` at every real token of a D = 3 batch, the last-token form is `3 s^2`
    /// and the masked mean-pool form `s^2`.
    #[test]
    fn retain_term_is_weighted_and_read_at_its_layer(case in case(), shift in -2.0f64..2.0, weight in 0.01f64..3.0) {
        for (form, l2) in [(RetainForm::LastToken, 3.0 * shift * shift), (RetainForm::MeanPool, shift * shift)] {
            let layer = Layer::Index(2);
            let view = with_states(&case, shift, layer);
            let config = MpoConfig { beta: case.beta, retain: form, retain_layer: layer, retain_weight: weight, ..MpoConfig::default() };
            let out = mpo(config).compute(&view).unwrap();
            let expected = l1_f64(&case, Variant::Paper) + weight * l2;
            prop_assert!(close(out.loss.double_value(&[]), expected, 1e-10));
            prop_assert!(close(out.metrics.get("mpo/retain_loss").unwrap(), l2, 1e-10));
            let wrong_layer = MpoConfig { retain_layer: Layer::Last, ..config_of(&case, form, weight) };
            let err = mpo(wrong_layer).compute(&view).unwrap_err();
            prop_assert!(matches!(err, LossError::MissingInput { .. }), "{err}");
        }
    }

    /// `reward_gap` against f64, with and without length normalisation.
    #[test]
    fn reward_gap_matches_f64(case in case()) {
        let (view, _) = batch(&case, false);
        let pairs = &view.targets.as_ref().unwrap().policy;
        for ln in [true, false] {
            let got = values(&reward_gap(pairs, ln));
            let expected: Vec<f64> = case.targets.iter().map(|p| gap_f64(p, ln)).collect();
            prop_assert!(got.iter().zip(&expected).all(|(g, e)| close(*g, *e, 1e-12)));
        }
    }
}

fn config_of(case: &Case, retain: RetainForm, retain_weight: f64) -> MpoConfig {
    MpoConfig { beta: case.beta, retain, retain_weight, ..MpoConfig::default() }
}

/// A small fixed case for the deterministic tests.
fn small_case() -> Case {
    use fixtures::Seq;
    let s = |sum, count| Seq { sum, count };
    Case {
        reference: vec![(s(-2.0, 2.0), s(-9.0, 3.0)), (s(-4.0, 4.0), s(-4.0, 2.0))],
        policy: vec![(s(-3.0, 2.0), s(-6.0, 3.0)), (s(-5.0, 4.0), s(-5.0, 2.0))],
        targets: vec![(s(-6.0, 3.0), s(-8.0, 4.0)), (s(-1.0, 1.0), s(-10.0, 5.0)), (s(-3.0, 3.0), s(-3.0, 1.0))],
        records: vec![0, 1, 0],
        languages: vec!["zh".into(), "zh".into(), "sw".into()],
        beta: 1.5,
    }
}

#[test]
fn needs_declare_exactly_what_is_read() {
    let needs = |variant, retain_weight| {
        mpo(MpoConfig { variant, retain_weight, retain_layer: Layer::Index(7), ..MpoConfig::default() }).needs()
    };
    let states = Need::DominantStates { layer: Layer::Index(7) };
    assert_eq!(needs(Variant::Paper, 1.0), vec![Need::TargetPairLogps, Need::ReferenceLogps, states.clone()]);
    assert_eq!(needs(Variant::NoLengthNorm, 0.0), vec![Need::TargetPairLogps, Need::ReferenceLogps]);
    assert_eq!(needs(Variant::PolicyDominant, 0.0), vec![Need::TargetPairLogps, Need::PolicyLogps]);
    assert_eq!(needs(Variant::ConstantTarget(1.58), 0.5), vec![Need::TargetPairLogps, states]);

    // What is not declared is not read: a batch with only the declared inputs suffices.
    let case = small_case();
    for (variant, keep_policy, keep_reference) in [
        (Variant::Paper, false, true),
        (Variant::PolicyDominant, true, false),
        (Variant::ConstantTarget(1.0), false, false),
    ] {
        let (mut view, _) = batch(&case, false);
        if !keep_policy {
            view.policy = None;
        }
        if !keep_reference {
            view.reference = None;
        }
        let out =
            mpo(MpoConfig { variant, retain_weight: 0.0, beta: case.beta, ..MpoConfig::default() }).compute(&view);
        let expected = l1_f64(&case, variant);
        assert!(close(out.unwrap().loss.double_value(&[]), expected, 1e-12), "{variant}");
    }
}

#[test]
fn stacks_with_a_base_objective() {
    let case = small_case();
    let (view, _) = batch(&case, false);
    let stack = ObjectiveStack::new()
        .with(1.0, Dpo::new(0.1, 0.0).unwrap())
        .unwrap()
        .with(0.5, mpo(MpoConfig { beta: case.beta, retain_weight: 0.0, ..MpoConfig::default() }))
        .unwrap();
    assert_eq!(stack.needs(), vec![Need::PolicyLogps, Need::ReferenceLogps, Need::TargetPairLogps]);
    let out = stack.compute(&view).unwrap();
    let dpo = out.metrics.get("loss/dpo").unwrap();
    let l1 = l1_f64(&case, Variant::Paper);
    assert!(close(out.metrics.get("loss/mpo").unwrap(), l1, 1e-12));
    assert!(close(out.loss.double_value(&[]), dpo + 0.5 * l1, 1e-12));
}

#[test]
fn small_case_by_hand() {
    // RG^d = [-1 + 3, -1 + 2] = [2, 1]; RG^t = [-2 + 2, -1 + 2, -1 + 3] = [0, 1, 2].
    // beta = 1.5: residuals [0 - 2, 1.5 - 1, 3 - 2] = [-2, 0.5, 1]; L1 = (4 + 0.25 + 1) / 3.
    let case = small_case();
    let (view, _) = batch(&case, false);
    let out = mpo(MpoConfig { beta: 1.5, retain_weight: 0.0, ..MpoConfig::default() }).compute(&view).unwrap();
    assert!(close(out.loss.double_value(&[]), 5.25 / 3.0, 1e-12));
    assert_eq!(out.metrics.get("reward_gap/zh"), Some(0.5));
    assert_eq!(out.metrics.get("reward_gap/sw"), Some(2.0));
    assert_eq!(out.metrics.get("reward_gap/dominant"), Some(1.5));
    assert_eq!(target_f64(&case, Variant::Paper, 2), 2.0);
    // A strided (non-contiguous) `record` view reads the same records.
    let (mut strided, _) = batch(&case, false);
    strided.targets.as_mut().unwrap().record = Tensor::from_slice(&[0i64, 9, 1, 9, 0, 9]).slice(0, 0, 6, 2);
    let again = mpo(MpoConfig { beta: 1.5, retain_weight: 0.0, ..MpoConfig::default() }).compute(&strided).unwrap();
    assert_eq!(again.loss.double_value(&[]), out.loss.double_value(&[]));
    let named = mpo(MpoConfig { retain_weight: 0.0, ..MpoConfig::default() }).named("mpo_zh");
    assert!(named.compute(&view).unwrap().metrics.get("mpo_zh/gap_loss").is_some());
}

#[test]
fn float32_inputs_give_a_float32_loss() {
    let pairs = |c: &[f32], r: &[f32]| {
        let n = c.len() as i64;
        align_losses::PairLogps::from_tensors(
            Tensor::from_slice(c),
            Tensor::full([n], 2.0, tch::kind::FLOAT_CPU),
            Tensor::from_slice(r),
            Tensor::full([n], 2.0, tch::kind::FLOAT_CPU),
        )
        .unwrap()
    };
    let view = align_losses::BatchView {
        reference: Some(pairs(&[-1.0], &[-5.0])),
        targets: Some(align_losses::TargetPairs {
            policy: pairs(&[-3.0], &[-3.0]),
            record: Tensor::from_slice(&[0i64]),
            languages: vec!["sw".into()],
        }),
        ..Default::default()
    };
    let out = mpo(MpoConfig { retain_weight: 0.0, ..MpoConfig::default() }).compute(&view).unwrap();
    assert_eq!(out.loss.kind(), Kind::Float);
    assert_eq!(out.loss.double_value(&[]), 4.0); // (0 - 2)^2
}

/// The `MpoError` inside a `LossError::Term`.
fn term_source(err: &LossError) -> Option<&MpoError> {
    match err {
        LossError::Term { source, .. } => source.downcast_ref::<MpoError>(),
        _ => None,
    }
}

#[test]
fn bad_batches_are_errors() {
    let case = small_case();
    let term = mpo(MpoConfig { beta: case.beta, retain_weight: 0.0, ..MpoConfig::default() });
    let compute = |edit: &dyn Fn(&mut align_losses::BatchView)| {
        let (mut view, _) = batch(&case, false);
        edit(&mut view);
        term.compute(&view).unwrap_err()
    };

    let err = compute(&|v| v.targets = None);
    assert!(matches!(err, LossError::MissingInput { ref term, .. } if term == "mpo"), "{err}");
    let err = compute(&|v| v.reference = None);
    assert!(matches!(err, LossError::MissingInput { .. }), "{err}");

    let err = compute(&|v| v.targets.as_mut().unwrap().record = Tensor::from_slice(&[0i64, 2, 0]));
    assert!(matches!(term_source(&err), Some(MpoError::RecordOutOfRange { pair: 1, record: 2, records: 2 })), "{err}");
    let err = compute(&|v| v.targets.as_mut().unwrap().record = Tensor::from_slice(&[0i64, 0, -1]));
    assert!(matches!(term_source(&err), Some(MpoError::RecordOutOfRange { pair: 2, .. })), "{err}");
    let err = compute(&|v| v.targets.as_mut().unwrap().record = Tensor::from_slice(&[0i64, 1]));
    assert!(matches!(err, LossError::Shape { .. }), "{err}");
    let err = compute(&|v| v.targets.as_mut().unwrap().record = Tensor::from_slice(&[0.0f32, 1.0, 0.0]));
    assert!(matches!(err, LossError::Kind { .. }), "{err}");
    let err = compute(&|v| {
        v.targets.as_mut().unwrap().languages.pop();
    });
    assert!(matches!(term_source(&err), Some(MpoError::LanguageCount { languages: 2, pairs: 3 })), "{err}");
    let err = compute(&|v| {
        let empty = || Tensor::zeros([0], tch::kind::DOUBLE_CPU);
        v.targets = Some(align_losses::TargetPairs {
            policy: align_losses::PairLogps::from_tensors(empty(), empty(), empty(), empty()).unwrap(),
            record: Tensor::zeros([0], tch::kind::INT64_CPU),
            languages: vec![],
        });
    });
    assert!(matches!(term_source(&err), Some(MpoError::NoTargetPairs)), "{err}");

    let policy_dominant =
        mpo(MpoConfig { variant: Variant::PolicyDominant, retain_weight: 0.0, ..MpoConfig::default() });
    let (mut view, _) = batch(&case, false);
    view.policy = None;
    assert!(matches!(policy_dominant.compute(&view), Err(LossError::MissingInput { .. })));
    let with_retain = mpo(MpoConfig::default());
    let (view, _) = batch(&case, false);
    assert!(matches!(with_retain.compute(&view), Err(LossError::MissingInput { .. })));
}

#[test]
fn bad_settings_are_errors() {
    let invalid = |config: MpoConfig, name: &str| matches!(Mpo::new(config), Err(LossError::InvalidParameter { ref parameter, .. }) if parameter == name);
    for beta in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(invalid(MpoConfig { beta, ..MpoConfig::default() }, "beta"), "beta = {beta}");
    }
    for retain_weight in [-0.1, f64::NAN] {
        assert!(invalid(MpoConfig { retain_weight, ..MpoConfig::default() }, "retain_weight"));
    }
    assert!(invalid(MpoConfig { variant: Variant::ConstantTarget(f64::NAN), ..MpoConfig::default() }, "target_gap"));
    assert!(Mpo::new(MpoConfig { retain_weight: 0.0, beta: 1e-3, ..MpoConfig::default() }).is_ok());
}
