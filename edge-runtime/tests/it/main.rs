//! The integration tests of `edge-runtime`, one module per area, in one test binary: each test
//! binary links every dependency again, and CI builds them all from a cold cache.

#[path = "../common/mod.rs"]
mod common;

mod batch;
mod bench_cli;
mod c_abi;
mod kernels_vs_ggml;
mod llama_cpp;
mod session;
mod speculative;
