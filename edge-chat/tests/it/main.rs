//! The integration tests of `edge-chat`, one module per area, in one test binary: each test
//! binary links every dependency again, and CI builds them all from a cold cache.

mod props;
mod render;
mod tmux;
