//! Why a training run stopped: each error names the file, corpus or step and the cause.

use std::path::{Path, PathBuf};

use super::config::{ConfigError, Invalid};
use crate::data::DataError;
use crate::dist::{CommError, DistError};
use crate::CheckpointError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A config value that only fails once the run starts (a missing `[model]` source).
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    ModelConfig(#[from] llama_spec::config::ConfigError),
    #[error(transparent)]
    Tokenizer(#[from] llama_spec::tokenizer::TokenizerError),
    #[error(transparent)]
    ChatTemplate(#[from] llama_spec::chat::ChatTemplateError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error(transparent)]
    Dist(#[from] DistError),
    /// A checkpoint (or run directory) that this run cannot continue from.
    #[error("{}: {message}", path.display())]
    Resume { path: PathBuf, message: String },
    /// Training data that the model cannot train on.
    #[error("{source_name}: {message}")]
    Input {
        source_name: String,
        message: String,
    },
    /// A run whose memory plan does not fit the device.
    #[error("the run does not fit in memory: {message}\n{table}\nlower mbs, or raise zero_stage or the number of ranks (see `cloud-train plan`); `--set train.memory_check=false` starts anyway")]
    DoesNotFit { message: String, table: String },
    #[error(
        "step {step}: {what}: training diverged (lower lr, or check the data); the last checkpoint is {}",
        last_checkpoint.as_ref().map_or("none".to_string(), |p| p.display().to_string())
    )]
    Diverged {
        step: u64,
        what: String,
        last_checkpoint: Option<PathBuf>,
    },
}

impl TrainError {
    /// For `map_err`: an I/O error on `path`.
    pub fn io(path: impl AsRef<Path>) -> impl Fn(std::io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        move |source| TrainError::Io {
            path: path.clone(),
            source,
        }
    }

    pub fn resume(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        TrainError::Resume {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    pub fn input(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        TrainError::Input {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}
