//! JSONL records: every accepted form, and a `file:line` error for every bad one.

use align_train::prepare::{prepare_records, RecordNeeds};
use align_train::{load_records, Message, Text, TextEncoder, TrainError};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn langs(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|s| s.to_string()).collect()
}

fn write(lines: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pairs.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    (dir, path)
}

fn load_err(lines: &[&str], languages: &[&str]) -> String {
    let (_dir, path) = write(lines);
    load_records(&[path], &langs(languages), false).expect_err("should be rejected").to_string()
}

#[test]
fn plain_per_language_and_conversational_records() {
    let (_dir, path) = write(&[
        r#"{"id": "a", "prompt": "How?", "chosen": "No.", "rejected": "Yes."}"#,
        "",
        r#"{"id": 7, "prompt": {"en": "How?", "sw": "Vipi?"}, "chosen": {"en": "No.", "sw": "Hapana."}, "rejected": "Yes."}"#,
        r#"{"prompt": [{"role": "system", "content": "Be safe."}, {"role": "user", "content": "How?"}], "chosen": [{"role": "assistant", "content": "No."}], "rejected": [{"role": "assistant", "content": "Yes."}]}"#,
        r#"{"prompt": "Hi", "chosen": "Hello", "meta": {"source": "x"}}"#,
    ]);
    let data = load_records(std::slice::from_ref(&path), &langs(&["en", "sw"]), false).unwrap();
    assert_eq!(data.records.len(), 4, "the blank line is not a record");
    let r = &data.records;
    assert_eq!(r[0].id, "a");
    assert_eq!(r[0].prompt["en"], Text::Plain("How?".into()));
    assert_eq!(r[1].id, "7");
    assert_eq!(r[1].prompt.len(), 2);
    assert_eq!(r[1].chosen["sw"], Text::Plain("Hapana.".into()));
    assert_eq!(r[1].origin.line, 3, "line numbers count blank lines");
    match &r[2].prompt["en"] {
        Text::Messages(m) => assert_eq!((m.len(), m[0].role.as_str()), (2, "system")),
        other => panic!("expected messages, got {other:?}"),
    }
    assert_eq!(r[2].id, format!("{}:4", path.display()), "records without id are named by file:line");
    assert!(r[3].rejected.is_none(), "SFT-style records may omit `rejected`");
}

