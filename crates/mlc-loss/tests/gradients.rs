//! Gradients of the MLC loss against central finite differences (f64), at random points and
//! at the degenerate points where singular values repeat or vanish.
//!
//! Where the loss is differentiable (distinct singular values, or repeated ones that the
//! loss treats symmetrically) the autograd gradient must equal the central differences.
//! At exactly collinear groups (identical, parallel or opposite vectors) the loss has its
//! minimum at a kink: the trailing singular values behave like `|x|` there. Autograd then
//! returns one subgradient, `U diag(dL/ds) V^T`; we check that it is finite and that it is a
//! valid subgradient, `-L'(x; -d) <= <g, d> <= L'(x; d)` for one-sided directional
//! derivatives `L'(x; d)`, and that it is exact along directions that keep the vectors
//! collinear.

mod common;

use common::*;
use mlc_loss::{mlc_loss, pairwise_cosine_loss, ProjectionHead};
use tch::{nn, Device, Kind, Tensor};

fn mlc(tau: f64) -> impl Fn(&Tensor) -> Tensor {
    move |x: &Tensor| mlc_loss(x, None, tau).unwrap()
}

fn check_against_central_differences(values: &[f64], shape: [usize; 3], tau: f64, what: &str) {
    let f = mlc(tau);
    let g = autograd(&f, values, shape);
    assert!(g.iter().all(|x| x.is_finite()), "{what}: non-finite gradient");
    let fd = central_differences(&f, values, shape, 1e-6);
    assert_close(&g, &fd, 1e-7, 1e-5, what);
}

#[test]
fn gradient_matches_central_differences_at_random_points() {
    for (seed, shape, tau) in [(31, [2, 3, 4], 1.0), (32, [1, 4, 6], 0.5), (33, [3, 2, 5], 2.0)] {
        let values = random_values(shape.iter().product(), seed);
        check_against_central_differences(&values, shape, tau, &format!("random {shape:?}"));
    }
}

#[test]
fn gradient_matches_central_differences_with_two_variants_and_more_variants_than_dimensions() {
    let values = random_values(2 * 2 * 5, 41);
    check_against_central_differences(&values, [2, 2, 5], 1.0, "two variants");
    // K = 5 > D = 2: three singular values are structurally zero (padding), the other two
    // are distinct and positive, so the loss is smooth.
    let values = random_values(5 * 2, 42);
    check_against_central_differences(&values, [1, 5, 2], 1.0, "K > D");
    // K = 4 > D = 3, two groups.
    let values = random_values(2 * 4 * 3, 43);
    check_against_central_differences(&values, [2, 4, 3], 0.7, "K > D, two groups");
}

#[test]
fn gradient_matches_central_differences_with_repeated_trailing_singular_values() {
    // Three unit vectors on a cone around e0, 120 degrees apart around it: Z^T Z has
    // eigenvalues 3 cos^2 a (once) and 1.5 sin^2 a (twice), so s_2 = s_3 exactly. The loss is
    // symmetric in s_2, s_3, hence differentiable, and the gradient must be exact.
    let a: f64 = 0.4;
    let mut values = Vec::new();
    for j in 0..3 {
        let phi = 2.0 * std::f64::consts::PI * j as f64 / 3.0;
        let scale = 1.0 + j as f64; // positive scaling does not change the spectrum
        values.extend([a.cos(), a.sin() * phi.cos(), a.sin() * phi.sin(), 0.0].map(|x| x * scale));
    }
    let s = singular_values(&present_groups(&values, [1, 3, 4], None)[0]);
    assert!((s[1] - s[2]).abs() < 1e-12 && s[0] > s[1] + 0.1, "{s:?}");
    check_against_central_differences(&values, [1, 3, 4], 1.0, "s2 = s3");
}

/// One-sided directional derivative `(L(x + h d) - L(x)) / h`.
fn one_sided(f: &dyn Fn(&Tensor) -> Tensor, values: &[f64], d: &[f64], shape: [usize; 3], h: f64) -> f64 {
    let moved: Vec<f64> = values.iter().zip(d).map(|(x, y)| x + h * y).collect();
    (value_at(f, &moved, shape) - value_at(f, values, shape)) / h
}

