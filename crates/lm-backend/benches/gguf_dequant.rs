//! Dequantisation throughput per GGML type (1 Mi elements each).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lm_backend::gguf::{dequantize, GgmlType};

const ELEMENTS: usize = 1 << 20;

/// Pseudo-random blocks; every byte pair read as an f16 scale is forced finite by clearing
/// the top exponent bit of every odd byte.
fn blocks(ty: GgmlType) -> Vec<u8> {
    let (block, block_bytes) = ty.block_layout().expect("known layout");
    let n = ELEMENTS / block * block_bytes;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = (state >> 24) as u8;
            if i % 2 == 1 {
                b & 0x3f
            } else {
                b
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("dequantize");
    group.throughput(Throughput::Elements(ELEMENTS as u64));
    for ty in
        [GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4K, GgmlType::Q6K]
    {
        let data = blocks(ty);
        group.bench_with_input(BenchmarkId::from_parameter(ty), &data, |b, data| {
            b.iter(|| dequantize("bench", ty, data).expect("supported type"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
