//! The `Mlc` and `PairwiseCosine` terms through align-losses' trait and stack.

mod common;

use align_losses::{
    BatchView, Dpo, Layer, LossError, Need, ObjectiveStack, PairLogps, PreferenceObjective, VariantStates,
};
use common::*;
use mlc_loss::{collinearity_ratio, mean_pairwise_cosine, mlc_loss, Mlc, PairwiseCosine, ProjectionHead};
use tch::{nn, Device, Kind, Tensor};

fn batch_with_variants(layer: Layer, states: Tensor, mask: Option<Tensor>) -> BatchView {
    let mut batch = BatchView::default();
    batch.prompt_variants.insert(layer, VariantStates { states, mask });
    batch
}

#[test]
fn mlc_term_reports_the_loss_and_metrics_of_the_functions() {
    let values = random_values(3 * 4 * 6, 90);
    let states = tensor(&values, [3, 4, 6], Kind::Float);
    let mask = mask_tensor(&[true, true, true, true, true, false, true, false, true, false, false, false], 3, 4);
    let term = Mlc::new(Layer::Index(14), 0.8).unwrap();
    assert_eq!(term.name(), "mlc");
    assert_eq!(term.needs(), vec![Need::PromptVariantStates { layer: Layer::Index(14) }]);
    assert!(term.trainable_variables().is_empty());
    let out = term.compute(&batch_with_variants(Layer::Index(14), states.copy(), Some(mask.copy()))).unwrap();
    let expected = reference_mlc(
        &values,
        [3, 4, 6],
        Some(&[true, true, true, true, true, false, true, false, true, false, false, false]),
        0.8,
    );
    assert!((out.loss.double_value(&[]) - expected).abs() < 1e-5);
    let m = &out.metrics;
    assert_eq!(m.get("mlc/groups"), Some(2.0));
    assert_eq!(m.get("mlc/groups_skipped"), Some(1.0));
    let ratio = collinearity_ratio(&states, Some(&mask)).unwrap();
    let cosine = mean_pairwise_cosine(&states, Some(&mask)).unwrap();
    let mean2 = |t: &Tensor| (t.double_value(&[0]) + t.double_value(&[1])) / 2.0;
    assert!((m.get("mlc/collinearity").unwrap() - mean2(&ratio)).abs() < 1e-6);
    assert!((m.get("mlc/pairwise_cosine").unwrap() - mean2(&cosine)).abs() < 1e-6);
}

