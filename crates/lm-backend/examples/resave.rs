//! Loads a Hugging Face model folder and saves it again through `HfCausalLm::save`.
//!
//! `cargo run -p lm-backend --example resave -- IN_DIR OUT_DIR [f32|bf16]`
//!
//! Used by `scripts/fixtures/check_saved_models.sh` to prove that `transformers` loads what
//! this crate writes.

use lm_backend::{HfCausalLm, LoadOptions};
use tch::Kind;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, rest @ ..] = args.as_slice() else {
        return Err("usage: resave IN_DIR OUT_DIR [f32|bf16]".into());
    };
    let dtype = match rest.first().map(String::as_str) {
        None | Some("f32") => Kind::Float,
        Some("bf16") => Kind::BFloat16,
        Some(other) => return Err(format!("unknown dtype {other}; use f32 or bf16").into()),
    };
    let model = HfCausalLm::load(input, LoadOptions::cpu_f32().with_dtype(dtype))?;
    model.save(output, &[])?;
    println!("saved {input} to {output} ({dtype:?})");
    Ok(())
}
