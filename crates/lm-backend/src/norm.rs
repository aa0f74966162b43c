//! RMSNorm (Zhang & Sennrich 2019): `y = x / sqrt(mean(x^2) + eps) * scale`, computed in f32.

use tch::{Kind, Tensor};

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

    /// Normalises `x` `[.., D]`; the result has `x`'s dtype.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let x32 = x.to_kind(Kind::Float);
        let normed = &x32 * (x32.square().mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        match self.scale {
            NormScale::Weight => &self.weight * normed.to_kind(kind),
            NormScale::OnePlusWeight => (normed * (self.weight.to_kind(Kind::Float) + 1.0)).to_kind(kind),
        }
    }
}
