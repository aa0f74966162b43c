//! The packed layout (no padding, each pair's prompt forwarded once) against the padded one,
//! the reference, on the tiny real Llama checkpoint of lm-backend's fixtures: for every
//! objective the loss, every metric and the gradient of every parameter agree within 1e-5 in
//! float32 (rounding: the two layouts sum in different orders) and within 1e-9 in float64
//! (the same math); a property test over irregular lengths in float64.

mod step_records;

use align_losses::{ObjectiveStack, PreferenceObjective};
use align_train::batch::{build_view, ReferenceCache, StepModels, StepPlan};
use align_train::prepare::PreparedRecord;
use lm_backend::{CausalLm, HfCausalLm};
use proptest::prelude::*;
use step_records::{cache, model, objective, records, LANGUAGES};
use tch::{Kind, Tensor};

/// Loss, metrics and the gradient of every policy parameter of one micro-batch.
struct Step {
    loss: f64,
    metrics: Vec<(String, f64)>,
    grads: Vec<(String, Tensor)>,
    tokens: usize,
}

/// What both layouts of one comparison share: the objective (one projection head, so the
/// two steps see the same parameters), its plan and the reference cache.
struct Shared {
    objective: ObjectiveStack,
    plan: StepPlan,
    cache: ReferenceCache,
}

fn step(
    shared: &Shared,
    policy: &HfCausalLm,
    reference: &HfCausalLm,
    records: &[PreparedRecord],
    packing: bool,
) -> Step {
    let Shared { objective, plan, cache } = shared;
    let models = StepModels {
        policy,
        reference: Some(reference),
        cache: Some(cache),
        pad_id: 0,
        num_languages: LANGUAGES,
        packing,
        dropout_key: 0,
        languages: &[],
        ranks: None,
    };
    let batch: Vec<&PreparedRecord> = records.iter().collect();
    let indices: Vec<usize> = (0..records.len()).collect();
    for p in policy.parameters().values() {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    let (view, tokens) = build_view(&models, plan, &batch, &indices, records).unwrap();
    let out = objective.compute(&view).unwrap();
    out.loss.backward();
    let metrics = out.metrics.iter().map(|(k, v)| (k.to_string(), v)).collect();
    let grads = policy.parameters().iter().map(|(n, p)| (n.clone(), p.grad().copy())).collect();
    Step { loss: out.loss.double_value(&[]), metrics, grads, tokens }
}

/// Packed and padded agree on loss, metrics and gradients within `tol` relative (gradients:
/// relative to each parameter's largest gradient entry, at least 1); packed forwards fewer
/// tokens.
fn assert_same(stack: &str, records: &[PreparedRecord], kind: Kind, tol: f64) {
    let close = |a: f64, b: f64| (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()));
    let (policy, reference) = (model(kind), model(kind));
    policy.set_trainable(true);
    let (objective, chosen_only) = objective(stack, &policy);
    let plan = StepPlan::new(&objective.needs(), chosen_only);
    let shared = Shared { objective, plan, cache: cache(records.len()) };
    let padded = step(&shared, &policy, &reference, records, false);
    let packed = step(&shared, &policy, &reference, records, true);
    assert!(close(padded.loss, packed.loss), "{stack} ({kind:?}): loss {} vs {}", padded.loss, packed.loss);
    assert_eq!(padded.metrics.len(), packed.metrics.len(), "{stack}");
    for ((k, a), (k2, b)) in padded.metrics.iter().zip(&packed.metrics) {
        assert_eq!(k, k2);
        assert!(close(*a, *b) || (a.is_nan() && b.is_nan()), "{stack} ({kind:?}): {k} {a} vs {b}");
    }
    for ((name, a), (_, b)) in padded.grads.iter().zip(&packed.grads) {
        let scale = a.abs().max().double_value(&[]).max(1e-3);
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(
            diff <= tol * scale.max(1.0),
            "{stack} ({kind:?}): gradient of {name} differs by {diff} (scale {scale})"
        );
    }
    if chosen_only {
        assert_eq!(packed.tokens, padded.tokens, "{stack}: one sequence per record either way");
    } else {
        assert!(packed.tokens < padded.tokens, "{stack}: the prompt is forwarded once per pair");
    }
}

#[test]
fn every_objective_packed_equals_padded() {
    let vocab = model(Kind::Float).config().vocab_size;
    let records = records(7, 5, vocab);
    let stacks = [
        "[[objective]]\nkind = \"dpo\"\n",
        "[[objective]]\nkind = \"dpo\"\nlabel_smoothing = 0.2\n",
        "[[objective]]\nkind = \"robust_dpo\"\n",
        "[[objective]]\nkind = \"hinge\"\n",
        "[[objective]]\nkind = \"ipo\"\n",
        "[[objective]]\nkind = \"r_dpo\"\n",
        "[[objective]]\nkind = \"simpo\"\n",
        "[[objective]]\nkind = \"cpo\"\n",
        "[[objective]]\nkind = \"orpo\"\n",
        "[[objective]]\nkind = \"kto\"\n",
        "[[objective]]\nkind = \"sft\"\n",
        "[[objective]]\nkind = \"mpo\"\nretain_layer = 1\n",
        "[[objective]]\nkind = \"mpo\"\nretain = \"mean_pool\"\n",
        "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 1\nweight = 0.5\n",
        "[[objective]]\nkind = \"sft\"\n[[objective]]\nkind = \"mlc\"\nlayer = 2\nhead_dim = 4\n",
        "[[objective]]\nkind = \"mpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 2\n",
        "[[objective]]\nkind = \"simpo\"\n[[objective]]\nkind = \"cosine\"\nlayer = 1\n",
    ];
    for stack in stacks {
        assert_same(stack, &records, Kind::Float, 1e-5);
        assert_same(stack, &records, Kind::Double, 1e-9);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Irregular lengths and language coverage: DPO + MLC + MPO agree both ways (float64,
    /// so any difference beyond rounding would show).
    #[test]
    fn packed_equals_padded_for_irregular_lengths(seed in 0u64..10_000, n in 1usize..6) {
        let vocab = model(Kind::Float).config().vocab_size;
        let stack = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 1\n\
                     [[objective]]\nkind = \"mpo\"\nretain_layer = 2\n";
        assert_same(stack, &records(seed, n, vocab), Kind::Double, 1e-9);
    }
}
