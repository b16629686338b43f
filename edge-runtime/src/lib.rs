//! edge-runtime: embeddable CPU inference for Llama models in GGUF files.
//!
//! The model file is memory-mapped (weights are never copied), the tokenizer and chat template
//! are rebuilt from the file's metadata, and matrix products run on the quantized blocks with
//! SIMD kernels chosen at run time. A [`Model`] is `Send + Sync` and can be shared by many
//! [`Session`]s; each session owns its KV cache, scratch buffers and thread pool.
//!
//! ```no_run
//! use std::sync::Arc;
//! use edge_runtime::{GenerateOptions, Message, Model, LoadOptions, Session, SessionOptions};
//!
//! let model = Arc::new(Model::load("assets/SmolLM2-135M-Instruct.Q4_1.gguf", LoadOptions::default())?);
//! let mut session = Session::new(model, SessionOptions { n_threads: 2, ..Default::default() })?;
//! let mut history = vec![Message::user("I feel lonely today. Can you talk with me?")];
//! let mut reply = String::new();
//! for piece in session.chat(&history, GenerateOptions::default())? {
//!     let piece = piece?;
//!     print!("{}", piece.text); // streamed, never half a UTF-8 character
//!     reply.push_str(&piece.text);
//! }
//! // The next turn only prefills the new tokens: the session's KV cache holds the rest.
//! history.push(Message::assistant(reply));
//! history.push(Message::user("Thank you."));
//! let answer = session.chat(&history, GenerateOptions::default())?.text()?;
//! # Ok::<(), edge_runtime::Error>(())
//! ```
//!
//! Context limit: a session holds `n_ctx` tokens. A prompt that does not fit is an
//! [`Error::ContextFull`]; a generation that fills the cache ends with
//! [`FinishReason::ContextFull`]. Nothing slides silently: the app decides what to drop.

mod batch;
mod error;
pub mod ffi;
mod forward;
pub mod kernels;
mod model;
mod perplexity;
pub mod persona;
mod sampler;
mod session;
mod speculative;
mod text;

pub use batch::{BatchDecoder, BatchEvent, BatchOptions, RequestId};
pub use error::{Error, Result};
pub use llama_spec::chat::Message;
pub use model::{LoadOptions, MatmulBytes, Model};
pub use perplexity::{perplexity, Perplexity};
pub use sampler::{argmax, Sampler, SamplerConfig};
pub use session::{
    CancelToken, FinishReason, GenerateOptions, Generation, GenerationStats, Piece, Session,
    SessionOptions,
};
pub use speculative::Speculation;
