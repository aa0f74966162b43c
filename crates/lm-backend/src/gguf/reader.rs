//! Parsing of the GGUF container: header, metadata key/values, tensor infos, data section.
//!
//! Layout (all little-endian, versions 2 and 3; version 3 only added big-endian files,
//! which this reader refuses):
//!
//! ```text
//! "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//! kv_count × ( string key | u32 value_type | value )
//! tensor_count × ( string name | u32 n_dims | n_dims × u64 ne | u32 ggml_type | u64 offset )
//! padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_start + offset, offsets multiples of the alignment
//! ```
//! A string is `u64 length | bytes` (UTF-8, no terminator); an array value is
//! `u32 element_type | u64 count | elements`.

use std::collections::HashMap;
use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use memmap2::Mmap;

use super::error::{GgufError, Result};
use super::ggml_type::GgmlType;
use super::quant;

/// The alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a ggml tensor can have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// How deeply arrays may nest inside arrays before the file is called malformed.
const MAX_ARRAY_DEPTH: u32 = 8;
const MAGIC: &[u8; 4] = b"GGUF";

/// One metadata value. Arrays hold values of one element type.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataValue {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7 (one byte, 0 or 1).
    Bool(bool),
    /// Type 8.
    String(String),
    /// Type 9: elements of one type (possibly arrays themselves).
    Array(Vec<MetadataValue>),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

impl MetadataValue {
    /// The value as an unsigned integer, for any integer type holding a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, for any integer type that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float, for float and integer types.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The value as a boolean (type 7 only).
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a string slice (type 8 only).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(v) => Some(v),
            _ => None,
        }
    }

    /// The elements of an array value (type 9 only).
    pub fn as_array(&self) -> Option<&[MetadataValue]> {
        match self {
            Self::Array(v) => Some(v),
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "u8",
            Self::I8(_) => "i8",
            Self::U16(_) => "u16",
            Self::I16(_) => "i16",
            Self::U32(_) => "u32",
            Self::I32(_) => "i32",
            Self::F32(_) => "f32",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
            Self::U64(_) => "u64",
            Self::I64(_) => "i64",
            Self::F64(_) => "f64",
        }
    }
}

/// Where one tensor lives in the file and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's GGUF name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` (`ne[0]`) is the contiguous, fastest-varying one.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Number of elements (product of `dims`).
    pub n_elements: u64,
    /// Size of the data in bytes; `None` for a type whose layout is unknown.
    pub n_bytes: Option<u64>,
}

impl TensorInfo {
    /// The shape in row-major (PyTorch/NumPy) order: `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// The bytes of the file: memory-mapped, or owned (for data built in memory).
enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file: metadata and tensor infos in memory, tensor data memory-mapped.
///
/// Parsing checks every count, length and offset against the file size, so damaged files
/// give a [`GgufError`] naming the key, tensor or byte offset, never a panic.
pub struct GgufFile {
    storage: Storage,
    version: u32,
    metadata: Vec<(String, MetadataValue)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_start: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_start", &self.data_start)
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |action, source| GgufError::Io { action, path: path.to_path_buf(), source };
        let file = File::open(path).map_err(|e| io("open", e))?;
        // SAFETY: the mapping is read-only; as with every memory-mapped reader, the file must
        // not be truncated or rewritten by another process while this value is alive.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| io("memory-map", e))?;
        Self::parse(Storage::Mapped(mmap))
    }

