//! `token_logps` and `sequence_logps` against an independent f64 loop, in f32, f64 and bf16,
//! `scored_sequence_logps` (logits at the predicting positions only) against
//! `sequence_logps`, and their errors for malformed inputs.
// Index loops mirror the formulas' subscripts (pair i), which reads closer to the math.
#![allow(clippy::needless_range_loop)]

use align_losses::{predicting_positions, scored_sequence_logps, sequence_logps, token_logps, LossError};
use proptest::prelude::*;
use tch::{Kind, Tensor};

const B: usize = 2;
const T: usize = 5;
const V: usize = 7;

/// `log softmax(row)[target]` in plain f64.
fn log_prob(row: &[f64], target: usize) -> f64 {
    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let normaliser = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    row[target] - normaliser
}

/// `logits[b][t]` as a row of `V` values from a flat `[B * T * V]` vector.
fn row(logits: &[f64], b: usize, t: usize) -> &[f64] {
    &logits[(b * T + t) * V..(b * T + t + 1) * V]
}

fn logits_tensor(logits: &[f64], kind: Kind) -> Tensor {
    Tensor::from_slice(logits).reshape([B as i64, T as i64, V as i64]).to_kind(kind)
}

fn ids_tensor(ids: &[i64]) -> Tensor {
    Tensor::from_slice(ids).reshape([B as i64, T as i64])
}

/// Scored mask with position 0 off and at least one scored token per sequence: positions
/// `start[b]..T`.
fn scored_mask(start: &[usize]) -> (Vec<bool>, Tensor) {
    let flat: Vec<bool> = (0..B).flat_map(|b| (0..T).map(move |t| t >= start[b])).collect();
    let tensor = Tensor::from_slice(&flat.iter().map(|&s| u8::from(s)).collect::<Vec<_>>())
        .reshape([B as i64, T as i64])
        .to_kind(Kind::Bool);
    (flat, tensor)
}

fn inputs() -> impl Strategy<Value = (Vec<f64>, Vec<i64>, Vec<usize>)> {
    (
        prop::collection::vec(-8.0..8.0f64, B * T * V),
        prop::collection::vec(0..V as i64, B * T),
        prop::collection::vec(1..T, B),
    )
}

/// An irregular scored mask (holes allowed) with position 0 off and at least one scored
/// token per sequence.
fn irregular_mask() -> impl Strategy<Value = Tensor> {
    prop::collection::vec(any::<bool>(), B * T).prop_map(|mut flat| {
        for b in 0..B {
            flat[b * T] = false;
            if !flat[b * T..(b + 1) * T].contains(&true) {
                flat[b * T + T - 1] = true;
            }
        }
        Tensor::from_slice(&flat.iter().map(|&s| u8::from(s)).collect::<Vec<_>>())
            .reshape([B as i64, T as i64])
            .to_kind(Kind::Bool)
    })
}