fn check_subgradient_at_collinear_point(values: &[f64], shape: [usize; 3], what: &str) {
    let f = mlc(1.0);
    let g = autograd(&f, values, shape);
    assert!(g.iter().all(|x| x.is_finite()), "{what}: non-finite gradient {g:?}");
    let n = values.len();
    for seed in 0..12 {
        let d = random_values(n, 100 + seed);
        let h = 1e-6;
        let forward = one_sided(&f, values, &d, shape, h);
        let backward = -one_sided(&f, values, &d.iter().map(|x| -x).collect::<Vec<_>>(), shape, h);
        let gd = dot(&g, &d);
        // A minimum: the loss rises (to first order) in every direction that breaks
        // collinearity, and the returned gradient lies between the one-sided derivatives.
        assert!(forward >= -1e-4 && backward <= 1e-4, "{what}: not a minimum ({backward}, {forward})");
        assert!(backward - 1e-4 <= gd && gd <= forward + 1e-4, "{what}: {backward} <= {gd} <= {forward} fails");
    }
    // Directions that keep the group collinear: scale each vector, or move all of them
    // along the same direction w (the common direction rotates). The loss is constant
    // along them; the gradient must say so.
    let [_, k, dim] = shape;
    let w = random_values(dim, 7);
    let mut along = Vec::with_capacity(n);
    for j in 0..k {
        let row = &values[j * dim..(j + 1) * dim];
        let sign = if dot(row, &values[0..dim]) >= 0.0 { 1.0 } else { -1.0 };
        let norm_ratio = dot(row, row).sqrt() / dot(&values[0..dim], &values[0..dim]).sqrt();
        along.extend(w.iter().map(|x| sign * norm_ratio * x));
    }
    assert!(dot(&g, &along).abs() < 1e-9, "{what}: gradient along a common rotation");
    let scaling: Vec<f64> = values.iter().enumerate().map(|(i, x)| x * (1.0 + (i / dim) as f64)).collect();
    assert!(dot(&g, &scaling).abs() < 1e-9, "{what}: gradient along positive scalings");
}

#[test]
fn gradient_is_a_finite_subgradient_at_identical_parallel_and_opposite_vectors() {
    let v = [0.3, -1.2, 0.5, 2.0];
    check_subgradient_at_collinear_point(&[v, v, v].concat(), [1, 3, 4], "identical");
    check_subgradient_at_collinear_point(&[v, v].concat(), [1, 2, 4], "two identical");
    check_subgradient_at_collinear_point(&[v, v.map(|x| 4.0 * x)].concat(), [1, 2, 4], "parallel");
    check_subgradient_at_collinear_point(&[v, v.map(|x| -x), v.map(|x| -2.0 * x)].concat(), [1, 3, 4], "opposite");
    // K > D and collinear: all vectors on one line in R^2.
    let u = [0.6, -0.8];
    check_subgradient_at_collinear_point(&[u, u, u.map(|x| -x), u].concat(), [1, 4, 2], "K > D collinear");
}

#[test]
fn gradient_is_finite_at_equal_top_singular_values_and_descends_next_to_them() {
    // Orthonormal vectors: s_1 = s_2 = s_3 = 1. The loss, log sum_j exp((s_j - s_1)/tau), is at
    // its global maximum log k there, where s_1 is not differentiable: any element of the
    // Clarke subdifferential (which contains 0) is a valid answer, it only has to be finite.
    let mut values = vec![0.0; 3 * 4];
    for j in 0..3 {
        values[j * 4 + j] = 1.0;
    }
    let f = mlc(1.0);
    assert!((value_at(&f, &values, [1, 3, 4]) - 3f64.ln()).abs() < 1e-12);
    let g = autograd(&f, &values, [1, 3, 4]);
    assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
    // Next to it the loss is smooth again: the gradient is finite, non-zero, matches central
    // differences, and a step against it lowers the loss (training leaves the maximum).
    let noise = random_values(12, 81);
    let near: Vec<f64> = values.iter().zip(&noise).map(|(x, e)| x + 1e-3 * e).collect();
    let g = autograd(&f, &near, [1, 3, 4]);
    assert!(dot(&g, &g) > 1e-12);
    assert_close(&g, &central_differences(&f, &near, [1, 3, 4], 1e-7), 1e-6, 1e-4, "near orthonormal");
    let stepped: Vec<f64> = near.iter().zip(&g).map(|(x, y)| x - 1e-2 * y).collect();
    assert!(value_at(&f, &stepped, [1, 3, 4]) < value_at(&f, &near, [1, 3, 4]));
}

