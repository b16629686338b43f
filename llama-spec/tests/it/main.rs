//! The integration tests of `llama-spec`, one module per area, in one test binary: each test
//! binary links every dependency again, and CI builds them all from a cold cache.

#[path = "../common/mod.rs"]
mod common;

mod chat;
mod gguf;
mod gguf_adversarial;
mod sentencepiece;
mod tokenizer;
mod vocab_vectors;
