//! The utility eval: number extraction on hand-written completions with known answers in every
//! MGSM script (tests/fixtures/utility/known_completions.jsonl: the last number each one holds,
//! written by a person reading it), scoring and the per-language counts, the item and MGSM
//! readers with their errors, the prompts, and the whole eval on the lm-backend fixture model
//! against one-question-at-a-time greedy generation.

use align_train::eval::numbers::{last_number, numbers_in, parse_number};
use align_train::eval::utility::{answer_part, format_number, frame_labels, EXACT_NUMBER};
use align_train::eval::{
    evaluate_utility, evaluate_utility_with_progress, format_utility_table, load_utility_items, read_mgsm_folder,
    score_completions, utility_prompt, write_utility_items, write_utility_report, UtilityItem, UtilityOptions,
    UtilityPrompt, UtilityReport,
};
use align_train::TrainError;
use lm_backend::{ChatMessage, GenerationConfig, HfCausalLm, LoadOptions, Tokenizer};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lm-backend/tests/fixtures")
}

fn item(id: &str, lang: &str, question: &str, answer: f64) -> UtilityItem {
    UtilityItem { id: id.into(), lang: lang.into(), question: question.into(), answer, solution: None }
}

fn plain(text: &str) -> UtilityPrompt {
    UtilityPrompt { text: text.into(), ids: vec![1], plain_frame: true }
}

#[test]
fn every_known_completion_gives_its_last_number() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/utility/known_completions.jsonl");
    let text = std::fs::read_to_string(path).unwrap();
    let mut langs = std::collections::BTreeSet::new();
    for (k, line) in text.lines().enumerate() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let completion = case["completion"].as_str().unwrap();
        let want = case["extracted"].as_f64();
        assert_eq!(last_number(completion), want, "line {}: {completion}", k + 1);
        langs.insert(case["lang"].as_str().unwrap().to_string());
    }
    for lang in ["en", "de", "es", "fr", "ru", "zh", "ja", "th", "sw", "bn", "te"] {
        assert!(langs.contains(lang), "no case in {lang}");
    }
}

#[test]
fn numbers_keep_their_order_and_sign() {
    assert_eq!(numbers_in("5 - 3 = 2, then -4 and x-1"), vec![5.0, 3.0, 2.0, -4.0, 1.0]);
    assert_eq!(numbers_in("v1.2.3"), vec![1.0, 2.0, 3.0]);
    assert_eq!(numbers_in("1,234,567 and 1234,567"), vec![1234567.0, 1234.567]);
    assert_eq!(numbers_in("2024 100 people"), vec![2024.0, 100.0]);
    assert_eq!(numbers_in("−7°C"), vec![-7.0]);
    assert!(numbers_in("no digits, just words.").is_empty());
}

#[test]
fn answers_parse_as_exactly_one_number() {
    assert_eq!(parse_number("2,125"), Some(2125.0));
    assert_eq!(parse_number(" 70000 "), Some(70000.0));
    assert_eq!(parse_number("-3.5"), Some(-3.5));
    assert_eq!(parse_number("১৮"), Some(18.0));
    for bad in ["", "abc", "1 2", "5 apples", "$5", "--5", "1.2.3"] {
        assert_eq!(parse_number(bad), None, "{bad:?}");
    }
    assert_eq!(format_number(18.0), "18");
    assert_eq!(format_number(2.5), "2.5");
}

