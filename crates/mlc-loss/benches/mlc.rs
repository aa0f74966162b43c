//! `mlc_loss` on 8 groups of 10 language variants at hidden size 4096, f32 on CPU: the size of
//! one training batch of a 7B-class model. One intra-op thread, so the numbers do not depend
//! on how busy the other cores are.

use criterion::{criterion_group, criterion_main, Criterion};
use tch::{Device, Kind, Tensor};

const G: i64 = 8;
const K: i64 = 10;
const D: i64 = 4096;

fn bench_mlc(c: &mut Criterion) {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let states = Tensor::randn([G, K, D], (Kind::Float, Device::Cpu));
    c.bench_function("mlc_loss forward G=8 K=10 D=4096", |b| {
        b.iter(|| {
            let _guard = tch::no_grad_guard();
            mlc_loss::mlc_loss(&states, None, 1.0).expect("valid input")
        })
    });
    let leaf = states.copy().set_requires_grad(true);
    c.bench_function("mlc_loss forward+backward G=8 K=10 D=4096", |b| {
        b.iter(|| {
            let loss = mlc_loss::mlc_loss(&leaf, None, 1.0).expect("valid input");
            loss.backward();
            let _ = leaf.grad().zero_();
        })
    });
    // The same on the first CUDA device, when there is one.
    if tch::Cuda::is_available() {
        let gpu = Device::Cuda(0);
        let states = states.to_device(gpu);
        c.bench_function("cuda mlc_loss forward G=8 K=10 D=4096", |b| {
            b.iter(|| {
                let _guard = tch::no_grad_guard();
                let loss = mlc_loss::mlc_loss(&states, None, 1.0).expect("valid input");
                tch::Cuda::synchronize(0);
                loss
            })
        });
        let leaf = states.copy().set_requires_grad(true);
        c.bench_function("cuda mlc_loss forward+backward G=8 K=10 D=4096", |b| {
            b.iter(|| {
                let loss = mlc_loss::mlc_loss(&leaf, None, 1.0).expect("valid input");
                loss.backward();
                let _ = leaf.grad().zero_();
                tch::Cuda::synchronize(0);
            })
        });
    }
}

criterion_group!(benches, bench_mlc);
criterion_main!(benches);
