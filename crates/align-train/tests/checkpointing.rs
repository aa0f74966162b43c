//! `[train] gradient_checkpointing` through the trainer's own micro-batch code
//! (`align_train::trainer::micro_batch_backward`): with the policy's passes checkpointed, the
//! loss, the metrics and the gradient of every parameter (the policy's and the objective's
//! projection head) equal those of the ordinary passes within 1e-5 in float32, for DPO + MLC
//! reading a middle layer, MPO with its retain term at a middle layer and at the last one,
//! KTO and SFT + cosine, in the packed and the padded layouts, over two accumulated
//! micro-batches: every pass with gradient (policy pairs, prompt variants, MPO targets,
//! KTO's mismatched pairs) runs checkpointed, next to the reference's ordinary passes.

mod step_records;

use align_losses::PreferenceObjective;
use align_train::batch::{dropout_key, StepModels, StepPlan};
use align_train::prepare::PreparedRecord;
use align_train::trainer::{checkpoint_seed, micro_batch_backward, MicroBatchOutcome};
use lm_backend::{CausalLm, HfCausalLm};
use step_records::{cache, model, objective_with_heads, records, LANGUAGES};
use tch::{Kind, Tensor};

/// Two micro-batches of one step (records 0..3 and 3..5).
const MICRO_BATCHES: [std::ops::Range<usize>; 2] = [0..3, 3..5];

/// What a step left: each micro-batch's outcome and the gradient of every parameter.
struct Step {
    outcomes: Vec<MicroBatchOutcome>,
    grads: Vec<(String, Tensor)>,
}

fn zero_grads(tensors: impl IntoIterator<Item = Tensor>) {
    for t in tensors {
        let mut g = t.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

/// One optimizer step's gradient accumulation as the trainer runs it, with or without
/// checkpointing.
#[allow(clippy::too_many_arguments)]
fn step(
    policy: &HfCausalLm,
    trainable: &std::collections::BTreeMap<String, Tensor>,
    reference: &HfCausalLm,
    heads: &tch::nn::VarStore,
    objective: &dyn PreferenceObjective,
    plan: &StepPlan,
    records: &[PreparedRecord],
    packing: bool,
    checkpointing: bool,
) -> Step {
    let head_vars = || heads.trainable_variables();
    zero_grads(trainable.values().map(Tensor::shallow_clone).chain(head_vars()));
    let cache = cache(records.len());
    let models = StepModels {
        policy,
        reference: Some(reference),
        cache: Some(&cache),
        pad_id: 0,
        num_languages: LANGUAGES,
        packing,
        dropout_key: 0,
        languages: &[],
        ranks: None,
    };
    let mut outcomes = Vec::new();
    for (micro, range) in MICRO_BATCHES.into_iter().enumerate() {
        let models = StepModels { dropout_key: dropout_key(7, 0, micro), ..models };
        let indices: Vec<usize> = range.collect();
        let batch: Vec<&PreparedRecord> = indices.iter().map(|&i| &records[i]).collect();
        let checkpointed =
            checkpointing.then(|| policy.checkpointed().with_replayed_randomness(checkpoint_seed(7, 0, micro)));
        let scale = 1.0 / MICRO_BATCHES.len() as f64;
        let c = checkpointed.as_ref();
        let out = micro_batch_backward(&models, c, plan, objective, &batch, &indices, records, scale, 1).unwrap();
        outcomes.push(out.expect("a finite loss"));
        if let Some(c) = &checkpointed {
            assert_eq!(c.recorded_passes(), 0, "the reverse pass consumed every recorded pass");
        }
    }
    let mut grads: Vec<(String, Tensor)> = trainable.iter().map(|(n, p)| (n.clone(), p.grad().copy())).collect();
    let mut head_grads: Vec<(String, Tensor)> =
        heads.variables().into_iter().map(|(n, v)| (format!("objective.{n}"), v.grad().copy())).collect();
    head_grads.sort_by(|a, b| a.0.cmp(&b.0)); // `variables()` is a hash map: no fixed order
    grads.extend(head_grads);
    Step { outcomes, grads }
}

/// Checkpointed and ordinary steps agree for `stack` in both layouts.
fn assert_same(stack: &str, records: &[PreparedRecord]) {
    let (policy, reference) = (model(Kind::Float), model(Kind::Float));
    policy.set_trainable(true);
    assert_same_with(stack, records, &policy, &reference, policy.parameters());
}

/// Checkpointed and ordinary steps of `policy` agree for `stack` in both layouts, in the
/// gradients of `trainable`.
fn assert_same_with(
    stack: &str,
    records: &[PreparedRecord],
    policy: &HfCausalLm,
    reference: &HfCausalLm,
    trainable: &std::collections::BTreeMap<String, Tensor>,
) {
    let tol = 1e-5;
    let close = |a: f64, b: f64| (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()));
    let (objective, chosen_only, heads) = objective_with_heads(stack, policy);
    let plan = StepPlan::new(&objective.needs(), chosen_only);
    for packing in [true, false] {
        let label = format!("{stack} (packing {packing})");
        let run = |checkpointing| {
            step(policy, trainable, reference, &heads, &objective, &plan, records, packing, checkpointing)
        };
        let (plain, checkpointed) = (run(false), run(true));
        for (a, b) in plain.outcomes.iter().zip(&checkpointed.outcomes) {
            assert!(close(a.loss, b.loss), "{label}: loss {} vs {}", a.loss, b.loss);
            assert_eq!(a.tokens, b.tokens, "{label}");
            assert_eq!(a.metrics.len(), b.metrics.len(), "{label}");
            for ((k, x), (k2, y)) in a.metrics.iter().zip(&b.metrics) {
                assert_eq!(k, k2);
                assert!(close(*x, *y) || (x.is_nan() && y.is_nan()), "{label}: {k} {x} vs {y}");
            }
        }
        for ((name, a), (name2, b)) in plain.grads.iter().zip(&checkpointed.grads) {
            assert_eq!(name, name2);
            let scale = a.abs().max().double_value(&[]);
            assert!(scale > 0.0, "{label}: {name} has no gradient");
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff <= tol * scale, "{label}: gradient of {name} differs by {diff} (scale {scale})");
        }
    }
}

