//! Streaming GGUF v3 writer: header and tensor infos first, then each tensor's data in order,
//! padded to the alignment. Tensor data is passed in as it is produced (in any chunk sizes), so
//! a whole model never has to be in memory. The file is written atomically.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::GgufError;
use super::reader::pad_to;
use super::types::{ArrayValue, GgmlType, Metadata, MetadataValue, TensorInfo};
use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, KEY_ALIGNMENT, MAX_DIMS, MAX_NAME_LEN};
use crate::atomic::AtomicFile;

/// A tensor to be written: name, ggml-order dims and type. Offsets are computed by the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
}

impl From<&TensorInfo> for TensorSpec {
    fn from(t: &TensorInfo) -> Self {
        Self {
            name: t.name.clone(),
            dims: t.dims.clone(),
            ggml_type: t.ggml_type,
        }
    }
}

pub struct GgufWriter {
    path: PathBuf,
    out: AtomicFile,
    alignment: u64,
    tensors: Vec<TensorInfo>,
    /// Index of the tensor being written and how many of its bytes were written.
    current: usize,
    current_written: u64,
}

fn write_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn write_array(buf: &mut Vec<u8>, a: &ArrayValue) {
    buf.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
    buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! fixed {
        ($v:expr) => {
            for x in $v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        ArrayValue::U8(v) => buf.extend_from_slice(v),
        ArrayValue::I8(v) => fixed!(v),
        ArrayValue::U16(v) => fixed!(v),
        ArrayValue::I16(v) => fixed!(v),
        ArrayValue::U32(v) => fixed!(v),
        ArrayValue::I32(v) => fixed!(v),
        ArrayValue::F32(v) => fixed!(v),
        ArrayValue::U64(v) => fixed!(v),
        ArrayValue::I64(v) => fixed!(v),
        ArrayValue::F64(v) => fixed!(v),
        ArrayValue::Bool(v) => buf.extend(v.iter().map(|&b| u8::from(b))),
        ArrayValue::String(v) => v.iter().for_each(|s| write_string(buf, s)),
        ArrayValue::Array(v) => v.iter().for_each(|a| write_array(buf, a)),
    }
}

fn write_value(buf: &mut Vec<u8>, v: &MetadataValue) {
    use MetadataValue as V;
    match v {
        V::U8(x) => buf.push(*x),
        V::I8(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::Bool(x) => buf.push(u8::from(*x)),
        V::String(s) => write_string(buf, s),
        V::Array(a) => write_array(buf, a),
        V::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        V::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
    }
}

/// The alignment that `metadata` asks for, validated.
fn alignment_of(metadata: &Metadata) -> Result<u64, String> {
    match metadata.get(KEY_ALIGNMENT) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(MetadataValue::U32(a)) if *a != 0 && a.is_power_of_two() => Ok(u64::from(*a)),
        Some(v) => Err(format!(
            "{KEY_ALIGNMENT} must be a UINT32 power of two, got {v:?}"
        )),
    }
}

/// Lay out tensors (offsets as the running padded sum) and serialize the header, padding
/// included. Returns the bytes and the tensor infos.
pub fn serialize_header(
    metadata: &Metadata,
    specs: &[TensorSpec],
) -> Result<(Vec<u8>, Vec<TensorInfo>), String> {
    let alignment = alignment_of(metadata)?;
    let mut tensors = Vec::with_capacity(specs.len());
    let mut offset = 0u64;
    let mut names = std::collections::HashSet::new();
    for s in specs {
        if s.name.len() >= MAX_NAME_LEN {
            return Err(format!("tensor name {:?} is longer than 63 bytes", s.name));
        }
        if !names.insert(s.name.as_str()) {
            return Err(format!("duplicate tensor name {:?}", s.name));
        }
        if s.dims.is_empty() || s.dims.len() > MAX_DIMS || s.dims.contains(&0) {
            return Err(format!("tensor {:?}: bad dims {:?}", s.name, s.dims));
        }
        let info = TensorInfo {
            name: s.name.clone(),
            dims: s.dims.clone(),
            ggml_type: s.ggml_type,
            offset,
        };
        if s.ggml_type.row_bytes(s.dims[0]).is_none() {
            return Err(format!(
                "tensor {:?}: row of {} is not a multiple of the {} block size {}",
                s.name,
                s.dims[0],
                s.ggml_type,
                s.ggml_type.block_size()
            ));
        }
        offset += pad_to(info.n_bytes(), alignment);
        tensors.push(info);
    }

    let mut buf = Vec::new();
    buf.extend_from_slice(GGUF_MAGIC);
    buf.extend_from_slice(&GGUF_VERSION.to_le_bytes());
    buf.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    buf.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata.iter() {
        write_string(&mut buf, k);
        buf.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
        write_value(&mut buf, v);
    }
    for t in &tensors {
        write_string(&mut buf, &t.name);
        buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            buf.extend_from_slice(&d.to_le_bytes());
        }
        buf.extend_from_slice(&t.ggml_type.id().to_le_bytes());
        buf.extend_from_slice(&t.offset.to_le_bytes());
    }
    let padded = pad_to(buf.len() as u64, alignment) as usize;
    buf.resize(padded, 0);
    Ok((buf, tensors))
}

