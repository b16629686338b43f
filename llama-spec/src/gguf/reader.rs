//! Strict GGUF v3 reader. The header is parsed from a byte slice (the mmap of the file), with
//! every length checked against the bytes that remain before anything is allocated.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::error::{FormatError, GgufError};
use super::types::{ArrayValue, GgmlType, Metadata, MetadataValue, TensorInfo, ValueType};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, KEY_ALIGNMENT, MAX_DIMS, MAX_NAME_LEN};

/// Nested arrays deeper than this are rejected (real files use none; this bounds recursion).
const MAX_ARRAY_DEPTH: usize = 4;

/// Everything before the tensor data: version, metadata, tensor infos and layout.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the tensor data section.
    pub data_offset: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

type Res<T> = Result<T, (u64, FormatError)>;

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn err<T>(&self, e: FormatError) -> Res<T> {
        Err((self.pos as u64, e))
    }

    fn take(&mut self, n: usize, what: &'static str) -> Res<&'a [u8]> {
        if n > self.remaining() {
            return self.err(FormatError::Truncated {
                what,
                needed: n as u64,
                available: self.remaining() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Res<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Res<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Res<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that must fit in the remaining bytes at `min_size` bytes per item.
    fn count(&mut self, what: &'static str, min_size: usize) -> Res<usize> {
        let start = self.pos as u64;
        let count = self.u64(what)?;
        let available = self.remaining() as u64;
        match count.checked_mul(min_size as u64) {
            Some(n) if n <= available => Ok(count as usize),
            _ => Err((
                start,
                FormatError::CountTooLarge {
                    what,
                    count,
                    available,
                },
            )),
        }
    }

    fn string(&mut self, what: &'static str) -> Res<String> {
        let len = self.count(what, 1)?;
        let start = self.pos as u64;
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err((start, FormatError::InvalidUtf8)),
        }
    }

    fn value_type(&mut self) -> Res<ValueType> {
        let start = self.pos as u64;
        let id = self.u32("value type")?;
        ValueType::from_id(id).ok_or((start, FormatError::UnknownValueType(id)))
    }

    fn bool(&mut self) -> Res<bool> {
        let start = self.pos as u64;
        match self.take(1, "bool")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err((
                start,
                FormatError::WrongKeyType {
                    key: String::new(),
                    expected: "bool byte 0 or 1",
                    found: b.to_string(),
                },
            )),
        }
    }

    fn value(&mut self, ty: ValueType, depth: usize) -> Res<MetadataValue> {
        use MetadataValue as V;
        Ok(match ty {
            ValueType::U8 => V::U8(self.array::<1>("u8")?[0]),
            ValueType::I8 => V::I8(self.array::<1>("i8")?[0] as i8),
            ValueType::U16 => V::U16(u16::from_le_bytes(self.array("u16")?)),
            ValueType::I16 => V::I16(i16::from_le_bytes(self.array("i16")?)),
            ValueType::U32 => V::U32(self.u32("u32")?),
            ValueType::I32 => V::I32(i32::from_le_bytes(self.array("i32")?)),
            ValueType::F32 => V::F32(f32::from_le_bytes(self.array("f32")?)),
            ValueType::Bool => V::Bool(self.bool()?),
            ValueType::String => V::String(self.string("string")?),
            ValueType::U64 => V::U64(self.u64("u64")?),
            ValueType::I64 => V::I64(i64::from_le_bytes(self.array("i64")?)),
            ValueType::F64 => V::F64(f64::from_le_bytes(self.array("f64")?)),
            ValueType::Array => V::Array(self.array_value(depth + 1)?),
        })
    }

    fn array_value(&mut self, depth: usize) -> Res<ArrayValue> {
        if depth > MAX_ARRAY_DEPTH {
            return self.err(FormatError::ArrayTooDeep(MAX_ARRAY_DEPTH));
        }
        let ty = self.value_type()?;
        let n = self.count("array length", ty.min_encoded_size())?;
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let bytes = self.take(n * std::mem::size_of::<$t>(), "array data")?;
                ArrayValue::$variant(
                    bytes
                        .chunks_exact(std::mem::size_of::<$t>())
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
                        .collect(),
                )
            }};
        }
        Ok(match ty {
            ValueType::U8 => ArrayValue::U8(self.take(n, "array data")?.to_vec()),
            ValueType::I8 => fixed!(I8, i8),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::Bool => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.bool()?);
                }
                ArrayValue::Bool(v)
            }
            ValueType::String => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.string("string")?);
                }
                ArrayValue::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array_value(depth + 1)?);
                }
                ArrayValue::Array(v)
            }
        })
    }
}