/// The rows of `logits` `[B, T, V]` at the predicting positions of `mask`, `[N, V]`.
fn at_predicting_positions(logits: &Tensor, mask: &Tensor) -> Tensor {
    let rows = predicting_positions(mask).unwrap().reshape([-1]).nonzero().squeeze_dim(1);
    logits.reshape([-1, V as i64]).index_select(0, &rows)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn scored_logps_equal_the_full_computation((logits, ids, _) in inputs(), mask in irregular_mask()) {
        for (kind, tol) in [(Kind::Double, 1e-12), (Kind::Float, 1e-5)] {
            let full = logits_tensor(&logits, kind).set_requires_grad(true);
            let expected = sequence_logps(&full, &ids_tensor(&ids), &mask).unwrap();
            let selected = logits_tensor(&logits, kind).set_requires_grad(true);
            let got = scored_sequence_logps(&at_predicting_positions(&selected, &mask), &ids_tensor(&ids), &mask).unwrap();
            prop_assert_eq!(got.sum.kind(), kind);
            for b in 0..B as i64 {
                let (s, e) = (got.sum.double_value(&[b]), expected.sum.double_value(&[b]));
                prop_assert!((s - e).abs() < tol * (1.0 + e.abs()), "{:?} b={}: {} vs {}", kind, b, s, e);
                prop_assert_eq!(got.count.double_value(&[b]), expected.count.double_value(&[b]));
            }
            // Same gradient w.r.t. the logits, with distinct weights per sequence.
            let w = Tensor::from_slice(&[1.0, -2.5]).to_kind(kind);
            (&expected.sum * &w).sum(kind).backward();
            (&got.sum * &w).sum(kind).backward();
            let diff = (full.grad() - selected.grad()).abs().max().double_value(&[]);
            prop_assert!(diff < tol, "{:?}: gradients differ by {}", kind, diff);
        }
    }

    #[test]
    fn token_logps_match_an_f64_loop((logits, ids, _) in inputs()) {
        for (kind, tol) in [(Kind::Double, 1e-12), (Kind::Float, 1e-5)] {
            let got = token_logps(&logits_tensor(&logits, kind), &ids_tensor(&ids)).unwrap();
            prop_assert_eq!(got.size(), vec![B as i64, T as i64]);
            prop_assert_eq!(got.kind(), kind);
            for b in 0..B {
                for t in 0..T {
                    let expected = log_prob(row(&logits, b, t), ids[b * T + t] as usize);
                    let value = got.double_value(&[b as i64, t as i64]);
                    let ok = (value - expected).abs() < tol * (1.0 + expected.abs());
                    prop_assert!(ok, "{:?} [{}, {}]: {} vs {}", kind, b, t, value, expected);
                }
            }
        }
    }

    #[test]
    fn sequence_logps_match_an_f64_loop((logits, ids, start) in inputs()) {
        let (scored, mask) = scored_mask(&start);
        for (kind, tol) in [(Kind::Double, 1e-12), (Kind::Float, 1e-5)] {
            let got = sequence_logps(&logits_tensor(&logits, kind), &ids_tensor(&ids), &mask).unwrap();
            prop_assert_eq!(got.sum.kind(), kind);
            for b in 0..B {
                let mut sum = 0.0;
                let mut count = 0.0;
                for t in 1..T {
                    if scored[b * T + t] {
                        sum += log_prob(row(&logits, b, t - 1), ids[b * T + t] as usize);
                        count += 1.0;
                    }
                }
                let (s, n) = (got.sum.double_value(&[b as i64]), got.count.double_value(&[b as i64]));
                prop_assert!((s - sum).abs() < tol * (1.0 + sum.abs()), "{:?} b={}: {} vs {}", kind, b, s, sum);
                prop_assert_eq!(n, count);
            }
        }
    }

    #[test]
    fn bf16_logits_give_the_f32_answer((logits, ids, start) in inputs()) {
        let (_, mask) = scored_mask(&start);
        let bf16 = logits_tensor(&logits, Kind::BFloat16);
        let from_bf16 = sequence_logps(&bf16, &ids_tensor(&ids), &mask).unwrap();
        prop_assert_eq!(from_bf16.sum.kind(), Kind::Float);
        // The same (rounded) logits in f32: the normaliser is computed in f32 either way.
        let from_f32 = sequence_logps(&bf16.to_kind(Kind::Float), &ids_tensor(&ids), &mask).unwrap();
        // The unrounded logits: differs only by bf16's rounding of the logits (< 2^-8 relative).
        let exact = sequence_logps(&logits_tensor(&logits, Kind::Float), &ids_tensor(&ids), &mask).unwrap();
        for b in 0..B as i64 {
            let v = from_bf16.sum.double_value(&[b]);
            prop_assert!((v - from_f32.sum.double_value(&[b])).abs() < 1e-5 * (1.0 + v.abs()));
            prop_assert!((v - exact.sum.double_value(&[b])).abs() < 0.25, "{} vs {}", v, exact.sum.double_value(&[b]));
        }
    }
}

