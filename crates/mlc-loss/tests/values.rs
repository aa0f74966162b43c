//! Values of the loss and the diagnostics against the independent f64 reference, and the
//! special cases the docs promise.

mod common;

use common::*;
use mlc_loss::{collinearity_ratio, mean_pairwise_cosine, mlc_loss, pairwise_cosine_loss};
use tch::{Kind, Tensor};

#[test]
fn jacobi_reference_matches_the_two_variant_closed_form() {
    // Two unit vectors with cosine c: s^2 = 1 +- |c|.
    let a = vec![0.6, 0.8, 0.0];
    let b = vec![0.0, 1.0, 0.0];
    let c: f64 = 0.8;
    let s = singular_values(&[a, b]);
    assert!((s[0] - (1.0 + c).sqrt()).abs() < 1e-12);
    assert!((s[1] - (1.0 - c).sqrt()).abs() < 1e-12);
}

#[test]
fn loss_matches_reference_on_random_inputs_f64_and_f32() {
    for (seed, shape, tau) in [(1, [3, 4, 6], 1.0), (2, [2, 5, 3], 0.5), (3, [4, 2, 8], 2.0), (4, [1, 6, 16], 0.1)] {
        let n = shape.iter().product();
        let values = random_values(n, seed);
        let expected = reference_mlc(&values, shape, None, tau);
        let got64 = mlc_loss(&tensor(&values, shape, Kind::Double), None, tau).unwrap();
        assert_eq!(got64.kind(), Kind::Double);
        assert!((got64.double_value(&[]) - expected).abs() < 1e-10, "{shape:?}: {got64:?} vs {expected}");
        let got32 = mlc_loss(&tensor(&values, shape, Kind::Float), None, tau).unwrap();
        assert_eq!(got32.kind(), Kind::Float);
        assert!((got32.double_value(&[]) - expected).abs() < 1e-4 * (1.0 + expected));
    }
}

#[test]
fn loss_with_mask_matches_reference_and_counts_only_groups_with_two_variants() {
    let shape = [4, 3, 5];
    let values = random_values(60, 7);
    // Group 0 full, group 1 two variants, group 2 one variant (skipped), group 3 none (skipped).
    let mask = [true, true, true, true, false, true, false, true, false, false, false, false];
    let expected = reference_mlc(&values, shape, Some(&mask), 1.0);
    let groups = present_groups(&values, shape, Some(&mask));
    let by_hand = (group_mlc(&groups[0], 1.0) + group_mlc(&groups[1], 1.0)) / 2.0;
    assert!((expected - by_hand).abs() < 1e-12);
    let got = mlc_loss(&tensor(&values, shape, Kind::Double), Some(&mask_tensor(&mask, 4, 3)), 1.0).unwrap();
    assert!((got.double_value(&[]) - expected).abs() < 1e-10);
}

#[test]
fn diagnostics_match_reference() {
    let shape = [3, 4, 6];
    let values = random_values(72, 11);
    let mask = [true, true, true, true, true, false, true, true, true, false, false, false];
    let x = tensor(&values, shape, Kind::Double);
    let m = mask_tensor(&mask, 3, 4);
    let ratio = collinearity_ratio(&x, Some(&m)).unwrap();
    let cosine = mean_pairwise_cosine(&x, Some(&m)).unwrap();
    let groups = present_groups(&values, shape, Some(&mask));
    for (g, group) in groups.iter().enumerate().take(2) {
        assert!((ratio.double_value(&[g as i64]) - group_collinearity(group)).abs() < 1e-10);
        assert!((cosine.double_value(&[g as i64]) - group_cosine(group)).abs() < 1e-10);
        let k = group.len() as f64;
        let r = ratio.double_value(&[g as i64]);
        assert!((1.0 / k..=1.0).contains(&r));
    }
    assert!(ratio.double_value(&[2]).is_nan(), "one variant: NaN");
    assert!(cosine.double_value(&[2]).is_nan(), "one variant: NaN");
    let cos_loss = pairwise_cosine_loss(&x, Some(&m)).unwrap().double_value(&[]);
    let expected = ((1.0 - group_cosine(&groups[0])) + (1.0 - group_cosine(&groups[1]))) / 2.0;
    assert!((cos_loss - expected).abs() < 1e-10);
}

