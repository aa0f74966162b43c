//! Throughput of a small Llama-shaped model (random weights) on the CPU: a no-grad forward,
//! a training forward + backward (padded, and the same sequences packed in one row), and
//! cached greedy generation.
//!
//! `cargo bench -p lm-backend --bench forward -- --quick`

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lm_backend::{
    tensor_specs, CausalLm, GenerationConfig, HfCausalLm, HiddenRequest, LoadOptions, ModelConfig, PackedBatch,
};
use tch::{Device, Kind, Tensor};

const BATCH: i64 = 4;
const LENGTH: i64 = 128;

fn model(dtype: Kind) -> HfCausalLm {
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": 4096, "hidden_size": 256, "intermediate_size": 704,
        "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 4,
        "rope_theta": 10000.0, "tie_word_embeddings": true, "eos_token_id": 2, "pad_token_id": 0
    });
    let parsed = ModelConfig::from_json_str(&config.to_string(), "bench").unwrap();
    tch::manual_seed(0);
    let tensors: BTreeMap<String, Tensor> = tensor_specs(&parsed)
        .into_iter()
        .map(|s| {
            let t = if s.name.ends_with("norm.weight") {
                Tensor::ones(&s.shape, (Kind::Float, Device::Cpu))
            } else {
                Tensor::randn(&s.shape, (Kind::Float, Device::Cpu)) * 0.05
            };
            (s.name, t)
        })
        .collect();
    HfCausalLm::from_parameters(config, tensors, LoadOptions::cpu_f32().with_dtype(dtype)).unwrap()
}

fn bench(c: &mut Criterion) {
    let ids = Tensor::randint_low(3, 4096, [BATCH, LENGTH], (Kind::Int64, Device::Cpu));
    let mask = ids.ones_like();
    let mut group = c.benchmark_group("llama-4x256");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH * LENGTH) as u64));
    for (label, dtype) in [("f32", Kind::Float), ("bf16", Kind::BFloat16)] {
        let m = model(dtype);
        group.bench_function(format!("forward_no_grad/{label}"), |b| {
            b.iter(|| tch::no_grad(|| m.forward(&ids, &mask, &HiddenRequest::none()).unwrap().logits.sum(Kind::Float)))
        });
        m.set_trainable(true);
        group.bench_function(format!("forward_backward/{label}"), |b| {
            b.iter(|| {
                let out = m.forward(&ids, &mask, &HiddenRequest::none()).unwrap();
                let loss = out.logits.log_softmax(-1, Kind::Float).mean(Kind::Float);
                loss.backward();
                for p in m.parameters().values() {
                    let _ = p.grad().zero_();
                }
            })
        });
        group.bench_function(format!("packed_forward_backward/{label}"), |b| {
            let batch = packed(&ids);
            let every = batch.input_ids().ones_like();
            b.iter(|| {
                let out = m.forward_packed_at(&batch, &every, &HiddenRequest::none()).unwrap();
                let loss = out.logits.log_softmax(-1, Kind::Float).mean(Kind::Float);
                loss.backward();
                for p in m.parameters().values() {
                    let _ = p.grad().zero_();
                }
            })
        });
        m.set_trainable(false);
    }
    group.finish();

    let m = model(Kind::Float);
    let prompts: Vec<Vec<i64>> =
        (0..BATCH).map(|r| (0..32 + 4 * r).map(|t| 3 + (t * 7 + r) % 4000).collect()).collect();
    let mut config = GenerationConfig::greedy(&m, 32);
    config.eos_token_ids.clear();
    let mut group = c.benchmark_group("llama-4x256-generate");
    group.sample_size(10);
    group.throughput(Throughput::Elements((BATCH * 32) as u64));
    group.bench_function("greedy_kv_cache/f32", |b| b.iter(|| m.generate(&prompts, &config).unwrap()));
    group.finish();
}

/// The rows of `ids` `[B, T]` packed end to end in one row `[1, B T]`, two per attention chunk.
fn packed(ids: &Tensor) -> PackedBatch {
    let (b, t) = (ids.size()[0], ids.size()[1]);
    let positions = Tensor::arange(t, (Kind::Int64, Device::Cpu)).repeat([b]).unsqueeze(0);
    let segments = Tensor::arange(b, (Kind::Int64, Device::Cpu)).repeat_interleave_self_int(t, 0, None).unsqueeze(0);
    let chunks = vec![(2 * t) as usize; (b / 2) as usize];
    PackedBatch::new(ids.reshape([1, -1]), positions, segments.shallow_clone(), segments.zeros_like(), chunks).unwrap()
}

criterion_group!(benches, bench);
criterion_main!(benches);
