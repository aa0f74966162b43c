//! The run config: one TOML file describes a training run (architecture.md → Config).
//!
//! Unknown keys are errors that name the key and its table, so a typo never silently falls
//! back to a default. Relative paths are resolved against the config file's folder.

use crate::{Result, TrainError};
use serde::de::DeserializeOwned;
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
}

/// Weights and matmul precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// float32 everywhere (the default; what the parity tests use).
    #[default]
    F32,
    /// bfloat16 weights and matmuls; log-softmax, losses and optimizer state stay float32.
    Bf16,
}

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
}

fn default_device() -> String {
    "cpu".into()
}

/// `[data]`: training records and the languages they carry.
#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    /// One or more JSONL files (required).
    pub train: Vec<PathBuf>,
    /// Language tags, dominant first (default `["en"]`).
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
        }
    }
}

/// MPO's retain term form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetainForm {
    /// The last real token's hidden state (the paper).
    LastToken,
    /// Hidden states mean-pooled over real tokens (the public code, with padding masked).
    MeanPool,
}

/// MPO's variants (the paper's ablations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MpoVariant {
    /// Reference dominant gap, length-normalised (the paper).
    Paper,
    /// A constant target gap (`target_gap`, required with this variant) instead of the dominant gap.
    ConstantTarget,
    /// The dominant gap computed by the policy instead of the reference.
    PolicyDominant,
    /// Gaps of summed (not length-normalised) log-probs.
    NoLengthNorm,
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

/// The objective kinds of architecture.md with their parameters (defaults as documented there).
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // each field is the config key of the same name, documented in docs/
pub enum ObjectiveKind {
    Dpo {
        beta: f64,
        label_smoothing: f64,
    },
    RobustDpo {
        beta: f64,
        label_smoothing: f64,
    },
    Hinge {
        beta: f64,
    },
    Ipo {
        beta: f64,
    },
    RDpo {
        beta: f64,
        alpha: f64,
    },
    Simpo {
        beta: f64,
        gamma: f64,
    },
    Cpo {
        beta: f64,
        alpha: f64,
    },
    Orpo {
        beta: f64,
    },
    Kto {
        beta: f64,
        desirable_weight: f64,
        undesirable_weight: f64,
    },
    Sft,
    Mpo {
        beta: f64,
        retain: RetainForm,
        retain_layer: Option<usize>,
        retain_weight: f64,
        variant: MpoVariant,
        target_gap: Option<f64>,
    },
    Mlc {
        layer: usize,
        tau: f64,
        head_dim: usize,
    },
    Cosine {
        layer: usize,
    },
}

/// Every objective kind's config name, in the order of architecture.md's table.
pub const OBJECTIVE_KINDS: &[&str] =
    &["dpo", "robust_dpo", "hinge", "ipo", "r_dpo", "simpo", "cpo", "orpo", "kto", "sft", "mpo", "mlc", "cosine"];

impl ObjectiveKind {
    /// The config name of this kind (`"dpo"`, `"mlc"`, …).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::Dpo { .. } => "dpo",
            Self::RobustDpo { .. } => "robust_dpo",
            Self::Hinge { .. } => "hinge",
            Self::Ipo { .. } => "ipo",
            Self::RDpo { .. } => "r_dpo",
            Self::Simpo { .. } => "simpo",
            Self::Cpo { .. } => "cpo",
            Self::Orpo { .. } => "orpo",
            Self::Kto { .. } => "kto",
            Self::Sft => "sft",
            Self::Mpo { .. } => "mpo",
            Self::Mlc { .. } => "mlc",
            Self::Cosine { .. } => "cosine",
        }
    }
}

const MODEL_KEYS: &[&str] = &["path", "dtype", "device", "reference"];
const DATA_KEYS: &[&str] = &["train", "languages", "max_length", "skip_bad_lines"];
const OPTIM_KEYS: &[&str] = &["lr", "weight_decay", "betas", "eps", "max_grad_norm", "schedule", "warmup_ratio"];
const TRAIN_KEYS: &[&str] = &["batch_size", "grad_accum", "epochs", "max_steps", "seed", "save_every", "on_nonfinite"];
const TOP_KEYS: &[&str] = &["model", "data", "objective", "optim", "train"];