#[test]
fn gradient_flows_to_the_logits() {
    let logits = Tensor::randn([B as i64, T as i64, V as i64], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let ids = Tensor::zeros([B as i64, T as i64], (Kind::Int64, tch::Device::Cpu));
    let (_, mask) = scored_mask(&[2, 3]);
    let out = sequence_logps(&logits, &ids, &mask).unwrap();
    out.sum.sum(Kind::Float).backward();
    // The last position predicts nothing, so its logits get no gradient; others do.
    let g = logits.grad();
    assert_eq!(g.select(1, T as i64 - 1).abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert!(g.select(1, T as i64 - 2).abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn predicting_positions_shift_the_scored_mask_left() {
    let (_, mask) = scored_mask(&[1, 3]); // rows: 01111, 00011
    let got = predicting_positions(&mask).unwrap();
    let expected: Vec<u8> = vec![1, 1, 1, 1, 0, 0, 0, 1, 1, 0];
    assert_eq!(got.kind(), Kind::Bool);
    assert!(got.equal(&Tensor::from_slice(&expected).reshape([2, 5]).to_kind(Kind::Bool)));
}

fn shape_error<T: std::fmt::Debug>(r: Result<T, LossError>) {
    assert!(matches!(r, Err(LossError::Shape { .. })), "expected a shape error, got {r:?}");
}

fn kind_error<T: std::fmt::Debug>(r: Result<T, LossError>) {
    assert!(matches!(r, Err(LossError::Kind { .. })), "expected a kind error, got {r:?}");
}

#[test]
fn malformed_inputs_are_errors_not_panics() {
    let opts = (Kind::Float, tch::Device::Cpu);
    let logits = Tensor::randn([2, 5, 7], opts);
    let ids = Tensor::zeros([2, 5], (Kind::Int64, tch::Device::Cpu));
    let (_, mask) = scored_mask(&[1, 3]);

    // Wrong shapes.
    shape_error(sequence_logps(&Tensor::randn([2, 5], opts), &ids, &mask));
    shape_error(sequence_logps(&logits, &Tensor::zeros([2, 4], (Kind::Int64, tch::Device::Cpu)), &mask));
    shape_error(sequence_logps(&logits, &ids, &Tensor::ones([3, 5], (Kind::Bool, tch::Device::Cpu))));
    shape_error(token_logps(&logits, &Tensor::zeros([2, 4], (Kind::Int64, tch::Device::Cpu))));
    shape_error(token_logps(&Tensor::randn([2, 5], opts), &ids));
    // Position 0 scored.
    let (_, from_zero) = scored_mask(&[0, 1]);
    shape_error(sequence_logps(&logits, &ids, &from_zero));
    // A sequence with no scored token.
    let partial = Tensor::cat(&[mask.narrow(0, 0, 1), Tensor::zeros([1, 5], (Kind::Bool, tch::Device::Cpu))], 0);
    shape_error(sequence_logps(&logits, &ids, &partial));
    // Empty time axis.
    shape_error(sequence_logps(
        &Tensor::randn([2, 0, 7], opts),
        &Tensor::zeros([2, 0], (Kind::Int64, tch::Device::Cpu)),
        &Tensor::zeros([2, 0], (Kind::Bool, tch::Device::Cpu)),
    ));
    // The predicting-positions form: rows must match the scored tokens; [N, V] only.
    let n = mask.sum(Kind::Int64).int64_value(&[]);
    assert!(scored_sequence_logps(&Tensor::randn([n, 7], opts), &ids, &mask).is_ok());
    shape_error(scored_sequence_logps(&Tensor::randn([n + 1, 7], opts), &ids, &mask));
    shape_error(scored_sequence_logps(&logits, &ids, &mask));
    shape_error(scored_sequence_logps(&Tensor::randn([n, 7], opts), &ids, &from_zero));
    shape_error(scored_sequence_logps(&Tensor::randn([n, 7], opts), &ids, &partial));
    kind_error(scored_sequence_logps(&Tensor::randn([n, 7], opts), &ids.to_kind(Kind::Int), &mask));
    shape_error(predicting_positions(&Tensor::ones([2], (Kind::Bool, tch::Device::Cpu))));
    // Non-int64 targets, non-float logits.
    kind_error(sequence_logps(&logits, &ids.to_kind(Kind::Int), &mask));
    kind_error(token_logps(&logits, &ids.to_kind(Kind::Int)));
    kind_error(token_logps(&logits.to_kind(Kind::Int64), &ids));
    kind_error(sequence_logps(&logits.to_kind(Kind::Int64), &ids, &mask));
}
