//! Greedy decoding of many prompts for the generating evals (safety, utility): prompts sorted
//! by length so that a batch pads little, each batch left-padded and continued with the key/value
//! cache by [`HfCausalLm::generate`], every row stopping at the model's or the tokenizer's EOS.

use super::Progress;
use crate::{Result, TrainError};
use lm_backend::{GenerationConfig, HfCausalLm, Tokenizer};

/// The greedy continuation of each prompt (token ids, special tokens included), in prompt
/// order: up to `max_new_tokens` new ids each, ending with the EOS when one was produced.
/// Prompts go in batches of `batch_size` prompts of similar length; `progress(done, total)`
/// is called after each batch. The result does not depend on `batch_size` (the backend's
/// batched generation equals one prompt at a time; lm-backend's generation tests).
pub fn greedy_token_completions(
    model: &HfCausalLm,
    tokenizer: &Tokenizer,
    prompts: &[Vec<i64>],
    max_new_tokens: usize,
    batch_size: usize,
    progress: &mut Progress<'_>,
) -> Result<Vec<Vec<i64>>> {
    if batch_size == 0 {
        return Err(TrainError::input("batch_size", "must be at least 1"));
    }
    let config = GenerationConfig::greedy(model, max_new_tokens).with_tokenizer_eos(tokenizer);
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| prompts[i].len());
    let mut completions = vec![vec![]; prompts.len()];
    let mut done = 0;
    for chunk in order.chunks(batch_size) {
        let batch: Vec<Vec<i64>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
        let outputs = model.generate(&batch, &config).map_err(TrainError::model("generating completions"))?;
        for (&i, out) in chunk.iter().zip(outputs) {
            completions[i] = out;
        }
        done += chunk.len();
        progress(done, prompts.len());
    }
    Ok(completions)
}

/// The text of generated ids: special tokens (the final EOS) left out, surrounding whitespace
/// trimmed.
pub fn decode_completion(tokenizer: &Tokenizer, ids: &[i64]) -> Result<String> {
    let ids: Vec<u32> = ids.iter().filter_map(|&t| u32::try_from(t).ok()).collect();
    let text = tokenizer.decode(&ids, true).map_err(TrainError::model("decoding a completion"))?;
    Ok(text.trim().to_string())
}
