//! The run config: one TOML file describes a training run (architecture.md → Config).
//!
//! Unknown keys are errors that name the key and its table, so a typo never silently falls
//! back to a default: each table is a serde struct with `deny_unknown_fields`, and
//! [`TableContext`] turns serde's message into [`TrainError::UnknownKey`] with the struct's
//! fields as the allowed keys. Objective kinds and their parameters come from the registry
//! ([`crate::objectives`]). Relative paths are resolved against the config file's folder.

pub use crate::objectives::{LayerChoice, MpoVariant, ObjectiveKind, RetainForm};

use crate::objectives::{kind_entry, kind_names};
use crate::{Result, TrainError};
use serde::de::{DeserializeOwned, IgnoredAny, Visitor};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Table;

/// A whole run: model, data, objective terms, optimiser and schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// `[model]`.
    pub model: ModelSection,
    /// `[data]`.
    pub data: DataConfig,
    /// `[[objective]]`: the run minimises `sum(weight * term)`.
    pub objectives: Vec<ObjectiveConfig>,
    /// `[optim]`.
    pub optim: OptimConfig,
    /// `[train]`.
    pub train: TrainConfig,
    /// `[lora]`: present, the run trains low-rank adapters on a frozen base.
    pub lora: Option<LoraConfig>,
}

/// Weights and matmul precision: `"f32"` (default) or `"bf16"` (the backend's own type).
pub use lm_backend::Dtype;

/// How attention is computed: `"sdpa"` (default) or `"eager"` (the backend's own type).
pub use lm_backend::AttentionImpl;

/// `[model]`: the policy to train and its frozen reference. (Named `ModelSection`, not
/// `ModelConfig`, so that it is never confused with `lm_backend::ModelConfig`, a checkpoint's
/// `config.json`.)
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Hugging Face model folder (required).
    pub path: PathBuf,
    /// `"f32"` (default) or `"bf16"`.
    #[serde(default)]
    pub dtype: Dtype,
    /// `"cpu"` (default), `"cuda"` or `"cuda:N"`.
    #[serde(default = "default_device")]
    pub device: String,
    /// Frozen reference model folder; default: a frozen copy of `path`.
    #[serde(default)]
    pub reference: Option<PathBuf>,
    /// `"sdpa"` (default: libtorch's fused kernel wherever it can express the layer) or
    /// `"eager"` (separate ops, as `transformers`' eager path).
    #[serde(default)]
    pub attention: AttentionImpl,
}

fn default_device() -> String {
    "cpu".into()
}

/// `[data]`: training records and the languages they carry.
#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    /// One or more JSONL files (required).
    pub train: Vec<PathBuf>,
    /// The languages to train on, dominant first (default `["en"]`). It selects: texts of a
    /// record in other languages are left out and counted ([`crate::Dataset::left_out`]).
    pub languages: Vec<String>,
    /// Longest tokenised prompt + completion (default 1024).
    pub max_length: usize,
    /// Skip (and count) malformed lines instead of stopping (default false).
    pub skip_bad_lines: bool,
}

/// `schedule` in `[optim]`: how the learning rate moves after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Half-cosine decay to 0.
    Cosine,
    /// Linear decay to 0.
    Linear,
    /// Constant after warm-up.
    Constant,
}

/// `[optim]`: AdamW and the learning-rate schedule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate (default 5e-7).
    pub lr: f64,
    /// Decoupled weight decay (default 0, as the Python trainers).
    pub weight_decay: f64,
    /// Adam betas (default `[0.9, 0.999]`).
    pub betas: [f64; 2],
    /// Adam epsilon (default 1e-8).
    pub eps: f64,
    /// Global gradient-norm clip; 0 disables (default 1.0).
    pub max_grad_norm: f64,
    /// `"cosine"` (default), `"linear"` or `"constant"`.
    pub schedule: ScheduleKind,
    /// Share of the optimizer steps spent warming up linearly from 0 (default 0.1).
    pub warmup_ratio: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 5e-7,
            weight_decay: 0.0,
            betas: [0.9, 0.999],
            eps: 1e-8,
            max_grad_norm: 1.0,
            schedule: ScheduleKind::Cosine,
            warmup_ratio: 0.1,
        }
    }
}

