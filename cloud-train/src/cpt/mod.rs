//! `cloud-train cpt`: continual pre-training on an ALMR mixture (see `configs/cpt-*.toml`), as
//! an objective of the shared run harness (`train::harness`).

pub mod config;
pub mod objective;

pub use config::{CptConfig, Role};
pub use objective::{run, CptObjective, CptSummary};
