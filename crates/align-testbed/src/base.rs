//! The base model of the demo: a tiny Llama pre-trained on the world's corpus by the
//! project's own trainer (the SFT objective, through `align_train::train`, the code path
//! users run), so that it follows requests in every language and refuses harmful ones mostly
//! in the dominant language.

use std::path::{Path, PathBuf};

use align_train::trainer::{EventHandler, OBJECTIVE_PARAMS, OPTIMIZER_STATE, TRAINER_STATE};
use align_train::{train, RunConfig, TrainOptions, TrainSummary};

use crate::error::Result;
use crate::{write_checkpoint, write_world, TestbedError, TinyLlamaConfig, World, WorldSummary};

/// The SFT run that pre-trains the first world's base model (`[model] path` and `[data]
/// train` are filled in by [`build_base`]): 12 epochs of its 3,246 records.
pub const PRETRAIN_CONFIG: &str = include_str!("pretrain.toml");

/// The SFT run that pre-trains a base model of a world with language shares (the second
/// world and its ablation): the same run for 5 epochs of its larger corpus.
pub const PRETRAIN_CONFIG_SHARED: &str = include_str!("pretrain_anchored.toml");

/// The name of the base model's folder inside the assets folder.
pub const BASE_DIR: &str = "base";

/// What [`build_base`] wrote.
#[derive(Debug, Clone)]
pub struct BaseSummary {
    /// The world's files.
    pub world: WorldSummary,
    /// The pre-training run.
    pub run: TrainSummary,
    /// The base model folder (`<assets>/base`).
    pub base: PathBuf,
}

/// The pre-training config of `world` ([`PRETRAIN_CONFIG`], or [`PRETRAIN_CONFIG_SHARED`] for
/// a world with language shares) with its paths pointing at `init` (the random checkpoint)
/// and `corpus` (`pretrain.jsonl`).
pub fn pretrain_config(world: &World, init: &Path, corpus: &Path) -> Result<RunConfig> {
    let text = if world.config().language_shares.is_empty() { PRETRAIN_CONFIG } else { PRETRAIN_CONFIG_SHARED };
    let mut config = RunConfig::parse(text, Path::new("pretrain.toml"))?;
    config.model.path = init.to_path_buf();
    config.data.train = vec![corpus.to_path_buf()];
    Ok(config)
}

/// Writes `world`'s files into `assets`, a random tiny Llama into `<work>/init`, pre-trains it
/// on `<assets>/pretrain.jsonl` with [`PRETRAIN_CONFIG`] (run folder `<work>/run`, with its
/// `metrics.jsonl` and checkpoints), and installs the final model as `<assets>/base`,
/// replacing an older one only once the new one is complete.
///
/// `config` may change the pre-training run (fewer steps for a test); `None` is the shipped
/// run. Runs with one intra-op thread (`tch::set_num_threads(1)`, process-wide): the model is
/// tiny, a second thread mostly waits at barriers (measured 40x slower per step while another
/// process loaded the cores), and a fixed thread count keeps the result bit-for-bit the same.
pub fn build_base(
    world: &World,
    assets: &Path,
    work: &Path,
    config: Option<RunConfig>,
    on_event: Option<EventHandler>,
) -> Result<BaseSummary> {
    tch::set_num_threads(1);
    let summary = write_world(world, assets)?;
    let init = work.join("init");
    write_checkpoint(world, &TinyLlamaConfig::default(), &init)?;
    let corpus = assets.join("pretrain.jsonl");
    let config = match config {
        Some(c) => c,
        None => pretrain_config(world, &init, &corpus)?,
    };
    let output = work.join("run");
    if output.exists() {
        std::fs::remove_dir_all(&output).map_err(|source| TestbedError::Io { path: output.clone(), source })?;
    }
    let run = train(&config, &assets.join("pretrain.toml"), &TrainOptions { on_event, ..TrainOptions::new(output) })?;
    if run.interrupted {
        return Err(TestbedError::Config {
            what: "pre-training was interrupted; the base model was not replaced".into(),
        });
    }
    let base = assets.join(BASE_DIR);
    replace_dir(&run.saved, &base)?;
    Ok(BaseSummary { world: summary, run, base })
}

/// Copies the model files of `from` (not the optimizer and trainer state) into a fresh
/// `<to>.partial`, then swaps it in for `to` ([`lm_backend::atomic::write_dir`]).
fn replace_dir(from: &Path, to: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TestbedError::Io { path, source }
    };
    let training_state = [OPTIMIZER_STATE, TRAINER_STATE, OBJECTIVE_PARAMS];
    lm_backend::atomic::write_dir(to, |partial| {
        for entry in std::fs::read_dir(from).map_err(io(from))? {
            let entry = entry.map_err(io(from))?;
            if entry.file_type().map_err(io(&entry.path()))?.is_file()
                && !training_state.iter().any(|name| entry.file_name() == *name)
            {
                let dest = partial.join(entry.file_name());
                std::fs::copy(entry.path(), &dest).map_err(io(&dest))?;
            }
        }
        Ok(())
    })
}
