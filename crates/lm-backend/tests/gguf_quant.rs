//! Dequantisation of every supported GGML type against gguf-py's `gguf.quants.dequantize`,
//! on the fixture written by scripts/fixtures/make_gguf_fixtures.py.

use std::collections::BTreeSet;
use std::path::PathBuf;

use lm_backend::gguf::{dequantize, GgufFile};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name)
}

/// `(name, type, shape, values)` of each expected tensor.
fn expected(stem: &str) -> Vec<(String, String, Vec<usize>, Vec<f32>)> {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{stem}.expected.json"))).unwrap()).unwrap();
    let raw = std::fs::read(fixture(&format!("{stem}.expected.f32"))).unwrap();
    let all: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    manifest["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let offset = t["offset"].as_u64().unwrap() as usize;
            let count = t["count"].as_u64().unwrap() as usize;
            let shape = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let name = t["name"].as_str().unwrap().to_string();
            (name, t["type"].as_str().unwrap().to_string(), shape, all[offset..offset + count].to_vec())
        })
        .collect()
}

#[test]
fn fixture_covers_every_required_type() {
    let types: BTreeSet<String> = expected("quant_types").into_iter().map(|(_, t, _, _)| t).collect();
    for required in
        ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q5_K"]
    {
        assert!(types.contains(required), "fixture lacks {required}: {types:?}");
    }
}

#[test]
fn every_type_equals_gguf_py_bit_for_bit() {
    let file = GgufFile::open(fixture("quant_types.gguf")).unwrap();
    let cases = expected("quant_types");
    assert!(cases.len() >= 20);
    for (name, type_name, shape, want) in cases {
        let info = file.tensor(&name).unwrap_or_else(|| panic!("tensor {name} missing"));
        assert_eq!(info.ggml_type.to_string(), type_name, "{name}");
        assert_eq!(info.shape(), shape, "{name}");
        let got = file.tensor_f32(&name).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(w.is_finite(), "{name}[{i}] expected value is not finite");
            // Same f32 operations in the same order: identical bits (0.0 and -0.0 compare equal).
            assert!(g == w, "{name} ({type_name}) element {i}: got {g:e}, gguf-py {w:e}");
        }
    }
}

#[test]
fn dequantize_agrees_with_tensor_f32_on_raw_bytes() {
    let file = GgufFile::open(fixture("quant_types.gguf")).unwrap();
    for info in file.tensors() {
        let bytes = file.tensor_bytes(&info.name).unwrap();
        assert_eq!(bytes.len() as u64, info.n_bytes.unwrap());
        let values = dequantize(&info.name, info.ggml_type, bytes).unwrap();
        assert_eq!(values.len() as u64, info.n_elements);
    }
}
