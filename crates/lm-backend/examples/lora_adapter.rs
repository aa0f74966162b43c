//! Gives a model folder LoRA adapters with non-zero `B`, saves them in PEFT's layout, saves
//! the merged model, and writes the adapted model's logits on the folder's fixture batch.
//!
//! `cargo run -p lm-backend --example lora_adapter -- BASE_DIR OUT_DIR`
//!
//! Writes `OUT_DIR/adapter/` (PEFT adapter folder), `OUT_DIR/merged/` (Hugging Face model
//! folder) and `OUT_DIR/ours.safetensors` (`input_ids`, `attention_mask`, `logits` on the
//! batch of `BASE_DIR/expected.safetensors`). Used by `scripts/fixtures/make_peft_fixtures.sh`
//! to prove that PEFT loads the adapters this crate writes (and `transformers` the merged
//! folder) and computes the same logits.

use std::collections::BTreeMap;
use std::path::Path;

use lm_backend::lora::LoraSpec;
use lm_backend::{CausalLm, HfCausalLm, HiddenRequest, LoadOptions};
use tch::{Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, out] = args.as_slice() else {
        return Err("usage: lora_adapter BASE_DIR OUT_DIR".into());
    };
    let (base, out) = (std::path::absolute(base)?, Path::new(out));
    let spec = LoraSpec::new(4, 8.0).with_seed(11);
    let model = HfCausalLm::load_with_lora(&base, LoadOptions::cpu_f32(), &spec)?;
    // B = 0 would make every check trivial: give each B deterministic non-zero values.
    tch::no_grad(|| {
        for (i, (name, p)) in model.adapter_parameters().iter().enumerate() {
            if name.contains("lora_B") {
                let n = p.numel() as i64;
                let values =
                    ((Tensor::arange(n, (Kind::Float, p.device())) * 0.37 + i as f64).sin() * 0.2).reshape(p.size());
                p.shallow_clone().copy_(&values);
            }
        }
    });
    model.save_adapter(out.join("adapter"), &base.to_string_lossy(), &[])?;
    model.merged()?.save(out.join("merged"), &[])?;
    let batch: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(base.join("expected.safetensors"))?.into_iter().collect();
    let (ids, mask) = (&batch["input_ids"], &batch["attention_mask"]);
    let logits = model.forward(ids, mask, &HiddenRequest::none())?.logits;
    Tensor::write_safetensors(
        &[("input_ids", ids), ("attention_mask", mask), ("logits", &logits)],
        out.join("ours.safetensors"),
    )?;
    println!("wrote {}/adapter, merged, ours.safetensors", out.display());
    Ok(())
}