#[test]
fn gradient_through_a_mask_equals_the_gradient_without_the_variant() {
    let values = random_values(2 * 3 * 4, 51);
    let mask = [true, false, true, true, true, true];
    let x = tensor(&values, [2, 3, 4], Kind::Double).set_requires_grad(true);
    mlc_loss(&x, Some(&mask_tensor(&mask, 2, 3)), 1.0).unwrap().backward();
    let masked = Vec::<f64>::try_from(&x.grad().flatten(0, -1)).unwrap();
    // The same groups with the variant removed, one group at a time.
    let g0: Vec<f64> = [&values[0..4], &values[8..12]].concat();
    let alone = autograd(&mlc(1.0), &g0, [1, 2, 4]);
    let g1 = autograd(&mlc(1.0), &values[12..24], [1, 3, 4]);
    // The batch loss is the mean of 2 groups, so each group's gradient is halved.
    assert_close(&masked[0..4], &alone[0..4].iter().map(|x| x / 2.0).collect::<Vec<_>>(), 1e-12, 1e-9, "g0 v0");
    assert_close(&masked[8..12], &alone[4..8].iter().map(|x| x / 2.0).collect::<Vec<_>>(), 1e-12, 1e-9, "g0 v2");
    assert!(masked[4..8].iter().all(|&x| x == 0.0));
    assert_close(&masked[12..24], &g1.iter().map(|x| x / 2.0).collect::<Vec<_>>(), 1e-12, 1e-9, "g1");
}

#[test]
fn pairwise_cosine_gradient_matches_central_differences() {
    let values = random_values(2 * 3 * 4, 61);
    let f = |x: &Tensor| pairwise_cosine_loss(x, None).unwrap();
    let g = autograd(&f, &values, [2, 3, 4]);
    let fd = central_differences(&f, &values, [2, 3, 4], 1e-6);
    assert_close(&g, &fd, 1e-7, 1e-5, "pairwise cosine");
}

#[test]
fn projection_head_gradients_reach_its_variables_and_match_central_differences() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let head = ProjectionHead::new(&(vs.root() / "head"), 4, 3).unwrap();
    vs.double();
    let states = tensor(&random_values(2 * 3 * 4, 71), [2, 3, 4], Kind::Double);
    let loss = mlc_loss(&head.forward(&states).unwrap(), None, 1.0).unwrap();
    loss.backward();
    let weight = &head.variables()[0];
    let grad = Vec::<f64>::try_from(&weight.grad().flatten(0, -1)).unwrap();
    let w0 = Vec::<f64>::try_from(&weight.flatten(0, -1)).unwrap();
    // Central differences on W, evaluated by re-running with W + h e_i.
    let h = 1e-6;
    for i in 0..w0.len() {
        let at = |delta: f64| {
            let mut w = w0.clone();
            w[i] += delta;
            let w = Tensor::from_slice(&w).reshape([3, 4]);
            let b = Tensor::zeros([3], (Kind::Double, Device::Cpu));
            let moved = ProjectionHead::from_tensors(w, b).unwrap();
            mlc_loss(&moved.forward(&states).unwrap(), None, 1.0).unwrap().double_value(&[])
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!((grad[i] - fd).abs() < 1e-7 + 1e-5 * fd.abs(), "W[{i}]: {} vs {fd}", grad[i]);
    }
}
