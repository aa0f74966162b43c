//! Greedy parity of the utility eval with transformers on the real SmolLM2-135M-Instruct, when
//! `.models/` has it: for the questions of tests/fixtures/smollm2_utility/questions.jsonl, the
//! eval's chat prompts are transformers' (text and ids), and the batched, left-padded greedy
//! completions with the key/value cache are transformers' one-at-a-time greedy completions token
//! for token (expected.json, written by scripts/fixtures/make_utility_parity.sh from the same
//! converted folder). `align eval utility` then records the same completions. Without the
//! model file (CI has no copy) the test prints how to get it and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use align_train::eval::{greedy_token_completions, load_utility_items, utility_prompt, UtilityItem, UtilityReport};
use lm_backend::{HfCausalLm, LoadOptions, Tokenizer};
use serde_json::Value;

const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn model_path() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.models").join(FILE_NAME);
    path.exists().then_some(path)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_utility").join(name)
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

#[test]
fn smollm2_greedy_answers_equal_transformers_token_for_token() {
    let Some(gguf) = model_path() else {
        println!("skipped: .models/{FILE_NAME} is absent; run scripts/fixtures/get_smollm2.sh to fetch it");
        return;
    };
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let max_new = expected["max_new_tokens"].as_u64().unwrap() as usize;
    let rows = expected["questions"].as_array().unwrap();
    let items: Vec<UtilityItem> = load_utility_items(&fixture("questions.jsonl"), None).unwrap();
    assert_eq!(items.len(), rows.len());

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("smollm2");
    let out = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["convert", "--from", "gguf", gguf.to_str().unwrap(), "--output", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model = HfCausalLm::load(&dir, LoadOptions::cpu_f32()).unwrap();
    let tokenizer = Tokenizer::from_dir(&dir).unwrap();

    let mut prompts = vec![];
    for (item, row) in items.iter().zip(rows) {
        let prompt = utility_prompt(&tokenizer, item, &[], true).unwrap();
        assert_eq!(prompt.text, row["prompt"].as_str().unwrap(), "{} {}", item.id, item.lang);
        assert_eq!(prompt.ids, ids(&row["prompt_ids"]), "{} {}", item.id, item.lang);
        prompts.push(prompt.ids);
    }
    // Batches of 4 prompts of different lengths: left padding is exercised.
    let got = greedy_token_completions(&model, &tokenizer, &prompts, max_new, 4, &mut |_, _| {}).unwrap();
    for ((item, row), got) in items.iter().zip(rows).zip(&got) {
        assert_eq!(got, &ids(&row["completion_ids"]), "{} {}: greedy tokens differ", item.id, item.lang);
    }

    let eval_dir = tmp.path().join("eval");
    let out = Command::new(env!("CARGO_BIN_EXE_align"))
        .args(["eval", "utility", "--model", dir.to_str().unwrap(), "--data"])
        .arg(fixture("questions.jsonl"))
        .args(["--max-new-tokens", &max_new.to_string(), "--batch-size", "3", "--output", eval_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: UtilityReport =
        serde_json::from_str(&std::fs::read_to_string(eval_dir.join("utility.json")).unwrap()).unwrap();
    for (record, row) in report.records.iter().zip(rows) {
        assert_eq!(record.completion, row["completion"].as_str().unwrap(), "{} {}", record.id, record.lang);
    }
    let en = &report.per_language["en"];
    println!("SmolLM2 accuracy on the fixture questions: {:?}", report.per_language);
    assert_eq!(en.n, 2);
}
