//! Alignment: supervised fine-tuning and DPO on chat data (issue 7).

pub mod config;
pub mod data;
pub mod run;

pub use config::AlignConfig;
pub use run::{run, AlignSummary, Stage};