/// The minimum of one group's loss: `s = (sqrt k, 0, ..)`.
fn minimum(k: f64, tau: f64) -> f64 {
    (1.0 + (k - 1.0) * (-k.sqrt() / tau).exp()).ln()
}

#[test]
fn parallel_equal_and_opposite_vectors_reach_the_minimum_and_ratio_one() {
    let v = [0.3, -1.2, 0.5, 2.0];
    let cases: Vec<(&str, Vec<f64>)> = vec![
        ("equal", [v, v, v].concat()),
        ("parallel", [v.map(|x| 0.1 * x), v, v.map(|x| 7.0 * x)].concat()),
        ("opposite", [v, v.map(|x| -x), v.map(|x| -3.0 * x)].concat()),
    ];
    for tau in [0.5, 1.0, 2.0] {
        for (name, values) in &cases {
            let x = tensor(values, [1, 3, 4], Kind::Double);
            let loss = mlc_loss(&x, None, tau).unwrap().double_value(&[]);
            assert!((loss - minimum(3.0, tau)).abs() < 1e-12, "{name}: {loss}");
            let ratio = collinearity_ratio(&x, None).unwrap().double_value(&[0]);
            assert!((ratio - 1.0).abs() < 1e-12, "{name}: {ratio}");
            // Any other configuration has a larger loss.
            let mut moved = values.clone();
            moved[5] += 0.3;
            let other = mlc_loss(&tensor(&moved, [1, 3, 4], Kind::Double), None, tau).unwrap().double_value(&[]);
            assert!(other > loss, "{name}: {other} <= {loss}");
        }
    }
    // The pairwise-cosine ablation is not sign-blind: opposite vectors are its worst case.
    let opposite = tensor(&[1.0, 0.0, -1.0, 0.0], [1, 2, 2], Kind::Double);
    assert!((pairwise_cosine_loss(&opposite, None).unwrap().double_value(&[]) - 2.0).abs() < 1e-12);
}

#[test]
fn orthogonal_vectors_give_ratio_one_over_k_and_loss_log_k() {
    let mut values = vec![0.0; 3 * 5];
    for j in 0..3 {
        values[j * 5 + j] = 1.0 + j as f64;
    }
    let x = tensor(&values, [1, 3, 5], Kind::Double);
    assert!((collinearity_ratio(&x, None).unwrap().double_value(&[0]) - 1.0 / 3.0).abs() < 1e-12);
    assert!((mlc_loss(&x, None, 0.7).unwrap().double_value(&[]) - 3f64.ln()).abs() < 1e-12);
    assert!(mean_pairwise_cosine(&x, None).unwrap().double_value(&[0]).abs() < 1e-12);
}

#[test]
fn more_variants_than_dimensions_pads_the_spectrum_with_zeros() {
    let shape = [2, 5, 3];
    let values = random_values(30, 5);
    let expected = reference_mlc(&values, shape, None, 1.0);
    let got = mlc_loss(&tensor(&values, shape, Kind::Double), None, 1.0).unwrap().double_value(&[]);
    assert!((got - expected).abs() < 1e-10);
    // Hidden size 1: every pair is parallel or opposite, whatever the signs.
    let line = tensor(&[1.0, -2.0, 0.5, 3.0], [1, 4, 1], Kind::Double);
    assert!((mlc_loss(&line, None, 1.0).unwrap().double_value(&[]) - minimum(4.0, 1.0)).abs() < 1e-12);
}