#[test]
fn scoring_counts_accuracy_and_answers_without_a_number_per_language() {
    let items = vec![
        item("q1", "en", "a", 18.0),
        item("q2", "en", "b", 3.0),
        item("q3", "en", "c", 5.0),
        item("q1", "bn", "a", 18.0),
        item("q2", "bn", "b", 3.0),
    ];
    let prompts: Vec<UtilityPrompt> = (0..5).map(|i| plain(&format!("prompt {i}"))).collect();
    let completions: Vec<String> = [
        "So 9 * 2 = 18.",
        "It is 4.",
        "I do not know.",
        "উত্তর ১৮",
        "3\n\nপ্রশ্ন: 7 জন ... উত্তর: 7", // the model's own next question is not read
    ]
    .map(String::from)
    .to_vec();
    let report = score_completions(&items, &prompts, &completions);
    assert_eq!(report.metric, EXACT_NUMBER);
    let en = &report.per_language["en"];
    assert_eq!((en.n, en.no_number), (3, 1));
    assert!((en.accuracy - 1.0 / 3.0).abs() < 1e-12);
    let bn = &report.per_language["bn"];
    assert_eq!((bn.n, bn.no_number, bn.accuracy), (2, 0, 1.0));
    let extracted: Vec<Option<f64>> = report.records.iter().map(|r| r.extracted).collect();
    assert_eq!(extracted, vec![Some(18.0), Some(4.0), None, Some(18.0), Some(3.0)]);
    assert_eq!(report.records.iter().map(|r| r.correct).collect::<Vec<_>>(), [true, false, false, true, true]);
    assert_eq!(report.records[1].prompt, "prompt 1");
    assert_eq!(report.records[4].completion, completions[4], "the completion is kept whole");

    // A chat prompt's completion is read whole.
    let chat = UtilityPrompt { plain_frame: false, ..plain("x") };
    let r = score_completions(&items[..1], &[chat], &["18\nQuestion: 5".to_string()]);
    assert_eq!(r.records[0].extracted, Some(5.0));

    let table = format_utility_table(&report);
    assert!(table.contains("overall accuracy 0.600 (3/5)"), "{table}");
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["records"][0]["extracted"], serde_json::json!(18));
    assert_eq!(json["records"][2]["extracted"], serde_json::Value::Null);
    assert_eq!(json["per_language"]["en"]["no_number"], 1);
}

#[test]
fn answer_part_stops_at_the_frames_next_question() {
    assert_eq!(answer_part("18.\nFrage: Wie viele", "de", true), "18.\n");
    assert_eq!(answer_part("18.\nQuestion: How many", "de", true), "18.\n");
    assert_eq!(answer_part("18.\nFrage: 3", "de", false), "18.\nFrage: 3");
    assert_eq!(answer_part("no label here 4", "sw", true), "no label here 4");
}

#[test]
fn items_load_and_bad_lines_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.jsonl");
    let items = vec![
        item("q1", "en", "How many?", 18.0),
        UtilityItem { solution: Some("9 * 2 = 18.".into()), ..item("q1", "sw", "Ngapi?", 2.5) },
    ];
    write_utility_items(&path, &items).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(r#"{"id":"q1","lang":"en","question":"How many?","answer":18}"#), "{text}");
    assert_eq!(load_utility_items(&path, None).unwrap(), items);
    assert_eq!(load_utility_items(&path, Some(&["sw".to_string()])).unwrap(), items[1..].to_vec());
    let err = load_utility_items(&path, Some(&["bn".to_string()])).unwrap_err();
    assert!(matches!(err, TrainError::EmptyData { .. }) && err.to_string().contains("bn"), "{err}");

    std::fs::write(&path, "{\"id\": \"a\", \"lang\": \"en\", \"question\": \"q\", \"answer\": \"2,125\"}\n").unwrap();
    assert_eq!(load_utility_items(&path, None).unwrap()[0].answer, 2125.0);
    for (line, why) in [
        ("{\"id\": \"a\", \"lang\": \"en\", \"question\": \"q\", \"answer\": \"many\"}", "not a number"),
        ("{\"id\": \"a\", \"lang\": \"en\", \"question\": \"q\"}", "answer"),
        ("{\"id\": \"a\", \"lang\": \"\", \"question\": \"q\", \"answer\": 1}", "must not be empty"),
        ("not json", "expected"),
    ] {
        std::fs::write(
            &path,
            format!("{{\"id\": \"ok\", \"lang\": \"en\", \"question\": \"q\", \"answer\": 1}}\n{line}\n"),
        )
        .unwrap();
        let err = load_utility_items(&path, None).unwrap_err();
        assert!(matches!(err, TrainError::BadRecord { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("items.jsonl:2") && err.to_string().contains(why), "{err}");
    }
}

#[test]
fn mgsm_tsv_files_convert_with_shared_ids() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mgsm_en.tsv"), "\u{feff}How many eggs?\t18\r\nHow much profit?\t70,000\r\n")
        .unwrap();
    std::fs::write(dir.path().join("mgsm_de.tsv"), "Wie viele Eier?\t18\nWie viel Gewinn?\t70000\n").unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a language").unwrap();
    let items = read_mgsm_folder(dir.path(), None).unwrap();
    let got: Vec<(&str, &str, f64)> = items.iter().map(|i| (i.id.as_str(), i.lang.as_str(), i.answer)).collect();
    assert_eq!(
        got,
        vec![
            ("mgsm-001", "de", 18.0),
            ("mgsm-002", "de", 70000.0),
            ("mgsm-001", "en", 18.0),
            ("mgsm-002", "en", 70000.0)
        ]
    );
    assert_eq!(items[2].question, "How many eggs?");
    let only = read_mgsm_folder(dir.path(), Some(&["en".to_string()])).unwrap();
    assert_eq!(only.len(), 2);
    let err = read_mgsm_folder(dir.path(), Some(&["sw".to_string()])).unwrap_err();
    assert!(err.to_string().contains("mgsm_sw.tsv"), "{err}");
    std::fs::write(dir.path().join("mgsm_fr.tsv"), "Combien ?\t18\nSans réponse\n").unwrap();
    let err = read_mgsm_folder(dir.path(), None).unwrap_err();
    assert!(matches!(err, TrainError::BadRecord { line: 2, .. }) && err.to_string().contains("mgsm_fr.tsv"), "{err}");
}

/// MGSM from the shared data folder, when this machine has it.
fn mgsm_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    [root.join("shared/data/mgsm"), root.join("../shared/data/mgsm"), "/work/shared/data/mgsm".into()]
        .into_iter()
        .find(|p| p.join("mgsm_en.tsv").is_file())
}

