//! Runs the parity fixtures on a CUDA device: loads `libtorch_cuda.so` at run time, then
//! compares logits, hidden states and greedy generation with the transformers fixtures, in
//! float32 and bfloat16 and with each attention implementation (the fused kernels of CUDA
//! under `sdpa`), and times a training step of a mid-sized random model.
//!
//! `cuda_parity FIXTURES_DIR` (set `LIBTORCH_CUDA` to the library's path if it is not on the
//! loader's search path). Exits with an error if a parity check fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use lm_backend::{
    tensor_specs, AttentionImpl, CausalLm, GenerationConfig, HfCausalLm, HiddenRequest, LoadOptions, ModelConfig,
};
use tch::{Device, Kind, Tensor};

type Failure = Box<dyn std::error::Error>;

fn load_cuda() -> Result<(), Failure> {
    let path = std::env::var("LIBTORCH_CUDA").unwrap_or_else(|_| "libtorch_cuda.so".into());
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL;
    // SAFETY: loading libtorch's own CUDA library; its initialisers register the CUDA backend.
    let lib = unsafe { libloading::os::unix::Library::open(Some(&path), flags) }?;
    std::mem::forget(lib); // stays loaded for the life of the process
    if !tch::Cuda::is_available() {
        return Err(format!("{path} loaded but CUDA is not available").into());
    }
    Ok(())
}

fn max_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    let m = mask.to_kind(Kind::Bool).unsqueeze(-1).expand_as(a);
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().masked_select(&m).max().double_value(&[])
}

fn parity(fixtures: &Path, name: &str, reference: &str, device: Device) -> Result<(), Failure> {
    let e: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixtures.join(reference).join("expected.safetensors"))?.into_iter().collect();
    let (ids, mask) = (e["input_ids"].to_device(device), e["attention_mask"].to_device(device));
    let modes = [Kind::Float, Kind::BFloat16].into_iter().flat_map(|d| AttentionImpl::ALL.map(|a| (d, a)));
    for (dtype, attention) in modes {
        let options = LoadOptions::default().with_dtype(dtype).with_device(device).with_attention(attention);
        let model = HfCausalLm::load(fixtures.join(name), options)?;
        let layers = 0..=model.num_layers();
        let out = model.forward(&ids, &mask, &HiddenRequest::layers(layers.clone()))?;
        let logits = max_diff(&out.logits.to_device(Device::Cpu), &e["logits"], &e["attention_mask"]);
        let mut hidden: f64 = 0.0;
        for l in layers {
            let h = out.hidden.layers[&l].to_device(Device::Cpu);
            hidden = hidden.max(max_diff(&h, &e["hidden_states"].get(l as i64), &e["attention_mask"]));
        }
        let mut generation_equal = true;
        let prompts: Vec<Vec<i64>> =
            (0..2).map(|i| Vec::<i64>::try_from(&e[&format!("generation_{i}_prompt")]).unwrap()).collect();
        let got = model.generate(&prompts, &GenerationConfig::greedy(&model, 12))?;
        for (i, row) in got.iter().enumerate() {
            generation_equal &= *row == Vec::<i64>::try_from(&e[&format!("generation_{i}_output")])?;
        }
        println!(
            "{name} {dtype:?} {attention} on {device:?}: max |logits diff| {logits:.3e}, max |hidden diff| {hidden:.3e}, \
             batched greedy equal: {generation_equal}"
        );
        if dtype == Kind::Float && (logits > 1e-4 || hidden > 1e-4 || !generation_equal) {
            return Err(format!("{name}: float32 parity ({attention}) failed on {device:?}").into());
        }
    }
    Ok(())
}

fn training_step_rate(device: Device, dtype: Kind) -> Result<(), Failure> {
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 2816,
        "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 4,
        "rope_theta": 10000.0, "tie_word_embeddings": true
    });
    let parsed = ModelConfig::from_json_str(&config.to_string(), "bench")?;
    let tensors: BTreeMap<String, Tensor> = tensor_specs(&parsed)
        .into_iter()
        .map(|s| {
            let t = if s.name.ends_with("norm.weight") {
                Tensor::ones(&s.shape, (Kind::Float, Device::Cpu))
            } else {
                Tensor::randn(&s.shape, (Kind::Float, Device::Cpu)) * 0.02
            };
            (s.name, t)
        })
        .collect();
    let model =
        HfCausalLm::from_parameters(config, tensors, LoadOptions::default().with_dtype(dtype).with_device(device))?;
    model.set_trainable(true);
    let params: i64 = model.parameters().values().map(|p| p.numel() as i64).sum();
    let (b, t) = (8, 512);
    let ids = Tensor::randint_low(0, 32000, [b, t], (Kind::Int64, device));
    let mask = ids.ones_like();
    let step = || -> Result<(), Failure> {
        let out = model.forward(&ids, &mask, &HiddenRequest::none())?;
        out.logits.log_softmax(-1, Kind::Float).mean(Kind::Float).backward();
        for p in model.parameters().values() {
            let _ = p.grad().zero_();
        }
        Ok(())
    };
    step()?;
    tch::Cuda::synchronize(0);
    let start = Instant::now();
    let n = 5;
    for _ in 0..n {
        step()?;
    }
    tch::Cuda::synchronize(0);
    let secs = start.elapsed().as_secs_f64() / n as f64;
    println!(
        "training step ({params} parameters, batch {b}x{t}, {dtype:?}): {:.1} ms, {:.0} tokens/s",
        secs * 1e3,
        (b * t) as f64 / secs
    );
    Ok(())
}

fn main() -> Result<(), Failure> {
    let fixtures = std::env::args().nth(1).ok_or("usage: cuda_parity FIXTURES_DIR")?;
    load_cuda()?;
    let device = Device::Cuda(0);
    for (name, reference) in [("llama", "llama"), ("qwen2", "qwen2"), ("gemma2", "gemma2"), ("llama-sharded", "llama")]
    {
        parity(Path::new(&fixtures), name, reference, device)?;
    }
    training_step_rate(device, Kind::Float)?;
    training_step_rate(device, Kind::BFloat16)?;
    Ok(())
}
