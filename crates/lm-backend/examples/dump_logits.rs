//! Writes the float32 logits of a model folder for a few prompts, for comparison with
//! Python `transformers` (`scripts/fixtures/check_smollm2_parity.sh`).
//!
//! ```text
//! cargo run --release -p lm-backend --example dump_logits -- MODEL_DIR OUT.safetensors PROMPT...
//! ```
//!
//! Each prompt is encoded with the folder's tokenizer (its own special tokens added) and run
//! alone; a prompt starting with `chat:` is first rendered as one user turn by the chat
//! template (with the generation prompt). `OUT.safetensors` holds `ids_<i>` `[T]` (int64)
//! and `logits_<i>` `[T, V]` (float32) for prompt `i`.

use lm_backend::{CausalLm, ChatMessage, HfCausalLm, HiddenRequest, LoadOptions, Tokenizer};
use tch::{Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: dump_logits MODEL_DIR OUT.safetensors PROMPT...".into());
    }
    let model = HfCausalLm::load(&args[0], LoadOptions::cpu_f32())?;
    let tokenizer = Tokenizer::from_dir(&args[0])?;
    let mut tensors: Vec<(String, Tensor)> = vec![];
    for (i, prompt) in args[2..].iter().enumerate() {
        let ids: Vec<i64> = match prompt.strip_prefix("chat:") {
            Some(user) => {
                let text = tokenizer.apply_chat_template(&[ChatMessage::new("user", user)], true)?;
                tokenizer.encode(&text, false)?
            }
            None => tokenizer.encode(prompt, true)?,
        }
        .into_iter()
        .map(i64::from)
        .collect();
        let input = Tensor::from_slice(&ids).unsqueeze(0); // [1, T]
        let logits = tch::no_grad(|| model.forward(&input, &input.ones_like(), &HiddenRequest::none()))?.logits;
        println!("prompt {i}: {} tokens", ids.len());
        tensors.push((format!("ids_{i}"), Tensor::from_slice(&ids)));
        tensors.push((format!("logits_{i}"), logits.squeeze_dim(0).to_kind(Kind::Float)));
        // [T, V]
    }
    Tensor::write_safetensors(&tensors, &args[1])?;
    println!("wrote {}", args[1]);
    Ok(())
}
