//! Forward + backward of every objective on a batch of 1024 pairs (CPU, float32).

use align_losses::{
    BatchView, Cpo, Dpo, Hinge, Ipo, KlLogps, Kto, Orpo, PairLogps, PreferenceObjective, RDpo, RobustDpo, Sft, SimPo,
};
use criterion::{criterion_group, criterion_main, Criterion};
use tch::{Device, Kind, Tensor};

const PAIRS: i64 = 1024;

/// Random summed log-probs in about [-200, 0) and token counts in [1, 256], as leaves.
fn leaves() -> Vec<Tensor> {
    let opts = (Kind::Float, Device::Cpu);
    let sums = (0..4).map(|_| (Tensor::rand([PAIRS], opts) * -200.0 - 0.1).set_requires_grad(true));
    let counts = (0..2).map(|_| Tensor::randint_low(1, 257, [PAIRS], opts));
    sums.chain(counts).collect()
}

fn view(t: &[Tensor]) -> BatchView {
    let policy =
        PairLogps::from_tensors(t[0].shallow_clone(), t[4].shallow_clone(), t[1].shallow_clone(), t[5].shallow_clone())
            .unwrap();
    let reference =
        PairLogps::from_tensors(t[2].shallow_clone(), t[4].shallow_clone(), t[3].shallow_clone(), t[5].shallow_clone())
            .unwrap();
    let mut view = BatchView::from_pairs(policy, Some(reference));
    view.kl = Some(KlLogps { policy: t[1].detach(), reference: t[3].detach() });
    view
}

fn objectives() -> Vec<Box<dyn PreferenceObjective>> {
    vec![
        Box::new(Dpo::new(0.1, 0.0).unwrap()),
        Box::new(RobustDpo::new(0.1, 0.1).unwrap()),
        Box::new(Hinge::new(0.1).unwrap()),
        Box::new(Ipo::new(0.1).unwrap()),
        Box::new(RDpo::new(0.1, 0.01).unwrap()),
        Box::new(SimPo::new(2.0, 1.0).unwrap()),
        Box::new(Cpo::new(0.1, 1.0).unwrap()),
        Box::new(Orpo::new(0.1).unwrap()),
        Box::new(Kto::new(0.1, 1.0, 1.0).unwrap()),
        Box::new(Sft::new().unwrap()),
    ]
}

fn forward_backward(c: &mut Criterion) {
    tch::manual_seed(0);
    let t = leaves();
    let batch = view(&t);
    let mut group = c.benchmark_group("forward_backward_1024_pairs_f32");
    for objective in objectives() {
        group.bench_function(objective.name(), |b| {
            b.iter(|| {
                let out = objective.compute(&batch).unwrap();
                out.loss.backward();
                for leaf in &t[..4] {
                    let mut grad = leaf.grad();
                    if grad.defined() {
                        let _ = grad.zero_();
                    }
                }
                out.loss
            })
        });
    }
    group.finish();
}

criterion_group!(benches, forward_backward);
criterion_main!(benches);
