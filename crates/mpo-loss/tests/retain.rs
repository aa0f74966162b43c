//! The retain term, eq. (8), in both forms: values against f64 loops, zero at identity,
//! padding ignored, the last-token index, the gradient, and errors.

mod fixtures;

use align_losses::{DominantStates, LossError};
use fixtures::{close, values};
use mpo_loss::{last_token_positions, retain_last_token, retain_loss, retain_mean_pool, MpoError, RetainForm};
use proptest::collection::vec;
use proptest::prelude::*;
use tch::{Kind, Tensor};

/// Right-padded states in plain numbers: `[B][T][D]` policy and reference, and the lengths.
#[derive(Debug, Clone)]
struct States {
    policy: Vec<Vec<Vec<f64>>>,
    reference: Vec<Vec<Vec<f64>>>,
    lengths: Vec<usize>,
}

fn states() -> impl Strategy<Value = States> {
    (1usize..4, 1usize..6, 1usize..5)
        .prop_flat_map(|(b, t, d)| {
            let grid = move || vec(vec(vec(-3.0f64..3.0, d), t), b);
            (grid(), grid(), vec(1..=t, b))
        })
        .prop_map(|(policy, reference, lengths)| States { policy, reference, lengths })
}

impl States {
    fn dims(&self) -> (usize, usize, usize) {
        (self.policy.len(), self.policy[0].len(), self.policy[0][0].len())
    }

    fn tensor(grid: &[Vec<Vec<f64>>]) -> Tensor {
        let (b, t, d) = (grid.len() as i64, grid[0].len() as i64, grid[0][0].len() as i64);
        let flat: Vec<f64> = grid.iter().flatten().flatten().copied().collect();
        Tensor::from_slice(&flat).view([b, t, d])
    }

    /// `[B, T]` int64 right-padded mask.
    fn mask(&self) -> Tensor {
        let (_, t, _) = self.dims();
        let flat: Vec<i64> = self.lengths.iter().flat_map(|&n| (0..t).map(move |j| i64::from(j < n))).collect();
        Tensor::from_slice(&flat).view([self.lengths.len() as i64, t as i64])
    }

    fn last_token(&self) -> f64 {
        retain_last_token(&Self::tensor(&self.policy), &Self::tensor(&self.reference), &self.mask())
            .unwrap()
            .double_value(&[])
    }

    fn mean_pool(&self) -> f64 {
        retain_mean_pool(&Self::tensor(&self.policy), &Self::tensor(&self.reference), &self.mask())
            .unwrap()
            .double_value(&[])
    }

    /// Eq. (8) at the last real token: mean over sequences of the squared L2 norm.
    fn last_token_f64(&self) -> f64 {
        let (b, _, d) = self.dims();
        let mut total = 0.0;
        for s in 0..b {
            let l = self.lengths[s] - 1;
            for k in 0..d {
                total += (self.policy[s][l][k] - self.reference[s][l][k]).powi(2);
            }
        }
        total / b as f64
    }