#[test]
fn the_real_mgsm_has_250_questions_in_11_languages_with_one_answer_each() {
    let Some(dir) = mgsm_dir() else {
        eprintln!("skipped: shared/data/mgsm not found (the shared data folder is absent on this machine)");
        return;
    };
    let items = read_mgsm_folder(&dir, None).unwrap();
    assert_eq!(items.len(), 2750);
    let mut langs: Vec<&str> = items.iter().map(|i| i.lang.as_str()).collect();
    langs.dedup();
    assert_eq!(langs, ["bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh"]);
    let en: std::collections::BTreeMap<&str, f64> =
        items.iter().filter(|i| i.lang == "en").map(|i| (i.id.as_str(), i.answer)).collect();
    assert_eq!(en.len(), 250);
    for i in &items {
        assert_eq!(en[i.id.as_str()], i.answer, "{} {}: the translations share the answer", i.id, i.lang);
        assert!(i.answer.fract() == 0.0 && i.answer >= 0.0);
    }
    assert_eq!(en["mgsm-001"], 18.0);
    assert!(en.values().any(|&a| a == 2125.0), "\"2,125\" is read as 2125");
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_dir(fixtures().join("tokenizer")).unwrap()
}

#[test]
fn prompts_use_the_chat_template_or_the_plain_frame_with_exemplars() {
    let tok = tokenizer();
    let q = item("q", "de", "Wie viele Eier?", 18.0);
    let shots = vec![UtilityItem { solution: Some("2 + 3 = 5. 5".into()), ..item("e1", "de", "Was ist 2 + 3?", 5.0) }];

    let chat = utility_prompt(&tok, &q, &shots, true).unwrap();
    let messages = [
        ChatMessage::new("user", "Was ist 2 + 3?"),
        ChatMessage::new("assistant", "2 + 3 = 5. 5"),
        ChatMessage::new("user", "Wie viele Eier?"),
    ];
    let want = tok.apply_chat_template(&messages, true).unwrap();
    assert_eq!(chat.text, want);
    let want_ids: Vec<i64> = tok.encode(&want, false).unwrap().into_iter().map(i64::from).collect();
    assert_eq!(chat.ids, want_ids);
    assert!(!chat.plain_frame);

    let framed = utility_prompt(&tok, &q, &shots, false).unwrap();
    assert_eq!(framed.text, "Frage: Was ist 2 + 3?\nAntwort: 2 + 3 = 5. 5\n\nFrage: Wie viele Eier?\nAntwort:");
    let want_ids: Vec<i64> = tok.encode(&framed.text, true).unwrap().into_iter().map(i64::from).collect();
    assert_eq!(framed.ids, want_ids);
    assert!(framed.plain_frame);
    let bare = utility_prompt(&tok, &item("q", "xx", "Two?", 2.0), &[item("e", "xx", "One?", 1.0)], false).unwrap();
    assert_eq!(bare.text, "Question: One?\nAnswer: 1\n\nQuestion: Two?\nAnswer:");
    assert_eq!(frame_labels("xx"), ("Question:", "Answer:"));
}