/// What to do when a loss or gradient is NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnNonFinite {
    /// Do not apply the step; save the last good state and stop with a message (default).
    #[default]
    Stop,
    /// Do not apply the step; count it and go on.
    Skip,
}

/// `[train]`: batching, length and checkpoints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Records per micro-batch (default 8).
    pub batch_size: usize,
    /// Micro-batches per optimizer step (default 1).
    pub grad_accum: usize,
    /// Passes over the data (default 1).
    pub epochs: usize,
    /// Optimizer steps; > 0 overrides `epochs` (default 0).
    pub max_steps: usize,
    /// Seed of data order, sampling and any initialisation (default 42).
    pub seed: u64,
    /// Optimizer steps between checkpoints; 0: final only (default 0).
    pub save_every: usize,
    /// `"stop"` (default) or `"skip"`.
    pub on_nonfinite: OnNonFinite,
    /// Padding-free batches with each pair's prompt forwarded once (default true); false:
    /// right-padded rows, the reference layout (same values within float rounding).
    pub packing: bool,
    /// Micro-batches of records of similar length (default false): records are sorted by
    /// length within windows of 50 micro-batches of the seeded epoch order, so runs stay
    /// reproducible and resumable; it mostly saves memory (and, unpacked, padding).
    pub group_by_length: bool,
    /// Activation checkpointing (default false): the forward pass keeps only each decoder
    /// block's input, and each block is recomputed during the backward pass. Same gradients,
    /// far less activation memory, about one more forward pass of compute.
    pub gradient_checkpointing: bool,
    /// Data parallelism: seconds a collective waits for the other processes before the run
    /// fails (default 1800, c10d's). A process that dies is noticed at once by its closed
    /// connection; this bounds the wait on one that hangs.
    pub collective_timeout_s: u64,
    /// Data parallelism: each process keeps the AdamW state (moments, and float32 master
    /// weights of bf16 parameters) of its own shard of the parameters only (ZeRO stage 1);
    /// gradients are reduce-scattered and updated parameters all-gathered (default false).
    /// Same results; optimizer memory per process divided by the number of processes.
    pub shard_optimizer: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 8,
            grad_accum: 1,
            epochs: 1,
            max_steps: 0,
            seed: 42,
            save_every: 0,
            on_nonfinite: OnNonFinite::Stop,
            packing: true,
            group_by_length: false,
            gradient_checkpointing: false,
            collective_timeout_s: 1800,
            shard_optimizer: false,
        }
    }
}

/// The projections LoRA adapts by default: every linear projection of attention and MLP.
pub const LORA_DEFAULT_TARGETS: [&str; 7] =
    ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// `[lora]`: low-rank adapters (Hu et al. 2021) on a frozen base, saved in PEFT's layout.
///
/// Each targeted projection `y = x W^T` becomes `y = x W^T + (alpha / r) * dropout(x) A^T B^T`
/// with `A` `[r, in]` and `B` `[out, r]` (B starts at zero, so step 0 is the base model).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    /// Rank of each adapter (default 16).
    pub r: usize,
    /// Scale numerator: the update is multiplied by `alpha / r` (default 32).
    pub alpha: f64,
    /// Dropout on the adapter's input during training (default 0).
    pub dropout: f64,
    /// Projection names to adapt (default: all linear projections of attention and MLP,
    /// [`LORA_DEFAULT_TARGETS`]).
    pub target_modules: Vec<String>,
}

