//! Encoding every record once, before training, with `file:line` errors for records that
//! cannot be used (too long, missing what the objective needs).

use crate::data::{Dataset, Origin, Record, Text};
use crate::encode::{encode_pair, encode_prompt, Encoded, TextEncoder};
use crate::{Result, TrainError};

/// One record as token ids, with the parts the run's objective reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRecord {
    /// The record's id.
    pub id: String,
    /// Where it was read.
    pub origin: Origin,
    /// Dominant-language prompt + chosen completion.
    pub chosen: Encoded,
    /// Dominant-language prompt + rejected completion (absent for chosen-only runs).
    pub rejected: Option<Encoded>,
    /// Prompt ids of each other language variant the record has, as
    /// `(index in the config's languages, ids)`, in config order. Only the configured
    /// languages count: [`crate::load_records`] has left the others out.
    pub variants: Vec<(usize, Vec<i64>)>,
    /// Target-language pairs (other languages with prompt, chosen and rejected), as
    /// `(language tag, chosen, rejected)`.
    pub targets: Vec<(String, Encoded, Encoded)>,
}

/// What the objective needs from each record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordNeeds {
    /// A rejected completion in the dominant language.
    pub rejected: bool,
    /// The other language variants of the prompt.
    pub variants: bool,
    /// Target-language chosen/rejected pairs.
    pub targets: bool,
}

/// Encodes `data` for a run. A record longer than `max_length` tokens, or lacking what
/// `needs` asks for, is an error naming its `file:line`, or, with `skip_bad_lines`, is
/// skipped and reported in the returned list.
pub fn prepare_records(
    data: &Dataset,
    enc: &dyn TextEncoder,
    languages: &[String],
    max_length: usize,
    needs: RecordNeeds,
    skip_bad_lines: bool,
) -> Result<(Vec<PreparedRecord>, Vec<TrainError>)> {
    let mut out = Vec::with_capacity(data.records.len());
    let mut skipped = Vec::new();
    for record in &data.records {
        match prepare_record(record, enc, languages, max_length, needs) {
            Ok(p) => out.push(p),
            Err(why) => {
                let e = TrainError::BadRecord { path: record.origin.path.clone(), line: record.origin.line, why };
                if skip_bad_lines {
                    skipped.push(e);
                } else {
                    return Err(e);
                }
            }
        }
    }
    if out.is_empty() {
        let path = data.records.first().map(|r| r.origin.path.clone()).unwrap_or_default();
        return Err(TrainError::EmptyData {
            path,
            detail: format!(" usable for training ({} skipped)", skipped.len()),
        });
    }
    Ok((out, skipped))
}

fn prepare_record(
    r: &Record,
    enc: &dyn TextEncoder,
    languages: &[String],
    max_length: usize,
    needs: RecordNeeds,
) -> Result<PreparedRecord, String> {
    let dominant = &languages[0];
    let fits = |what: &str, e: Encoded| -> Result<Encoded, String> {
        if e.len() > max_length {
            Err(format!("{what} is {} tokens, longer than [data] max_length = {max_length}", e.len()))
        } else {
            Ok(e)
        }
    };
    let prompt = &r.prompt[dominant];
    let chosen = fits("prompt + chosen", encode_pair(enc, prompt, &r.chosen[dominant])?)?;
    let rejected = match r.rejected.as_ref().and_then(|m| m.get(dominant)) {
        Some(text) => Some(fits("prompt + rejected", encode_pair(enc, prompt, text)?)?),
        None if needs.rejected => {
            return Err(format!("`rejected` has no `{dominant}` completion, which the objective needs"))
        }
        None => None,
    };
    let mut variants = Vec::new();
    let mut targets = Vec::new();
    for (k, lang) in languages.iter().enumerate().skip(1) {
        let Some(p) = r.prompt.get(lang) else { continue };
        if needs.variants {
            let ids = encode_prompt(enc, p)?;
            if ids.len() > max_length {
                return Err(format!(
                    "prompt `{lang}` is {} tokens, longer than [data] max_length = {max_length}",
                    ids.len()
                ));
            }
            variants.push((k, ids));
        }
        if needs.targets {
            let rejected: Option<&Text> = r.rejected.as_ref().and_then(|m| m.get(lang));
            if let (Some(c), Some(rej)) = (r.chosen.get(lang), rejected) {
                let c = fits(&format!("`{lang}` prompt + chosen"), encode_pair(enc, p, c)?)?;
                let rej = fits(&format!("`{lang}` prompt + rejected"), encode_pair(enc, p, rej)?)?;
                targets.push((lang.clone(), c, rej));
            }
        }
    }
    Ok(PreparedRecord { id: r.id.clone(), origin: r.origin.clone(), chosen, rejected, variants, targets })
}
