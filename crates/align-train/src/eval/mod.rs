//! Evaluation of a model on the three views both papers report (methods.md §4): the reward
//! gap per language, the consistency of language variants per layer, and the attack success
//! rate per language. Library functions only: the `align eval` commands call them and print
//! what they return. The user guide is `docs/evaluation.md`.
//!
//! - [`reward_gap`](mod@reward_gap): [`evaluate_reward_gap`] → [`RewardGapReport`] (the
//!   JSON of architecture.md, `eval reward-gap`).
//! - [`consistency`]: [`evaluate_consistency`] → [`ConsistencyReport`], with
//!   [`format_consistency_table`] and [`plot_consistency`] (PNG).
//! - [`safety`]: [`load_safety_prompts`] (JSONL or MultiJail-style CSV),
//!   [`generate_responses`], [`judge_generations`], [`SafetyReport`]; the judges
//!   [`RefusalPhraseJudge`] (offline phrase lists, [`refusal_phrases`]) and [`HttpJudge`]
//!   (any OpenAI-compatible chat endpoint) behind the [`Judge`] trait.
//! - [`TokenizerEncoder`]: the [`TextEncoder`](crate::TextEncoder) of an
//!   [`lm_backend::Tokenizer`].

pub mod consistency;
mod error;
pub mod http_judge;
pub mod judge;
mod padded;
pub mod prompts;
pub mod refusal_phrases;
pub mod reward_gap;
pub mod safety;
pub mod tokenizer_encoder;

pub use consistency::{
    evaluate_consistency, format_consistency_table, layer_consistency, plot_consistency, ConsistencyOptions,
    ConsistencyReport, LayerConsistency, LayerSelection,
};
pub use error::{EvalError, EvalResult};
pub use http_judge::{HttpJudge, HttpJudgeConfig};
pub use judge::{Judge, Verdict};
pub use prompts::{load_safety_prompts, parse_csv_prompts, SafetyPrompt, CSV_METADATA_COLUMNS};
pub use refusal_phrases::RefusalPhraseJudge;
pub use reward_gap::{evaluate_reward_gap, format_reward_gap_table, RecordGap, RewardGapOptions, RewardGapReport};
pub use safety::{
    format_safety_table, generate_responses, judge_generations, write_safety_outputs, Generation, GenerationOptions,
    JudgedGeneration, LanguageSafety, SafetyReport,
};
pub use tokenizer_encoder::TokenizerEncoder;
