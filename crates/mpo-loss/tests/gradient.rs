//! The gradient of MPO's gap-matching loss: eq. (10)-(11) in closed form, central finite
//! differences, the stationary point `beta RG^t = RG^d`, and the policy-dominant ablation.

mod fixtures;

use align_losses::PreferenceObjective;
use fixtures::{batch, case, close, gap_f64, target_f64, values, Case};
use mpo_loss::{gap_matching_loss, reward_gap, Mpo, MpoConfig, Variant};
use proptest::prelude::*;

fn mpo(beta: f64, variant: Variant) -> Mpo {
    Mpo::new(MpoConfig { beta, retain_weight: 0.0, variant, ..MpoConfig::default() }).unwrap()
}

/// The loss of `case` through the objective term, as an f64 (no gradient).
fn loss_of(case: &Case, variant: Variant) -> f64 {
    let (b, _) = batch(case, false);
    mpo(case.beta, variant).compute(&b).unwrap().loss.double_value(&[])
}

/// Autograd gradients of the loss w.r.t. target chosen/rejected and policy-dominant
/// chosen/rejected summed log-probs.
fn autograd(case: &Case, variant: Variant) -> [Vec<f64>; 4] {
    let (b, leaves) = batch(case, true);
    let out = mpo(case.beta, variant).compute(&b).unwrap();
    out.loss.backward();
    let grad = |t: &tch::Tensor| {
        let g = t.grad();
        if g.defined() {
            values(&g)
        } else {
            vec![0.0; t.size()[0] as usize]
        }
    };
    [
        grad(&leaves.target_chosen),
        grad(&leaves.target_rejected),
        grad(&leaves.policy_chosen),
        grad(&leaves.policy_rejected),
    ]
}

/// Central finite differences of the loss w.r.t. the same four groups of summed log-probs.
fn finite_difference(case: &Case, variant: Variant) -> [Vec<f64>; 4] {
    let h = 1e-4;
    let fd = |perturb: &dyn Fn(&mut Case, f64)| {
        let (mut plus, mut minus) = (case.clone(), case.clone());
        perturb(&mut plus, h);
        perturb(&mut minus, -h);
        (loss_of(&plus, variant) - loss_of(&minus, variant)) / (2.0 * h)
    };
    let p = case.targets.len();
    let b = case.policy.len();
    [
        (0..p).map(|i| fd(&|c: &mut Case, d| c.targets[i].0.sum += d)).collect(),
        (0..p).map(|i| fd(&|c: &mut Case, d| c.targets[i].1.sum += d)).collect(),
        (0..b).map(|i| fd(&|c: &mut Case, d| c.policy[i].0.sum += d)).collect(),
        (0..b).map(|i| fd(&|c: &mut Case, d| c.policy[i].1.sum += d)).collect(),
    ]
}

/// Eq. (10)-(11) with the 1/P of the mean: `dL1/dlogp(y_w^t)_i = 2 beta w_i / (P |y_w^t_i|)`,
/// `dL1/dlogp(y_l^t)_i = -2 beta w_i / (P |y_l^t_i|)`, `w_i = beta RG^t_i - RG^d_i`.
fn eq10_target_gradient(case: &Case, variant: Variant) -> (Vec<f64>, Vec<f64>) {
    let p = case.targets.len() as f64;
    let ln = !matches!(variant, Variant::NoLengthNorm);
    case.targets
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            let w = case.beta * gap_f64(pair, ln) - target_f64(case, variant, i);
            let (nw, nl) = if ln { (pair.0.count, pair.1.count) } else { (1.0, 1.0) };
            (2.0 * case.beta * w / (p * nw), -2.0 * case.beta * w / (p * nl))
        })
        .unzip()
}

