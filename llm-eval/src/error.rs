use std::path::PathBuf;

/// Errors of the harness: always naming the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Data { path: PathBuf, msg: String },
    #[error("model: {0}")]
    Model(String),
    #[error("unknown task {0:?} (known: {1})")]
    UnknownTask(String, String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, EvalError>;

impl EvalError {
    pub fn data(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Self::Data {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<edge_runtime::Error> for EvalError {
    fn from(e: edge_runtime::Error) -> Self {
        Self::Model(e.to_string())
    }
}