impl LoraConfig {
    /// The backend's adapter spec of this section, fresh `A` matrices drawn from `seed`.
    pub fn spec(&self, seed: u64) -> lm_backend::lora::LoraSpec {
        lm_backend::lora::LoraSpec::new(self.r, self.alpha)
            .with_targets(self.target_modules.iter().cloned())
            .with_dropout(self.dropout)
            .with_seed(seed)
    }
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 16,
            alpha: 32.0,
            dropout: 0.0,
            target_modules: LORA_DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// One `[[objective]]` term: its kind with parameters, weight and name.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectiveConfig {
    /// The term and its parameters.
    pub kind: ObjectiveKind,
    /// Multiplies the term in the sum (default 1.0; MLC's lambda).
    pub weight: f64,
    /// Its name in metrics (`loss/<name>`); default: the kind.
    pub name: String,
}

/// The keys of an `[[objective]]` table read here; the rest are its kind's parameters.
const OBJECTIVE_KEYS: &[&str] = &["kind", "weight", "name"];

/// The top level's tables, as serde checks them: an unknown one is an error. Each table's
/// value is read on its own below (so that each can be named in messages).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only the keys are checked here
struct TopLevel {
    model: Option<IgnoredAny>,
    data: Option<IgnoredAny>,
    objective: Option<IgnoredAny>,
    optim: Option<IgnoredAny>,
    train: Option<IgnoredAny>,
    lora: Option<IgnoredAny>,
}

impl RunConfig {
    /// Reads and validates the config at `path`; relative paths inside are resolved against
    /// its folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|source| TrainError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config `text` as if read from `path` (used in messages and to
    /// resolve relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let ctx = Ctx { path };
        let root: Table = text.parse().map_err(|e: toml::de::Error| ctx.syntax(e.to_string()))?;
        let TopLevel { .. } = ctx.at("the top level").deserialize(root.clone())?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();

        let model_table = ctx.section(&root, "model")?.ok_or_else(|| ctx.missing("the top level", "[model]"))?;
        let mut model: ModelSection = ctx.at("[model]").deserialize(model_table)?;
        model.path = base.join(&model.path);
        model.reference = model.reference.map(|r| base.join(r));

        let data = ctx.data(&root, &base)?;
        let objectives = ctx.objectives(&root)?;
        let optim: OptimConfig = match ctx.section(&root, "optim")? {
            Some(t) => ctx.at("[optim]").deserialize(t)?,
            None => OptimConfig::default(),
        };
        let train: TrainConfig = match ctx.section(&root, "train")? {
            Some(t) => ctx.at("[train]").deserialize(t)?,
            None => TrainConfig::default(),
        };
        let lora: Option<LoraConfig> = match ctx.section(&root, "lora")? {
            Some(t) => Some(ctx.at("[lora]").deserialize(t)?),
            None => None,
        };
        let config = RunConfig { model, data, objectives, optim, train, lora };
        ctx.validate(&config)?;
        Ok(config)
    }
}

/// One table of a config file being read: names it in errors, and turns serde's errors into
/// [`TrainError`] variants that name the key. Objective kinds read their parameters through
/// it ([`crate::objectives::KindEntry::parse`]).
#[derive(Debug, Clone)]
pub struct TableContext<'a> {
    path: &'a Path,
    table: String,
    read_by_caller: &'static [&'static str],
}

impl<'a> TableContext<'a> {
    /// The table labelled `table` (e.g. `[optim]`) of the config file at `path`.
    pub fn new(path: &'a Path, table: impl Into<String>) -> Self {
        Self { path, table: table.into(), read_by_caller: &[] }
    }

