//! The integration tests of `edge-serve`, one module per area, in one test binary: each test
//! binary links every dependency again, and CI builds them all from a cold cache.

#[path = "../common/mod.rs"]
mod common;

mod clients;
mod server;
