//! The safetensors format (an 8-byte little-endian header length, a JSON header, then the raw
//! tensor bytes), read through mmap and written atomically. Only what HF Llama checkpoints use:
//! F32, F16 and BF16 tensors.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::atomic::AtomicFile;
use memmap2::Mmap;

use super::HfError as CheckpointError;

/// Element types of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "F32" | "FLOAT32" => Some(Dtype::F32),
            "F16" | "FLOAT16" => Some(Dtype::F16),
            "BF16" | "BFLOAT16" => Some(Dtype::BF16),
            _ => None,
        }
    }

    /// Decode little-endian values of this type into f32.
    pub fn to_f32(self, bytes: &[u8], out: &mut Vec<f32>) {
        out.clear();
        out.reserve(bytes.len() / self.size());
        match self {
            Dtype::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            Dtype::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
            Dtype::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            ),
        }
    }

    /// Encode f32 values as little-endian values of this type (round to nearest even).
    pub fn from_f32(self, values: &[f32], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(values.len() * self.size());
        match self {
            Dtype::F32 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            Dtype::F16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
            Dtype::BF16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes())),
        }
    }
}

/// One tensor's entry in a safetensors header.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range inside the data section.
    pub start: usize,
    pub end: usize,
}

/// An mmap'd safetensors file with a validated header.
pub struct SafetensorsFile {
    path: PathBuf,
    map: Mmap,
    data_start: usize,
    pub tensors: BTreeMap<String, TensorEntry>,
}

/// Headers larger than this are rejected before allocating (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

impl SafetensorsFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref().to_path_buf();
        let bad = |message: String| CheckpointError::Format {
            path: path.clone(),
            message,
        };
        let file = File::open(&path).map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
        // SAFETY: the map is read-only; a checkpoint modified while mapped is the user's
        // problem, as with every mmap-based loader (safetensors, llama.cpp).
        let map = unsafe { Mmap::map(&file) }.map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
        if map.len() < 8 {
            return Err(bad(format!(
                "{} bytes: too short for a safetensors header",
                map.len()
            )));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&map[..8]);
        let header_len = u64::from_le_bytes(len8);
        if header_len > MAX_HEADER || header_len + 8 > map.len() as u64 {
            return Err(bad(format!(
                "header length {header_len} does not fit in the {}-byte file (truncated?)",
                map.len()
            )));
        }
        let data_start = 8 + header_len as usize;
        let header: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&map[8..data_start])
                .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
        let data_len = map.len() - data_start;
        let mut tensors = BTreeMap::new();
        for (name, v) in header {
            if name == "__metadata__" {
                continue;
            }
            let entry = parse_entry(&v).map_err(|m| bad(format!("tensor {name}: {m}")))?;
            if entry.end > data_len {
                return Err(bad(format!(
                    "tensor {name} ends at byte {} of a {data_len}-byte data section (truncated?)",
                    entry.end
                )));
            }
            tensors.insert(name, entry);
        }
        Ok(Self {
            path,
            map,
            data_start,
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw little-endian bytes of a tensor.
    pub fn bytes(&self, entry: &TensorEntry) -> &[u8] {
        &self.map[self.data_start + entry.start..self.data_start + entry.end]
    }

    /// Drop a tensor's pages from this process's memory once it has been read, so that
    /// streaming through a checkpoint larger than RAM keeps the resident set at about one
    /// tensor. Later reads fault the pages back in from the file.
    pub fn release(&self, entry: &TensorEntry) {
        self.release_part(entry, 0..entry.end - entry.start);
    }

    /// [`release`](Self::release) for the bytes `part` of a tensor only (rows done with,
    /// while the rest is still read).
    pub fn release_part(&self, entry: &TensorEntry, part: std::ops::Range<usize>) {
        #[cfg(unix)]
        {
            const PAGE: usize = 4096;
            let start = (self.data_start + entry.start + part.start) / PAGE * PAGE;
            let end = (self.data_start + entry.start + part.end).min(self.map.len());
            if end > start {
                // SAFETY: the map is a read-only, shared mapping of a file: MADV_DONTNEED only
                // drops cached pages, and any later access reads the same bytes from the file
                // again, so no reference into the map observes a change.
                let _ = unsafe {
                    self.map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
            }
        }
    }
}

fn parse_entry(v: &serde_json::Value) -> Result<TensorEntry, String> {
    let dtype_name = v.get("dtype").and_then(|d| d.as_str()).ok_or("no dtype")?;
    let dtype = Dtype::parse(dtype_name)
        .ok_or_else(|| format!("dtype {dtype_name} is not supported (F32, F16, BF16)"))?;
    let shape = v
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or("no shape")?
        .iter()
        .map(|d| {
            d.as_u64()
                .map(|d| d as usize)
                .ok_or("shape is not integers")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let offs = v
        .get("data_offsets")
        .and_then(|s| s.as_array())
        .filter(|a| a.len() == 2)
        .ok_or("no data_offsets [start, end]")?;
    let (start, end) = match (offs[0].as_u64(), offs[1].as_u64()) {
        (Some(s), Some(e)) if s <= e => (s as usize, e as usize),
        _ => return Err("data_offsets are not an increasing pair".into()),
    };
    let n: usize = shape.iter().product();
    if n.checked_mul(dtype.size()) != Some(end - start) {
        return Err(format!(
            "shape {shape:?} of {} needs {} bytes, data_offsets give {}",
            dtype.name(),
            n.saturating_mul(dtype.size()),
            end - start
        ));
    }
    Ok(TensorEntry {
        dtype,
        shape,
        start,
        end,
    })
}

/// Write one safetensors file atomically. `tensors` yields (name, shape, bytes already encoded
/// as `dtype`) in file order; `bytes` is produced lazily so only one tensor is in memory.
pub fn write<'a, I>(
    path: &Path,
    dtype: Dtype,
    names_shapes: &[(String, Vec<usize>)],
    mut tensor_bytes: I,
) -> Result<(), CheckpointError>
where
    I: FnMut(&str) -> Result<Vec<u8>, CheckpointError> + 'a,
{
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut offset = 0usize;
    for (name, shape) in names_shapes {
        let len = shape.iter().product::<usize>() * dtype.size();
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": dtype.name(),
                "shape": shape,
                "data_offsets": [offset, offset + len],
            }),
        );
        offset += len;
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| CheckpointError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
    while (8 + json.len()) % 8 != 0 {
        json.push(b' ');
    }
    let mut out = AtomicFile::create(path).map_err(io)?;
    out.write_all(&(json.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.write_all(&json).map_err(io)?;
    for (name, shape) in names_shapes {
        let bytes = tensor_bytes(name)?;
        let want = shape.iter().product::<usize>() * dtype.size();
        if bytes.len() != want {
            return Err(CheckpointError::Format {
                path: path.to_path_buf(),
                message: format!("tensor {name}: {} bytes, expected {want}", bytes.len()),
            });
        }
        out.write_all(&bytes).map_err(io)?;
    }
    out.commit().map_err(io)
}