    /// Masked mean pooling, then the mean squared difference over batch and hidden size. With
    /// `include_padding`, the public code's unmasked pooling over all `T` positions.
    fn mean_pool_f64(&self, include_padding: bool) -> f64 {
        let (b, t, d) = self.dims();
        let mut total = 0.0;
        for s in 0..b {
            let n = if include_padding { t } else { self.lengths[s] };
            for k in 0..d {
                let pooled = |grid: &Vec<Vec<Vec<f64>>>| (0..n).map(|j| grid[s][j][k]).sum::<f64>() / n as f64;
                total += (pooled(&self.policy) - pooled(&self.reference)).powi(2);
            }
        }
        total / (b * d) as f64
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn values_match_f64_loops(s in states()) {
        prop_assert!(close(s.last_token(), s.last_token_f64(), 1e-12), "{} vs {}", s.last_token(), s.last_token_f64());
        prop_assert!(close(s.mean_pool(), s.mean_pool_f64(false), 1e-12));
    }

    /// The public code pools padding too; we do not. With padded policy states far from the
    /// reference's (offset 100, while real states differ by at most 6), the unmasked value
    /// moves and ours does not; without padding the two agree.
    #[test]
    fn mean_pool_masks_what_the_public_code_pools(mut s in states()) {
        let (b, t, d) = s.dims();
        for seq in 0..b {
            for j in s.lengths[seq]..t {
                for k in 0..d {
                    s.policy[seq][j][k] = s.reference[seq][j][k] + 100.0;
                }
            }
        }
        prop_assert!(close(s.mean_pool(), s.mean_pool_f64(false), 1e-12));
        if s.lengths.iter().all(|&n| n == t) {
            prop_assert!(close(s.mean_pool(), s.mean_pool_f64(true), 1e-12));
        } else {
            prop_assert!(s.mean_pool_f64(true) > s.mean_pool() + 1.0);
        }
    }

    #[test]
    fn zero_at_identity(mut s in states()) {
        s.reference = s.policy.clone();
        let mut policy = States::tensor(&s.policy).set_requires_grad(true);
        for form in [RetainForm::LastToken, RetainForm::MeanPool] {
            let states = DominantStates { policy: policy.shallow_clone(), reference: States::tensor(&s.reference), attention_mask: s.mask() };
            let loss = retain_loss(form, &states).unwrap();
            prop_assert_eq!(loss.double_value(&[]), 0.0);
            policy.zero_grad();
            loss.backward();
            prop_assert!(values(&policy.grad().flatten(0, -1)).iter().all(|g| *g == 0.0));
        }
    }

    /// Changing the states at padded positions (policy and reference alike) changes nothing.
    #[test]
    fn padding_is_ignored(s in states(), noise in -100.0f64..100.0) {
        let mut padded = s.clone();
        let (b, t, d) = s.dims();
        for seq in 0..b {
            for j in s.lengths[seq]..t {
                for k in 0..d {
                    padded.policy[seq][j][k] += noise * (k + 1) as f64;
                    padded.reference[seq][j][k] -= noise;
                }
            }
        }
        prop_assert_eq!(s.last_token(), padded.last_token());
        prop_assert!(close(s.mean_pool(), padded.mean_pool(), 1e-12));
    }

    /// Right padding: the last real token is at `length - 1`; left padding: at `T - 1`.
    #[test]
    fn last_token_positions_of_padded_rows(s in states()) {
        let (_, t, _) = s.dims();
        let right = values(&last_token_positions(&s.mask()).unwrap());
        let expected: Vec<f64> = s.lengths.iter().map(|&n| (n - 1) as f64).collect();
        prop_assert_eq!(right, expected);
        let left = values(&last_token_positions(&s.mask().flip([1])).unwrap());
        prop_assert!(left.iter().all(|&p| p == (t - 1) as f64));
    }

    /// The gradient of the last-token form is `2 (h - h_ref) / B` at each sequence's last
    /// real token and 0 elsewhere; the reference gets none.
    #[test]
    fn last_token_gradient(s in states()) {
        let (b, t, d) = s.dims();
        let policy = States::tensor(&s.policy).set_requires_grad(true);
        let reference = States::tensor(&s.reference).set_requires_grad(true);
        retain_last_token(&policy, &reference, &s.mask()).unwrap().backward();
        let grad = values(&policy.grad().flatten(0, -1));
        for seq in 0..b {
            for j in 0..t {
                for k in 0..d {
                    let expected = if j == s.lengths[seq] - 1 {
                        2.0 * (s.policy[seq][j][k] - s.reference[seq][j][k]) / b as f64
                    } else {
                        0.0
                    };
                    prop_assert!(close(grad[(seq * t + j) * d + k], expected, 1e-12));
                }
            }
        }
        prop_assert!(!reference.grad().defined());
    }
}

#[test]
fn bool_and_float_masks_agree_and_half_states_give_f32() {
    let policy = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([1, 3, 2]);
    let reference = Tensor::zeros([1, 3, 2], tch::kind::FLOAT_CPU);
    let mask = Tensor::from_slice(&[1i64, 1, 0]).view([1, 3]);
    let int = retain_last_token(&policy, &reference, &mask).unwrap();
    let boolean = retain_last_token(&policy, &reference, &mask.to_kind(Kind::Bool)).unwrap();
    let float = retain_last_token(&policy, &reference, &mask.to_kind(Kind::Float)).unwrap();
    // Last real token is position 1: (3, 4), squared norm 25.
    assert_eq!(int.double_value(&[]), 25.0);
    assert_eq!(boolean.double_value(&[]), 25.0);
    assert_eq!(float.double_value(&[]), 25.0);
    let half = retain_mean_pool(&policy.to_kind(Kind::BFloat16), &reference.to_kind(Kind::BFloat16), &mask).unwrap();
    assert_eq!(half.kind(), Kind::Float);
    // Pooled over positions 0-1: (2, 3); mean of squares over D = 2: 6.5.
    assert_eq!(half.double_value(&[]), 6.5);
}

fn shape_error(result: mpo_loss::Result<Tensor>) -> bool {
    matches!(result, Err(MpoError::Input(LossError::Shape { .. })))
}

#[test]
fn errors_instead_of_panics() {
    let h = Tensor::zeros([2, 3, 4], tch::kind::FLOAT_CPU);
    let mask = Tensor::ones([2, 3], (Kind::Int64, tch::Device::Cpu));
    assert!(shape_error(retain_last_token(&h, &Tensor::zeros([2, 3, 5], tch::kind::FLOAT_CPU), &mask)));
    assert!(shape_error(retain_last_token(&h, &h, &Tensor::ones([2, 4], tch::kind::INT64_CPU))));
    assert!(shape_error(retain_mean_pool(&h.select(0, 0), &h.select(0, 0), &mask)));
    let empty = Tensor::zeros([0, 3, 4], tch::kind::FLOAT_CPU);
    assert!(shape_error(retain_last_token(&empty, &empty, &Tensor::zeros([0, 3], tch::kind::INT64_CPU))));
    assert!(matches!(
        retain_last_token(&h.to_kind(Kind::Int64), &h, &mask),
        Err(MpoError::Input(LossError::Kind { .. }))
    ));
    let two = Tensor::from_slice(&[1i64, 2, 0, 1, 1, 0]).view([2, 3]);
    assert!(matches!(retain_mean_pool(&h, &h, &two), Err(MpoError::MaskValue { value }) if value == 2.0));
    let empty_row = Tensor::from_slice(&[1i64, 1, 0, 0, 0, 0]).view([2, 3]);
    assert!(matches!(retain_last_token(&h, &h, &empty_row), Err(MpoError::EmptySequence { row: 1 })));
    assert!(matches!(last_token_positions(&empty_row), Err(MpoError::EmptySequence { row: 1 })));
    assert!(matches!(last_token_positions(&two.view([6])), Err(MpoError::Input(LossError::Shape { .. }))));
}