#[test]
fn the_eval_equals_one_question_at_a_time_greedy_generation_on_the_fixture_model() {
    let model = HfCausalLm::load(fixtures().join("llama"), LoadOptions::cpu_f32()).unwrap();
    let tok = tokenizer();
    let items = vec![
        item("q1", "en", "How many eggs are left?", 18.0),
        item("q2", "en", "What is the total price of all the apples she bought at the market today?", 7.0),
        item("q1", "sw", "Mayai mangapi?", 18.0),
        item("q1", "zh", "还剩多少个鸡蛋？", 18.0),
        item("q2", "zh", "她在市场上买的苹果总价是多少？", 7.0),
    ];
    let exemplars = vec![item("e1", "en", "One plus one?", 2.0), item("e1", "sw", "Moja jumlisha moja?", 2.0)];
    let zh_exemplar = item("e1", "zh", "一加一？", 2.0);
    let options = UtilityOptions { max_new_tokens: 6, batch_size: 2, shots: 1, use_chat_template: true };
    let err = evaluate_utility(&model, &tok, &items, &exemplars, &options).unwrap_err();
    assert!(err.to_string().contains("`zh`"), "{err}");
    let mut exemplars = exemplars;
    exemplars.push(zh_exemplar);

    let mut calls = vec![];
    let report =
        evaluate_utility_with_progress(&model, &tok, &items, &exemplars, &options, &mut |d, t| calls.push((d, t)))
            .unwrap();
    assert_eq!(calls, vec![(2, 5), (4, 5), (5, 5)]);
    let config = GenerationConfig::greedy(&model, 6).with_tokenizer_eos(&tok);
    for (i, record) in items.iter().zip(&report.records) {
        let shot = exemplars.iter().find(|e| e.lang == i.lang).unwrap().clone();
        let prompt = utility_prompt(&tok, i, &[shot], true).unwrap();
        assert_eq!(record.prompt, prompt.text);
        let out = model.generate(&[prompt.ids], &config).unwrap().remove(0);
        let ids: Vec<u32> = out.iter().map(|&t| t as u32).collect();
        assert_eq!(record.completion, tok.decode(&ids, true).unwrap().trim(), "{} {}", i.id, i.lang);
        assert_eq!(record.extracted, last_number(&record.completion));
        assert_eq!(record.correct, record.extracted == Some(i.answer));
    }
    assert_eq!(report.per_language.keys().collect::<Vec<_>>(), ["en", "sw", "zh"]);
    assert_eq!(report.per_language["en"].n, 2);

    // The plain frame (no template), and batch size 1, give the same as batched.
    let plain_options = UtilityOptions { shots: 0, use_chat_template: false, ..options.clone() };
    let a = evaluate_utility(&model, &tok, &items, &[], &plain_options).unwrap();
    let b = evaluate_utility(&model, &tok, &items, &[], &UtilityOptions { batch_size: 1, ..plain_options }).unwrap();
    assert_eq!(a, b);
    assert!(a.records[0].prompt.starts_with("Question: How many eggs"));
    assert!(a.records[2].prompt.starts_with("Swali: "));

    let dir = tempfile::tempdir().unwrap();
    let path = write_utility_report(&dir.path().join("eval"), &report).unwrap();
    let back: UtilityReport = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(back, report);
}
