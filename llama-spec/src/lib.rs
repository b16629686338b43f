//! Shared Llama definitions used by the trainer, the quantizer and the edge runtime,
//! so that they can never disagree about a tensor name, a metadata key or a block layout.
//!
//! - [`config`]: [`LlamaConfig`] from HF `config.json`, validated, round-tripped to GGUF metadata.
//! - [`names`]: the one HF <-> GGUF tensor-name map and the Q/K RoPE permutation.
//! - [`gguf`]: a strict, mmap-based GGUF v3 reader and a streaming, atomic writer.
//! - [`hf`]: HF checkpoint directories (safetensors shards, index, config, tokenizer files).
//! - [`quant`]: ggml block formats with dequantization and bit-exact reference quantization.
//! - [`tokenizer`]: a `tokenizers` tokenizer from `tokenizer.json` or from GGUF metadata.
//! - [`chat`]: Jinja chat templates rendered like HF `apply_chat_template`.
//! - [`atomic`]: write-to-temp, fsync, rename.

pub mod atomic;
pub mod chat;
pub mod config;
pub mod gguf;
pub mod hf;
pub mod names;
pub mod quant;
pub mod tokenizer;

pub use config::LlamaConfig;
pub use gguf::{GgmlType, GgufFile, GgufWriter, MetadataValue};
