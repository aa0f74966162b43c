//! Shape, kind and device checks for public boundaries: an `Err`, never a panic.

use crate::{LossError, Result};
use tch::{Kind, Tensor};

/// Fails unless `t` has exactly `expected.len()` dimensions and each dimension given as
/// `Some(n)` equals `n` (`None` matches any size). `shape_words` describes the shape for the
/// error message, e.g. `"[B, T, V]"`.
pub fn check_shape(t: &Tensor, what: &str, expected: &[Option<i64>], shape_words: &str) -> Result<()> {
    let got = t.size();
    let ok = got.len() == expected.len() && got.iter().zip(expected).all(|(g, e)| e.is_none_or(|e| e == *g));
    if ok {
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

/// Fails unless `t` lives on `device`.
pub fn check_device(t: &Tensor, what: &str, device: tch::Device) -> Result<()> {
    if t.device() == device {
        Ok(())
    } else {
        Err(LossError::Device { what: what.to_string(), expected: device, got: t.device() })
    }
}

/// Fails unless `value` is finite and `>= min` (parameter validation for objective terms).
pub fn check_parameter(term: &str, parameter: &str, value: f64, min: f64, min_inclusive: bool) -> Result<()> {
    let ok = value.is_finite() && if min_inclusive { value >= min } else { value > min };
    if ok {
        Ok(())
    } else {
        let op = if min_inclusive { ">=" } else { ">" };
        Err(LossError::InvalidParameter {
            term: term.to_string(),
            parameter: parameter.to_string(),
            value,
            why: format!("must be finite and {op} {min}"),
        })
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
