//! A laptop-sized multilingual safety testbed: a generated world in which a tiny model can be
//! pre-trained to follow requests in six languages while refusing harmful ones reliably only
//! in the dominant language — the starting point of multilingual safety alignment (MLC, MPO).
//!
//! The world ([`World`]) has languages with their own scripts, vocabularies and word orders,
//! a shared set of concepts (each harmful or benign, the attribute itself described in every
//! language), request, answer, refusal and description templates, and word-aligned parallel
//! text. From it the crate writes, deterministically from a seed:
//! the data files in the project's JSONL format ([`Dataset`], [`write_world`]), a Hugging Face
//! WordLevel tokenizer ([`Vocabulary`]), a randomly initialised tiny Llama checkpoint
//! ([`TinyLlamaConfig`], [`write_checkpoint`]), and the exact judge of completions ([`Judge`]).
//! `docs/testbed.md` describes the world and every file.
//!
//! ```
//! use align_testbed::{Dataset, Judge, Verdict, World, WorldConfig};
//!
//! let world = World::generate(&WorldConfig { seed: 7, ..WorldConfig::default() }).unwrap();
//! let data = Dataset::build(&world);
//! assert_eq!(data.test_harmful.len(), 8 * 4 * 6); // held-out concepts x templates x languages
//! let judge = Judge::new(&world);
//! let c = world.held_out_concepts()[0];
//! assert_eq!(judge.classify("l3", &world.refusal(3)).unwrap(), Verdict::Refusal);
//! assert_eq!(judge.classify("l3", &world.answer(3, c)).unwrap(), Verdict::Compliance { concept: c });
//! assert_eq!(judge.classify("l3", &world.answer(2, c)).unwrap(), Verdict::Other); // wrong language
//! ```

pub mod base;
mod checkpoint;
mod corpus;
pub mod demo;
mod error;
mod folder;
mod judge;
mod order;
pub mod premise;
mod rng;
mod script;
pub mod study;
mod tokenizer;
mod world;

pub use base::{build_base, pretrain_config, BaseSummary, BASE_DIR, PRETRAIN_CONFIG, PRETRAIN_CONFIG_SHARED};
pub use checkpoint::{write_checkpoint, CheckpointSummary, TinyLlamaConfig};
pub use corpus::{jsonl, translate_marker, Dataset, Record, TestPrompt, Text, DATA_FILES, REPLY_MARKER, TEXT_MARKER};
pub use demo::{run_demo, DemoOptions, DemoReport, Method, MethodResult, MlcSettings};
pub use error::{Result, TestbedError};
pub use folder::{write_tokenizer, write_world, WorldSummary, WrittenFile};
pub use judge::{Judge, Verdict};
pub use order::WordOrder;
pub use premise::{check_premises, PremiseReport, PremiseThresholds};
pub use rng::SeededRng;
pub use script::Script;
pub use study::{run_study, StudyOptions, StudyReport};
pub use tokenizer::{Vocabulary, BOS, EOS, MODEL_MAX_LENGTH, PAD, SPECIAL_TOKENS, UNK};
pub use world::{
    Concept, Language, Slot, Template, World, WorldConfig, WorldKind, ANSWER_GLOSS, BENIGN_DESCRIPTION_GLOSSES,
    HARMFUL_DESCRIPTION_GLOSSES, LANGUAGE_NAMES, NO_GLOSS, QUESTION_GLOSS, REFUSAL_GLOSS, REQUEST_GLOSSES, YES_GLOSS,
};
