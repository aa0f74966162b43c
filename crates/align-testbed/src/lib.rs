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
mod rng;
mod script;
mod tokenizer;
mod world;

pub use base::{build_base, pretrain_config, BaseSummary, BASE_DIR, PRETRAIN_CONFIG};
pub use checkpoint::{write_checkpoint, CheckpointSummary, TinyLlamaConfig};
pub use corpus::{jsonl, translate_marker, Dataset, Record, TestPrompt, Text, DATA_FILES, TEXT_MARKER};
pub use demo::{run_demo, DemoOptions, DemoReport, Method, MethodResult, MlcSettings};
pub use error::{Result, TestbedError};
pub use folder::{write_tokenizer, write_world, WorldSummary, WrittenFile};
pub use judge::{Judge, Verdict};
pub use order::WordOrder;
pub use rng::SeededRng;
pub use script::Script;
pub use tokenizer::{Vocabulary, BOS, EOS, MODEL_MAX_LENGTH, PAD, SPECIAL_TOKENS, UNK};
pub use world::{
    Concept, Language, Slot, Template, World, WorldConfig, ANSWER_GLOSS, BENIGN_DESCRIPTION_GLOSSES,
    HARMFUL_DESCRIPTION_GLOSSES, LANGUAGE_NAMES, REFUSAL_GLOSS, REQUEST_GLOSSES,
};
