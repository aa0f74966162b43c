//! The input checks of every objective crate: shape, element kind, device and parameter range.
//!
//! Each check returns an `Err` in [`LossError`]'s vocabulary (never panics) that names the input
//! or parameter at fault, so that `align-losses`, `mlc-loss` and `mpo-loss` report a bad batch
//! or a bad setting in the same words. A crate built on this one calls these functions instead
//! of writing its own.

use crate::{LossError, Result};
use tch::{Device, Kind, Tensor};

/// Fails unless `t` has exactly `expected.len()` dimensions and each dimension given as
/// `Some(n)` equals `n` (`None` matches any size). `shape_words` describes the shape for the
/// error message, e.g. `"[B, T, V]"`.
pub fn check_shape(t: &Tensor, what: &str, expected: &[Option<i64>], shape_words: &str) -> Result<()> {
    check_shape_where(t, what, shape_words, |got| {
        got.len() == expected.len() && got.iter().zip(expected).all(|(g, e)| e.is_none_or(|e| e == *g))
    })
}

/// Fails with a [`LossError::Shape`] unless `fits` accepts the shape of `t`: for shapes that a
/// list of fixed sizes cannot describe, e.g. a minimum size (`|s| s.len() == 3 && s[1] >= 1`)
/// or any rank with a fixed last dimension (`|s| s.last() == Some(&d)`). `shape_words`
/// describes the accepted shapes for the error message.
pub fn check_shape_where(t: &Tensor, what: &str, shape_words: &str, fits: impl FnOnce(&[i64]) -> bool) -> Result<()> {
    let got = t.size();
    if fits(&got) {
        Ok(())
    } else {
        Err(LossError::Shape { what: what.to_string(), expected: shape_words.to_string(), got })
    }
}

/// Fails unless `t` is a floating-point tensor (f16, bf16, f32 or f64).
pub fn check_float(t: &Tensor, what: &str) -> Result<()> {
    let kind = t.kind();
    if matches!(kind, Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double) {
        Ok(())
    } else {
        Err(LossError::Kind { what: what.to_string(), expected: "floating-point".into(), got: kind })
    }
}

/// Fails unless `t` has exactly the element kind `expected` (e.g. int64 token ids, a bool mask).
pub fn check_kind(t: &Tensor, what: &str, expected: Kind) -> Result<()> {
    let kind = t.kind();
    if kind == expected {
        Ok(())
    } else {
        Err(LossError::Kind { what: what.to_string(), expected: kind_words(expected), got: kind })
    }
}

/// Fails unless `t` lives on `device`. When `device` is another input's, say so in `what`
/// (e.g. ``"mask (must be on the device of `states`)"``).
pub fn check_device(t: &Tensor, what: &str, device: Device) -> Result<()> {
    if t.device() == device {
        Ok(())
    } else {
        Err(LossError::Device { what: what.to_string(), expected: device, got: t.device() })
    }
}

/// Fails unless `value` is finite and `>= min` (`min_inclusive`) or `> min` (parameter
/// validation for objective terms; the message says "must be finite and > min").
pub fn check_parameter(term: &str, parameter: &str, value: f64, min: f64, min_inclusive: bool) -> Result<()> {
    let op = if min_inclusive { ">=" } else { ">" };
    let why = format!("must be finite and {op} {min}");
    check_parameter_where(term, parameter, value, &why, |v| {
        v.is_finite() && if min_inclusive { v >= min } else { v > min }
    })
}

/// Fails with [`invalid_parameter`]`(term, parameter, value, why)` unless `valid` accepts
/// `value`: for ranges [`check_parameter`] cannot describe (e.g. `[0, 0.5)`), or to say more
/// in `why` than the bare range.
pub fn check_parameter_where(
    term: &str,
    parameter: &str,
    value: f64,
    why: &str,
    valid: impl FnOnce(f64) -> bool,
) -> Result<()> {
    if valid(value) {
        Ok(())
    } else {
        Err(invalid_parameter(term, parameter, value, why))
    }
}

/// A [`LossError::InvalidParameter`]: parameter `parameter` of the term `term` (its name, or
/// its kind where no name is known yet) has the rejected `value` (NaN when it is missing), for
/// the reason `why`.
pub fn invalid_parameter(term: &str, parameter: &str, value: f64, why: &str) -> LossError {
    LossError::InvalidParameter {
        term: term.to_string(),
        parameter: parameter.to_string(),
        value,
        why: why.to_string(),
    }
}

/// `t` in loss precision: half types (f16, bf16) become float32; float32 and float64 are kept
/// as they are (float64 lets tests check gradients against finite differences precisely).
pub fn loss_precision(t: &Tensor) -> Tensor {
    match t.kind() {
        Kind::Half | Kind::BFloat16 => t.to_kind(Kind::Float),
        _ => t.shallow_clone(),
    }
}

/// A kind in the words of the error messages (`"int64"`, `"bool"`, `"float32"`, ...).
fn kind_words(kind: Kind) -> String {
    match kind {
        Kind::Bool => "bool".into(),
        Kind::Uint8 => "uint8".into(),
        Kind::Int8 => "int8".into(),
        Kind::Int16 => "int16".into(),
        Kind::Int => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Half => "float16".into(),
        Kind::BFloat16 => "bfloat16".into(),
        Kind::Float => "float32".into(),
        Kind::Double => "float64".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_checks_name_the_input_and_the_expected_shape() {
        let t = Tensor::zeros([2, 0, 3], (Kind::Float, Device::Cpu));
        assert!(check_shape(&t, "x", &[Some(2), None, Some(3)], "[2, N, 3]").is_ok());
        let err = check_shape(&t, "x", &[Some(2), None], "[2, N]").unwrap_err();
        assert_eq!(err.to_string(), "x: expected shape [2, N], got [2, 0, 3]");
        let err = check_shape_where(&t, "states", "[G, K, D], K >= 1", |s| s[1] >= 1).unwrap_err();
        assert!(matches!(err, LossError::Shape { ref what, ref got, .. } if what == "states" && got == &[2, 0, 3]));
    }

    #[test]
    fn kind_checks_say_which_kind_was_expected() {
        let ints = Tensor::zeros([2], (Kind::Int64, Device::Cpu));
        assert!(check_kind(&ints, "ids", Kind::Int64).is_ok());
        let err = check_kind(&ints, "mask", Kind::Bool).unwrap_err();
        assert_eq!(err.to_string(), "mask: expected a bool tensor, got Int64");
        assert!(matches!(check_float(&ints, "x"), Err(LossError::Kind { .. })));
    }

    #[test]
    fn parameter_checks_name_the_term_and_the_parameter() {
        assert!(check_parameter("dpo", "beta", 0.1, 0.0, false).is_ok());
        assert!(check_parameter("dpo", "alpha", 0.0, 0.0, true).is_ok());
        for value in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = check_parameter("dpo", "beta", value, 0.0, false).unwrap_err();
            assert!(err.to_string().starts_with("objective `dpo`: parameter `beta`"), "{err}");
        }
        let err = check_parameter_where("x", "p", 0.5, "must be in [0, 0.5)", |v| (0.0..0.5).contains(&v));
        assert_eq!(err.unwrap_err().to_string(), "objective `x`: parameter `p` = 0.5 is invalid: must be in [0, 0.5)");
    }
}
