//! GGML tensor element types: their numeric codes in GGUF files and their block layouts.

use std::fmt;

/// The element type of a GGUF tensor (`ggml_type` in ggml).
///
/// Quantised types store elements in blocks: `block_size` elements take `block_bytes` bytes.
/// Codes and sizes follow ggml's `ggml_type` enum and `ggml-common.h` block structs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// Blocks of 32: f16 scale `d`, 16 bytes of 4-bit values; `x = d * (q - 8)`.
    Q4_0,
    /// Blocks of 32: f16 `d`, f16 `m`, 16 bytes of 4-bit values; `x = d * q + m`.
    Q4_1,
    /// Blocks of 32: f16 `d`, 4 bytes of high bits, 16 bytes of low nibbles; `x = d * (q - 16)`.
    Q5_0,
    /// Blocks of 32: f16 `d`, f16 `m`, 4 bytes of high bits, 16 bytes of low nibbles; `x = d * q + m`.
    Q5_1,
    /// Blocks of 32: f16 `d`, 32 signed bytes; `x = d * q`.
    Q8_0,
    /// Blocks of 32: f32 `d`, f32 sum, 32 signed bytes (an intermediate type, rarely stored).
    Q8_1,
    /// K-quant super-block of 256 with 2-bit values.
    Q2K,
    /// K-quant super-block of 256 with 3-bit values.
    Q3K,
    /// K-quant super-block of 256: f16 `d`, f16 `dmin`, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles.
    Q4K,
    /// K-quant super-block of 256 with 5-bit values.
    Q5K,
    /// K-quant super-block of 256: 128 bytes low nibbles, 64 bytes high 2 bits, 16 i8 scales, f16 `d`.
    Q6K,
    /// K-quant super-block of 256 with 8-bit values (an intermediate type).
    Q8K,
    /// 8-bit signed integer.
    I8,
    /// 16-bit signed integer.
    I16,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// 64-bit IEEE float.
    F64,
    /// bfloat16 (the upper 16 bits of an f32).
    BF16,
    /// A type code this reader knows by number only (importance-matrix quants and newer types).
    Other(u32),
}

impl GgmlType {
    /// Decodes a type code as stored in a GGUF tensor info.
    pub fn from_code(code: u32) -> Self {
        match code {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            15 => Self::Q8K,
            24 => Self::I8,
            25 => Self::I16,
            26 => Self::I32,
            27 => Self::I64,
            28 => Self::F64,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }

    /// The type code as stored in GGUF files.
    pub fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q8_1 => 9,
            Self::Q2K => 10,
            Self::Q3K => 11,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::Q8K => 15,
            Self::I8 => 24,
            Self::I16 => 25,
            Self::I32 => 26,
            Self::I64 => 27,
            Self::F64 => 28,
            Self::BF16 => 30,
            Self::Other(code) => code,
        }
    }

    /// `(elements per block, bytes per block)`, or `None` for a type known by code only.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        const QK_K: usize = 256;
        Some(match self {
            Self::F32 | Self::I32 => (1, 4),
            Self::F16 | Self::BF16 | Self::I16 => (1, 2),
            Self::I8 => (1, 1),
            Self::I64 | Self::F64 => (1, 8),
            Self::Q4_0 => (32, 2 + 16),
            Self::Q4_1 => (32, 2 + 2 + 16),
            Self::Q5_0 => (32, 2 + 4 + 16),
            Self::Q5_1 => (32, 2 + 2 + 4 + 16),
            Self::Q8_0 => (32, 2 + 32),
            Self::Q8_1 => (32, 4 + 4 + 32),
            Self::Q2K => (QK_K, QK_K / 16 + QK_K / 4 + 2 + 2),
            Self::Q3K => (QK_K, QK_K / 8 + QK_K / 4 + 12 + 2),
            Self::Q4K => (QK_K, 2 + 2 + 12 + QK_K / 2),
            Self::Q5K => (QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2),
            Self::Q6K => (QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2),
            Self::Q8K => (QK_K, 4 + QK_K + QK_K / 16 * 2),
            Self::Other(_) => return None,
        })
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q8_1 => "Q8_1",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Q8K => "Q8_K",
            Self::I8 => "I8",
            Self::I16 => "I16",
            Self::I32 => "I32",
            Self::I64 => "I64",
            Self::F64 => "F64",
            Self::BF16 => "BF16",
            Self::Other(code) => return write!(f, "type code {code}"),
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in 0..40 {
            assert_eq!(GgmlType::from_code(code).code(), code);
        }
    }

    #[test]
    fn block_sizes_match_ggml_common() {
        // sizeof(block_*) from ggml-common.h.
        assert_eq!(GgmlType::Q4_0.block_layout(), Some((32, 18)));
        assert_eq!(GgmlType::Q4_1.block_layout(), Some((32, 20)));
        assert_eq!(GgmlType::Q5_0.block_layout(), Some((32, 22)));
        assert_eq!(GgmlType::Q5_1.block_layout(), Some((32, 24)));
        assert_eq!(GgmlType::Q8_0.block_layout(), Some((32, 34)));
        assert_eq!(GgmlType::Q2K.block_layout(), Some((256, 84)));
        assert_eq!(GgmlType::Q3K.block_layout(), Some((256, 110)));
        assert_eq!(GgmlType::Q4K.block_layout(), Some((256, 144)));
        assert_eq!(GgmlType::Q5K.block_layout(), Some((256, 176)));
        assert_eq!(GgmlType::Q6K.block_layout(), Some((256, 210)));
    }
}
