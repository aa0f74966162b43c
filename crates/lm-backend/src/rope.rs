//! Rotary position embeddings (RoFormer, Su et al. 2021, eq. 34), with the `linear` and
//! Llama 3.1 (`llama3`) frequency scalings, as `transformers` computes them.

use tch::{Device, Kind, Tensor};

use crate::config::{ModelConfig, RopeConfig, RopeScaling};

/// The inverse frequencies of one model, ready to turn positions into `cos`/`sin`: one table,
/// or (Gemma 3) one for full-attention layers and one for sliding-window layers.
#[derive(Debug)]
pub struct Rope {
    inv_freq: Tensor,               // [head_dim / 2], f32
    local_inv_freq: Option<Tensor>, // [head_dim / 2], f32: sliding-window layers, when they differ
}

/// The f32 inverse frequencies of `rope` on `device`.
fn inverse_frequency_table(rope: &RopeConfig, head_dim: usize, device: Device) -> Tensor {
    let inv: Vec<f32> = inverse_frequencies(rope, head_dim).iter().map(|&f| f as f32).collect();
    Tensor::from_slice(&inv).to_device(device)
}

/// The inverse frequencies `theta^(-2i/d)`, i = 0..d/2, after the configured scaling.
///
/// `llama3` (Llama 3.1 report; `transformers`' `_compute_llama3_parameters`): with
/// `lambda = 2 pi / f`, frequencies whose wavelength exceeds `L / low_freq_factor` are divided
/// by `factor`, those below `L / high_freq_factor` are kept, and between them
/// `f' = (1 - s) f / factor + s f` with `s = (L / lambda - low) / (high - low)`.
pub fn inverse_frequencies(rope: &RopeConfig, head_dim: usize) -> Vec<f64> {
    let base: Vec<f64> = (0..head_dim / 2).map(|i| 1.0 / rope.theta.powf((2 * i) as f64 / head_dim as f64)).collect();
    match rope.scaling {
        RopeScaling::None => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            let low_wavelen = original_max_position_embeddings / low_freq_factor;
            let high_wavelen = original_max_position_embeddings / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let s = (original_max_position_embeddings / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - s) * f / factor + s * f
                    }
                })
                .collect()
        }
    }
}

impl Rope {
    /// The rotary table of a model with this rope config and head width (one table for
    /// every layer).
    pub fn new(rope: &RopeConfig, head_dim: usize, device: Device) -> Self {
        Rope { inv_freq: inverse_frequency_table(rope, head_dim, device), local_inv_freq: None }
    }

    /// The rotary tables of a model: `config.rope`, and `config.local_rope` for its
    /// sliding-window layers when it has one.
    pub fn for_config(config: &ModelConfig, device: Device) -> Self {
        let local = config.local_rope.as_ref().map(|local| inverse_frequency_table(local, config.head_dim, device));
        Rope { local_inv_freq: local, ..Rope::new(&config.rope, config.head_dim, device) }
    }

    /// `cos` and `sin` for positions `[B, T]` (int64), each `[B, 1, T, head_dim]` in `kind`
    /// (angles computed in f32 as in `transformers`).
    pub fn cos_sin(&self, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
        cos_sin(&self.inv_freq, positions, kind)
    }

    /// The same for the sliding-window layers' table, when the model has one of its own.
    pub fn local_cos_sin(&self, positions: &Tensor, kind: Kind) -> Option<(Tensor, Tensor)> {
        self.local_inv_freq.as_ref().map(|inv_freq| cos_sin(inv_freq, positions, kind))
    }
}

/// `cos`/`sin` of the angles `positions x inv_freq`, `[B, T]` -> `[B, 1, T, head_dim]` each.
fn cos_sin(inv_freq: &Tensor, positions: &Tensor, kind: Kind) -> (Tensor, Tensor) {
    let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * inv_freq; // [B, T, d/2]
    let emb = Tensor::cat(&[&freqs, &freqs], -1); // [B, T, d]
    (emb.cos().to_kind(kind).unsqueeze(1), emb.sin().to_kind(kind).unsqueeze(1))
}

/// Rotates `x` `[B, H, T, d]` by the angles in `cos`/`sin` `[B, 1, T, d]`:
/// `x cos + rotate_half(x) sin`, with `rotate_half([x1, x2]) = [-x2, x1]` (the half-split
/// layout of Hugging Face checkpoints).
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let d = x.size()[3];
    let x1 = x.narrow(3, 0, d / 2);
    let x2 = x.narrow(3, d / 2, d - d / 2);
    let rotated = Tensor::cat(&[&x2.neg(), &x1], 3);
    x * cos + rotated * sin
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_scales_low_and_blends_between() {
        let plain = RopeConfig { theta: 10_000.0, scaling: RopeScaling::None };
        let scaled = RopeConfig {
            theta: 10_000.0,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 128.0,
            },
        };
        let a = inverse_frequencies(&plain, 8); // wavelengths 6.3, 62.8, 628, 6283
        let b = inverse_frequencies(&scaled, 8);
        assert_eq!(a[0], b[0]);
        assert!((b[2] - a[2] / 8.0).abs() < 1e-15 && (b[3] - a[3] / 8.0).abs() < 1e-15);
        // Between 32 and 128: smooth = (128 / 62.83 - 1) / 3.
        let s = (128.0 / (2.0 * std::f64::consts::PI / a[1]) - 1.0) / 3.0;
        assert!((b[1] - ((1.0 - s) * a[1] / 8.0 + s * a[1])).abs() < 1e-15);
        assert!(b[1] < a[1] && b[1] > a[1] / 8.0);
    }

    #[test]
    fn rotation_preserves_norm_and_relative_angle() {
        let rope = Rope::new(&RopeConfig { theta: 10_000.0, scaling: RopeScaling::None }, 4, Device::Cpu);
        let q = Tensor::from_slice(&[1.0f32, 2.0, -0.5, 0.25]).view([1, 1, 1, 4]);
        let at = |p: i64| {
            let (c, s) = rope.cos_sin(&Tensor::from_slice(&[p]).view([1, 1]), Kind::Float);
            apply_rotary(&q, &c, &s)
        };
        let (a, b) = (at(3), at(7));
        assert!((a.norm().double_value(&[]) - q.norm().double_value(&[])).abs() < 1e-5);
        // <R(3) q, R(7) q> = <q, R(4) q>: only the offset matters.
        let lhs = (&a * &b).sum(Kind::Float).double_value(&[]);
        let rhs = (&q * at(4)).sum(Kind::Float).double_value(&[]);
        assert!((lhs - rhs).abs() < 1e-5, "{lhs} vs {rhs}");
    }
}
