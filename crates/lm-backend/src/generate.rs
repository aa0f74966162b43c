//! Batched autoregressive generation with a key/value cache: prompts are left-padded, each
//! row stops at an EOS token or after `max_new_tokens`; tokens are chosen greedily or sampled
//! with temperature and nucleus (top-p, Holtzman et al. 2020) filtering from a seeded
//! generator, so a seed reproduces its output on any device.

use tch::{Kind, Tensor};

use crate::attention::{AttentionContext, LayerCache};
use crate::error::{LmError, Result};
use crate::model::{CausalLm, HfCausalLm, HiddenRequest};
use crate::tokenizer::Tokenizer;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The most probable token (`do_sample = False`).
    Greedy,
    /// Sampling from `softmax(logits / temperature)` restricted to the smallest set of most
    /// probable tokens whose probability reaches `top_p`.
    TopP {
        /// Divides the logits (> 0).
        temperature: f64,
        /// Nucleus mass in (0, 1]; 1 keeps every token.
        top_p: f64,
        /// Seed of the generator.
        seed: u64,
    },
}

/// Generation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// New tokens per row at most.
    pub max_new_tokens: usize,
    /// A row stops after producing any of these (the EOS is part of its output).
    pub eos_token_ids: Vec<i64>,
    /// Fills the left padding of shorter prompts (never attended to).
    pub pad_token_id: i64,
    /// Greedy or sampled.
    pub sampling: Sampling,
}

impl GenerationConfig {
    /// Greedy decoding with the model config's EOS and padding tokens.
    pub fn greedy(model: &impl CausalLm, max_new_tokens: usize) -> Self {
        let c = model.config();
        GenerationConfig {
            max_new_tokens,
            eos_token_ids: c.eos_token_ids.clone(),
            pad_token_id: c.pad_token_id.or(c.eos_token_ids.first().copied()).unwrap_or(0),
            sampling: Sampling::Greedy,
        }
    }

    /// This config, also stopping at the tokenizer's EOS token (`eos_token` of
    /// `tokenizer_config.json`) when `eos_token_ids` lacks it. Chat models often end an answer
    /// with a token (e.g. `<|im_end|>`) that `config.json`'s `eos_token_id` does not list;
    /// without it, a row would run on to `max_new_tokens`.
    pub fn with_tokenizer_eos(mut self, tokenizer: &Tokenizer) -> Self {
        if let Some(eos) = tokenizer.eos_token_id().map(i64::from) {
            if !self.is_eos(eos) {
                self.eos_token_ids.push(eos);
            }
        }
        self
    }

