//! Dequantisation of GGML blocks to f32.
//!
//! Block layouts and formulas follow ggml's `ggml-common.h` block structs and the reference
//! `dequantize_row_*` functions (`QK = 32` for the simple quants, `QK_K = 256` for K-quants).
//! The arithmetic is done in f32 in the same order as the reference, so results are
//! bit-identical to gguf-py's `gguf.quants.dequantize` (checked by the fixture tests).

use half::f16;

use super::error::{GgufError, Result};
use super::ggml_type::GgmlType;

/// The types [`dequantize`] handles, for messages and docs.
pub const SUPPORTED_TYPES: &str = "F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

/// Dequantises the raw bytes of tensor `tensor` of type `ty` to f32 values, in storage order.
///
/// `bytes.len()` must be a whole number of blocks. Errors name the tensor.
pub fn dequantize(tensor: &str, ty: GgmlType, bytes: &[u8]) -> Result<Vec<f32>> {
    let unsupported = || GgufError::UnsupportedType {
        tensor: tensor.to_string(),
        ggml_type: ty.to_string(),
        supported: SUPPORTED_TYPES,
    };
    let (block, block_bytes) = ty.block_layout().ok_or_else(unsupported)?;
    if bytes.len() % block_bytes != 0 {
        return Err(GgufError::TensorData {
            tensor: tensor.to_string(),
            message: format!("{} bytes is not a whole number of {ty} blocks of {block_bytes} bytes", bytes.len()),
        });
    }
    let mut out = Vec::with_capacity(bytes.len() / block_bytes * block);
    let blocks = bytes.chunks_exact(block_bytes);
    match ty {
        GgmlType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => out.extend(blocks.map(|b| read_f16(b, 0))),
        GgmlType::BF16 => out.extend(blocks.map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))),
        GgmlType::F64 => out.extend(blocks.map(|b| f64::from_le_bytes(b.try_into().expect("8-byte block")) as f32)),
        GgmlType::Q4_0 => blocks.for_each(|b| q4_0(b, &mut out)),
        GgmlType::Q4_1 => blocks.for_each(|b| q4_1(b, &mut out)),
        GgmlType::Q5_0 => blocks.for_each(|b| q5_0(b, &mut out)),
        GgmlType::Q5_1 => blocks.for_each(|b| q5_1(b, &mut out)),
        GgmlType::Q8_0 => blocks.for_each(|b| q8_0(b, &mut out)),
        GgmlType::Q2K => blocks.for_each(|b| q2_k(b, &mut out)),
        GgmlType::Q3K => blocks.for_each(|b| q3_k(b, &mut out)),
        GgmlType::Q4K => blocks.for_each(|b| q4_k(b, &mut out)),
        GgmlType::Q5K => blocks.for_each(|b| q5_k(b, &mut out)),
        GgmlType::Q6K => blocks.for_each(|b| q6_k(b, &mut out)),
        _ => return Err(unsupported()),
    }
    Ok(out)
}

fn read_f16(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// `block_q4_0 { f16 d; u8 qs[16]; }`: element `j` is the low nibble of `qs[j]`, element
/// `j + 16` the high nibble; `x = d * (q - 8)`.
fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = read_f16(b, 0);
    let qs = &b[2..18];
    out.extend(qs.iter().map(|&q| d * ((q & 0x0F) as i32 - 8) as f32));
    out.extend(qs.iter().map(|&q| d * ((q >> 4) as i32 - 8) as f32));
}

/// `block_q4_1 { f16 d; f16 m; u8 qs[16]; }`: `x = d * q + m`, nibbles as in Q4_0.
fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (read_f16(b, 0), read_f16(b, 2));
    let qs = &b[4..20];
    out.extend(qs.iter().map(|&q| d * (q & 0x0F) as f32 + m));
    out.extend(qs.iter().map(|&q| d * (q >> 4) as f32 + m));
}

