//! # align-train
//!
//! The training side of polyalign: run configs, training data, learning-rate schedules, the
//! training loop (one process or many) and evaluation. The `align` binary is a thin layer over
//! this library.
//!
//! ```
//! use align_train::{RunConfig, ScheduleKind};
//! use std::path::Path;
//!
//! let config = RunConfig::parse(r#"
//!     [model]
//!     path = "models/base"
//!     [data]
//!     train = "data/pairs.jsonl"
//!     [[objective]]
//!     kind = "dpo"
//!     [[objective]]
//!     kind = "mlc"
//!     weight = 0.5
//!     layer = 14
//! "#, Path::new("runs/run.toml"))?;
//! assert_eq!(config.objectives.len(), 2);
//! assert_eq!(config.optim.schedule, ScheduleKind::Cosine);
//! assert_eq!(config.model.path, Path::new("runs/models/base"));
//! # Ok::<(), align_train::TrainError>(())
//! ```
//!
//! Main types: [`RunConfig`] (the TOML run file), [`Record`] and [`load_records`] (the JSONL
//! data), [`LrSchedule`], and [`TrainError`], whose every variant names the file, line or key
//! at fault. [`train`] runs training; [`dist`] joins the processes of a data-parallel run and
//! [`zero`] shards its optimizer state; [`plan`] estimates memory before launch. [`eval`]
//! measures models, [`report`] puts runs side by side (Markdown tables and [`chart`]s).
//! [`auto_layer`] chooses the layer of a consistency term with `layer = "auto"`.

pub mod auto_layer;
pub mod batch;
pub mod chart;
pub mod config;
pub mod data;
pub mod dist;
pub mod encode;
mod error;
pub mod eval;
pub mod metrics_log;
pub mod objectives;
pub mod optim;
pub mod order;
pub mod packing;
pub mod padding;
pub mod plan;
pub mod prepare;
pub mod report;
pub mod schedule;
pub mod seeded;
pub mod terms;
pub mod trainer;
pub mod zero;

pub use config::{LayerChoice, LoraConfig, ModelSection, ObjectiveConfig, ObjectiveKind, RunConfig, ScheduleKind};
pub use data::{load_records, Dataset, Message, Origin, Record, Text};
pub use encode::{encode_pair, encode_prompt, Encoded, TextEncoder};
pub use error::{Result, TrainError};
pub use metrics_log::MetricsLog;
pub use order::{DataOrder, MicroBatches};
pub use schedule::LrSchedule;
pub use trainer::{train, Checkpointer, Interrupt, TrainEvent, TrainOptions, TrainSummary};
