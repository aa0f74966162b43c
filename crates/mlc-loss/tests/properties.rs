//! Property tests: invariances of the loss and the diagnostics, masking equals removal, and
//! gradients equal central differences at random points.

mod common;

use common::*;
use mlc_loss::{collinearity_ratio, mlc_loss};
use proptest::prelude::*;
use tch::{Kind, Tensor};

/// `(values, [G, K, D])` with small sizes and entries away from zero vectors.
fn groups() -> impl Strategy<Value = (Vec<f64>, [usize; 3])> {
    (1usize..=3, 2usize..=5, 1usize..=5).prop_flat_map(|(g, k, d)| {
        (prop::collection::vec(-3.0f64..3.0, g * k * d), Just([g, k, d]))
            .prop_filter("no near-zero vectors", |(v, [_, _, d])| {
                v.chunks(*d).all(|row| row.iter().map(|x| x * x).sum::<f64>() > 1e-2)
            })
    })
}

fn loss(values: &[f64], shape: [usize; 3], mask: Option<&[bool]>, tau: f64) -> f64 {
    let m = mask.map(|m| mask_tensor(m, shape[0], shape[1]));
    mlc_loss(&tensor(values, shape, Kind::Double), m.as_ref(), tau).unwrap().double_value(&[])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn value_matches_reference((values, shape) in groups(), tau in 0.2f64..3.0) {
        let expected = reference_mlc(&values, shape, None, tau);
        prop_assert!((loss(&values, shape, None, tau) - expected).abs() < 1e-9 * (1.0 + expected));
    }

    #[test]
    fn invariant_to_positive_scaling_of_each_vector(
        (values, shape) in groups(), scales in prop::collection::vec(1e-3f64..1e3, 25), tau in 0.2f64..3.0,
    ) {
        let d = shape[2];
        let scaled: Vec<f64> = values.iter().enumerate().map(|(i, x)| x * scales[(i / d) % scales.len()]).collect();
        prop_assert!((loss(&values, shape, None, tau) - loss(&scaled, shape, None, tau)).abs() < 1e-10);
        let r = collinearity_ratio(&tensor(&values, shape, Kind::Double), None).unwrap();
        let r_scaled = collinearity_ratio(&tensor(&scaled, shape, Kind::Double), None).unwrap();
        prop_assert!((r - r_scaled).abs().max().double_value(&[]) < 1e-10);
    }

    #[test]
    fn invariant_to_permuting_variants((values, shape) in groups(), rotate in 1usize..5, tau in 0.2f64..3.0) {
        let [g, k, d] = shape;
        let mut permuted = values.clone();
        for gi in 0..g {
            for ki in 0..k {
                let from = (gi * k + (ki + rotate) % k) * d;
                permuted[(gi * k + ki) * d..(gi * k + ki + 1) * d].copy_from_slice(&values[from..from + d]);
            }
        }
        // Also reverse the order, so permutations other than rotations are covered.
        let mut reversed = permuted.clone();
        for gi in 0..g {
            for ki in 0..k {
                let from = (gi * k + (k - 1 - ki)) * d;
                reversed[(gi * k + ki) * d..(gi * k + ki + 1) * d].copy_from_slice(&permuted[from..from + d]);
            }
        }
        let base = loss(&values, shape, None, tau);
        prop_assert!((base - loss(&permuted, shape, None, tau)).abs() < 1e-10);
        prop_assert!((base - loss(&reversed, shape, None, tau)).abs() < 1e-10);
    }

    #[test]
    fn masking_a_variant_out_equals_removing_it(
        (values, shape) in groups(), drop in 0usize..5, garbage in -1e3f64..1e3, tau in 0.2f64..3.0,
    ) {
        let [g, k, d] = shape;
        prop_assume!(k >= 3);
        let drop = drop % k;
        // Mask variant `drop` of every group out and fill it with garbage ...
        let mut filled = values.clone();
        let mut mask = vec![true; g * k];
        for gi in 0..g {
            mask[gi * k + drop] = false;
            for x in &mut filled[(gi * k + drop) * d..(gi * k + drop + 1) * d] {
                *x = garbage;
            }
        }
        // ... and compare with the batch that never had it.
        let removed: Vec<f64> = values
            .chunks(d)
            .enumerate()
            .filter(|(i, _)| i % k != drop)
            .flat_map(|(_, row)| row.to_vec())
            .collect();
        let with_mask = loss(&filled, shape, Some(&mask), tau);
        let without = loss(&removed, [g, k - 1, d], None, tau);
        prop_assert!((with_mask - without).abs() < 1e-10, "{} vs {}", with_mask, without);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn gradient_matches_central_differences((values, shape) in groups(), tau in 0.3f64..3.0) {
        // Keep to points where the loss is smooth: distinct singular values in every group
        // (ties and exact zeros are the kinks covered in tests/gradients.rs).
        let [_, k, d] = shape;
        for group in present_groups(&values, shape, None) {
            let s = singular_values(&group);
            let nonzero = k.min(d);
            prop_assume!(s.windows(2).take(nonzero - 1).all(|w| w[0] - w[1] > 1e-2));
            prop_assume!(s[nonzero - 1] > 1e-2);
        }
        let f = |x: &Tensor| mlc_loss(x, None, tau).unwrap();
        let g = autograd(&f, &values, shape);
        let fd = central_differences(&f, &values, shape, 1e-6);
        for (a, b) in g.iter().zip(&fd) {
            prop_assert!((a - b).abs() < 1e-6 + 1e-4 * b.abs(), "{} vs {}", a, b);
        }
    }
}