/// The 5-bit values of a Q5_0/Q5_1 block: low nibbles from `qs`, fifth bits from the u32 `qh`
/// (bit `j` for element `j`, bit `j + 16` for element `j + 16`).
fn q5_values(qh: u32, qs: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let low = qs.iter().enumerate().map(move |(j, &q)| (q & 0x0F) | ((((qh >> j) << 4) & 0x10) as u8));
    let high = qs.iter().enumerate().map(move |(j, &q)| (q >> 4) | (((qh >> (j + 12)) & 0x10) as u8));
    low.chain(high)
}

/// `block_q5_0 { f16 d; u8 qh[4]; u8 qs[16]; }`: `x = d * (q - 16)`.
fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = read_f16(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    out.extend(q5_values(qh, &b[6..22]).map(|q| d * (q as i32 - 16) as f32));
}

/// `block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16]; }`: `x = d * q + m`.
fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (read_f16(b, 0), read_f16(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    out.extend(q5_values(qh, &b[8..24]).map(|q| d * q as f32 + m));
}

/// `block_q8_0 { f16 d; i8 qs[32]; }`: `x = d * q`.
fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = read_f16(b, 0);
    out.extend(b[2..34].iter().map(|&q| d * (q as i8) as f32));
}

/// `block_q2_K { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }`: 16 sub-blocks of 16; scale
/// byte = `sc | m << 4`; `x = d * sc * q - dmin * m` with 2-bit `q`.
fn q2_k(b: &[u8], out: &mut Vec<f32>) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (read_f16(b, 80), read_f16(b, 82));
    let mut is = 0;
    for half in qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for part in half.chunks_exact(16) {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * (sc & 0x0F) as f32, dmin * (sc >> 4) as f32);
                out.extend(part.iter().map(|&q| dl * ((q >> shift) & 3) as f32 - ml));
            }
        }
    }
}

/// `block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }`: 16 sub-blocks of 16 with
/// 6-bit signed scales (`sc - 32`); `x = d * sc * (q - 4 * !high_bit)` with 2-bit `q`.
fn q3_k(b: &[u8], out: &mut Vec<f32>) {
    let (hmask, qs, packed) = (&b[0..32], &b[32..96], &b[96..108]);
    let d_all = read_f16(b, 108);
    let scales = unpack_q3_k_scales(packed);
    let (mut is, mut m) = (0, 1u8);
    for half in qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for (p, part) in half.chunks_exact(16).enumerate() {
                let dl = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                let hm = &hmask[p * 16..p * 16 + 16];
                out.extend(part.iter().zip(hm).map(|(&q, &hb)| {
                    let v = ((q >> shift) & 3) as i32 - if hb & m != 0 { 0 } else { 4 };
                    dl * v as f32
                }));
            }
            m <<= 1;
        }
    }
}

