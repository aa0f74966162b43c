//! Activation checkpointing (`HfCausalLm::checkpointed`) gives the values and the parameter
//! gradients of the ordinary passes: several passes of every kind (padded with selected
//! logits, states-only stopping early, packed with selected logits, packed states-only) feed
//! one loss that also reads intermediate hidden states and the last pre-norm state, for each
//! architecture, each attention implementation, in float32 (within 1e-5 of each gradient's
//! scale) and float64 (1e-10). Passes without gradient record nothing.

mod packing;

use lm_backend::{AttentionImpl, CausalLm, HfCausalLm, HiddenRequest, LoadOptions};
use packing::{pack, tokens, Piece};
use std::path::Path;
use tch::{Kind, Tensor};

fn load(name: &str, kind: Kind, attention: AttentionImpl) -> HfCausalLm {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let m = HfCausalLm::load(dir, LoadOptions::cpu_f32().with_dtype(kind).with_attention(attention)).unwrap();
    m.set_trainable(true);
    m
}

/// Deterministic weights in [-1, 1) of `shape` and `kind`.
fn weights(shape: &[i64], seed: u64, kind: Kind) -> Tensor {
    let n: i64 = shape.iter().product();
    let values: Vec<f64> = tokens(seed, n as usize).iter().map(|&t| (t as f64 - 322.0) / 318.0).collect();
    Tensor::from_slice(&values).view(shape).to_kind(kind)
}

/// A right-padded batch of three sequences and the positions that predict a completion.
fn padded_batch() -> (Tensor, Tensor, Tensor) {
    let lens = [9usize, 5, 12];
    let rows: Vec<Tensor> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let mut t = tokens(70 + i as u64, n);
            t.resize(12, 0);
            Tensor::from_slice(&t)
        })
        .collect();
    let ids = Tensor::stack(&rows, 0);
    let mask: Vec<Tensor> =
        lens.iter().map(|&n| Tensor::from_slice(&(0..12).map(|j| i64::from(j < n)).collect::<Vec<_>>())).collect();
    let mask = Tensor::stack(&mask, 0);
    // Positions 3.. of each real token but the last predict a completion token.
    let index = Tensor::arange(12, (Kind::Int64, tch::Device::Cpu)).unsqueeze(0);
    let lengths = mask.sum_dim_intlist(1, true, Kind::Int64);
    let positions = index.ge(3).logical_and(&index.lt_tensor(&(lengths - 1)));
    (ids, mask, positions)
}

/// The loss over four passes of `m` (the model itself or its checkpointed form), each
/// reading logits and hidden states: selected logits and states 1 and L of a padded batch,
/// a states-only pass stopping at layer 2, a packed pass with selected logits and the last
/// pre-norm state, and a packed states-only pass at layer 1.
fn loss(m: &dyn CausalLm, kind: Kind) -> Tensor {
    let l = m.config().num_layers;
    let (ids, mask, positions) = padded_batch();
    let out = m.forward_at(&ids, &mask, &positions, &HiddenRequest::layers([1, l])).unwrap();
    let real = mask.unsqueeze(-1).to_kind(kind);
    let mut total = (out.logits.log_softmax(-1, kind) * weights(&out.logits.size(), 1, kind)).sum(kind);
    for (i, h) in &out.hidden.layers {
        total += (h * &real * weights(&h.size(), 2 + *i as u64, kind)).sum(kind) * 0.1;
    }
    let early = m.hidden_states(&ids, &mask, &HiddenRequest::layers([2])).unwrap();
    total += (&early.layers[&2] * &real * weights(&early.layers[&2].size(), 9, kind)).sum(kind) * 0.1;
    let pieces = [
        Piece::Tree { prompt: tokens(80, 5), branches: vec![tokens(81, 4), tokens(82, 6)] },
        Piece::Plain(tokens(83, 7)),
    ];
    let packing = pack(&pieces, &[1, 1]);
    let every = packing.batch.input_ids().ones_like().to_kind(Kind::Bool);
    let request = HiddenRequest::none().with_last_pre_norm();
    let packed = m.forward_packed_at(&packing.batch, &every, &request).unwrap();
    total += (packed.logits.log_softmax(-1, kind) * weights(&packed.logits.size(), 10, kind)).sum(kind);
    let pre = packed.hidden.last_pre_norm.unwrap();
    total += (&pre * weights(&pre.size(), 11, kind)).sum(kind) * 0.1;
    let states = m.hidden_states_packed(&packing.batch, &HiddenRequest::layers([1])).unwrap();
    total + (&states.layers[&1] * weights(&states.layers[&1].size(), 12, kind)).sum(kind) * 0.1
}

