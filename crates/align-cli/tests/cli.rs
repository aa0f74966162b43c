//! The `align` binary on the lm-backend fixtures: `generate` reproduces transformers' greedy
//! tokens, `convert` turns the tiny GGUF llama into a folder that loads and generates, and bad
//! inputs fail with exit status 1 (2 for usage errors) and messages naming what is wrong.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lm_backend::{CausalLm, HfCausalLm, LoadOptions, Tokenizer};
use serde_json::Value;
use tch::Tensor;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lm-backend/tests/fixtures")
}

fn align(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_align")).args(args).output().expect("the align binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// A model folder: the fixture model `name` plus the fixture tokenizer files.
fn model_folder(name: &str, into: &Path) -> PathBuf {
    let dir = into.join(name);
    fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "model.safetensors", "generation_config.json"] {
        fs::copy(fixtures().join(name).join(file), dir.join(file)).unwrap();
    }
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        fs::copy(fixtures().join("tokenizer").join(file), dir.join(file)).unwrap();
    }
    dir
}

fn ids(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t).unwrap()
}

#[test]
fn generate_reproduces_the_greedy_tokens_of_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = Tokenizer::from_dir(fixtures().join("tokenizer")).unwrap();
    for name in ["llama", "qwen2", "gemma2"] {
        let dir = model_folder(name, tmp.path());
        let expected: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(fixtures().join(name).join("expected.safetensors")).unwrap().into_iter().collect();
        for i in 0..2 {
            let prompt_ids = ids(&expected[&format!("generation_{i}_prompt")]);
            let want = ids(&expected[&format!("generation_{i}_output")]);
            let as_u32: Vec<u32> = prompt_ids.iter().map(|&t| t as u32).collect();
            let prompt = tokenizer.decode(&as_u32, true).unwrap();
            let dir_arg = dir.to_str().unwrap();
            let max = want.len().to_string();

            for attention in ["sdpa", "eager"] {
                let args = ["--prompt", &prompt, "--max-new-tokens", &max, "--attention", attention, "--json"];
                let out = align(&[&["generate", "--model", dir_arg][..], &args].concat());
                assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
                let json: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
                let got_prompt: Vec<i64> = serde_json::from_value(json["prompt_ids"].clone()).unwrap();
                assert_eq!(got_prompt, prompt_ids, "{name} prompt {i}: the prompt text must encode to the fixture ids");
                let got: Vec<i64> = serde_json::from_value(json["completion_ids"].clone()).unwrap();
                assert_eq!(got, want, "{name} prompt {i} ({attention}): greedy tokens differ from transformers");
            }

            // Plain text output: the decoded tokens, special tokens left out, one line break.
            let out = align(&["generate", "--model", dir_arg, "--prompt", &prompt, "--max-new-tokens", &max]);
            assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
            let want_u32: Vec<u32> = want.iter().map(|&t| t as u32).collect();
            let want_text = tokenizer.decode(&want_u32, true).unwrap();
            assert_eq!(stdout(&out), format!("{want_text}\n"), "{name} prompt {i}");
        }
    }
}

