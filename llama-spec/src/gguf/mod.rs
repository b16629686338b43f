//! GGUF v3: types, a strict mmap reader and a streaming atomic writer.

mod error;
mod reader;
mod types;
mod writer;

pub use error::{FormatError, GgufError};
pub use reader::{GgufFile, GgufHeader};
pub use types::{ArrayValue, GgmlType, Metadata, MetadataValue, TensorInfo, ValueType};
pub use writer::{serialize_header, GgufWriter, TensorSpec};

pub const GGUF_MAGIC: &[u8; 4] = b"GGUF";
pub const GGUF_VERSION: u32 = 3;
pub const DEFAULT_ALIGNMENT: u64 = 32;
pub const KEY_ALIGNMENT: &str = "general.alignment";
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: usize = 4;
/// ggml's GGML_MAX_NAME: names must be shorter than this (one byte is the C terminator).
pub const MAX_NAME_LEN: usize = 64;
