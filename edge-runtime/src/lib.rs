//! edge-runtime: embeddable CPU inference for Llama GGUF models.
//!
//! Not implemented yet: this crate only reserves its place in the workspace (issue 3). It
//! depends on `llama-spec` for the GGUF reader, quant formats, tokenizer and chat template, and
//! never on burn.