    /// Parses a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(Storage::Owned(bytes))
    }

    fn parse(storage: Storage) -> Result<Self> {
        let mut cur = Cursor { bytes: &storage, pos: 0 };
        let magic = cur.bytes.get(..4).unwrap_or(cur.bytes);
        if magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic.to_vec() });
        }
        cur.pos = 4;
        let version = cur.u32("the version")?;
        check_version(version)?;
        let tensor_count = cur.u64("the tensor count")?;
        let kv_count = cur.u64("the metadata key/value count")?;

        let mut metadata = Vec::with_capacity(cur.capacity_for(kv_count, 13));
        let mut key_index = HashMap::new();
        for i in 0..kv_count {
            let at = cur.pos;
            let key = cur.string(&format!("metadata key #{i}"))?;
            let value_type = cur.u32(&format!("the value type of key \"{key}\""))?;
            let value = cur.value(value_type, &key, 0)?;
            if key_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(cur.malformed(at, format!("key \"{key}\""), "the key appears twice".into()));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, MetadataValue::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some((key, v)) => {
                return Err(GgufError::BadValue {
                    key: key.clone(),
                    message: format!("expected a u32 power of two, found {v:?}"),
                })
            }
        };

        let mut tensors = Vec::with_capacity(cur.capacity_for(tensor_count, 24));
        let mut tensor_index = HashMap::new();
        for i in 0..tensor_count {
            let at = cur.pos;
            let info = cur.tensor_info(i)?;
            if tensor_index.insert(info.name.clone(), tensors.len()).is_some() {
                let context = format!("tensor \"{}\"", info.name);
                return Err(cur.malformed(at, context, "the tensor name appears twice".into()));
            }
            tensors.push(info);
        }

        let data_start = cur.pos.next_multiple_of(alignment);
        let file = Self { storage, version, metadata, key_index, tensors, tensor_index, alignment, data_start };
        file.check_tensor_ranges()?;
        Ok(file)
    }

    fn check_tensor_ranges(&self) -> Result<()> {
        let file_len = self.storage.len() as u64;
        for t in &self.tensors {
            let err = |message| GgufError::TensorData { tensor: t.name.clone(), message };
            if t.offset % self.alignment != 0 {
                return Err(err(format!(
                    "data offset {} is not a multiple of the alignment {}",
                    t.offset, self.alignment
                )));
            }
            let Some(n_bytes) = t.n_bytes else { continue };
            let start = self.data_start.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(n_bytes));
            match (start, end) {
                (Some(_), Some(end)) if end <= file_len => {}
                (start, _) => {
                    return Err(err(format!(
                        "data at byte offset {} + {} bytes runs past the end of the file ({} bytes); \
                         the file is truncated or the offset is wrong",
                        start.map_or_else(|| "overflow".to_string(), |s| s.to_string()),
                        n_bytes,
                        file_len
                    )))
                }
            }
        }
        Ok(())
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// All metadata key/value pairs, in file order.
    pub fn metadata(&self) -> &[(String, MetadataValue)] {
        &self.metadata
    }

    /// The value of one metadata key.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of one tensor.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The data section's alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute byte offset where the data section starts.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// The raw bytes of a tensor's data, as stored (quantised blocks included).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.tensor(name).ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        let Some(n_bytes) = info.n_bytes else {
            return Err(unsupported(info));
        };
        // Ranges were checked against the file length when parsing.
        let start = (self.data_start + info.offset) as usize;
        Ok(&self.storage[start..start + n_bytes as usize])
    }

    /// A tensor's values dequantised to f32, in row-major order of [`TensorInfo::shape`].
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.tensor(name).ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        let bytes = self.tensor_bytes(name)?;
        quant::dequantize(&info.name, info.ggml_type, bytes)
    }
}

fn unsupported(info: &TensorInfo) -> GgufError {
    GgufError::UnsupportedType {
        tensor: info.name.clone(),
        ggml_type: info.ggml_type.to_string(),
        supported: quant::SUPPORTED_TYPES,
    }
}

fn check_version(version: u32) -> Result<()> {
    match version {
        2 | 3 => Ok(()),
        1 => Err(GgufError::UnsupportedVersion {
            version,
            hint: "; version 1 files predate 64-bit counts, re-convert the model with a current llama.cpp",
        }),
        v if v & 0xFFFF == 0 && matches!(v.swap_bytes(), 1..=3) => Err(GgufError::UnsupportedVersion {
            version,
            hint: "; this looks like a big-endian GGUF file, convert it with gguf-py's gguf-convert-endian",
        }),
        _ => Err(GgufError::UnsupportedVersion { version, hint: "" }),
    }
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: u64,
}

