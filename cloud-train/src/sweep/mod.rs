//! The (ALMR, LR) grid of CPT runs, and the paper's two frontiers over it: the loss and the
//! averaged-metric surfaces, their optimal-ALMR lines and where the lines cross.

pub mod frontier;
pub mod grid;
pub mod report;

use std::path::{Path, PathBuf};

/// Why a sweep step failed.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::train::config::ConfigError),
    /// A grid that cannot be run or fitted.
    #[error("{0}")]
    Grid(String),
    /// A run directory, index or results file that is not as expected.
    #[error("{}: {message}", path.display())]
    Run { path: PathBuf, message: String },
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error(transparent)]
    Eval(#[from] llm_eval::EvalError),
}

impl SweepError {
    pub fn io(path: impl AsRef<Path>) -> impl Fn(std::io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        move |source| SweepError::Io {
            path: path.clone(),
            source,
        }
    }
}