fn all_close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(*x, *y, tol))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Autograd equals eq. (10)-(11) for the paper's loss and every ablation that keeps RG^d
    /// constant; the dominant-pair log-probs get no gradient.
    #[test]
    fn autograd_matches_eq10(case in case(), c in -5.0f64..20.0) {
        for variant in [Variant::Paper, Variant::NoLengthNorm, Variant::ConstantTarget(c)] {
            let [gc, gr, gpc, gpr] = autograd(&case, variant);
            let (ec, er) = eq10_target_gradient(&case, variant);
            prop_assert!(all_close(&gc, &ec, 1e-9), "{variant}: chosen {gc:?} vs eq. 10 {ec:?}");
            prop_assert!(all_close(&gr, &er, 1e-9), "{variant}: rejected {gr:?} vs eq. 10 {er:?}");
            prop_assert!(gpc.iter().chain(&gpr).all(|g| *g == 0.0));
        }
    }

    /// Autograd equals central finite differences (the loss is quadratic in the log-probs, so
    /// central differences are exact up to rounding), for every variant, including the
    /// gradient that flows into the policy's dominant pairs under "policy_dominant".
    #[test]
    fn autograd_matches_finite_differences(case in case(), c in -5.0f64..20.0) {
        for variant in [Variant::Paper, Variant::NoLengthNorm, Variant::ConstantTarget(c), Variant::PolicyDominant] {
            let analytic = autograd(&case, variant);
            let numeric = finite_difference(&case, variant);
            for (a, n) in analytic.iter().zip(&numeric) {
                prop_assert!(all_close(a, n, 1e-6), "{variant}: autograd {a:?} vs finite differences {n:?}");
            }
        }
    }

    /// Where `beta RG^t = RG^d` for every pair, the loss and its gradient vanish.
    #[test]
    fn zero_loss_and_gradient_at_matched_gaps(mut case in case()) {
        for i in 0..case.targets.len() {
            let target = gap_f64(&case.reference[case.records[i] as usize], true) / case.beta;
            let (w, l) = &mut case.targets[i];
            w.sum = w.count * (target + l.sum / l.count); // so that RG^t = RG^d / beta
        }
        prop_assert!(loss_of(&case, Variant::Paper).abs() < 1e-20);
        let [gc, gr, _, _] = autograd(&case, Variant::Paper);
        prop_assert!(gc.iter().chain(&gr).all(|g| g.abs() < 1e-10), "{gc:?} {gr:?}");
    }

    /// "policy_dominant": the exact derivative w.r.t. the policy's dominant log-probs,
    /// `dL1/dlogp(y_w^d)_b = -(2/P) sum_{i: r(i) = b} w_i / |y_w^d_b|` (eq. 28 of the paper writes
    /// `2 beta w (dRG^t - dRG^d)`, which is this at beta = 1).
    #[test]
    fn policy_dominant_gradient_closed_form(case in case()) {
        let [gc, _, gpc, gpr] = autograd(&case, Variant::PolicyDominant);
        let p = case.targets.len() as f64;
        let mut expected_c = vec![0.0; case.policy.len()];
        let mut expected_r = vec![0.0; case.policy.len()];
        for (i, &r) in case.records.iter().enumerate() {
            let r = r as usize;
            let w = case.beta * gap_f64(&case.targets[i], true) - gap_f64(&case.policy[r], true);
            expected_c[r] -= 2.0 * w / (p * case.policy[r].0.count);
            expected_r[r] += 2.0 * w / (p * case.policy[r].1.count);
        }
        prop_assert!(all_close(&gpc, &expected_c, 1e-9), "{gpc:?} vs {expected_c:?}");
        prop_assert!(all_close(&gpr, &expected_r, 1e-9), "{gpr:?} vs {expected_r:?}");
        let (ec, _) = eq10_target_gradient(&case, Variant::PolicyDominant);
        prop_assert!(all_close(&gc, &ec, 1e-9));
    }

    /// `gap_matching_loss` itself: eq. (10) through autograd, and no gradient into the
    /// dominant gap even when it requires one.
    #[test]
    fn gap_matching_loss_detaches_the_dominant_gap(case in case()) {
        let (b, leaves) = batch(&case, true);
        let targets = b.targets.as_ref().unwrap();
        let target_gap = reward_gap(&targets.policy, true);
        let dominant = reward_gap(b.reference.as_ref().unwrap(), true).index_select(0, &targets.record);
        let loss = gap_matching_loss(&target_gap, &dominant, case.beta).unwrap();
        loss.backward();
        prop_assert!(!leaves.reference_chosen.grad().defined() || values(&leaves.reference_chosen.grad()).iter().all(|g| *g == 0.0));
        let (ec, er) = eq10_target_gradient(&case, Variant::Paper);
        prop_assert!(all_close(&values(&leaves.target_chosen.grad()), &ec, 1e-9));
        prop_assert!(all_close(&values(&leaves.target_rejected.grad()), &er, 1e-9));
    }
}
