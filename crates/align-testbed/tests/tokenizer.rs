//! The written `tokenizer.json` loads in the `tokenizers` crate and round-trips the world.

mod common;

use align_testbed::{write_checkpoint, TinyLlamaConfig, Vocabulary, BOS, EOS, PAD, UNK};
use common::{read_jsonl, strings, written_world, TRAINING_FILES};
use tokenizers::Tokenizer;

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_word_of_the_world_is_one_known_token() {
    let (world, dir) = written_world(31);
    let tok = Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("tokenizers loads the file");
    let vocab = Vocabulary::of(&world);
    assert_eq!(tok.get_vocab_size(true), vocab.len());
    assert!(vocab.len() > 300 && vocab.len() < 2000, "vocabulary of {} tokens", vocab.len());
    for lang in world.languages() {
        for w in &lang.words {
            let enc = tok.encode(w.as_str(), false).unwrap();
            assert_eq!(enc.get_tokens(), std::slice::from_ref(w), "{} word {w}", lang.tag);
            assert_eq!(enc.get_ids(), [vocab.id(w).unwrap() as u32]);
        }
    }
    let unk = tok.token_to_id(UNK).unwrap();
    assert_eq!(tok.encode("zzzzzzzz", false).unwrap().get_ids(), [unk]);
}

#[test]
fn texts_of_every_file_round_trip_with_a_bos_and_no_unknown_token() {
    let (_, dir) = written_world(32);
    let tok = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let (bos, unk) = (tok.token_to_id(BOS).unwrap(), tok.token_to_id(UNK).unwrap());
    let mut checked = 0;
    let files = TRAINING_FILES.iter().chain(&["test_harmful.jsonl", "test_benign.jsonl"]);
    for name in files {
        for r in read_jsonl(&dir.path().join(name)) {
            let fields: &[&str] =
                if name.starts_with("test_") { &["prompt"] } else { &["prompt", "chosen", "rejected"] };
            let texts: Vec<String> = fields.iter().flat_map(|f| strings(&r[*f])).collect();
            for text in &texts {
                let enc = tok.encode(text.as_str(), true).unwrap();
                let ids = enc.get_ids();
                assert_eq!(ids[0], bos, "prompts get the BOS: {text}");
                assert_eq!(ids.len(), text.split(' ').count() + 1, "one token per word: {text}");
                assert!(!ids.contains(&unk), "unknown word in {text}");
                assert_eq!(tok.decode(ids, true).unwrap(), *text);
                checked += 1;
            }
        }
    }
    assert!(checked > 5000, "only {checked} texts checked");
}

#[test]
fn special_token_ids_agree_across_the_model_folder() {
    let (world, _) = written_world(33);
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(&world, &TinyLlamaConfig::default(), dir.path()).unwrap();
    let tok = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let config = json(&dir.path().join("config.json"));
    let tok_config = json(&dir.path().join("tokenizer_config.json"));
    assert_eq!(config["vocab_size"].as_u64().unwrap() as usize, tok.get_vocab_size(true));
    for (key, token) in [("bos_token", BOS), ("eos_token", EOS), ("pad_token", PAD)] {
        assert_eq!(tok_config[key], token);
        let id = tok.token_to_id(token).unwrap();
        assert_eq!(config[format!("{key}_id")].as_u64(), Some(u64::from(id)), "{key}");
    }
    assert_eq!(tok_config["model_max_length"], config["max_position_embeddings"]);
    let added = tok.get_added_tokens_decoder();
    for token in [UNK, BOS, EOS, PAD] {
        let id = tok.token_to_id(token).unwrap();
        assert!(added.get(&id).is_some_and(|t| t.special), "{token} is a special added token");
    }
}
