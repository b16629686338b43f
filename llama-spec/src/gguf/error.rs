use std::path::PathBuf;

/// What is wrong with a GGUF file's bytes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormatError {
    #[error("bad magic {0:02x?}, expected \"GGUF\"")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (only v3 is supported; v1/v2 files must be converted)")]
    UnsupportedVersion(u32),
    #[error("unexpected end of file: {what} needs {needed} bytes, {available} remain")]
    Truncated {
        what: &'static str,
        needed: u64,
        available: u64,
    },
    #[error("{what} count {count} cannot fit in the {available} bytes that remain")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        available: u64,
    },
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("unknown metadata value type {0}")]
    UnknownValueType(u32),
    #[error("nested arrays deeper than {0} levels")]
    ArrayTooDeep(usize),
    #[error("duplicate metadata key {0:?}")]
    DuplicateKey(String),
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongKeyType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("general.alignment {0} is not a non-zero power of two")]
    BadAlignment(u64),
    #[error("tensor {name:?}: name is {len} bytes, the limit is 63")]
    NameTooLong { name: String, len: usize },
    #[error("duplicate tensor name {0:?}")]
    DuplicateTensor(String),
    #[error("tensor {name:?}: {n_dims} dimensions, at most 4 are allowed")]
    TooManyDims { name: String, n_dims: u32 },
    #[error("tensor {name:?}: dimension {dim} is {value}")]
    BadDim {
        name: String,
        dim: usize,
        value: u64,
    },
    #[error("tensor {name:?}: unknown ggml type {id}")]
    UnknownTensorType { name: String, id: u32 },
    #[error(
        "tensor {name:?}: row of {row} elements is not a multiple of the {ty} block size {block}"
    )]
    RowNotBlockAligned {
        name: String,
        row: u64,
        ty: String,
        block: u64,
    },
    #[error("tensor {name:?}: element count overflows")]
    SizeOverflow { name: String },
    #[error("tensor {name:?}: data offset {found}, expected {expected} (offsets must be the running padded sum)")]
    BadTensorOffset {
        name: String,
        expected: u64,
        found: u64,
    },
    #[error("tensor data needs {needed} bytes from offset {data_offset}, the file has {file_len}")]
    DataOutOfBounds {
        needed: u64,
        data_offset: u64,
        file_len: u64,
    },
}

/// An error reading or writing a GGUF file: always names the file, and for format errors
/// the byte offset at which the problem was found.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: at byte offset {offset}: {error}")]
    Format {
        path: PathBuf,
        offset: u64,
        #[source]
        error: FormatError,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl GgufError {
    /// The format error, if this is one (handy in tests and for callers that branch on it).
    pub fn format_error(&self) -> Option<&FormatError> {
        match self {
            GgufError::Format { error, .. } => Some(error),
            _ => None,
        }
    }
}
