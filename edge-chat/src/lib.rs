//! edge-chat: a terminal chat app (ratatui) on edge-runtime, for the emotional-support
//! chatbot. The pieces are a library so that tests drive them without a terminal:
//! [`app::App`] (state + one update function), [`ui::draw`], [`worker`] (the inference
//! thread), [`editor`], [`wrap`] (display-width wrapping for CJK and emoji), [`persona`],
//! [`store`] (saved sessions).

pub mod app;
pub mod editor;
pub use edge_runtime::persona;
pub mod store;
pub mod ui;
pub mod worker;
pub mod wrap;
