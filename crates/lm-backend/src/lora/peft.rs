//! PEFT's adapter folder: `adapter_config.json` ([`AdapterConfig`]) and
//! `adapter_model.safetensors`, whose tensors are named
//! `base_model.model.<module>.lora_A.weight` (`[r, in]`) and `...lora_B.weight` (`[out, r]`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use super::LoraSpec;
use crate::error::{LmError, Result};

/// The adapter's configuration file in an adapter folder.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The adapter's weights file in an adapter folder.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The prefix PEFT gives every tensor name of a causal LM's adapter.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// True when `dir` holds an `adapter_config.json` (a PEFT adapter folder, not a model).
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(ADAPTER_CONFIG).is_file()
}

/// PEFT's name of module `module`'s `which` (`"lora_A"` or `"lora_B"`) weight.
pub fn peft_name(module: &str, which: &str) -> String {
    format!("{PEFT_PREFIX}{module}.{which}.weight")
}

/// The module and the matrix (`"lora_A"` or `"lora_B"`) a PEFT tensor name is of.
pub(crate) fn parse_peft_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(PEFT_PREFIX)?.strip_suffix(".weight")?;
    let (module, which) = rest.rsplit_once('.')?;
    matches!(which, "lora_A" | "lora_B").then_some((module, which))
}

/// `adapter_config.json` of a PEFT LoRA adapter, as far as loading it needs; other keys
/// (PEFT writes many) are read past.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AdapterConfig {
    /// Must be `"LORA"`.
    pub peft_type: String,
    /// `"CAUSAL_LM"` (or absent).
    #[serde(default)]
    pub task_type: Option<String>,
    /// The rank.
    pub r: usize,
    /// The scale numerator (`alpha / r`, or `alpha / sqrt(r)` with `use_rslora`).
    pub lora_alpha: f64,
    /// Dropout on the adapter's input in training.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Module names (a list), or a regular expression PEFT matched against full names.
    #[serde(default)]
    pub target_modules: Option<Value>,
    /// The base model: a folder (absolute, or relative to the adapter folder) or a hub name.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Which biases were trained: only `"none"` is supported.
    #[serde(default = "bias_none")]
    pub bias: String,
    /// Weights stored `[in, out]` (GPT-2's Conv1D): not supported.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Rank-stabilised scaling `alpha / sqrt(r)`.
    #[serde(default)]
    pub use_rslora: bool,
    /// DoRA: not supported.
    #[serde(default)]
    pub use_dora: bool,
    /// A bias on `lora_B`: not supported.
    #[serde(default)]
    pub lora_bias: bool,
    /// Whole modules saved beside the adapters: not supported.
    #[serde(default)]
    pub modules_to_save: Option<Value>,
    /// Per-module ranks: not supported (must be empty).
    #[serde(default)]
    pub rank_pattern: Option<BTreeMap<String, Value>>,
    /// Per-module alphas: not supported (must be empty).
    #[serde(default)]
    pub alpha_pattern: Option<BTreeMap<String, Value>>,
}

fn bias_none() -> String {
    "none".into()
}