/// The parameters each objective kind accepts besides `kind`, `weight` and `name`.
fn objective_parameters(kind: &str) -> &'static [&'static str] {
    match kind {
        "dpo" | "robust_dpo" => &["beta", "label_smoothing"],
        "hinge" | "ipo" | "orpo" => &["beta"],
        "r_dpo" | "cpo" => &["beta", "alpha"],
        "simpo" => &["beta", "gamma"],
        "kto" => &["beta", "desirable_weight", "undesirable_weight"],
        "sft" => &[],
        "mpo" => &["beta", "retain", "retain_layer", "retain_weight", "variant", "target_gap"],
        "mlc" => &["layer", "tau", "head_dim"],
        "cosine" => &["layer"],
        _ => &[],
    }
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
        ctx.check_keys(&root, "the top level", TOP_KEYS)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();

        let model_table = ctx.table(&root, "model")?.ok_or_else(|| ctx.missing("the top level", "[model]"))?;
        ctx.check_keys(&model_table, "[model]", MODEL_KEYS)?;
        if !model_table.contains_key("path") {
            return Err(ctx.missing("[model]", "path"));
        }
        let mut model: ModelSection = ctx.deserialize(model_table, "[model]")?;
        model.path = base.join(&model.path);
        model.reference = model.reference.map(|r| base.join(r));

        let data = ctx.data(&root, &base)?;
        let objectives = ctx.objectives(&root)?;
        let optim: OptimConfig = match ctx.table(&root, "optim")? {
            Some(t) => {
                ctx.check_keys(&t, "[optim]", OPTIM_KEYS)?;
                ctx.deserialize(t, "[optim]")?
            }
            None => OptimConfig::default(),
        };
        let train: TrainConfig = match ctx.table(&root, "train")? {
            Some(t) => {
                ctx.check_keys(&t, "[train]", TRAIN_KEYS)?;
                ctx.deserialize(t, "[train]")?
            }
            None => TrainConfig::default(),
        };
        let config = RunConfig { model, data, objectives, optim, train };
        ctx.validate(&config)?;
        Ok(config)
    }
}

/// Parsing context: the file, for messages.
struct Ctx<'a> {
    path: &'a Path,
}