    /// Also lists `keys` as allowed in unknown-key errors (first): keys of the table that the
    /// caller reads and removes before [`TableContext::deserialize`] sees the rest.
    pub fn with_keys_read_by_caller(mut self, keys: &'static [&'static str]) -> Self {
        self.read_by_caller = keys;
        self
    }

    /// The table's label in messages.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Deserialises `t` as `T`, a struct with `#[serde(deny_unknown_fields)]`. serde's
    /// unknown field becomes [`TrainError::UnknownKey`] (with `T`'s fields as the allowed
    /// keys), its missing field [`TrainError::MissingKey`], a rejected value (a wrong type, an
    /// unknown variant) [`TrainError::InvalidValue`] naming the key, and anything else
    /// [`TrainError::ConfigSyntax`] prefixed with the table.
    pub fn deserialize<T: DeserializeOwned>(&self, t: Table) -> Result<T> {
        let keys: Vec<String> = t.keys().cloned().collect();
        let e = match T::deserialize(toml::Value::Table(t.clone())) {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        match self.serde_error(e.message(), &keys, serde_fields::<T>()) {
            syntax @ TrainError::ConfigSyntax { .. } => match offending_key::<T>(&t, e.message()) {
                Some(key) => Err(self.invalid(&key, e.message().trim_end())),
                None => Err(syntax),
            },
            other => Err(other),
        }
    }

    /// `key` is required in this table and absent.
    pub fn missing(&self, key: &str) -> TrainError {
        TrainError::MissingKey { path: self.path.to_path_buf(), table: self.table.clone(), key: key.into() }
    }

    /// `key`'s value is rejected, because `why`.
    pub fn invalid(&self, key: &str, why: impl Into<String>) -> TrainError {
        TrainError::InvalidValue {
            path: self.path.to_path_buf(),
            table: self.table.clone(),
            key: key.into(),
            why: why.into(),
        }
    }

    /// serde's `message` about a table with `keys`, deserialised into a struct of `fields`.
    fn serde_error(&self, message: &str, keys: &[String], fields: &[&str]) -> TrainError {
        if let Some(rest) = message.strip_prefix("unknown field `") {
            // serde stops at the first key (in table order) that is not a field.
            let key = keys.iter().find(|k| !fields.contains(&k.as_str())).cloned();
            let key = key.unwrap_or_else(|| rest.split("`, ").next().unwrap_or(rest).to_string());
            let allowed: Vec<&str> = self.read_by_caller.iter().chain(fields).copied().collect();
            return TrainError::UnknownKey {
                path: self.path.to_path_buf(),
                table: self.table.clone(),
                key,
                allowed: if allowed.is_empty() { "(none)".into() } else { allowed.join(", ") },
            };
        }
        match message.strip_prefix("missing field `").and_then(|k| k.strip_suffix('`')) {
            Some(key) => self.missing(key),
            None => TrainError::ConfigSyntax {
                path: self.path.to_path_buf(),
                message: format!("{}: {}", self.table, message.trim_end()),
            },
        }
    }
}

/// The key of `table` whose value serde rejected with `message`: the first key without which
/// the table no longer fails that way. serde's messages about a value (a wrong type, an
/// unknown variant) do not name the field; this finds it by elimination, on the error path
/// only.
fn offending_key<T: DeserializeOwned>(table: &Table, message: &str) -> Option<String> {
    table.keys().find_map(|key| {
        let mut without = table.clone();
        without.remove(key);
        match T::deserialize(toml::Value::Table(without)) {
            Err(e) if e.message() == message => None,
            _ => Some(key.clone()),
        }
    })
}

/// The field names of struct `T` as its derived `Deserialize` declares them (the `fields` it
/// passes to `deserialize_struct`): the keys a `deny_unknown_fields` table accepts. Empty when
/// `T` is not a struct.
fn serde_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut probe = FieldProbe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}

/// A deserializer that reads nothing: it records the field list a struct asks for and fails.
struct FieldProbe(&'static [&'static str]);

