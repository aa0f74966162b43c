//! Where and in which dtype a model's weights live: [`LoadOptions`] and the user-facing
//! [`Dtype`] choice.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use crate::error::LmError;

/// The precision a model runs in, as a user chooses it (config files, command lines).
///
/// - [`Dtype::F32`] (the default): float32 everywhere; what the parity tests use.
/// - [`Dtype::Bf16`]: bfloat16 weights and matmuls; log-softmax, losses and optimizer state
///   stay float32.
///
/// Written `"f32"` / `"bf16"` in serde formats, [`FromStr`] and [`fmt::Display`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// float32 everywhere (the default).
    #[default]
    F32,
    /// bfloat16 weights and matmuls; log-softmax, losses and optimizer state in float32.
    Bf16,
}

impl Dtype {
    /// Every dtype, in the order error messages list them.
    pub const ALL: [Dtype; 2] = [Dtype::F32, Dtype::Bf16];

    /// The libtorch kind of the weights and activations.
    pub fn kind(self) -> Kind {
        match self {
            Dtype::F32 => Kind::Float,
            Dtype::Bf16 => Kind::BFloat16,
        }
    }

    /// The name: `"f32"` or `"bf16"`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
        }
    }
}

impl From<Dtype> for Kind {
    fn from(dtype: Dtype) -> Kind {
        dtype.kind()
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = LmError;

    /// Parses `"f32"` or `"bf16"`; any other text is an [`LmError::Input`] listing those.
    fn from_str(s: &str) -> Result<Self, LmError> {
        Dtype::ALL.into_iter().find(|d| d.name() == s).ok_or_else(|| {
            let accepted: Vec<&str> = Dtype::ALL.iter().map(|d| d.name()).collect();
            LmError::input("dtype", format!("unknown dtype \"{s}\" (accepted: {})", accepted.join(", ")))
        })
    }
}

/// How attention is computed, as a user chooses it (`[model] attention` in a run config).
///
/// - [`AttentionImpl::Sdpa`] (the default): libtorch's `scaled_dot_product_attention`
///   (flash or memory-efficient kernels on CUDA, the fused kernel on CPU) wherever it can
///   express the layer; a layer it cannot express (Gemma 2's soft-capped scores) runs eager.
/// - [`AttentionImpl::Eager`]: scores, mask, softmax and the weighted sum as separate ops,
///   as `transformers`' eager path.
///
/// Written `"sdpa"` / `"eager"` in serde formats, [`FromStr`] and [`fmt::Display`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionImpl {
    /// The fused kernel where the layer allows it (the default).
    #[default]
    Sdpa,
    /// Separate ops, as `transformers`' eager path.
    Eager,
}

impl AttentionImpl {
    /// Every choice, in the order error messages list them.
    pub const ALL: [AttentionImpl; 2] = [AttentionImpl::Sdpa, AttentionImpl::Eager];

    /// The name: `"sdpa"` or `"eager"`.
    pub fn name(self) -> &'static str {
        match self {
            AttentionImpl::Sdpa => "sdpa",
            AttentionImpl::Eager => "eager",
        }
    }
}

impl fmt::Display for AttentionImpl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AttentionImpl {
    type Err = LmError;

    /// Parses `"sdpa"` or `"eager"`; any other text is an [`LmError::Input`] listing those.
    fn from_str(s: &str) -> Result<Self, LmError> {
        AttentionImpl::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            let accepted: Vec<&str> = AttentionImpl::ALL.iter().map(|a| a.name()).collect();
            LmError::input("attention", format!("unknown attention \"{s}\" (accepted: {})", accepted.join(", ")))
        })
    }
}

/// Where and in which dtype the weights live, and how attention runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadOptions {
    /// Weight (and activation) dtype: `Kind::Float` (default) or `Kind::BFloat16`
    /// (`Kind::Half` and `Kind::Double` work too).
    pub dtype: Kind,
    /// The device the weights are copied to.
    pub device: Device,
    /// How attention is computed (default [`AttentionImpl::Sdpa`]).
    pub attention: AttentionImpl,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { dtype: Kind::Float, device: Device::Cpu, attention: AttentionImpl::Sdpa }
    }
}

impl LoadOptions {
    /// Float32 on the CPU.
    pub fn cpu_f32() -> Self {
        Self::default()
    }

    /// Options with this dtype: a [`Kind`] or a [`Dtype`].
    pub fn with_dtype(mut self, dtype: impl Into<Kind>) -> Self {
        self.dtype = dtype.into();
        self
    }

    /// Options with this device.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Options with this attention implementation.
    pub fn with_attention(mut self, attention: AttentionImpl) -> Self {
        self.attention = attention;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_round_trip_and_unknown_names_list_the_accepted_ones() {
        for d in Dtype::ALL {
            assert_eq!(d.to_string().parse::<Dtype>().unwrap(), d);
            let json: Dtype = serde_json::from_str(&format!("\"{d}\"")).unwrap();
            assert_eq!(json, d);
        }
        assert_eq!(Dtype::default(), Dtype::F32);
        assert_eq!(Kind::from(Dtype::Bf16), Kind::BFloat16);
        assert_eq!(LoadOptions::cpu_f32().with_dtype(Dtype::Bf16).dtype, Kind::BFloat16);
        let e = "fp16".parse::<Dtype>().unwrap_err().to_string();
        assert!(e.contains("fp16") && e.contains("f32, bf16"), "{e}");
        assert!(serde_json::from_str::<Dtype>("\"F32\"").is_err());
    }

    #[test]
    fn attention_names_round_trip_and_unknown_names_list_the_accepted_ones() {
        for a in AttentionImpl::ALL {
            assert_eq!(a.to_string().parse::<AttentionImpl>().unwrap(), a);
            let json: AttentionImpl = serde_json::from_str(&format!("\"{a}\"")).unwrap();
            assert_eq!(json, a);
        }
        assert_eq!(AttentionImpl::default(), AttentionImpl::Sdpa);
        assert_eq!(LoadOptions::cpu_f32().with_attention(AttentionImpl::Eager).attention, AttentionImpl::Eager);
        let e = "flash".parse::<AttentionImpl>().unwrap_err().to_string();
        assert!(e.contains("flash") && e.contains("sdpa, eager"), "{e}");
    }
}
