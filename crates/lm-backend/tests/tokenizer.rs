//! Tokenizer ids and rendered chat templates equal those of Python `transformers`
//! (tests/fixtures/tokenizer/expected.json).

use std::path::{Path, PathBuf};

use lm_backend::{ChatMessage, LmError, Tokenizer};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn ids_match_with_and_without_special_tokens() {
    let tok = Tokenizer::from_dir(dir()).unwrap();
    let e = expected();
    let cases = e["encodings"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text, true).unwrap(), ids(&case["ids_with_special"]), "{text:?}");
        assert_eq!(tok.encode(text, false).unwrap(), ids(&case["ids_without_special"]), "{text:?}");
        // Byte-level BPE round-trips.
        assert_eq!(tok.decode(&tok.encode(text, false).unwrap(), false).unwrap(), text);
    }
}

#[test]
fn special_tokens_match() {
    let tok = Tokenizer::from_dir(dir()).unwrap();
    let e = expected();
    assert_eq!(tok.token_to_id(tok.bos_token().unwrap()), Some(e["special"]["bos"].as_u64().unwrap() as u32));
    assert_eq!(tok.eos_token_id(), Some(e["special"]["eos"].as_u64().unwrap() as u32));
    assert_eq!(tok.pad_token_id(), Some(e["special"]["pad"].as_u64().unwrap() as u32));
    assert_eq!(tok.vocab_size() as u64, e["vocab_size"].as_u64().unwrap());
}

#[test]
fn chat_template_renders_like_transformers() {
    let tok = Tokenizer::from_dir(dir()).unwrap();
    let e = expected();
    let cases = e["chat"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let add = case["add_generation_prompt"].as_bool().unwrap();
        let rendered = tok.apply_chat_template(&messages, add).unwrap();
        assert_eq!(rendered, case["rendered"].as_str().unwrap(), "add_generation_prompt = {add}");
    }
}

#[test]
fn generation_prompt_is_a_prefix_of_the_full_conversation() {
    let tok = Tokenizer::from_dir(dir()).unwrap();
    let prompt = [ChatMessage::new("user", "Hi")];
    let full = [ChatMessage::new("user", "Hi"), ChatMessage::new("assistant", "Hello!")];
    let p = tok.apply_chat_template(&prompt, true).unwrap();
    let f = tok.apply_chat_template(&full, false).unwrap();
    assert!(f.starts_with(&p), "{p:?} / {f:?}");
}

#[test]
fn raise_exception_reaches_the_caller() {
    let tok = Tokenizer::from_dir(dir()).unwrap();
    let e = expected();
    let python_message = e["chat_error"]["message"].as_str().unwrap();
    let err = tok.apply_chat_template(&[ChatMessage::new("tool", "x")], false).unwrap_err();
    assert!(matches!(&err, LmError::ChatTemplate { .. }));
    assert!(err.to_string().contains("Unknown role: tool"), "{err}");
    assert!(python_message.contains("Unknown role: tool"), "{python_message}");
}

#[test]
fn missing_tokenizer_file_names_the_path() {
    let empty = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_dir(empty.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}