pub(crate) fn pad_to(x: u64, alignment: u64) -> u64 {
    x.div_ceil(alignment) * alignment
}

impl GgufHeader {
    /// Parse and validate the header of a GGUF file held in `bytes` (the whole file), including
    /// the check that every tensor's data lies inside `bytes`. Errors carry the byte offset.
    pub fn parse(bytes: &[u8]) -> Result<Self, (u64, FormatError)> {
        let mut c = Cursor { buf: bytes, pos: 0 };
        let magic: [u8; 4] = c.array("magic")?;
        if &magic != GGUF_MAGIC {
            return Err((0, FormatError::BadMagic(magic)));
        }
        let version = c.u32("version")?;
        if version != GGUF_VERSION {
            return Err((4, FormatError::UnsupportedVersion(version)));
        }
        // Each tensor info takes at least 8 (name) + 4 (n_dims) + 4 (type) + 8 (offset) bytes,
        // each key-value at least 8 (key) + 4 (type) + 1 bytes.
        let n_tensors = c.count("tensor count", 24)?;
        let n_kv = c.count("metadata key-value count", 13)?;

        let mut metadata = Metadata::new();
        let mut keys = HashSet::with_capacity(n_kv);
        for _ in 0..n_kv {
            let key_pos = c.pos as u64;
            let key = c.string("metadata key")?;
            if !keys.insert(key.clone()) {
                return Err((key_pos, FormatError::DuplicateKey(key)));
            }
            let ty = c.value_type()?;
            let value = c.value(ty, 0)?;
            metadata.push_unchecked(key, value);
        }

        let alignment = match metadata.get(KEY_ALIGNMENT) {
            None => DEFAULT_ALIGNMENT,
            Some(MetadataValue::U32(a)) if *a != 0 && a.is_power_of_two() => u64::from(*a),
            Some(MetadataValue::U32(a)) => {
                return Err((0, FormatError::BadAlignment(u64::from(*a))))
            }
            Some(other) => {
                return Err((
                    0,
                    FormatError::WrongKeyType {
                        key: KEY_ALIGNMENT.into(),
                        expected: "UINT32",
                        found: other.value_type().to_string(),
                    },
                ))
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors);
        let mut names = HashSet::with_capacity(n_tensors);
        let mut expected_offset = 0u64;
        for _ in 0..n_tensors {
            let info_pos = c.pos as u64;
            let name = c.string("tensor name")?;
            if name.len() >= MAX_NAME_LEN {
                let len = name.len();
                return Err((info_pos, FormatError::NameTooLong { name, len }));
            }
            if !names.insert(name.clone()) {
                return Err((info_pos, FormatError::DuplicateTensor(name)));
            }
            let n_dims = c.u32("tensor n_dims")?;
            if n_dims as usize > MAX_DIMS {
                return Err((info_pos, FormatError::TooManyDims { name, n_dims }));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for dim in 0..n_dims as usize {
                let v = c.u64("tensor dimension")?;
                // ggml stores dims as int64: zero and values above i64::MAX are invalid.
                if v == 0 || v > i64::MAX as u64 {
                    return Err((
                        info_pos,
                        FormatError::BadDim {
                            name,
                            dim,
                            value: v,
                        },
                    ));
                }
                dims.push(v);
            }
            let type_pos = c.pos as u64;
            let type_id = c.u32("tensor type")?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
                (
                    type_pos,
                    FormatError::UnknownTensorType {
                        name: name.clone(),
                        id: type_id,
                    },
                )
            })?;
            let offset_pos = c.pos as u64;
            let offset = c.u64("tensor offset")?;

            let row = dims.first().copied().unwrap_or(1);
            if row % ggml_type.block_size() != 0 {
                return Err((
                    info_pos,
                    FormatError::RowNotBlockAligned {
                        name,
                        row,
                        ty: ggml_type.to_string(),
                        block: ggml_type.block_size(),
                    },
                ));
            }
            let n_bytes = dims
                .iter()
                .skip(1)
                .try_fold(ggml_type.row_bytes(row).unwrap_or(0), |acc, &d| {
                    acc.checked_mul(d)
                })
                .filter(|&n| n <= i64::MAX as u64);
            let Some(n_bytes) = n_bytes else {
                return Err((info_pos, FormatError::SizeOverflow { name }));
            };
            if offset != expected_offset {
                return Err((
                    offset_pos,
                    FormatError::BadTensorOffset {
                        name,
                        expected: expected_offset,
                        found: offset,
                    },
                ));
            }
            expected_offset = match offset.checked_add(pad_to(n_bytes, alignment)) {
                Some(v) => v,
                None => return Err((info_pos, FormatError::SizeOverflow { name })),
            };
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }

        let data_offset = pad_to(c.pos as u64, alignment);
        // The last tensor need not be followed by padding; require only its bytes.
        let data_len = tensors.last().map_or(0, |t| t.offset + t.n_bytes());
        let file_len = bytes.len() as u64;
        if tensors.is_empty() {
            // A file with no tensors may end right after the header.
        } else if data_offset
            .checked_add(data_len)
            .is_none_or(|end| end > file_len)
        {
            return Err((
                data_offset.min(file_len),
                FormatError::DataOutOfBounds {
                    needed: data_len,
                    data_offset,
                    file_len,
                },
            ));
        }

        Ok(GgufHeader {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A GGUF file mapped into memory. Tensor data is borrowed straight from the map.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    pub header: GgufHeader,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only; as with every mmap reader (llama.cpp included), a
        // concurrent truncation of the file by another process is outside our control.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header = GgufHeader::parse(&mmap).map_err(|(offset, error)| GgufError::Format {
            path: path.clone(),
            offset,
            error,
        })?;
        Ok(Self { path, mmap, header })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensor(name)
    }