#[test]
fn dpo_plus_weighted_mlc_through_a_stack() {
    let pairs = |c: &[f32], r: &[f32]| {
        PairLogps::from_tensors(
            Tensor::from_slice(c),
            Tensor::from_slice(&[3f32, 4.]),
            Tensor::from_slice(r),
            Tensor::from_slice(&[5f32, 2.]),
        )
        .unwrap()
    };
    let mut batch = BatchView::from_pairs(pairs(&[-5., -7.], &[-9., -3.]), Some(pairs(&[-6., -7.], &[-8., -3.])));
    let states = Tensor::randn([2, 3, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    batch.prompt_variants.insert(Layer::Index(2), VariantStates { states: states.shallow_clone(), mask: None });
    let stack = ObjectiveStack::new()
        .with(1.0, Dpo::new(0.1, 0.0).unwrap())
        .unwrap()
        .with(0.5, Mlc::new(Layer::Index(2), 1.0).unwrap())
        .unwrap();
    assert!(stack.needs().contains(&Need::PromptVariantStates { layer: Layer::Index(2) }));
    let out = stack.compute(&batch).unwrap();
    let dpo = out.metrics.get("loss/dpo").unwrap();
    let mlc = out.metrics.get("loss/mlc").unwrap();
    assert!((mlc - mlc_loss(&states, None, 1.0).unwrap().double_value(&[])).abs() < 1e-6);
    assert!((out.loss.double_value(&[]) - (dpo + 0.5 * mlc)).abs() < 1e-5);
    assert!(out.metrics.get("mlc/collinearity").is_some());
    out.loss.backward();
    assert!(states.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn head_variables_live_in_the_callers_var_store_and_are_trained() {
    let vs = nn::VarStore::new(Device::Cpu);
    let head = ProjectionHead::new(&(vs.root() / "mlc_head"), 8, 4).unwrap();
    let term = Mlc::new(Layer::Last, 1.0).unwrap().with_head(head).named("mlc_last");
    assert_eq!(term.name(), "mlc_last");
    let vars = term.trainable_variables();
    assert_eq!(vars.len(), 2);
    assert_eq!(vs.variables().len(), 2);
    assert!(vs.variables().contains_key("mlc_head.weight") && vs.variables().contains_key("mlc_head.bias"));
    let states = Tensor::randn([4, 3, 8], (Kind::Float, Device::Cpu));
    let out = term.compute(&batch_with_variants(Layer::Last, states, None)).unwrap();
    assert!(out.metrics.get("mlc_last/collinearity").is_some());
    out.loss.backward();
    assert!(vars[0].grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn identity_sized_head_starts_as_the_identity_and_others_are_semi_orthogonal() {
    let vs = nn::VarStore::new(Device::Cpu);
    let states = Tensor::randn([2, 3, 6], (Kind::Float, Device::Cpu));
    let same = ProjectionHead::new(&(vs.root() / "same"), 6, 6).unwrap();
    assert!((same.forward(&states).unwrap() - &states).abs().max().double_value(&[]) < 1e-7);
    for (d_in, d_out) in [(6, 3), (6, 10)] {
        let head = ProjectionHead::new(&(vs.root() / format!("h{d_out}")), d_in, d_out).unwrap();
        let w = &head.variables()[0]; // [d_out, d_in]
        let gram = if d_out < d_in { w.matmul(&w.tr()) } else { w.tr().matmul(w) };
        let eye = Tensor::eye(d_in.min(d_out), (Kind::Float, Device::Cpu));
        assert!((gram - eye).abs().max().double_value(&[]) < 1e-5, "{d_in} -> {d_out}");
    }
}

#[test]
fn bf16_head_and_states_compute_in_f32() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let head = ProjectionHead::new(&(vs.root() / "head"), 8, 8).unwrap();
    vs.bfloat16();
    let states = Tensor::randn([2, 3, 8], (Kind::Float, Device::Cpu));
    let term = Mlc::new(Layer::Index(1), 1.0).unwrap().with_head(head);
    let out = term.compute(&batch_with_variants(Layer::Index(1), states.to_kind(Kind::BFloat16), None)).unwrap();
    assert_eq!(out.loss.kind(), Kind::Float);
    let f32_loss = mlc_loss(&states, None, 1.0).unwrap().double_value(&[]);
    assert!((out.loss.double_value(&[]) - f32_loss).abs() < 2e-2 * f32_loss);
    out.loss.backward();
    assert!(term.trainable_variables()[0].grad().defined());
}

#[test]
fn pairwise_cosine_term() {
    let states = Tensor::randn([3, 4, 5], (Kind::Float, Device::Cpu));
    let term = PairwiseCosine::new(Layer::Index(3));
    assert_eq!(term.name(), "cosine");
    let out = term.compute(&batch_with_variants(Layer::Index(3), states.copy(), None)).unwrap();
    let cos = mean_pairwise_cosine(&states, None).unwrap().mean(Kind::Float).double_value(&[]);
    assert!((out.loss.double_value(&[]) - (1.0 - cos)).abs() < 1e-6);
    assert!((out.metrics.get("cosine/pairwise_cosine").unwrap() - cos).abs() < 1e-6);
    assert_eq!(out.metrics.get("cosine/groups"), Some(3.0));
}

#[test]
fn terms_report_errors_with_their_name() {
    assert!(matches!(Mlc::new(Layer::Last, 0.0), Err(LossError::InvalidParameter { .. })));
    assert!(matches!(Mlc::new(Layer::Last, f64::NAN), Err(LossError::InvalidParameter { .. })));
    let term = Mlc::new(Layer::Index(5), 1.0).unwrap().named("mlc5");
    match term.compute(&BatchView::default()) {
        Err(LossError::MissingInput { term, .. }) => assert_eq!(term, "mlc5"),
        other => panic!("expected MissingInput, got {other:?}"),
    }
    let bad = batch_with_variants(Layer::Index(5), Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)), None);
    assert!(matches!(term.compute(&bad), Err(LossError::Shape { .. })));
    let bad_mask = batch_with_variants(
        Layer::Index(5),
        Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu)),
        Some(Tensor::ones([2, 4], (Kind::Bool, Device::Cpu))),
    );
    assert!(matches!(term.compute(&bad_mask), Err(LossError::Shape { .. })));
    let vs = nn::VarStore::new(Device::Cpu);
    let head = ProjectionHead::new(&vs.root(), 16, 4).unwrap();
    let with_head = Mlc::new(Layer::Index(5), 1.0).unwrap().with_head(head);
    let wrong_width = batch_with_variants(Layer::Index(5), Tensor::zeros([2, 3, 8], (Kind::Float, Device::Cpu)), None);
    let err = with_head.compute(&wrong_width).unwrap_err();
    assert!(matches!(err, LossError::Shape { .. }));
    assert!(err.to_string().contains("D = 16"), "{err}");
}