#[test]
fn half_precision_inputs_give_the_f32_answer() {
    let shape = [4, 6, 64];
    let values = random_values(4 * 6 * 64, 13);
    let x32 = tensor(&values, shape, Kind::Float);
    let expected = mlc_loss(&x32, None, 1.0).unwrap().double_value(&[]);
    for kind in [Kind::BFloat16, Kind::Half] {
        let x = x32.to_kind(kind);
        let loss = mlc_loss(&x, None, 1.0).unwrap();
        assert_eq!(loss.kind(), Kind::Float);
        // The f32 answer on the rounded inputs is the same computation; the difference is
        // only the input rounding (bf16: 8 bits of mantissa).
        let on_rounded = mlc_loss(&x.to_kind(Kind::Float), None, 1.0).unwrap().double_value(&[]);
        assert_eq!(loss.double_value(&[]), on_rounded);
        assert!((loss.double_value(&[]) - expected).abs() < 1e-2 * expected, "{kind:?}");
        let ratio = collinearity_ratio(&x, None).unwrap();
        let ratio32 = collinearity_ratio(&x32, None).unwrap();
        assert!((ratio - ratio32).abs().max().double_value(&[]) < 1e-2);
    }
}

#[test]
fn no_countable_group_gives_a_connected_zero() {
    for (values, mask) in [
        (random_values(2 * 3 * 4, 3), vec![true, false, false, false, false, false]),
        (random_values(2 * 3 * 4, 4), vec![false; 6]),
    ] {
        let x = tensor(&values, [2, 3, 4], Kind::Double).set_requires_grad(true);
        let loss = mlc_loss(&x, Some(&mask_tensor(&mask, 2, 3)), 1.0).unwrap();
        assert_eq!(loss.double_value(&[]), 0.0);
        loss.backward();
        assert_eq!(x.grad().abs().sum(Kind::Double).double_value(&[]), 0.0);
    }
    // A single variant per group, no mask.
    let x = Tensor::randn([3, 1, 4], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let loss = mlc_loss(&x, None, 1.0).unwrap();
    assert_eq!(loss.double_value(&[]), 0.0);
    loss.backward();
    // An empty batch.
    let empty = Tensor::zeros([0, 3, 4], (Kind::Float, tch::Device::Cpu));
    assert_eq!(mlc_loss(&empty, None, 1.0).unwrap().double_value(&[]), 0.0);
}

#[test]
fn masked_out_rows_may_hold_anything() {
    let shape = [2, 3, 4];
    let mut values = random_values(24, 21);
    let mask = [true, true, false, true, false, true];
    let clean = mlc_loss(&tensor(&values, shape, Kind::Double), Some(&mask_tensor(&mask, 2, 3)), 1.0).unwrap();
    for v in &mut values[8..12] {
        *v = f64::NAN;
    }
    values[16] = f64::INFINITY;
    let x = tensor(&values, shape, Kind::Double).set_requires_grad(true);
    let loss = mlc_loss(&x, Some(&mask_tensor(&mask, 2, 3)), 1.0).unwrap();
    assert_eq!(loss.double_value(&[]), clean.double_value(&[]));
    loss.backward();
    let grad = Vec::<f64>::try_from(&x.grad().flatten(0, -1)).unwrap();
    assert!(grad.iter().all(|g| g.is_finite()));
    assert!(grad[8..12].iter().chain(&grad[16..20]).all(|&g| g == 0.0));
}

#[test]
fn a_zero_vector_stays_finite() {
    let mut values = random_values(12, 8);
    for v in &mut values[4..8] {
        *v = 0.0;
    }
    let x = tensor(&values, [1, 3, 4], Kind::Double).set_requires_grad(true);
    let loss = mlc_loss(&x, None, 1.0).unwrap();
    // The zero vector is a zero column: the loss is that of the other two plus a zero
    // singular value in the softmax.
    let s = singular_values(&[values[0..4].to_vec(), values[8..12].to_vec()]);
    let expected = -(s[0].exp() / (s[0].exp() + s[1].exp() + 1.0)).ln();
    assert!((loss.double_value(&[]) - expected).abs() < 1e-10);
    loss.backward();
    assert!(Vec::<f64>::try_from(&x.grad().flatten(0, -1)).unwrap().iter().all(|g| g.is_finite()));
}