impl GgufWriter {
    /// Start writing `path` (atomically: nothing appears under `path` until [`finish`]).
    ///
    /// [`finish`]: GgufWriter::finish
    pub fn create(
        path: impl AsRef<Path>,
        metadata: &Metadata,
        specs: &[TensorSpec],
    ) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let (header, tensors) =
            serialize_header(metadata, specs).map_err(|message| GgufError::Invalid {
                path: path.clone(),
                message,
            })?;
        let alignment = alignment_of(metadata).unwrap_or(DEFAULT_ALIGNMENT);
        let mut out = AtomicFile::create(&path).map_err(|source| GgufError::Io {
            path: path.clone(),
            source,
        })?;
        out.write_all(&header).map_err(|source| GgufError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            out,
            alignment,
            tensors,
            current: 0,
            current_written: 0,
        })
    }

    /// The laid-out tensors, with their offsets.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    fn io(&self, source: std::io::Error) -> GgufError {
        GgufError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Append bytes of the current tensor's data. A chunk may not cross into the next tensor.
    /// When a tensor is complete, its padding is written and the next one begins.
    pub fn write_data(&mut self, chunk: &[u8]) -> Result<(), GgufError> {
        let Some(info) = self.tensors.get(self.current) else {
            return Err(GgufError::Invalid {
                path: self.path.clone(),
                message: format!("{} bytes written after the last tensor", chunk.len()),
            });
        };
        let need = info.n_bytes() - self.current_written;
        if chunk.len() as u64 > need {
            return Err(GgufError::Invalid {
                path: self.path.clone(),
                message: format!(
                    "tensor {:?}: {} bytes given, only {need} remain of its {} bytes",
                    info.name,
                    chunk.len(),
                    info.n_bytes()
                ),
            });
        }
        let n_bytes = info.n_bytes();
        self.out.write_all(chunk).map_err(|e| self.io(e))?;
        self.current_written += chunk.len() as u64;
        if self.current_written == n_bytes {
            let pad = pad_to(n_bytes, self.alignment) - n_bytes;
            self.out
                .write_all(&vec![0u8; pad as usize])
                .map_err(|e| self.io(e))?;
            self.current += 1;
            self.current_written = 0;
        }
        Ok(())
    }

    /// Check every tensor was written in full, then fsync and rename into place.
    pub fn finish(self) -> Result<(), GgufError> {
        if self.current != self.tensors.len() {
            let t = &self.tensors[self.current];
            return Err(GgufError::Invalid {
                path: self.path.clone(),
                message: format!(
                    "tensor {:?} has {} of {} bytes; {} tensors unwritten",
                    t.name,
                    self.current_written,
                    t.n_bytes(),
                    self.tensors.len() - self.current
                ),
            });
        }
        let path = self.path.clone();
        self.out
            .commit()
            .map_err(|source| GgufError::Io { path, source })
    }
}
