//! JSONL records: every accepted form, and a `file:line` error for every bad one.

use align_train::{load_records, Text, TrainError};
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
        (
            r#"{"prompt": {"en": "p", "xx": "q"}, "chosen": "c"}"#,
            "language `xx`, which is not in [data] languages [en, sw]",
        ),
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