#[test]
fn generate_chat_renders_the_template_and_lang_is_a_label() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_folder("llama", tmp.path());
    let dir_arg = dir.to_str().unwrap();
    let args = ["generate", "--model", dir_arg, "--prompt", "Hallo", "--chat", "--max-new-tokens", "3", "--json"];
    let out = align(&[&args[..], &["--lang", "de"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(json["prompt"], "<|bos|><|im_start|>user\nHallo<|im_end|>\n<|im_start|>assistant\n");
    assert_eq!(json["lang"], "de");
    assert!(stderr(&out).contains("[de]"), "{}", stderr(&out));
    // The label changes nothing: the same tokens without it.
    let unlabelled: Value = serde_json::from_str(stdout(&align(&args)).trim()).unwrap();
    assert_eq!(unlabelled["completion_ids"], json["completion_ids"]);
    // A vanishing nucleus is greedy; a seed reproduces its sample.
    let sampled = |extra: &[&str]| -> Value {
        let out = align(&[&args[..], extra].concat());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    let nucleus = sampled(&["--temperature", "1", "--top-p", "1e-9"]);
    assert_eq!(nucleus["completion_ids"], json["completion_ids"]);
    let a = sampled(&["--temperature", "1.5", "--seed", "7"]);
    assert_eq!(a["completion_ids"], sampled(&["--temperature", "1.5", "--seed", "7"])["completion_ids"]);
}

#[test]
fn convert_turns_the_tiny_gguf_llama_into_a_working_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = fixtures().join("gguf/tiny_llama.gguf");
    let expected: Value =
        serde_json::from_str(&fs::read_to_string(fixtures().join("gguf/tiny_llama.expected.json")).unwrap()).unwrap();
    let dir = tmp.path().join("tiny");
    let dir_arg = dir.to_str().unwrap();
    let out = align(&["convert", "--from", "gguf", gguf.to_str().unwrap(), "--output", dir_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(report.contains(&format!("wrote {dir_arg}")), "{report}");
    assert!(report.contains("tied embeddings: false"), "{report}");

    // The report and the folder agree with the fixture's list of tensors.
    let tensors = expected["tensors"].as_array().unwrap();
    let count: u64 = tensors.iter().map(|t| t["count"].as_u64().unwrap()).sum();
    assert!(report.contains(&format!("tensors:         {}\n", tensors.len())), "{report}");
    assert!(report.contains(&format!("parameters:      {count}\n")), "{report}");
    let model = HfCausalLm::load(&dir, LoadOptions::cpu_f32()).unwrap();
    Tokenizer::from_dir(&dir).unwrap();
    let loaded: usize = model.parameters().values().map(|t| t.numel()).sum();
    assert_eq!(loaded as u64, count);
    assert_eq!(model.num_layers(), 2);
    let embed = tensors.iter().find(|t| t["name"] == "model.embed_tokens.weight").unwrap();
    assert_eq!(model.config().vocab_size as u64, embed["shape"][0].as_u64().unwrap());

    // It generates through the binary.
    let out = align(&["generate", "--model", dir_arg, "--prompt", "hello", "--max-new-tokens", "4", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let n = json["completion_ids"].as_array().unwrap().len();
    assert!((1..=4).contains(&n));

    // An existing folder is kept unless --overwrite; bf16 on request.
    let again = align(&["convert", "--from", "gguf", gguf.to_str().unwrap(), "--output", dir_arg]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains(dir_arg) && stderr(&again).contains("--overwrite"), "{}", stderr(&again));
    let bf16 = align(&["convert", "--from", "gguf", gguf.to_str().unwrap(), "--output", dir_arg, "--overwrite"]);
    assert_eq!(bf16.status.code(), Some(0), "{}", stderr(&bf16));
    let bf16 = align(&[
        "convert",
        "--from",
        "gguf",
        gguf.to_str().unwrap(),
        "--output",
        dir_arg,
        "--overwrite",
        "--dtype",
        "bf16",
    ]);
    assert_eq!(bf16.status.code(), Some(0), "{}", stderr(&bf16));
    let config: Value = serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["torch_dtype"], "bfloat16", "{config}");
}

#[test]
fn bad_inputs_fail_with_messages_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-model");
    let missing_arg = missing.to_str().unwrap();

    let out = align(&["generate", "--model", missing_arg, "--prompt", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error: ") && stderr(&out).contains(missing_arg), "{}", stderr(&out));

    // A folder without weights: the cause chain names the folder and the file.
    fs::create_dir_all(&missing).unwrap();
    fs::copy(fixtures().join("llama/config.json"), missing.join("config.json")).unwrap();
    let out = align(&["generate", "--model", missing_arg, "--prompt", "hi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(missing_arg) && stderr(&out).contains("caused by"), "{}", stderr(&out));

    let dir = model_folder("llama", tmp.path());
    let out = align(&["generate", "--model", dir.to_str().unwrap(), "--prompt", "hi", "--device", "tpu:3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("tpu:3"), "{}", stderr(&out));

    let gguf = tmp.path().join("absent.gguf");
    let out = align(&[
        "convert",
        "--from",
        "gguf",
        gguf.to_str().unwrap(),
        "--output",
        tmp.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(gguf.to_str().unwrap()), "{}", stderr(&out));

    // A file that is not GGUF: the cause names the magic bytes.
    let fake = tmp.path().join("fake.gguf");
    fs::write(&fake, b"not a model").unwrap();
    let out = align(&[
        "convert",
        "--from",
        "gguf",
        fake.to_str().unwrap(),
        "--output",
        tmp.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("fake.gguf") && stderr(&out).contains("GGUF"), "{}", stderr(&out));
    assert!(!tmp.path().join("o").exists(), "a failed conversion leaves no folder");

    // Usage errors exit with 2.
    assert_eq!(align(&[]).status.code(), Some(2));
    assert_eq!(align(&["generate", "--prompt", "hi"]).status.code(), Some(2));
    assert_eq!(align(&["convert", "--from", "onnx", "x", "--output", "y"]).status.code(), Some(2));
    assert_eq!(align(&["generate", "--model", "m", "--prompt", "p", "--seed", "3"]).status.code(), Some(2));
    let out = align(&["generate", "--model", "m", "--prompt", "p", "--attention", "flash"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("flash") && stderr(&out).contains("sdpa, eager"), "{}", stderr(&out));
}

/// `align generate` on the model families with their own tokenizers (Qwen3, Mistral, Gemma 3,
/// Llama 3.2 style) reproduces transformers' greedy tokens, prompt ids included; and `align
/// convert` turns the qwen3 and gemma3 GGUF fixtures into folders that generate.
#[test]
fn families_generate_like_transformers_and_their_gguf_files_convert() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["qwen3", "mistral", "gemma3", "llama-tied"] {
        let dir = tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        for file in
            ["config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
        {
            fs::copy(fixtures().join(name).join(file), dir.join(file)).unwrap();
        }
        let e: BTreeMap<String, Tensor> =
            Tensor::read_safetensors(fixtures().join(name).join("expected.safetensors")).unwrap().into_iter().collect();
        let ids = |t: &Tensor| Vec::<i64>::try_from(t).unwrap();
        let args = ["generate", "--model", dir.to_str().unwrap(), "--prompt", "Safety alignment teaches"];
        let out = align(&[&args[..], &["--max-new-tokens", "12", "--json"]].concat());
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let json: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        let got =
            |key: &str| -> Vec<i64> { json[key].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect() };
        assert_eq!(got("prompt_ids"), ids(&e["generation_0_prompt"]), "{name}");
        assert_eq!(got("completion_ids"), ids(&e["generation_0_output"]), "{name}");
    }
    for gguf in ["tiny_qwen3.gguf", "tiny_gemma3.gguf"] {
        let dir = tmp.path().join(gguf);
        let out = align(&[
            "convert",
            "--from",
            "gguf",
            fixtures().join("gguf").join(gguf).to_str().unwrap(),
            "--output",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{gguf}: {}", stderr(&out));
        assert!(stdout(&out).contains("tied embeddings: true"), "{}", stdout(&out));
        let out = align(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            "hello",
            "--max-new-tokens",
            "3",
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{gguf}: {}", stderr(&out));
    }
}
