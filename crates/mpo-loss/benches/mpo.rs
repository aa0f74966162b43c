//! Cost of the MPO term on CPU: the gap-matching loss of a batch of target pairs (with its
//! backward pass), and both retain forms on a batch of dominant-language states.

use align_losses::{BatchView, PairLogps, PreferenceObjective, TargetPairs};
use criterion::{criterion_group, criterion_main, Criterion};
use mpo_loss::{retain_last_token, retain_mean_pool, Mpo, MpoConfig};
use tch::{Kind, Tensor};

/// `n` pairs with random summed log-probs and counts, float32.
fn pairs(n: i64, grad: bool) -> PairLogps {
    let sum = || (Tensor::rand([n], tch::kind::FLOAT_CPU) * -50.0).set_requires_grad(grad);
    let count = || Tensor::randint_low(1, 200, [n], tch::kind::FLOAT_CPU);
    PairLogps::from_tensors(sum(), count(), sum(), count()).unwrap()
}

fn gap_matching(c: &mut Criterion) {
    tch::manual_seed(0);
    let (b, languages) = (64i64, 9i64);
    let p = b * languages;
    let batch = BatchView {
        reference: Some(pairs(b, false)),
        targets: Some(TargetPairs {
            policy: pairs(p, true),
            record: Tensor::arange(b, (Kind::Int64, tch::Device::Cpu)).repeat_interleave_self_int(languages, 0, None),
            languages: (0..p).map(|i| format!("l{}", i % languages)).collect(),
        }),
        ..BatchView::default()
    };
    let mpo = Mpo::new(MpoConfig { retain_weight: 0.0, ..MpoConfig::default() }).unwrap();
    c.bench_function("mpo gap loss + metrics + backward, B=64 x 9 languages", |bench| {
        bench.iter(|| mpo.compute(&batch).unwrap().loss.backward())
    });
}

fn retain(c: &mut Criterion) {
    tch::manual_seed(0);
    let (b, t, d) = (8i64, 512i64, 2048i64);
    let policy = Tensor::randn([b, t, d], tch::kind::FLOAT_CPU).set_requires_grad(true);
    let reference = Tensor::randn([b, t, d], tch::kind::FLOAT_CPU);
    let lengths = Tensor::randint_low(1, t + 1, [b, 1], tch::kind::INT64_CPU);
    let mask = Tensor::arange(t, (Kind::Int64, tch::Device::Cpu)).unsqueeze(0).lt_tensor(&lengths);
    c.bench_function("retain last_token fwd, [8, 512, 2048] f32", |bench| {
        bench.iter(|| retain_last_token(&policy, &reference, &mask).unwrap())
    });
    c.bench_function("retain mean_pool fwd, [8, 512, 2048] f32", |bench| {
        bench.iter(|| retain_mean_pool(&policy, &reference, &mask).unwrap())
    });
    c.bench_function("retain last_token fwd+bwd, [8, 512, 2048] f32", |bench| {
        bench.iter(|| retain_last_token(&policy, &reference, &mask).unwrap().backward())
    });
    c.bench_function("retain mean_pool fwd+bwd, [8, 512, 2048] f32", |bench| {
        bench.iter(|| retain_mean_pool(&policy, &reference, &mask).unwrap().backward())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = gap_matching, retain
}
criterion_main!(benches);
