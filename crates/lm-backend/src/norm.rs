//! RMSNorm (Zhang & Sennrich 2019): `y = x / sqrt(mean(x^2) + eps) * scale`, computed in f32.

use tch::{Kind, Tensor};

use crate::error::Result;
use crate::weights::Weights;

/// The dtype reductions run in: f32 for half types and f32, f64 for f64 (so gradient checks
/// in f64 stay precise).
pub fn accumulation_kind(kind: Kind) -> Kind {
    if kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    }
}

/// How the stored weight becomes the scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormScale {
    /// Llama/Qwen2: scale = `w`, applied after casting back to the input dtype.
    Weight,
    /// Gemma: scale = `1 + w`, applied in f32 before casting back.
    OnePlusWeight,
}

/// Root-mean-square layer norm over the last dimension.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor, // [D]
    eps: f64,
    scale: NormScale,
}

impl RmsNorm {
    /// A norm with this weight `[D]`.
    pub fn new(weight: Tensor, eps: f64, scale: NormScale) -> Self {
        RmsNorm { weight, eps, scale }
    }

    /// The norm under `w` (its `weight` `[dim]`).
    pub(crate) fn load(w: &Weights, dim: usize, eps: f64, scale: NormScale) -> Result<Self> {
        Ok(RmsNorm::new(w.get("weight", &[dim])?, eps, scale))
    }

    /// Normalises `x` `[.., D]`; the result has `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let wide = accumulation_kind(kind);
        let x32 = x.to_kind(wide);
        let normed = &x32 * (x32.square().mean_dim(-1, true, wide) + self.eps).rsqrt();
        match self.scale {
            NormScale::Weight => &self.weight * normed.to_kind(kind),
            NormScale::OnePlusWeight => (normed * (self.weight.to_kind(wide) + 1.0)).to_kind(kind),
        }
    }
}
