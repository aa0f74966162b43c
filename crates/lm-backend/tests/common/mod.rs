//! Helpers shared by lm-backend's integration tests.

use lm_backend::HfCausalLm;
use tch::Tensor;

/// The gradient of `objective` at one entry (`param` at `index`) of `model`'s parameters,
/// as autograd left it in `.grad` and as the central difference with step 1e-6 (the entry is
/// restored afterwards): `(analytic, numeric)`. `objective` is evaluated without gradient.
pub fn gradient_entry(
    model: &HfCausalLm,
    param: &str,
    index: &[i64],
    objective: impl Fn(&HfCausalLm) -> Tensor,
) -> (f64, f64) {
    let p = &model.parameters()[param];
    let analytic = p.grad().double_value(index);
    let h = 1e-6;
    let shift = |delta: f64| {
        tch::no_grad(|| {
            let mut entry = p.shallow_clone();
            for &i in index {
                entry = entry.get(i);
            }
            let _ = entry.g_add_scalar_(delta);
        })
    };
    shift(h);
    let plus = tch::no_grad(|| objective(model).double_value(&[]));
    shift(-2.0 * h);
    let minus = tch::no_grad(|| objective(model).double_value(&[]));
    shift(h);
    (analytic, (plus - minus) / (2.0 * h))
}