#[test]
fn checkpointed_steps_equal_ordinary_steps() {
    let vocab = model(Kind::Float).config().vocab_size;
    let records = records(11, 5, vocab);
    let stacks = [
        "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 1\nweight = 0.5\nhead_dim = 4\n",
        "[[objective]]\nkind = \"mpo\"\nretain_layer = 1\n",
        "[[objective]]\nkind = \"mpo\"\n",
        "[[objective]]\nkind = \"kto\"\n",
        "[[objective]]\nkind = \"sft\"\n[[objective]]\nkind = \"cosine\"\nlayer = 2\n",
    ];
    for stack in stacks {
        assert_same(stack, &records);
    }
}

/// LoRA adapters with dropout: each checkpointed block is recomputed under the dropout key its
/// pass ran with (the trainer gives every pass its own), so the recomputation draws the same
/// masks and the adapters' gradients equal the ordinary passes'.
#[test]
fn checkpointed_lora_steps_with_dropout_equal_ordinary_steps() {
    let dir = format!("{}/../lm-backend/tests/fixtures/llama", env!("CARGO_MANIFEST_DIR"));
    let spec = lm_backend::lora::LoraSpec::new(4, 8.0).with_dropout(0.3).with_seed(3);
    let policy = HfCausalLm::load_with_lora(&dir, lm_backend::LoadOptions::cpu_f32(), &spec).unwrap();
    // Fresh adapters start with B = 0, which leaves A without gradient: give B values.
    let mut rng = align_train::seeded::SeededRng::new(5);
    tch::no_grad(|| {
        for (name, p) in policy.adapter_parameters() {
            if name.contains("lora_B") {
                let values: Vec<f32> = (0..p.numel()).map(|_| (rng.unit() as f32 - 0.5) * 0.2).collect();
                p.shallow_clone().copy_(&Tensor::from_slice(&values).view(p.size().as_slice()));
            }
        }
    });
    policy.set_adapters_trainable(true);
    policy.set_training(true);
    let reference = policy.base_model().unwrap();
    let vocab = policy.config().vocab_size;
    let records = records(11, 5, vocab);
    let dpo_mlc = "[[objective]]\nkind = \"dpo\"\n[[objective]]\nkind = \"mlc\"\nlayer = 1\nweight = 0.5\n";
    assert_same_with(dpo_mlc, &records, &policy, &reference, policy.adapter_parameters());
}
