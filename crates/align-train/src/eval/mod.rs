//! Evaluation of a model on the views both papers report (methods.md §4): the reward gap per
//! language, the consistency of language variants per layer, the attack success rate per
//! language, and utility (math accuracy) per language. Library functions only: the `align eval` commands call them and print
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
//! - [`utility`]: [`load_utility_items`] (JSONL, or MGSM's TSV files with
//!   [`read_mgsm_folder`]), [`evaluate_utility`] → [`UtilityReport`] (`utility.json`), the
//!   answer's last number read by [`numbers`] in any script.
//! - [`greedy`]: the batched greedy decoding that safety and utility share.
//! - [`probe`]: [`evaluate_probe`] → [`ProbeReport`]: a linear probe per layer, fitted on
//!   one set of prompts (e.g. one language) and tested on others, per language.
//!
//! Text reaches the model through a [`TextEncoder`](crate::TextEncoder); an
//! [`lm_backend::Tokenizer`] is one (with its chat template). Batches are right-padded by
//! [`crate::padding`], as in training, and errors are the crate's [`TrainError`](crate::TrainError).
//!
//! ```
//! use align_train::data::{parse_record, Origin};
//! use align_train::eval::{evaluate_reward_gap, RewardGapOptions};
//! use lm_backend::{HfCausalLm, LoadOptions, Tokenizer};
//!
//! let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../lm-backend/tests/fixtures");
//! let model = HfCausalLm::load(format!("{fixtures}/llama"), LoadOptions::cpu_f32())?;
//! let encoder = Tokenizer::from_dir(format!("{fixtures}/tokenizer"))?;
//! let line = r#"{"id": "r1", "prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}"#;
//! let record = parse_record(line, &Origin { path: "pairs.jsonl".into(), line: 1 }, &["en".to_string()])?;
//! let report = evaluate_reward_gap(&model, &encoder, &[record], &RewardGapOptions::default())?;
//! assert_eq!(report.per_language["en"].n, 1);
//! let gap = &report.records[0];
//! assert!((gap.reward_gap - (gap.chosen_avg_logp - gap.rejected_avg_logp)).abs() < 1e-5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod consistency;
pub mod greedy;
pub mod http_judge;
pub mod judge;
pub mod numbers;
pub mod probe;
pub mod prompts;
pub mod refusal_phrases;
pub mod reward_gap;
pub mod safety;
pub mod utility;

pub use consistency::{
    evaluate_consistency, evaluate_consistency_with_progress, format_consistency_table, layer_consistency,
    plot_consistency, ConsistencyOptions, ConsistencyReport, LayerConsistency, LayerSelection,
};
pub use greedy::{decode_completion, greedy_token_completions};
pub use http_judge::{HttpJudge, HttpJudgeConfig};
pub use judge::{Judge, Verdict};
pub use probe::{evaluate_probe, LayerProbe, MeanDifferenceProbe, ProbeOptions, ProbePrompt, ProbeReport, RidgeProbe};
pub use prompts::{load_safety_prompts, parse_csv_prompts, SafetyPrompt, CSV_METADATA_COLUMNS};
pub use refusal_phrases::RefusalPhraseJudge;
pub use reward_gap::{
    evaluate_reward_gap, evaluate_reward_gap_with_progress, format_reward_gap_table, RecordGap, RewardGapOptions,
    RewardGapReport,
};
pub use safety::{
    format_safety_table, generate_responses, generate_responses_with_progress, judge_generations,
    judge_generations_with_progress, write_safety_outputs, Generation, GenerationOptions, JudgedGeneration,
    LanguageSafety, SafetyReport,
};

pub use utility::{
    evaluate_utility, evaluate_utility_with_progress, format_utility_table, load_utility_items, read_mgsm_folder,
    score_completions, utility_prompt, write_utility_items, write_utility_report, LanguageUtility, UtilityItem,
    UtilityOptions, UtilityPrompt, UtilityRecord, UtilityReport,
};

/// A progress callback of the long-running evals: called after each batch with
/// `(items done, items in total)`, so a caller can draw a progress bar or log lines.
pub type Progress<'a> = dyn FnMut(usize, usize) + 'a;
