//! The GGUF reader against files written by gguf-py (metadata of every type, alignment 64),
//! and its errors on damaged files: always an `Err` naming what is wrong, never a panic.

use std::path::PathBuf;

use lm_backend::gguf::{GgmlType, GgufError, GgufFile, MetadataValue};
use proptest::prelude::*;
use serde_json::{json, Value};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name)
}

fn read_json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// The gguf-py type name and JSON form of a value, as the fixture script writes them.
fn describe(v: &MetadataValue) -> (String, Value) {
    match v {
        MetadataValue::U8(x) => ("UINT8".into(), json!(x)),
        MetadataValue::I8(x) => ("INT8".into(), json!(x)),
        MetadataValue::U16(x) => ("UINT16".into(), json!(x)),
        MetadataValue::I16(x) => ("INT16".into(), json!(x)),
        MetadataValue::U32(x) => ("UINT32".into(), json!(x)),
        MetadataValue::I32(x) => ("INT32".into(), json!(x)),
        MetadataValue::F32(x) => ("FLOAT32".into(), json!(f64::from(*x))),
        MetadataValue::Bool(x) => ("BOOL".into(), json!(x)),
        MetadataValue::String(x) => ("STRING".into(), json!(x)),
        MetadataValue::U64(x) => ("UINT64".into(), json!(x)),
        MetadataValue::I64(x) => ("INT64".into(), json!(x)),
        MetadataValue::F64(x) => ("FLOAT64".into(), json!(x)),
        MetadataValue::Array(items) => {
            let described: Vec<_> = items.iter().map(describe).collect();
            let elem = described.first().map(|(t, _)| t.clone()).unwrap_or_default();
            assert!(described.iter().all(|(t, _)| *t == elem), "mixed array element types");
            (format!("ARRAY[{elem}]"), Value::Array(described.into_iter().map(|(_, v)| v).collect()))
        }
    }
}

#[test]
fn metadata_of_every_type_matches_gguf_py() {
    let expected = read_json("metadata.expected.json");
    let file = GgufFile::open(fixture("metadata.gguf")).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), expected["alignment"].as_u64().unwrap());
    assert_eq!(file.get("general.architecture").and_then(|v| v.as_str()), Some("fixture"));
    for entry in expected["keys"].as_array().unwrap() {
        let key = entry["key"].as_str().unwrap();
        let value = file.get(key).unwrap_or_else(|| panic!("key {key} missing"));
        let (type_name, json_value) = describe(value);
        assert_eq!(type_name, entry["type"].as_str().unwrap(), "type of {key}");
        assert_eq!(json_value, entry["value"], "value of {key}");
    }
}