fn zero_grads(m: &HfCausalLm) {
    for p in m.parameters().values() {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

fn grads(m: &HfCausalLm) -> Vec<(String, Tensor)> {
    m.parameters().iter().map(|(n, p)| (n.clone(), p.grad().copy())).collect()
}

/// Checkpointed gradients against ordinary ones; returns the largest relative difference.
fn check(name: &str, kind: Kind, attention: AttentionImpl, tolerance: f64) -> f64 {
    let m = load(name, kind, attention);
    zero_grads(&m);
    let plain_loss = loss(&m, kind);
    plain_loss.backward();
    let plain = grads(&m);

    zero_grads(&m);
    let checkpointed = m.checkpointed();
    let ckpt_loss = loss(&checkpointed, kind);
    assert_eq!(checkpointed.recorded_passes(), 4, "one recorded pass per pass with gradient");
    ckpt_loss.backward();
    checkpointed.backward().unwrap();
    assert_eq!(checkpointed.recorded_passes(), 0);
    let recomputed = grads(&m);

    let label = format!("{name} {kind:?} {attention}");
    let (a, b) = (plain_loss.double_value(&[]), ckpt_loss.double_value(&[]));
    assert!((a - b).abs() <= tolerance * (1.0 + a.abs()), "{label}: loss {a} vs {b}");
    let mut worst: f64 = 0.0;
    for ((n, g), (_, h)) in plain.iter().zip(&recomputed) {
        let scale = g.abs().max().double_value(&[]);
        assert!(scale > 0.0, "{label}: {n} has no gradient");
        let d = (g - h).abs().max().double_value(&[]) / scale;
        assert!(d <= tolerance, "{label}: gradient of {n} differs by {d} of its scale {scale}");
        worst = worst.max(d);
    }
    worst
}

#[test]
fn checkpointed_gradients_equal_ordinary_ones() {
    for name in ["llama", "qwen2", "gemma2"] {
        for attention in AttentionImpl::ALL {
            let f32_worst = check(name, Kind::Float, attention, 1e-5);
            let f64_worst = check(name, Kind::Double, attention, 1e-10);
            eprintln!(
                "{name} ({attention}): largest relative gradient difference f32 {f32_worst:.2e}, f64 {f64_worst:.2e}"
            );
        }
    }
}

/// Passes under `no_grad` are ordinary passes: nothing is recorded, values are the model's.
/// A recorded pass whose outputs the loss does not read leaves its blocks untouched, and a
/// reverse pass with nothing recorded does nothing.
#[test]
fn passes_without_gradient_are_not_recorded() {
    let m = load("llama", Kind::Float, AttentionImpl::Sdpa);
    let c = m.checkpointed();
    let (ids, mask, positions) = padded_batch();
    let req = HiddenRequest::layers([1, 2]);
    let reference = tch::no_grad(|| m.forward_at(&ids, &mask, &positions, &req).unwrap());
    let out = tch::no_grad(|| c.forward_at(&ids, &mask, &positions, &req).unwrap());
    assert_eq!(c.recorded_passes(), 0);
    assert!(out.logits.equal(&reference.logits) && out.hidden.layers[&2].equal(&reference.hidden.layers[&2]));
    c.backward().unwrap();

    // With gradient: the same values, recorded; only the pass the loss reads reaches the blocks.
    zero_grads(&m);
    let with_grad = c.forward_at(&ids, &mask, &positions, &req).unwrap();
    assert!(with_grad.logits.equal(&reference.logits));
    assert!(with_grad.hidden.layers[&1].requires_grad() && with_grad.hidden.layers[&1].is_leaf());
    let unread = c.hidden_states(&ids, &mask, &HiddenRequest::layers([1])).unwrap();
    assert_eq!(c.recorded_passes(), 2);
    with_grad.hidden.layers[&1].sum(Kind::Float).backward();
    c.backward().unwrap();
    let grad = |name: &str| m.parameters()[name].grad();
    assert!(grad("model.layers.0.mlp.up_proj.weight").abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(!grad("model.layers.1.mlp.up_proj.weight").defined(), "block 1 is above the state the loss reads");
    assert!(!unread.layers[&1].grad().defined());
}
