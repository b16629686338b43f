//! `cloud-train cpt`: continual pre-training on an ALMR mixture (see `configs/cpt-*.toml`).

pub mod config;
pub mod run;
pub mod state;

pub use config::{CptConfig, Role};
pub use run::{run, Event, Resume, RunSummary, StepMetrics};
