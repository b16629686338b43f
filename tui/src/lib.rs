//! edge-chat: the ratatui terminal chat app on top of edge-runtime.
//!
//! Not implemented yet: this crate only reserves its place in the workspace (issue 10).
