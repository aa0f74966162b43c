//! The exported `tokenizer.json` loaded by the `tokenizers` crate: ids checked against the
//! GGUF token list by hand-derived expectations (byte-level alphabet, merges, digit splitting
//! of the `smollm` pre-tokenizer, special and user-defined tokens).

use std::path::PathBuf;

use lm_backend::gguf::{convert_to_hf, ConvertOptions, GgufFile};
use tokenizers::Tokenizer;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name)
}

#[test]
fn exported_tokenizer_encodes_like_the_gguf_vocabulary_says() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hf");
    convert_to_hf(fixture("tiny_llama.gguf"), &out, &ConvertOptions::default()).unwrap();
    let tokenizer = Tokenizer::from_file(out.join("tokenizer.json")).unwrap();

    let file = GgufFile::open(fixture("tiny_llama.gguf")).unwrap();
    let tokens: Vec<String> = file
        .get("tokenizer.ggml.tokens")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let id = |t: &str| tokens.iter().position(|x| x == t).unwrap_or_else(|| panic!("no token {t}")) as u32;

    // " the" merges to "Ġthe" ("Ġ t" then "Ġt he"); "in" merges; "2024" is split digit by digit
    // ("smollm" pre-tokenizer), so no digit merge could apply even if one existed; "<|im_start|>"
    // and "<think>" stay whole.
    let text = "<|im_start|>in the 2024<think>";
    let encoding = tokenizer.encode(text, true).unwrap();
    let want: Vec<u32> =
        ["<|im_start|>", "in", "Ġthe", "Ġ", "2", "0", "2", "4", "<think>"].iter().map(|t| id(t)).collect();
    assert_eq!(encoding.get_ids(), want.as_slice());
    assert_eq!(tokenizer.decode(encoding.get_ids(), false).unwrap(), text);
    // Special tokens are skipped on request, user-defined ones are not.
    assert_eq!(tokenizer.decode(encoding.get_ids(), true).unwrap(), "in the 2024<think>");
    // Non-ASCII text goes through the byte-level alphabet: "é" is the bytes C3 A9, "Ã" and "©".
    let e = tokenizer.encode("é", false).unwrap();
    assert_eq!(e.get_ids(), &[id("Ã"), id("©")]);
}