/// Unpacks Q3_K's 12 bytes into 16 6-bit scales: low 4 bits from bytes 0..8 (nibbles),
/// high 2 bits from bytes 8..12.
fn unpack_q3_k_scales(packed: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, s) in out.iter_mut().enumerate() {
        let low = if i < 8 { packed[i] & 0x0F } else { packed[i - 8] >> 4 };
        let high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = low | (high << 4);
    }
    out
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block (`get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// `block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }`: 8 sub-blocks of 32;
/// `x = (d * sc) * q - dmin * m` with 4-bit `q` (low nibbles first, then high, per 64).
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (read_f16(b, 0), read_f16(b, 2));
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for (pair, q) in qs.chunks_exact(32).enumerate() {
        for (k, shift) in [(0, 0), (1, 4)] {
            let (sc, m) = scale_min_k4(2 * pair + k, scales);
            let (d1, m1) = (d * sc as f32, dmin * m as f32);
            out.extend(q.iter().map(|&v| d1 * ((v >> shift) & 0x0F) as f32 - m1));
        }
    }
}

/// `block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }`: as Q4_K with a
/// fifth bit per value from `qh` (bit `2 * pair + k` of `qh[l]`).
fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (read_f16(b, 0), read_f16(b, 2));
    let (scales, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for (pair, q) in qs.chunks_exact(32).enumerate() {
        for (k, shift) in [(0, 0), (1, 4)] {
            let (sc, m) = scale_min_k4(2 * pair + k, scales);
            let (d1, m1) = (d * sc as f32, dmin * m as f32);
            let bit = 1u8 << (2 * pair + k);
            out.extend(q.iter().zip(qh).map(|(&v, &h)| {
                let q5 = ((v >> shift) & 0x0F) + if h & bit != 0 { 16 } else { 0 };
                d1 * q5 as f32 - m1
            }));
        }
    }
}

/// `block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }`: 16 sub-blocks of 16;
/// `x = (d * sc) * (q - 32)` with 6-bit `q` = 4 bits of `ql` and 2 bits of `qh`.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql_all, qh_all, sc_all) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = read_f16(b, 208);
    let start = out.len();
    out.resize(start + 256, 0.0);
    let y_all = &mut out[start..];
    for n in 0..2 {
        let (ql, qh, sc) = (&ql_all[64 * n..], &qh_all[32 * n..], &sc_all[8 * n..]);
        let y = &mut y_all[128 * n..];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let scale = |k: usize| d * (sc[is + k] as i8) as f32;
            y[l] = scale(0) * q1 as f32;
            y[l + 32] = scale(2) * q2 as f32;
            y[l + 64] = scale(4) * q3 as f32;
            y[l + 96] = scale(6) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_0_hand_block() {
        // d = 0.5, qs[j] = j | (15 - j) << 4.
        let mut b = f16_bytes(0.5).to_vec();
        b.extend((0u8..16).map(|j| j | ((15 - j) << 4)));
        let y = dequantize("t", GgmlType::Q4_0, &b).unwrap();
        for j in 0..16 {
            assert_eq!(y[j], 0.5 * (j as f32 - 8.0));
            assert_eq!(y[j + 16], 0.5 * ((15 - j) as f32 - 8.0));
        }
    }

    #[test]
    fn q8_0_hand_block() {
        let mut b = f16_bytes(0.25).to_vec();
        b.extend((0..32).map(|j| (j as i8 - 16) as u8));
        let y = dequantize("t", GgmlType::Q8_0, &b).unwrap();
        let want: Vec<f32> = (0..32).map(|j| 0.25 * (j - 16) as f32).collect();
        assert_eq!(y, want);
    }

    #[test]
    fn partial_blocks_and_unknown_types_are_errors() {
        let err = dequantize("w", GgmlType::Q8_0, &[0u8; 33]).unwrap_err().to_string();
        assert!(err.contains("\"w\"") && err.contains("34"), "{err}");
        let err = dequantize("w", GgmlType::Other(99), &[0u8; 4]).unwrap_err().to_string();
        assert!(err.contains("type code 99"), "{err}");
    }

    #[test]
    fn q3_k_scale_unpacking_matches_the_u32_mask_formulation() {
        // ggml's formulation with kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f over 3 u32 words.
        let packed: Vec<u8> = (0u8..12).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
        let w = |i: usize| u32::from_le_bytes(packed[4 * i..4 * i + 4].try_into().unwrap());
        let (k1, k2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
        let tmp = w(2);
        let aux = [
            (w(0) & k2) | ((tmp & k1) << 4),
            (w(1) & k2) | (((tmp >> 2) & k1) << 4),
            ((w(0) >> 4) & k2) | (((tmp >> 4) & k1) << 4),
            ((w(1) >> 4) & k2) | (((tmp >> 6) & k1) << 4),
        ];
        let want: Vec<u8> = aux.iter().flat_map(|a| a.to_le_bytes()).collect();
        assert_eq!(unpack_q3_k_scales(&packed).to_vec(), want);
    }
}
