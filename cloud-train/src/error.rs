//! Errors of the trainer library: each names the file and what is wrong with it.

/// Checkpoint errors are those of the shared HF directory code.
pub use llama_spec::hf::HfError as CheckpointError;