impl AdapterConfig {
    /// Reads `dir/adapter_config.json` and checks that it describes an adapter this crate
    /// applies (plain LoRA on a causal LM); an error names the file and the key.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(ADAPTER_CONFIG);
        if !path.is_file() {
            let why = format!("not an adapter folder: it has no {ADAPTER_CONFIG}");
            return Err(LmError::Adapter { path: dir.to_path_buf(), message: why });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| LmError::io(&path, e))?;
        let config: AdapterConfig =
            serde_json::from_str(&text).map_err(|source| LmError::Json { path: path.clone(), source })?;
        config.check(&path)?;
        Ok(config)
    }

    /// The adapter config of `spec` on the base `base_model_name_or_path`, as PEFT writes it
    /// for a plain LoRA adapter.
    pub fn from_spec(spec: &LoraSpec, base_model_name_or_path: &str) -> Self {
        AdapterConfig {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            r: spec.r,
            lora_alpha: spec.alpha,
            lora_dropout: spec.dropout,
            target_modules: Some(json!(spec.target_modules)),
            base_model_name_or_path: Some(base_model_name_or_path.into()),
            bias: bias_none(),
            fan_in_fan_out: false,
            use_rslora: spec.use_rslora,
            use_dora: false,
            lora_bias: false,
            modules_to_save: None,
            rank_pattern: Some(BTreeMap::new()),
            alpha_pattern: Some(BTreeMap::new()),
        }
    }

    /// The JSON PEFT reads: the keys above plus the defaults PEFT itself writes for a plain
    /// LoRA adapter (`inference_mode`, `init_lora_weights`, `layers_to_transform`, ...), so
    /// that PEFT loads it without guessing. `target_modules` is written sorted (PEFT writes a
    /// set, in no fixed order); an integral `lora_alpha` is written as an integer, as PEFT does.
    pub fn to_json(&self) -> Value {
        let number = |x: f64| if x.fract() == 0.0 && x.abs() < 1e15 { json!(x as i64) } else { json!(x) };
        let targets = match &self.target_modules {
            Some(Value::Array(items)) => {
                let mut names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                names.sort_unstable();
                names.dedup();
                json!(names)
            }
            other => other.clone().unwrap_or(Value::Null),
        };
        json!({
            "alpha_pattern": self.alpha_pattern.clone().unwrap_or_default(),
            "auto_mapping": null,
            "base_model_name_or_path": self.base_model_name_or_path,
            "bias": self.bias,
            "exclude_modules": null,
            "fan_in_fan_out": self.fan_in_fan_out,
            "inference_mode": true,
            "init_lora_weights": true,
            "layers_pattern": null,
            "layers_to_transform": null,
            "lora_alpha": number(self.lora_alpha),
            "lora_bias": self.lora_bias,
            "lora_dropout": self.lora_dropout,
            "modules_to_save": self.modules_to_save,
            "peft_type": self.peft_type,
            "r": self.r,
            "rank_pattern": self.rank_pattern.clone().unwrap_or_default(),
            "revision": null,
            "target_modules": targets,
            "task_type": self.task_type,
            "use_dora": self.use_dora,
            "use_rslora": self.use_rslora,
        })
    }

    /// The adapter's scale: `alpha / r`, or `alpha / sqrt(r)` with `use_rslora`.
    pub fn scaling(&self) -> f64 {
        scaling(self.lora_alpha, self.r, self.use_rslora)
    }

    /// The base model folder the adapter names: `base_model_name_or_path`, absolute or
    /// relative to `adapter_dir`. An error (suggesting `--base`) when the key is absent or
    /// names no folder here (e.g. a model hub name).
    pub fn base_dir(&self, adapter_dir: &Path) -> Result<PathBuf> {
        let Some(name) = self.base_model_name_or_path.as_deref().filter(|n| !n.is_empty()) else {
            let why = "`base_model_name_or_path` is not set, so the base model is unknown; name it with --base DIR";
            return Err(LmError::Adapter { path: adapter_dir.join(ADAPTER_CONFIG), message: why.into() });
        };
        let named = Path::new(name);
        let dir = if named.is_absolute() { named.to_path_buf() } else { adapter_dir.join(named) };
        if dir.join("config.json").is_file() {
            return Ok(dir);
        }
        let why = format!(
            "its base model `{name}` (`base_model_name_or_path`) is not a model folder here ({} has no config.json); \
             name the base model folder with --base DIR",
            dir.display()
        );
        Err(LmError::Adapter { path: adapter_dir.join(ADAPTER_CONFIG), message: why })
    }

    /// Rejects what this crate does not apply, naming the key.
    fn check(&self, path: &Path) -> Result<()> {
        let fail =
            |key: &str, why: String| Err(LmError::Config { path: path.to_path_buf(), key: key.into(), message: why });
        if self.peft_type != "LORA" {
            return fail("peft_type", format!("\"{}\": only LoRA adapters (\"LORA\") are supported", self.peft_type));
        }
        if let Some(task) = self.task_type.as_deref().filter(|t| *t != "CAUSAL_LM") {
            return fail("task_type", format!("\"{task}\": only causal LM adapters (\"CAUSAL_LM\") are supported"));
        }
        if self.r == 0 {
            return fail("r", "must be at least 1".into());
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return fail("lora_alpha", format!("must be a finite number > 0, got {}", self.lora_alpha));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return fail("lora_dropout", format!("must be in [0, 1), got {}", self.lora_dropout));
        }
        if self.bias != "none" {
            return fail("bias", format!("\"{}\": trained biases are not supported (only \"none\")", self.bias));
        }
        let unsupported = [
            ("fan_in_fan_out", self.fan_in_fan_out, "weights stored [in, out] (Conv1D) are not supported"),
            ("use_dora", self.use_dora, "DoRA adapters are not supported"),
            ("lora_bias", self.lora_bias, "a bias on lora_B is not supported"),
        ];
        if let Some((key, _, why)) = unsupported.into_iter().find(|(_, on, _)| *on) {
            return fail(key, format!("true: {why}"));
        }
        let empty = |v: &Option<Value>| match v {
            None | Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
        if !empty(&self.modules_to_save) {
            return fail("modules_to_save", "whole modules saved beside the adapters are not supported".into());
        }
        for (key, pattern) in [("rank_pattern", &self.rank_pattern), ("alpha_pattern", &self.alpha_pattern)] {
            if pattern.as_ref().is_some_and(|p| !p.is_empty()) {
                return fail(key, "per-module ranks and alphas are not supported (must be empty)".into());
            }
        }
        Ok(())
    }
}