impl Ctx<'_> {
    fn syntax(&self, message: String) -> TrainError {
        TrainError::ConfigSyntax { path: self.path.to_path_buf(), message: message.trim_end().to_string() }
    }

    fn missing(&self, table: &str, key: &str) -> TrainError {
        TrainError::MissingKey { path: self.path.to_path_buf(), table: table.into(), key: key.into() }
    }

    fn invalid(&self, table: &str, key: &str, why: impl Into<String>) -> TrainError {
        TrainError::InvalidValue {
            path: self.path.to_path_buf(),
            table: table.into(),
            key: key.into(),
            why: why.into(),
        }
    }

    fn check_keys(&self, table: &Table, name: &str, allowed: &[&str]) -> Result<()> {
        match table.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(key) => Err(TrainError::UnknownKey {
                path: self.path.to_path_buf(),
                table: name.to_string(),
                key: key.clone(),
                allowed: if allowed.is_empty() { "(none)".into() } else { allowed.join(", ") },
            }),
        }
    }

    /// `root[name]` as a table, `None` when absent, an error when it is not a table.
    fn table(&self, root: &Table, name: &str) -> Result<Option<Table>> {
        match root.get(name) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t.clone())),
            Some(_) => Err(self.invalid("the top level", name, format!("must be a table `[{name}]`"))),
        }
    }

    fn deserialize<T: DeserializeOwned>(&self, table: Table, name: &str) -> Result<T> {
        T::deserialize(toml::Value::Table(table)).map_err(|e| self.syntax(format!("{name}: {}", e.message())))
    }

    fn data(&self, root: &Table, base: &Path) -> Result<DataConfig> {
        let t = self.table(root, "data")?.ok_or_else(|| self.missing("the top level", "[data]"))?;
        self.check_keys(&t, "[data]", DATA_KEYS)?;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(PathBuf),
            Many(Vec<PathBuf>),
        }
        #[derive(Deserialize)]
        struct Raw {
            train: Option<OneOrMany>,
            #[serde(default = "default_languages")]
            languages: Vec<String>,
            #[serde(default = "default_max_length")]
            max_length: usize,
            #[serde(default)]
            skip_bad_lines: bool,
        }
        fn default_languages() -> Vec<String> {
            vec!["en".into()]
        }
        fn default_max_length() -> usize {
            1024
        }
        let raw: Raw = self.deserialize(t, "[data]")?;
        let train = match raw.train {
            None => return Err(self.missing("[data]", "train")),
            Some(OneOrMany::One(p)) => vec![p],
            Some(OneOrMany::Many(v)) => v,
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

    fn objective(&self, t: &Table, index: usize) -> Result<ObjectiveConfig> {
        let anonymous = format!("[[objective]] #{index}");
        let kind = match t.get("kind") {
            None => return Err(self.missing(&anonymous, "kind")),
            Some(toml::Value::String(k)) if OBJECTIVE_KINDS.contains(&k.as_str()) => k.clone(),
            Some(other) => {
                return Err(self.invalid(
                    &anonymous,
                    "kind",
                    format!("{other} is not one of {}", OBJECTIVE_KINDS.join(", ")),
                ));
            }
        };
        let table = format!("[[objective]] #{index} (kind = \"{kind}\")");
        let mut allowed = vec!["kind", "weight", "name"];
        allowed.extend_from_slice(objective_parameters(&kind));
        self.check_keys(t, &table, &allowed)?;
        let mut params = t.clone();
        params.remove("kind");
        let weight = match params.remove("weight") {
            None => 1.0,
            Some(v) => v
                .as_float()
                .or(v.as_integer().map(|i| i as f64))
                .ok_or_else(|| self.invalid(&table, "weight", "must be a number"))?,
        };
        if !weight.is_finite() {
            return Err(self.invalid(&table, "weight", "must be finite"));
        }
        let name = match params.remove("name") {
            None => kind.clone(),
            Some(toml::Value::String(s)) if !s.is_empty() => s,
            Some(_) => return Err(self.invalid(&table, "name", "must be a non-empty string")),
        };
        let kind = self.objective_kind(&kind, params, &table)?;
        Ok(ObjectiveConfig { kind, weight, name })
    }

    fn objective_kind(&self, kind: &str, params: Table, table: &str) -> Result<ObjectiveKind> {
        macro_rules! params {
            ($($field:ident : $ty:ty = $default:expr),* $(,)?) => {{
                #[derive(Deserialize)]
                struct P { $( #[serde(default)] $field: Option<$ty>, )* }
                let p: P = self.deserialize(params, table)?;
                ($( p.$field.unwrap_or($default), )*)
            }};
        }
        let layer = |layer: Option<usize>| layer.ok_or_else(|| self.missing(table, "layer"));
        Ok(match kind {
            "dpo" => {
                let (beta, label_smoothing) = params!(beta: f64 = 0.1, label_smoothing: f64 = 0.0);
                ObjectiveKind::Dpo { beta, label_smoothing }
            }
            "robust_dpo" => {
                let (beta, label_smoothing) = params!(beta: f64 = 0.1, label_smoothing: f64 = 0.1);
                ObjectiveKind::RobustDpo { beta, label_smoothing }
            }
            "hinge" => ObjectiveKind::Hinge { beta: params!(beta: f64 = 0.1).0 },
            "ipo" => ObjectiveKind::Ipo { beta: params!(beta: f64 = 0.1).0 },
            "orpo" => ObjectiveKind::Orpo { beta: params!(beta: f64 = 0.1).0 },
            "r_dpo" => {
                let (beta, alpha) = params!(beta: f64 = 0.1, alpha: f64 = 0.01);
                ObjectiveKind::RDpo { beta, alpha }
            }
            "simpo" => {
                let (beta, gamma) = params!(beta: f64 = 2.0, gamma: f64 = 1.0);
                ObjectiveKind::Simpo { beta, gamma }
            }
            "cpo" => {
                let (beta, alpha) = params!(beta: f64 = 0.1, alpha: f64 = 1.0);
                ObjectiveKind::Cpo { beta, alpha }
            }
            "kto" => {
                let (beta, desirable_weight, undesirable_weight) =
                    params!(beta: f64 = 0.1, desirable_weight: f64 = 1.0, undesirable_weight: f64 = 1.0);
                ObjectiveKind::Kto { beta, desirable_weight, undesirable_weight }
            }
            "sft" => ObjectiveKind::Sft,
            "mpo" => {
                #[derive(Deserialize)]
                struct P {
                    beta: Option<f64>,
                    retain: Option<RetainForm>,
                    retain_layer: Option<usize>,
                    retain_weight: Option<f64>,
                    variant: Option<MpoVariant>,
                    target_gap: Option<f64>,
                }
                let p: P = self.deserialize(params, table)?;
                let variant = p.variant.unwrap_or(MpoVariant::Paper);
                let target_gap = match (variant, p.target_gap) {
                    (MpoVariant::ConstantTarget, Some(c)) => Some(c),
                    (MpoVariant::ConstantTarget, None) => return Err(self.missing(table, "target_gap")),
                    (_, Some(_)) => {
                        return Err(self.invalid(
                            table,
                            "target_gap",
                            "is only used with variant = \"constant_target\"",
                        ))
                    }
                    (_, None) => None,
                };
                ObjectiveKind::Mpo {
                    beta: p.beta.unwrap_or(1.0),
                    retain: p.retain.unwrap_or(RetainForm::LastToken),
                    retain_layer: p.retain_layer,
                    retain_weight: p.retain_weight.unwrap_or(1.0),
                    variant,
                    target_gap,
                }
            }
            "mlc" => {
                let (l, tau, head_dim) = params!(layer: Option<usize> = None, tau: f64 = 1.0, head_dim: usize = 0);
                ObjectiveKind::Mlc { layer: layer(l)?, tau, head_dim }
            }
            "cosine" => ObjectiveKind::Cosine { layer: layer(params!(layer: Option<usize> = None).0)? },
            other => unreachable!("kind `{other}` was checked against OBJECTIVE_KINDS"),
        })
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
