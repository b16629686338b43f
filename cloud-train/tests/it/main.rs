//! The integration tests of `cloud-train`, one module per area, in one test binary: each test
//! binary links every dependency again, and CI builds them all from a cold cache.

#[path = "../common/mod.rs"]
mod common;

mod align;
mod align_data;
mod align_parity;
mod checkpoint;
mod cli;
mod cpt;
mod data;
mod distributed;
mod eval;
mod hf_parity;
mod optim_parity;
mod pipeline;
mod sweep;
mod tiny_lr;
