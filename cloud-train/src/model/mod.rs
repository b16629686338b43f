//! The Llama-3 model in burn.

pub mod init;
pub mod llama;
pub mod params;
pub mod rope;

pub use llama::{Block, Dims, Llama};