/// `alpha / r`, or `alpha / sqrt(r)` for rank-stabilised LoRA (Kalajdzievski 2023).
pub(crate) fn scaling(alpha: f64, r: usize, rslora: bool) -> f64 {
    if rslora {
        alpha / (r as f64).sqrt()
    } else {
        alpha / r as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_names_round_trip() {
        let name = peft_name("model.layers.2.mlp.down_proj", "lora_B");
        assert_eq!(name, "base_model.model.model.layers.2.mlp.down_proj.lora_B.weight");
        assert_eq!(parse_peft_name(&name), Some(("model.layers.2.mlp.down_proj", "lora_B")));
        assert_eq!(parse_peft_name("base_model.model.model.layers.2.mlp.down_proj.weight"), None);
        assert_eq!(parse_peft_name("model.layers.2.mlp.down_proj.lora_A.weight"), None);
    }

    #[test]
    fn unsupported_adapters_are_named_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let write = |extra: &str| {
            let text = format!(r#"{{"peft_type": "LORA", "r": 4, "lora_alpha": 8 {extra}}}"#);
            std::fs::write(dir.path().join(ADAPTER_CONFIG), text).unwrap();
            AdapterConfig::read(dir.path())
        };
        let ok = write("").unwrap();
        assert_eq!(ok.scaling(), 2.0);
        assert_eq!(write(r#", "use_rslora": true"#).unwrap().scaling(), 4.0);
        for (extra, key) in [
            (r#", "use_dora": true"#, "use_dora"),
            (r#", "task_type": "SEQ_CLS""#, "task_type"),
            (r#", "bias": "all""#, "bias"),
            (r#", "rank_pattern": {"q_proj": 8}"#, "rank_pattern"),
            (r#", "modules_to_save": ["lm_head"]"#, "modules_to_save"),
            (r#", "lora_dropout": 1.0"#, "lora_dropout"),
        ] {
            let e = write(extra).unwrap_err().to_string();
            assert!(e.contains(ADAPTER_CONFIG) && e.contains(&format!("`{key}`")), "{extra}: {e}");
        }
        let e = AdapterConfig::read(&dir.path().join("nowhere")).unwrap_err().to_string();
        assert!(e.contains("not an adapter folder"), "{e}");
    }

    #[test]
    fn the_base_resolves_relative_to_the_adapter_folder_or_suggests_base() {
        let root = tempfile::tempdir().unwrap();
        let (base, adapter) = (root.path().join("base"), root.path().join("run/adapter"));
        std::fs::create_dir_all(&base).unwrap();
        std::fs::create_dir_all(&adapter).unwrap();
        std::fs::write(base.join("config.json"), "{}").unwrap();
        let spec = LoraSpec::new(4, 8.0);
        let relative = AdapterConfig::from_spec(&spec, "../../base");
        assert_eq!(relative.base_dir(&adapter).unwrap(), adapter.join("../../base"));
        let absolute = AdapterConfig::from_spec(&spec, base.to_str().unwrap());
        assert_eq!(absolute.base_dir(&adapter).unwrap(), base);
        let hub = AdapterConfig::from_spec(&spec, "HuggingFaceTB/SmolLM2-135M-Instruct");
        let e = hub.base_dir(&adapter).unwrap_err().to_string();
        assert!(e.contains("HuggingFaceTB/SmolLM2-135M-Instruct") && e.contains("--base"), "{e}");
    }
}