    /// The raw bytes of a tensor, borrowed from the mmap (bounds were checked when parsing).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.header.data_offset + info.offset) as usize;
        &self.mmap[start..start + info.n_bytes() as usize]
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    /// Tells the kernel that the whole pages inside `range` of the file will not be read soon,
    /// so they stop counting in this process's resident memory (a reader that copied them,
    /// repacked, no longer needs them). Later reads still see the file's bytes: the map is
    /// read-only and file-backed, so the pages come back from the page cache. A hint: errors
    /// are ignored.
    pub fn release_pages(&self, range: std::ops::Range<usize>) {
        let page = 4096;
        let start = range.start.next_multiple_of(page);
        let end = range.end.min(self.mmap.len()) / page * page;
        if end > start {
            // SAFETY: on a read-only, file-backed map MADV_DONTNEED only drops clean pages,
            // which later accesses fault in again from the file: no byte the slices borrowed
            // from this map show ever changes.
            let _ = unsafe {
                self.mmap.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }

    /// An error about this file's contents that is not a byte-level format error
    /// (a missing key, a wrong shape).
    pub fn invalid(&self, message: impl Into<String>) -> GgufError {
        GgufError::Invalid {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.header.metadata.get(key)
    }

    /// A required string key.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.get(key) {
            Some(MetadataValue::String(s)) => Ok(s),
            Some(v) => Err(self.invalid(format!(
                "metadata key {key:?} has type {}, expected STRING",
                v.value_type()
            ))),
            None => Err(self.invalid(format!("missing metadata key {key:?}"))),
        }
    }
}
