//! Writing a world to a folder: its data files, `world.json` and the tokenizer files.

use std::fmt;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::corpus::{translate_marker, Dataset, REPLY_MARKER, TEXT_MARKER};
use crate::error::{Result, TestbedError};
use crate::tokenizer::Vocabulary;
use crate::world::{Concept, Language, World, WorldConfig, NO_GLOSS, QUESTION_GLOSS, YES_GLOSS};

/// One file written by [`write_world`].
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenFile {
    /// The file name inside the folder.
    pub name: String,
    /// Number of records (JSONL files) or `None`.
    pub records: Option<usize>,
    /// Size in bytes.
    pub bytes: usize,
}

/// Everything [`write_world`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldSummary {
    /// The files, in the order they were written.
    pub files: Vec<WrittenFile>,
}

impl WorldSummary {
    /// Total size of the files in bytes.
    pub fn total_bytes(&self) -> usize {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

impl fmt::Display for WorldSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            let records = file.records.map(|r| format!("{r:>6} records")).unwrap_or_default();
            writeln!(f, "{:<24} {records:>14} {:>9} bytes", file.name, file.bytes)?;
        }
        write!(f, "{:<24} {:>14} {:>9} bytes", "total", "", self.total_bytes())
    }
}

/// Writes the data files of [`Dataset::build`], `world.json`, `tokenizer.json`,
/// `tokenizer_config.json` and `special_tokens_map.json` into `dir` (created if missing).
pub fn write_world(world: &World, dir: &Path) -> Result<WorldSummary> {
    create_dir(dir)?;
    let mut files = Vec::new();
    let dataset = Dataset::build(world);
    let contents = dataset.files().map_err(|source| TestbedError::Json { path: dir.to_path_buf(), source })?;
    for (name, records, text) in contents {
        write_bytes(&dir.join(name), text.as_bytes())?;
        files.push(WrittenFile { name: name.to_string(), records: Some(records), bytes: text.len() });
    }
    let mut record = |name: &str, value: &Value| -> Result<()> {
        let bytes = write_json(&dir.join(name), value)?;
        files.push(WrittenFile { name: name.to_string(), records: None, bytes });
        Ok(())
    };
    let description =
        world_json(world).map_err(|source| TestbedError::Json { path: dir.join("world.json"), source })?;
    record("world.json", &description)?;
    let vocab = Vocabulary::of(world);
    record("tokenizer.json", &vocab.tokenizer_json())?;
    record("tokenizer_config.json", &vocab.tokenizer_config_json())?;
    record("special_tokens_map.json", &vocab.special_tokens_map_json())?;
    Ok(WorldSummary { files })
}

/// The content of `world.json` for `world`.
pub(crate) fn world_json(world: &World) -> serde_json::Result<Value> {
    serde_json::to_value(WorldFile::of(world))
}

/// Writes the three tokenizer files of `vocab` into `dir` (created if missing).
pub fn write_tokenizer(vocab: &Vocabulary, dir: &Path) -> Result<()> {
    create_dir(dir)?;
    write_json(&dir.join("tokenizer.json"), &vocab.tokenizer_json())?;
    write_json(&dir.join("tokenizer_config.json"), &vocab.tokenizer_config_json())?;
    write_json(&dir.join("special_tokens_map.json"), &vocab.special_tokens_map_json())?;
    Ok(())
}

pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| TestbedError::Io { path: dir.to_path_buf(), source })
}

pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    std::fs::write(path, bytes).map_err(|source| TestbedError::Io { path: path.to_path_buf(), source })
}

/// Pretty JSON with a final newline; returns the size written.
pub(crate) fn write_json(path: &Path, value: &Value) -> Result<usize> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|source| TestbedError::Json { path: path.to_path_buf(), source })?;
    text.push('\n');
    write_bytes(path, text.as_bytes())?;
    Ok(text.len())
}

/// The layout of `world.json`: the whole world, readable without this crate.
#[derive(Serialize)]
struct WorldFile<'a> {
    format: &'static str,
    config: &'a WorldConfig,
    markers: Markers,
    templates: Templates,
    lexicon: &'a [String],
    concepts: &'a [Concept],
    languages: &'a [Language],
}

#[derive(Serialize)]
struct Markers {
    text: &'static str,
    translate: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'static str>,
}

#[derive(Serialize)]
struct Templates {
    requests: Vec<String>,
    answer: String,
    refusal: String,
    harmful_descriptions: Vec<String>,
    benign_descriptions: Vec<String>,
    /// The question and its yes and no answers, in a world with questions.
    #[serde(skip_serializing_if = "Option::is_none")]
    question: Option<[&'static str; 3]>,
}

impl<'a> WorldFile<'a> {
    fn of(world: &'a World) -> Self {
        let glosses = |ts: &[crate::world::Template]| ts.iter().map(|t| t.gloss.clone()).collect();
        WorldFile {
            format: "polyalign-testbed-world/1",
            config: world.config(),
            markers: Markers {
                text: TEXT_MARKER,
                translate: world.languages().iter().map(|l| translate_marker(&l.tag)).collect(),
                reply: world.config().reply_marker.then_some(REPLY_MARKER),
            },
            templates: Templates {
                requests: glosses(world.request_templates()),
                answer: world.answer_template().gloss.clone(),
                refusal: world.refusal_template().gloss.clone(),
                harmful_descriptions: glosses(world.description_templates(true)),
                benign_descriptions: glosses(world.description_templates(false)),
                question: world.config().questions.then_some([QUESTION_GLOSS, YES_GLOSS, NO_GLOSS]),
            },
            lexicon: world.lexicon(),
            concepts: world.concepts(),
            languages: world.languages(),
        }
    }
}
