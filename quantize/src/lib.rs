//! quantize: HF checkpoints to GGUF (F32 ... Q4_K_M) that llama.cpp loads, GGUF to GGUF
//! requantization, and GGUF back to an HF checkpoint for fine-tuning.
//!
//! - [`policy`]: which ggml type each tensor gets (llama-quantize's recipe).
//! - [`convert`]: HF directory -> GGUF.
//! - [`requantize`]: GGUF -> GGUF of another type.
//! - [`to_hf`]: GGUF -> HF directory.

pub mod convert;
pub mod error;
pub mod policy;
pub mod progress;
pub mod requantize;
pub mod stream;
pub mod to_hf;

pub use error::Error;
