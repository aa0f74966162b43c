//! The real SmolLM2-135M-Instruct (Q4_1 GGUF), when `.models/` has it: `align convert` makes
//! a folder that `HfCausalLm` loads, and a greedy chat answer to a simple question contains
//! the expected word, both in-process and through `align generate --chat`. Without the file
//! (CI has no copy) the test prints how to get it and passes. Logit parity with transformers
//! on this model is checked by `scripts/fixtures/check_smollm2_parity.sh` (docs/cli.md).

use std::path::PathBuf;
use std::process::Command;

use lm_backend::{ChatMessage, GenerationConfig, HfCausalLm, LoadOptions, Tokenizer};

const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn model_path() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.models").join(FILE_NAME);
    path.exists().then_some(path)
}

#[test]
fn smollm2_converts_and_answers_a_simple_question() {
    let Some(gguf) = model_path() else {
        println!("skipped: .models/{FILE_NAME} is absent; run scripts/fixtures/get_smollm2.sh to fetch it");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("smollm2");
    let out = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["convert", "--from", "gguf", gguf.to_str().unwrap(), "--output", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tensors:         272"));

    let model = HfCausalLm::load(&dir, LoadOptions::cpu_f32()).unwrap();
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();
    let question = "What is the capital of France?";
    let prompt = tokenizer.apply_chat_template(&[ChatMessage::new("user", question)], true).unwrap();
    let ids: Vec<i64> = tokenizer.encode(&prompt, false).unwrap().into_iter().map(i64::from).collect();
    let answer = model.generate(&[ids], &GenerationConfig::greedy(&model, 24)).unwrap().remove(0);
    let answer: Vec<u32> = answer.into_iter().map(|t| t as u32).collect();
    let text = tokenizer.decode(&answer, true).unwrap();
    println!("in-process answer: {text:?}");
    assert!(text.contains("Paris"), "{text:?}");

    let out = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["generate", "--model", dir.to_str().unwrap(), "--chat", "--prompt", question, "--max-new-tokens", "24"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli_text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(cli_text, format!("{text}\n"), "the binary gives the in-process greedy answer");
}