impl Cursor<'_> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() as u64).saturating_sub(self.pos)
    }

    /// How many items of at least `min_size` bytes to preallocate for a claimed `count`.
    fn capacity_for(&self, count: u64, min_size: u64) -> usize {
        count.min(self.remaining() / min_size) as usize
    }

    fn malformed(&self, offset: u64, context: String, message: String) -> GgufError {
        GgufError::Malformed { offset, context, message }
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&[u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let start = self.pos as usize;
        self.pos += n;
        Ok(&self.bytes[start..start + n as usize])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let len = self.u64(&format!("the length of {what}"))?;
        let bytes = self.take(len, what)?.to_vec();
        String::from_utf8(bytes).map_err(|e| self.malformed(at, what.to_string(), format!("invalid UTF-8: {e}")))
    }

    fn value(&mut self, value_type: u32, key: &str, depth: u32) -> Result<MetadataValue> {
        let what = || format!("the value of key \"{key}\"");
        Ok(match value_type {
            0 => MetadataValue::U8(u8::from_le_bytes(self.array(&what())?)),
            1 => MetadataValue::I8(i8::from_le_bytes(self.array(&what())?)),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array(&what())?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array(&what())?)),
            4 => MetadataValue::U32(u32::from_le_bytes(self.array(&what())?)),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array(&what())?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array(&what())?)),
            7 => {
                let at = self.pos;
                match self.array::<1>(&what())?[0] {
                    0 => MetadataValue::Bool(false),
                    1 => MetadataValue::Bool(true),
                    b => {
                        return Err(self.malformed(
                            at,
                            format!("key \"{key}\""),
                            format!("bool byte {b} is not 0 or 1"),
                        ))
                    }
                }
            }
            8 => MetadataValue::String(self.string(&what())?),
            9 => self.array_value(key, depth)?,
            10 => MetadataValue::U64(u64::from_le_bytes(self.array(&what())?)),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array(&what())?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array(&what())?)),
            other => {
                let at = self.pos - 4;
                return Err(self.malformed(at, format!("key \"{key}\""), format!("unknown value type {other}")));
            }
        })
    }

    fn array_value(&mut self, key: &str, depth: u32) -> Result<MetadataValue> {
        let at = self.pos;
        if depth >= MAX_ARRAY_DEPTH {
            let message = format!("arrays nested deeper than {MAX_ARRAY_DEPTH} levels");
            return Err(self.malformed(at, format!("key \"{key}\""), message));
        }
        let elem_type = self.u32(&format!("the array element type of key \"{key}\""))?;
        let count = self.u64(&format!("the array length of key \"{key}\""))?;
        let min_size: u64 = match elem_type {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 12,
            other => {
                return Err(self.malformed(at, format!("key \"{key}\""), format!("unknown array element type {other}")))
            }
        };
        if count.saturating_mul(min_size) > self.remaining() {
            return Err(GgufError::Truncated {
                what: format!("the {count} array elements of key \"{key}\""),
                offset: self.pos,
                needed: count.saturating_mul(min_size),
                available: self.remaining(),
            });
        }
        // Values are larger than their encoding: cap the preallocation, not the count.
        let mut items = Vec::with_capacity(count.min(1 << 16) as usize);
        for _ in 0..count {
            items.push(self.value(elem_type, key, depth + 1)?);
        }
        Ok(MetadataValue::Array(items))
    }

    fn tensor_info(&mut self, index: u64) -> Result<TensorInfo> {
        let name = self.string(&format!("the name of tensor #{index}"))?;
        let ctx = format!("tensor \"{name}\"");
        let at = self.pos;
        let n_dims = self.u32(&format!("the number of dimensions of {ctx}"))?;
        if n_dims > MAX_DIMS {
            return Err(self.malformed(at, ctx, format!("{n_dims} dimensions, at most {MAX_DIMS} allowed")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(self.u64(&format!("dimension {d} of {ctx}"))?);
        }
        let type_at = self.pos;
        let ggml_type = GgmlType::from_code(self.u32(&format!("the type of {ctx}"))?);
        let offset = self.u64(&format!("the data offset of {ctx}"))?;
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| self.malformed(at, ctx.clone(), format!("element count of dims {dims:?} overflows")))?;
        let n_bytes = match ggml_type.block_layout() {
            None => None,
            Some((block, block_bytes)) => {
                let row = dims.first().copied().unwrap_or(1);
                if row % block as u64 != 0 {
                    let message =
                        format!("first dimension {row} is not a multiple of the {ggml_type} block size {block}");
                    return Err(self.malformed(type_at, ctx, message));
                }
                let bytes = (n_elements / block as u64).checked_mul(block_bytes as u64);
                Some(bytes.ok_or_else(|| self.malformed(at, ctx.clone(), "data size overflows".into()))?)
            }
        };
        Ok(TensorInfo { name, dims, ggml_type, offset, n_elements, n_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_checks_name_the_cause() {
        assert!(check_version(2).is_ok() && check_version(3).is_ok());
        let msg = check_version(1).unwrap_err().to_string();
        assert!(msg.contains("version 1"), "{msg}");
        let msg = check_version(3u32.swap_bytes()).unwrap_err().to_string();
        assert!(msg.contains("big-endian"), "{msg}");
    }

    #[test]
    fn integer_accessors_convert_only_when_lossless() {
        assert_eq!(MetadataValue::I32(-1).as_u64(), None);
        assert_eq!(MetadataValue::I32(7).as_u64(), Some(7));
        assert_eq!(MetadataValue::U64(u64::MAX).as_i64(), None);
        assert_eq!(MetadataValue::U8(3).as_f64(), Some(3.0));
        assert_eq!(MetadataValue::String("x".into()).as_u64(), None);
    }
}
