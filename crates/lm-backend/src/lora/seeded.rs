//! Seeded values for adapters, independent of libtorch's global generator: the initial `A`
//! of a fresh adapter and the dropout masks of its input are pure functions of a 64-bit key
//! and each element's index, so tests may run in parallel, a resumed run replays the masks
//! of an uninterrupted one, and a recomputation (activation checkpointing) replays the masks
//! of the forward pass it repeats.
//!
//! The key is mixed on the CPU (SplitMix64's finaliser); the per-element hash runs on the
//! tensor's device with int64 arithmetic that never overflows: values stay below `2^32` and
//! the multiplier below `2^27`, so every product is below `2^59`.

use tch::{Device, Kind, Tensor};

/// SplitMix64's finaliser (Steele, Lea & Flood 2014): a bijection of `u64` that spreads
/// every input bit over every output bit.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One key from two: `mix64(a ^ mix64(b + golden))`.
pub(crate) fn combine(a: u64, b: u64) -> u64 {
    mix64(a ^ mix64(b.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// FNV-1a of `text`: a stable id of a module name.
pub(crate) fn name_id(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

const LOW32: i64 = 0xffff_ffff;

/// A 32-bit integer hash of each element of `x` (int64 values in `[0, 2^32)`), a bijection
/// on 32 bits: two rounds of xor-shift and multiply by `0x45d9f3b`, then a final xor-shift.
fn hash32(x: &Tensor) -> Tensor {
    let round = |x: &Tensor| {
        (x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(16)) * 0x45d9f3b_i64).bitwise_and(LOW32)
    };
    let x = round(&round(x));
    x.bitwise_xor_tensor(&x.bitwise_right_shift_tensor_scalar(16))
}

/// Uniform values in `[0, 1)` (multiples of `2^-24`), float32 of shape `shape` on `device`:
/// element `i` (row-major) is a hash of `(key, i)`.
pub(crate) fn uniform(key: u64, shape: &[i64], device: Device) -> Tensor {
    let n: i64 = shape.iter().product();
    let h = element_hash(&Tensor::arange(n, (Kind::Int64, device)), key);
    (h.bitwise_right_shift_tensor_scalar(8).to_kind(Kind::Float) * 2f64.powi(-24)).reshape(shape)
}

/// A 32-bit hash of `(key, index)` for each int64 `index >= 0`: the low 32 bits of the index
/// hashed with the low half of the key, xor the hash of its high bits with the high half.
fn element_hash(index: &Tensor, key: u64) -> Tensor {
    let (k0, k1) = ((key & 0xffff_ffff) as i64, (key >> 32) as i64);
    let low = hash32(&index.bitwise_and(LOW32).bitwise_xor(k0));
    let high = hash32(&index.bitwise_right_shift_tensor_scalar(32).bitwise_xor(k1));
    hash32(&low.bitwise_xor_tensor(&high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_a_function_of_key_and_index_and_looks_uniform() {
        let a = uniform(7, &[64, 128], Device::Cpu);
        assert!(a.equal(&uniform(7, &[64, 128], Device::Cpu)), "same key, same values");
        assert!(!a.equal(&uniform(8, &[64, 128], Device::Cpu)), "another key, other values");
        // The first elements do not depend on the shape.
        let flat = uniform(7, &[64 * 128], Device::Cpu);
        assert!(a.reshape([-1]).equal(&flat));
        let (lo, hi) = (a.min().double_value(&[]), a.max().double_value(&[]));
        assert!((0.0..0.01).contains(&lo) && (0.99..1.0).contains(&hi), "{lo} {hi}");
        let mean = a.mean(Kind::Double).double_value(&[]);
        let var = a.var(false).double_value(&[]);
        // 8192 draws: mean 1/2 +- 3 sd (sd = sqrt(1/12/8192) ~ 0.0032), variance 1/12.
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.005, "variance {var}");
        // Neighbouring indices are not correlated.
        let x = a.reshape([-1]);
        let (u, v) = (x.narrow(0, 0, 8191) - 0.5, x.narrow(0, 1, 8191) - 0.5);
        let corr = (&u * &v).mean(Kind::Double).double_value(&[]) * 12.0;
        assert!(corr.abs() < 0.05, "lag-1 correlation {corr}");
    }

    #[test]
    fn indices_past_two_to_the_32_differ_from_their_low_bits() {
        // Elements i and i + 2^32 share their low 32 bits; the high bits must still count.
        let h = element_hash(&Tensor::from_slice(&[5i64, 5 + (1 << 32)]), 3);
        assert_ne!(h.int64_value(&[0]), h.int64_value(&[1]));
    }

    #[test]
    fn keys_mix() {
        assert_ne!(combine(1, 2), combine(2, 1));
        assert_ne!(mix64(1), 1);
        assert_ne!(combine(0, 0), 0);
        assert_ne!(name_id("model.layers.0.self_attn.q_proj"), name_id("model.layers.0.self_attn.k_proj"));
    }
}