impl<'de> serde::Deserializer<'de> for &mut FieldProbe {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> std::result::Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only a struct's field names are read"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> std::result::Result<V::Value, Self::Error> {
        self.0 = fields;
        Err(serde::de::Error::custom("the field names were read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// `[data]` as written: `train` is one file or a list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataSection {
    train: OneOrMany,
    #[serde(default = "default_languages")]
    languages: Vec<String>,
    #[serde(default = "default_max_length")]
    max_length: usize,
    #[serde(default)]
    skip_bad_lines: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

fn default_languages() -> Vec<String> {
    vec!["en".into()]
}

fn default_max_length() -> usize {
    1024
}

/// Parsing context: the file, for messages.
struct Ctx<'a> {
    path: &'a Path,
}

impl<'a> Ctx<'a> {
    fn at(&self, table: impl Into<String>) -> TableContext<'a> {
        TableContext::new(self.path, table)
    }

    fn syntax(&self, message: String) -> TrainError {
        TrainError::ConfigSyntax { path: self.path.to_path_buf(), message: message.trim_end().to_string() }
    }

    fn missing(&self, table: &str, key: &str) -> TrainError {
        self.at(table).missing(key)
    }

    fn invalid(&self, table: &str, key: &str, why: impl Into<String>) -> TrainError {
        self.at(table).invalid(key, why)
    }

    /// `root[name]` as a table, `None` when absent, an error when it is not a table.
    fn section(&self, root: &Table, name: &str) -> Result<Option<Table>> {
        match root.get(name) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t.clone())),
            Some(_) => Err(self.invalid("the top level", name, format!("must be a table `[{name}]`"))),
        }
    }

    fn data(&self, root: &Table, base: &Path) -> Result<DataConfig> {
        let t = self.section(root, "data")?.ok_or_else(|| self.missing("the top level", "[data]"))?;
        let raw: DataSection = self.at("[data]").deserialize(t)?;
        let train = match raw.train {
            OneOrMany::One(p) => vec![p],
            OneOrMany::Many(v) => v,
        };
        if train.is_empty() {
            return Err(self.invalid("[data]", "train", "give at least one JSONL file"));
        }
        Ok(DataConfig {
            train: train.into_iter().map(|p| base.join(p)).collect(),
            languages: raw.languages,
            max_length: raw.max_length,
            skip_bad_lines: raw.skip_bad_lines,
        })
    }

    fn objectives(&self, root: &Table) -> Result<Vec<ObjectiveConfig>> {
        let tables = match root.get("objective") {
            None => return Err(self.missing("the top level", "[[objective]] (at least one term)")),
            Some(toml::Value::Array(items)) => items,
            Some(_) => {
                return Err(self.invalid("the top level", "objective", "must be an array of tables `[[objective]]`"))
            }
        };
        let mut out: Vec<ObjectiveConfig> = Vec::new();
        for (i, item) in tables.iter().enumerate() {
            let toml::Value::Table(t) = item else {
                return Err(self.invalid("the top level", "objective", "must be an array of tables `[[objective]]`"));
            };
            let objective = self.objective(t, i + 1)?;
            if let Some(prev) = out.iter().position(|o| o.name == objective.name) {
                let table = format!("[[objective]] #{}", i + 1);
                return Err(self.invalid(
                    &table,
                    "name",
                    format!(
                        "`{}` is also the name of term #{}; give each term of one kind its own `name`",
                        objective.name,
                        prev + 1
                    ),
                ));
            }
            out.push(objective);
        }
        if out.is_empty() {
            return Err(self.missing("the top level", "[[objective]] (at least one term)"));
        }
        Ok(out)
    }

    /// The `index`-th (1-based) `[[objective]]`: its kind from the registry, which reads the
    /// kind's parameters; `weight` and `name` are read here.
    fn objective(&self, t: &Table, index: usize) -> Result<ObjectiveConfig> {
        let anonymous = format!("[[objective]] #{index}");
        let entry = match t.get("kind") {
            None => return Err(self.missing(&anonymous, "kind")),
            Some(value) => value.as_str().and_then(kind_entry).ok_or_else(|| {
                self.invalid(&anonymous, "kind", format!("{value} is not one of {}", kind_names().join(", ")))
            })?,
        };
        let cx = self.at(format!("[[objective]] #{index} (kind = \"{}\")", entry.name));
        let mut params = t.clone();
        params.remove("kind");
        let (weight, name) = (params.remove("weight"), params.remove("name"));
        let kind = (entry.parse)(params, &cx.clone().with_keys_read_by_caller(OBJECTIVE_KEYS))?;
        let weight = match weight {
            None => 1.0,
            Some(v) => v
                .as_float()
                .or(v.as_integer().map(|i| i as f64))
                .ok_or_else(|| cx.invalid("weight", "must be a number"))?,
        };
        if !weight.is_finite() {
            return Err(cx.invalid("weight", "must be finite"));
        }
        let name = match name {
            None => entry.name.to_string(),
            Some(toml::Value::String(s)) if !s.is_empty() => s,
            Some(_) => return Err(cx.invalid("name", "must be a non-empty string")),
        };
        Ok(ObjectiveConfig { kind, weight, name })
    }

    /// Cross-field checks that serde cannot express.
    fn validate(&self, c: &RunConfig) -> Result<()> {
        let positive = |table: &str, key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(self.invalid(table, key, format!("must be a finite number > 0, got {v}")))
            }
        };
        positive("[optim]", "lr", c.optim.lr)?;
        positive("[optim]", "eps", c.optim.eps)?;
        if !(c.optim.weight_decay >= 0.0 && c.optim.weight_decay.is_finite()) {
            return Err(self.invalid("[optim]", "weight_decay", "must be a finite number >= 0"));
        }
        if !(c.optim.max_grad_norm >= 0.0 && c.optim.max_grad_norm.is_finite()) {
            return Err(self.invalid("[optim]", "max_grad_norm", "must be >= 0 (0 disables clipping)"));
        }
        if !(0.0..1.0).contains(&c.optim.warmup_ratio) {
            return Err(self.invalid("[optim]", "warmup_ratio", "must be in [0, 1)"));
        }
        if c.optim.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            return Err(self.invalid("[optim]", "betas", "each must be in [0, 1)"));
        }
        for (key, v) in [("batch_size", c.train.batch_size), ("grad_accum", c.train.grad_accum)] {
            if v == 0 {
                return Err(self.invalid("[train]", key, "must be at least 1"));
            }
        }
        if c.train.epochs == 0 && c.train.max_steps == 0 {
            return Err(self.invalid("[train]", "epochs", "must be at least 1 when max_steps = 0"));
        }
        if c.data.languages.is_empty() {
            return Err(self.invalid("[data]", "languages", "give at least the dominant language, e.g. [\"en\"]"));
        }
        if c.data.max_length < 2 {
            return Err(self.invalid("[data]", "max_length", "must be at least 2 tokens"));
        }
        if let Some(lora) = &c.lora {
            if lora.r == 0 {
                return Err(self.invalid("[lora]", "r", "must be at least 1"));
            }
            positive("[lora]", "alpha", lora.alpha)?;
            if !(0.0..1.0).contains(&lora.dropout) {
                return Err(self.invalid("[lora]", "dropout", "must be in [0, 1)"));
            }
            if lora.target_modules.is_empty() {
                let all = LORA_DEFAULT_TARGETS.join(", ");
                return Err(self.invalid("[lora]", "target_modules", format!("give at least one of {all}")));
            }
            if let Some(bad) = lora.target_modules.iter().find(|m| !LORA_DEFAULT_TARGETS.contains(&m.as_str())) {
                let all = LORA_DEFAULT_TARGETS.join(", ");
                return Err(self.invalid("[lora]", "target_modules", format!("`{bad}` is not one of {all}")));
            }
        }
        if !matches!(c.model.device.as_str(), "cpu" | "cuda")
            && c.model.device.strip_prefix("cuda:").is_none_or(|n| n.parse::<usize>().is_err())
        {
            return Err(self.invalid(
                "[model]",
                "device",
                format!("`{}`: use \"cpu\", \"cuda\" or \"cuda:N\"", c.model.device),
            ));
        }
        Ok(())
    }
}