#[test]
fn malformed_lines_name_file_and_line() {
    let good = r#"{"prompt": "p", "chosen": "c", "rejected": "r"}"#;
    let cases: &[(&str, &str)] = &[
        (r#"{"prompt": "p", "chosen": "c""#, "not valid JSON"),
        (r#"["p", "c"]"#, "must be a JSON object"),
        (r#"{"chosen": "c", "rejected": "r"}"#, "missing `prompt`"),
        (r#"{"prompt": "p", "rejected": "r"}"#, "missing `chosen`"),
        (r#"{"prompt": "", "chosen": "c"}"#, "`prompt` is empty"),
        (r#"{"prompt": {"sw": "p"}, "chosen": "c"}"#, "no text in the dominant language `en`"),
        (r#"{"prompt": "p", "chosen": [{"role": "user", "content": "c"}]}"#, "must all have role \"assistant\""),
        (r#"{"prompt": [{"role": "user"}], "chosen": "c"}"#, "has no string `content`"),
        (r#"{"prompt": [{"role": "robot", "content": "x"}], "chosen": "c"}"#, "role \"robot\""),
        (r#"{"prompt": 5, "chosen": "c"}"#, "must be a string or a list"),
        (r#"{"id": [1], "prompt": "p", "chosen": "c"}"#, "`id` must be"),
        (r#"{"prompt": [], "chosen": "c"}"#, "has no messages"),
    ];
    for (bad, expected) in cases {
        let e = load_err(&[good, bad], &["en", "sw"]);
        assert!(e.contains("pairs.jsonl:2: ") && e.contains(expected), "{bad}\n -> {e}");
    }
}

#[test]
fn skipping_bad_lines_counts_each() {
    let (_dir, path) = write(&[
        r#"{"prompt": "p", "chosen": "c"}"#,
        "not json",
        r#"{"prompt": "p"}"#,
        r#"{"prompt": "q", "chosen": "d"}"#,
    ]);
    let data = load_records(&[path], &langs(&["en"]), true).unwrap();
    assert_eq!(data.records.len(), 2);
    assert_eq!(data.skipped.len(), 2);
    let lines: Vec<usize> = data
        .skipped
        .iter()
        .map(|e| match e {
            TrainError::BadRecord { line, .. } => *line,
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(lines, vec![2, 3]);
}

#[test]
fn empty_and_missing_files_are_errors() {
    let e = load_err(&["", "  "], &["en"]);
    assert!(e.contains("pairs.jsonl: no records"), "{e}");
    let (_dir, path) = write(&["bad", "worse"]);
    let e = load_records(&[path], &langs(&["en"]), true).unwrap_err().to_string();
    assert!(e.contains("no records (2 bad lines skipped)"), "{e}");
    let e = load_records(&[PathBuf::from("/no/such/file.jsonl")], &langs(&["en"]), false).unwrap_err().to_string();
    assert!(e.contains("/no/such/file.jsonl"), "{e}");
}

/// The MultiJail languages: a record file in all ten.
const TEN: [&str; 10] = ["en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv"];

/// `{"en": "<word> en", "zh": "<word> zh", ...}` over all ten languages.
fn in_ten(word: &str) -> serde_json::Value {
    TEN.iter().map(|l| (l.to_string(), serde_json::Value::from(format!("{word} {l}")))).collect()
}

/// Two records in all ten languages (prompt, chosen, rejected) and one whose prompt alone is in
/// all ten.
fn ten_language_file() -> (tempfile::TempDir, PathBuf) {
    let full = |id: &str| {
        serde_json::json!({"id": id, "prompt": in_ten("ask"), "chosen": in_ten("no"), "rejected": in_ten("yes")})
            .to_string()
    };
    let prompts_only =
        serde_json::json!({"id": "c", "prompt": in_ten("ask"), "chosen": "no", "rejected": "yes"}).to_string();
    write(&[&full("a"), &full("b"), &prompts_only])
}

#[test]
fn languages_select_a_subset_and_count_the_texts_left_out() {
    let (_dir, path) = ten_language_file();
    let selected = langs(&["en", "sw", "bn"]);
    let data = load_records(&[path], &selected, false).unwrap();
    assert_eq!(data.records.len(), 3, "records in unselected languages load");
    for r in &data.records {
        assert_eq!(r.prompt.keys().collect::<Vec<_>>(), ["bn", "en", "sw"], "{}", r.id);
    }
    assert_eq!(data.records[0].chosen["sw"], Text::Plain("no sw".into()));
    assert_eq!(data.records[2].chosen.keys().collect::<Vec<_>>(), ["en"], "a plain string is the dominant text");
    // Per left-out language: 3 texts in each of the two full records, 1 prompt in the third.
    let expected: BTreeMap<String, usize> =
        TEN.iter().filter(|l| !selected.contains(&l.to_string())).map(|l| (l.to_string(), 7)).collect();
    assert_eq!(expected.len(), 7);
    assert_eq!(data.left_out, expected);
    assert_eq!(data.left_out_total(), 49);
}

#[test]
fn all_languages_selected_leave_nothing_out() {
    let (_dir, path) = ten_language_file();
    let data = load_records(&[path], &langs(&TEN), false).unwrap();
    assert!(data.left_out.is_empty(), "{:?}", data.left_out);
    assert_eq!(data.records[0].prompt.len(), 10);
}

#[test]
fn left_out_texts_are_neither_read_nor_counted_on_bad_lines() {
    let (_dir, path) = write(&[
        r#"{"prompt": {"en": "p", "xx": "q"}, "chosen": "c"}"#,
        r#"{"prompt": {"en": "p", "xx": ""}, "chosen": {"en": "c", "xx": 5}}"#,
        r#"{"prompt": {"xx": "p"}, "chosen": "c"}"#,
        r#"{"prompt": {"en": "p", "yy": "q"}, "chosen": {"yy": "c"}}"#,
    ]);
    let data = load_records(std::slice::from_ref(&path), &langs(&["en", "sw"]), true).unwrap();
    assert_eq!(data.records.len(), 2, "texts of unselected languages are not checked");
    assert_eq!(data.left_out, BTreeMap::from([("xx".to_string(), 3)]), "skipped lines count nothing");
    let e = data.skipped.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
    assert!(e.contains("pairs.jsonl:3: `prompt` has no text in the dominant language `en`"), "{e}");
    assert!(e.contains("pairs.jsonl:4: `chosen` has no text in the dominant language `en`"), "{e}");
}

/// A character-level encoder: BOS 1 on prompts, EOS 2, each character its code + 10.
struct Chars;

impl TextEncoder for Chars {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>, String> {
        let bos = add_special_tokens.then_some(1);
        Ok(bos.into_iter().chain(text.chars().map(|c| c as i64 + 10)).collect())
    }
    fn eos_id(&self) -> i64 {
        2
    }
    fn render_chat(&self, _: &[Message], _: bool) -> Result<String, String> {
        Err("no chat template".into())
    }
}

#[test]
fn prepared_records_carry_only_the_selected_variants() {
    let (_dir, path) = ten_language_file();
    let selected = langs(&["en", "sw", "bn"]);
    let data = load_records(&[path], &selected, false).unwrap();
    let needs = RecordNeeds { rejected: true, variants: true, targets: true };
    let (prepared, skipped) = prepare_records(&data, &Chars, &selected, 64, needs, false).unwrap();
    assert!(skipped.is_empty());
    let prompt = |s: &str| Chars.encode(s, true).unwrap();
    for p in &prepared {
        // MLC's variants: the selected non-dominant prompts, in config order (sw = 1, bn = 2).
        assert_eq!(p.variants, vec![(1, prompt("ask sw")), (2, prompt("ask bn"))], "{}", p.id);
        assert_eq!(p.chosen.prompt, prompt("ask en"));
    }
    // MPO's target pairs: the selected languages with prompt, chosen and rejected.
    let targets = |i: usize| prepared[i].targets.iter().map(|(l, _, _)| l.as_str()).collect::<Vec<_>>();
    assert_eq!((targets(0), targets(2)), (vec!["sw", "bn"], vec![]));
}