#[test]
fn tensors_after_64_byte_padding_read_back() {
    let expected = read_json("metadata.expected.json");
    let file = GgufFile::open(fixture("metadata.gguf")).unwrap();
    assert_eq!(file.data_start() % 64, 0);
    for t in expected["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let info = file.tensor(name).unwrap();
        assert_eq!(info.ggml_type, GgmlType::F32);
        assert_eq!(info.offset % 64, 0, "{name} offset {}", info.offset);
        let shape: Vec<usize> = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        assert_eq!(info.shape(), shape);
        let want: Vec<f32> = t["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(file.tensor_f32(name).unwrap(), want);
    }
}

#[test]
fn version_2_files_read_like_version_3() {
    // Versions 2 and 3 share the little-endian layout; only the number differs.
    let mut bytes = std::fs::read(fixture("metadata.gguf")).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let v2 = GgufFile::from_bytes(bytes).unwrap();
    let v3 = GgufFile::open(fixture("metadata.gguf")).unwrap();
    assert_eq!(v2.version(), 2);
    assert_eq!(v2.metadata(), v3.metadata());
    assert_eq!(v2.tensors(), v3.tensors());
}

/// A minimal GGUF writer for hand-made (and hand-damaged) files.
#[derive(Default)]
struct Builder {
    kvs: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    n_tensors: u64,
    data: Vec<u8>,
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Builder {
    fn kv_raw(mut self, key: &str, value_type: u32, value: &[u8]) -> Self {
        string(&mut self.kvs, key);
        self.kvs.extend(value_type.to_le_bytes());
        self.kvs.extend(value);
        self.n_kv += 1;
        self
    }

    fn kv_u32(self, key: &str, v: u32) -> Self {
        self.kv_raw(key, 4, &v.to_le_bytes())
    }

    fn tensor_raw(mut self, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> Self {
        string(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(ggml_type.to_le_bytes());
        self.infos.extend(offset.to_le_bytes());
        self.n_tensors += 1;
        self
    }

    fn f32_tensor(mut self, name: &str, values: &[f32]) -> Self {
        let offset = self.data.len() as u64;
        self = self.tensor_raw(name, &[values.len() as u64], 0, offset);
        self.data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        self.data.resize(self.data.len().next_multiple_of(32), 0);
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kvs);
        out.extend(&self.infos);
        out.resize(out.len().next_multiple_of(32), 0);
        out.extend(&self.data);
        out
    }
}

fn parse_err(bytes: Vec<u8>) -> String {
    GgufFile::from_bytes(bytes).expect_err("a damaged file must not parse").to_string()
}

#[test]
fn hand_built_file_parses() {
    let bytes = Builder::default().kv_u32("a.b", 7).f32_tensor("x", &[1.0, 2.0, 3.0]).f32_tensor("y", &[4.0]).build();
    let file = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(file.get("a.b"), Some(&MetadataValue::U32(7)));
    assert_eq!(file.tensor_f32("x").unwrap(), vec![1.0, 2.0, 3.0]);
    assert_eq!(file.tensor_f32("y").unwrap(), vec![4.0]);
    assert!(matches!(file.tensor_f32("z"), Err(GgufError::MissingTensor(name)) if name == "z"));
}

#[test]
fn wrong_magic_and_versions_are_named() {
    assert!(parse_err(b"GGML\x03\0\0\0".to_vec()).contains("not a GGUF file"));
    assert!(parse_err(b"GG".to_vec()).contains("not a GGUF file"));
    let mut v1 = Builder::default().build();
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(parse_err(v1).contains("version 1"));
    let mut big_endian = Builder::default().build();
    big_endian[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(parse_err(big_endian).contains("big-endian"));
}

#[test]
fn truncated_value_names_key_and_offset() {
    let mut bytes = Builder::default().kv_u32("llama.block_count", 30).build();
    let end_of_value = 24 + 8 + "llama.block_count".len() + 4 + 4;
    bytes.truncate(end_of_value - 2); // drop the padding and half of the u32 value
    let msg = parse_err(bytes);
    assert!(msg.contains("truncated") && msg.contains("llama.block_count") && msg.contains("offset"), "{msg}");
}

#[test]
fn malformed_fields_name_key_or_tensor() {
    let unknown_type = Builder::default().kv_raw("k.bad", 13, &[0; 8]).build();
    let msg = parse_err(unknown_type);
    assert!(msg.contains("k.bad") && msg.contains("unknown value type 13"), "{msg}");

    let huge_array = [4u32.to_le_bytes().to_vec(), u64::MAX.to_le_bytes().to_vec()].concat();
    let msg = parse_err(Builder::default().kv_raw("k.arr", 9, &huge_array).build());
    assert!(msg.contains("k.arr") && msg.contains("truncated"), "{msg}");

    let huge_string = u64::MAX.to_le_bytes();
    let msg = parse_err(Builder::default().kv_raw("k.str", 8, &huge_string).build());
    assert!(msg.contains("k.str") && msg.contains("truncated"), "{msg}");

    let msg = parse_err(Builder::default().kv_raw("k.flag", 7, &[2]).build());
    assert!(msg.contains("k.flag") && msg.contains("bool"), "{msg}");

    let msg = parse_err(Builder::default().kv_u32("dup", 1).kv_u32("dup", 2).build());
    assert!(msg.contains("dup") && msg.contains("twice"), "{msg}");

    let msg = parse_err(Builder::default().kv_u32("general.alignment", 48).build());
    assert!(msg.contains("general.alignment") && msg.contains("power of two"), "{msg}");

    let msg = parse_err(Builder::default().tensor_raw("t5d", &[1, 1, 1, 1, 1], 0, 0).build());
    assert!(msg.contains("t5d") && msg.contains("5 dimensions"), "{msg}");

    let msg = parse_err(Builder::default().tensor_raw("q", &[33, 2], GgmlType::Q8_0.code(), 0).build());
    assert!(msg.contains("\"q\"") && msg.contains("block size 32"), "{msg}");

    let msg = parse_err(Builder::default().tensor_raw("over", &[u64::MAX, 4], 0, 0).build());
    assert!(msg.contains("over") && msg.contains("overflow"), "{msg}");
}

#[test]
fn tensor_data_outside_the_file_or_misaligned_is_an_error() {
    let msg = parse_err(Builder::default().f32_tensor("x", &[1.0; 8]).tensor_raw("far", &[8], 0, 1 << 20).build());
    assert!(msg.contains("\"far\"") && msg.contains("past the end"), "{msg}");

    let msg = parse_err(Builder::default().f32_tensor("x", &[1.0; 8]).tensor_raw("odd", &[1], 0, 4).build());
    assert!(msg.contains("\"odd\"") && msg.contains("alignment"), "{msg}");

    let mut truncated = Builder::default().f32_tensor("x", &[1.0; 16]).build();
    truncated.truncate(truncated.len() - 8);
    let msg = parse_err(truncated);
    assert!(msg.contains("\"x\"") && msg.contains("past the end"), "{msg}");
}

#[test]
fn unknown_tensor_types_parse_but_do_not_dequantise() {
    let file = GgufFile::from_bytes(Builder::default().tensor_raw("iq", &[256], 16, 0).build()).unwrap();
    let msg = file.tensor_f32("iq").unwrap_err().to_string();
    assert!(msg.contains("\"iq\"") && msg.contains("type code 16"), "{msg}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every prefix of a valid file that ends before its last tensor's data is rejected with
    /// an error, not a panic (trailing padding after the last tensor is optional).
    #[test]
    fn every_truncation_is_an_error(cut in 0usize..960) {
        let bytes = std::fs::read(fixture("metadata.gguf")).unwrap();
        let file = GgufFile::open(fixture("metadata.gguf")).unwrap();
        let data_end = file.tensors().iter().map(|t| file.data_start() + t.offset + t.n_bytes.unwrap()).max().unwrap();
        let cut = cut.min(data_end as usize - 1);
        prop_assert!(GgufFile::from_bytes(bytes[..cut].to_vec()).is_err());
    }

    /// Random byte flips never panic the parser (they may or may not be detected).
    #[test]
    fn corrupted_bytes_never_panic(flips in proptest::collection::vec((0usize..960, any::<u8>()), 1..8)) {
        let mut bytes = std::fs::read(fixture("metadata.gguf")).unwrap();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        if let Ok(file) = GgufFile::from_bytes(bytes) {
            for t in file.tensors().to_vec() {
                let _ = file.tensor_f32(&t.name);
            }
        }
    }
}