    /// Whether `token` ends a row: it is one of `eos_token_ids` (and is kept in the output).
    pub fn is_eos(&self, token: i64) -> bool {
        self.eos_token_ids.contains(&token)
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a small, fast, seedable generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws a token from `logits` `[V]` with temperature and top-p filtering: probabilities
/// `softmax(logits / temperature)` (in f64), the most probable tokens kept until their mass
/// reaches `top_p` (at least one), renormalised, then one draw by inverse CDF.
pub fn sample_top_p(logits: &[f32], temperature: f64, top_p: f64, rng: &mut SplitMix64) -> usize {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(usize, f64)> =
        logits.iter().enumerate().map(|(i, &l)| (i, ((l as f64 - max) / temperature).exp())).collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    // Stable order: probability descending, then token id.
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0;
    let mut mass = 0.0;
    for &(_, p) in &probs {
        kept += 1;
        mass += p / total;
        if mass >= top_p {
            break;
        }
    }
    let nucleus = &probs[..kept];
    let nucleus_total: f64 = nucleus.iter().map(|p| p.1).sum();
    let mut u = rng.next_f64() * nucleus_total;
    for &(i, p) in nucleus {
        if u < p {
            return i;
        }
        u -= p;
    }
    nucleus[kept - 1].0
}

impl HfCausalLm {
    /// Continues each prompt (token ids, the tokenizer's special tokens included) and
    /// returns the new tokens of each row: up to `max_new_tokens`, ending with the EOS if
    /// one was produced.
    pub fn generate(&self, prompts: &[Vec<i64>], config: &GenerationConfig) -> Result<Vec<Vec<i64>>> {
        if prompts.is_empty() {
            return Ok(vec![]);
        }
        if prompts.iter().any(Vec::is_empty) {
            return Err(LmError::input("prompts", "every prompt needs at least one token"));
        }
        if let Sampling::TopP { temperature, top_p, .. } = config.sampling {
            if !(temperature > 0.0 && top_p > 0.0 && top_p <= 1.0) {
                let msg = format!("temperature must be > 0 and top_p in (0, 1], got {temperature} and {top_p}");
                return Err(LmError::input("sampling", msg));
            }
        }
        let device = self.device();
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let (b, p) = (prompts.len() as i64, width as i64);
        // Left padding: [B, P].
        let mut ids = vec![config.pad_token_id; prompts.len() * width];
        let mut valid = vec![false; prompts.len() * width];
        for (r, prompt) in prompts.iter().enumerate() {
            let start = r * width + width - prompt.len();
            ids[start..start + prompt.len()].copy_from_slice(prompt);
            valid[start..start + prompt.len()].iter_mut().for_each(|v| *v = true);
        }
        let input_ids = Tensor::from_slice(&ids).view([b, p]).to_device(device);
        let key_valid = Tensor::from_slice(&valid).view([b, p]).to_device(device);
        let _ = self.check_inputs(&input_ids, &key_valid)?;
        let mut rng = match config.sampling {
            Sampling::TopP { seed, .. } => Some(SplitMix64::new(seed)),
            Sampling::Greedy => None,
        };
        tch::no_grad(|| -> Result<Vec<Vec<i64>>> {
            let last = self.config().num_layers;
            let mut caches: Vec<LayerCache> = (0..last).map(|_| LayerCache::default()).collect();
            // Positions count real tokens only: [B, P].
            let positions = (key_valid.to_kind(Kind::Int64).cumsum(1, Kind::Int64) - 1).clamp_min(0);
            let mut key_positions = positions.shallow_clone();
            let mut key_valid = key_valid;
            let first_new_position = positions.select(1, p - 1).unsqueeze(1) + 1; // [B, 1]
            let (layers, attention) = (&self.config().layers, self.load_options().attention);
            let context = |queries: &Tensor, keys: &Tensor, valid: &Tensor| {
                AttentionContext::new(self.rope(), self.kind(), layers, attention, queries, keys, valid)
            };
            let ctx = context(&positions, &key_positions, &key_valid);
            let (logits, _) = self.run(&input_ids, &ctx, Some(&mut caches), last, &HiddenRequest::none(), true);
            let mut step_logits = logits.map(|l| l.select(1, p - 1)); // [B, V]
            let mut outputs: Vec<Vec<i64>> = vec![vec![]; prompts.len()];
            let mut finished = vec![false; prompts.len()];
            for step in 0..config.max_new_tokens {
                let Some(logits) = step_logits.take() else { break };
                let next = self.choose(&logits, config, rng.as_mut())?;
                for (r, &token) in next.iter().enumerate() {
                    if !finished[r] {
                        outputs[r].push(token);
                        finished[r] = config.is_eos(token);
                    }
                }
                if finished.iter().all(|&f| f) || outputs.iter().map(Vec::len).max() == Some(config.max_new_tokens) {
                    break;
                }
                let tokens: Vec<i64> =
                    next.iter().zip(&finished).map(|(&t, &f)| if f { config.pad_token_id } else { t }).collect();
                let next_position = &first_new_position + step as i64;
                let step_ids = Tensor::from_slice(&tokens).view([b, 1]).to_device(device);
                key_positions = Tensor::cat(&[&key_positions, &next_position], 1);
                key_valid = Tensor::cat(&[&key_valid, &Tensor::ones([b, 1], (Kind::Bool, device))], 1);
                let ctx = context(&next_position, &key_positions, &key_valid);
                let (logits, _) = self.run(&step_ids, &ctx, Some(&mut caches), last, &HiddenRequest::none(), true);
                step_logits = logits.map(|l| l.select(1, 0));
            }
            Ok(outputs)
        })
    }

    /// The next token of every row from `logits` `[B, V]`.
    fn choose(&self, logits: &Tensor, config: &GenerationConfig, rng: Option<&mut SplitMix64>) -> Result<Vec<i64>> {
        match (config.sampling, rng) {
            (Sampling::TopP { temperature, top_p, .. }, Some(rng)) => {
                let rows = logits.size()[0];
                let all = logits.to_kind(Kind::Float).to_device(tch::Device::Cpu);
                (0..rows)
                    .map(|r| {
                        let row = Vec::<f32>::try_from(all.get(r))?;
                        Ok(sample_top_p(&row, temperature, top_p, rng) as i64)
                    })
                    .collect()
            }
            _ => Ok(Vec::<i64>::try_from(logits.argmax(-1, false).to_device(tch::Device::Cpu))?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_sampling_follows_the_truncated_distribution() {
        let logits = [2.0f32, 1.0, 0.5, -1.0, -3.0];
        let p: Vec<f64> = {
            let e: Vec<f64> = logits.iter().map(|&l| (l as f64).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|x| x / s).collect()
        };
        // top_p = 0.8 keeps the first tokens until their mass reaches 0.8.
        let mut keep = 0;
        let mut mass = 0.0;
        while mass < 0.8 {
            mass += p[keep];
            keep += 1;
        }
        let mut rng = SplitMix64::new(7);
        let n = 20_000;
        let mut counts = [0usize; 5];
        for _ in 0..n {
            counts[sample_top_p(&logits, 1.0, 0.8, &mut rng)] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let want = if i < keep { p[i] / mass } else { 0.0 };
            let got = c as f64 / n as f64;
            assert!((got - want).abs() < 0.015, "token {i}: {got} vs {want}");
        }
    }

    #[test]
    fn the_tokenizer_eos_is_added_once() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer");
        let tokenizer = Tokenizer::from_dir(dir).unwrap();
        let eos = i64::from(tokenizer.eos_token_id().unwrap());
        let config =
            GenerationConfig { max_new_tokens: 4, eos_token_ids: vec![7], pad_token_id: 0, sampling: Sampling::Greedy };
        let with = config.clone().with_tokenizer_eos(&tokenizer);
        assert_eq!(with.eos_token_ids, vec![7, eos]);
        assert!(with.is_eos(eos) && with.is_eos(7) && !config.is_eos(eos));
        assert_eq!(with.clone().with_tokenizer_eos(&tokenizer), with);
    }

    #[test]
    fn low_temperature_is_greedy_and_seeds_reproduce() {
        let logits = [0.1f32, 0.3, 0.2];
        let mut rng = SplitMix64::new(1);
        assert!((0..100).all(|_| sample_top_p(&logits, 1e-4, 1.0, &mut rng) == 1));
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..32).map(|_| sample_top_p(&logits, 1.0, 1.0, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
