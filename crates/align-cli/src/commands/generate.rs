//! `align generate --model DIR --prompt TEXT`: loads a model folder and its tokenizer,
//! continues the prompt (greedy by default, nucleus sampling with `--temperature`) and prints
//! the completion on stdout (special tokens such as the final EOS left out).
//!
//! - Without `--chat` the prompt is encoded as it is, with the tokenizer's own special tokens
//!   (e.g. a BOS when the tokenizer adds one). The chat template is never applied implicitly,
//!   so the same command means the same thing for base and instruction-tuned models.
//! - With `--chat` the prompt becomes one user turn (after an optional `--system` turn)
//!   rendered by the tokenizer's chat template with the generation prompt; a tokenizer
//!   without a template is an error.
//! - `--lang` is a label only: it is reported with the completion and changes nothing in the
//!   computation (the model sees only the prompt text).
//! - Generation stops at the model's EOS tokens (config.json) or the tokenizer's EOS token.

use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use lm_backend::{ChatMessage, GenerationConfig, Sampling};

use crate::model_args::ModelArgs;

/// Arguments of `align generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The model folder, device and dtype.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to continue (the user turn with `--chat`).
    #[arg(long)]
    pub prompt: String,
    /// Language tag of the prompt (a label in the output only).
    #[arg(long, value_name = "TAG")]
    pub lang: Option<String>,
    /// New tokens at most.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Render the prompt as a user turn with the tokenizer's chat template.
    #[arg(long)]
    pub chat: bool,
    /// A system turn before the prompt (with `--chat` only).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Sample with this temperature (> 0) instead of greedy decoding; 0 means greedy.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Nucleus mass in (0, 1] when sampling.
    #[arg(long, default_value_t = 1.0, requires = "temperature")]
    pub top_p: f64,
    /// Seed of the sampler (the same seed gives the same tokens on every device).
    #[arg(long, default_value_t = 0, requires = "temperature")]
    pub seed: u64,
    /// Print one JSON object (prompt, token ids, completion, language label) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Loads the model, generates and prints.
pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let (model, tokenizer) = args.model.load()?;
    let prompt = if args.chat {
        if tokenizer.chat_template().is_none() {
            bail!("--chat: the tokenizer in {} has no chat template", args.model.model.display());
        }
        let mut messages = vec![];
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system.as_str()));
        }
        messages.push(ChatMessage::new("user", args.prompt.as_str()));
        tokenizer.apply_chat_template(&messages, true).context("cannot render the chat template")?
    } else {
        args.prompt.clone()
    };
    // A rendered template already holds its special tokens as text.
    let add_special_tokens = !args.chat;
    let prompt_ids: Vec<i64> = tokenizer.encode(&prompt, add_special_tokens)?.into_iter().map(i64::from).collect();
    if prompt_ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }

    let mut config = GenerationConfig::greedy(&model, args.max_new_tokens).with_tokenizer_eos(&tokenizer);
    match args.temperature {
        Some(t) if t > 0.0 => {
            config.sampling = Sampling::TopP { temperature: t, top_p: args.top_p, seed: args.seed };
        }
        Some(t) if t < 0.0 || t.is_nan() => bail!("--temperature must be >= 0, got {t}"),
        _ => {}
    }

    let start = Instant::now();
    let completion_ids = model.generate(std::slice::from_ref(&prompt_ids), &config)?.remove(0);
    let seconds = start.elapsed().as_secs_f64();
    let stopped_at_eos = completion_ids.last().is_some_and(|&t| config.is_eos(t));
    let ids_u32: Vec<u32> = completion_ids.iter().map(|&t| t as u32).collect();
    let completion = tokenizer.decode(&ids_u32, true)?;

    if args.json {
        let out = serde_json::json!({
            "lang": args.lang,
            "prompt": prompt,
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            "completion": completion,
            "stopped_at_eos": stopped_at_eos,
        });
        println!("{out}");
    } else {
        println!("{completion}");
    }
    let label = args.lang.as_deref().map(|l| format!("[{l}] ")).unwrap_or_default();
    let rate = completion_ids.len() as f64 / seconds.max(1e-9);
    eprintln!("{label}{} new tokens in {seconds:.2} s ({rate:.1} tokens/s)", completion_ids.len());
    Ok(())
}
