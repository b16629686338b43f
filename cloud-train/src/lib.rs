//! cloud-train: continual pre-training, SFT and DPO of Llama-3 models on burn, from one
//! GPU laptop to a cluster.
//!
//! - [`model`]: Llama-3 in burn, matching HF transformers; [`checkpoint`]: HF checkpoints in
//!   and out.
//! - [`train`]: the run harness every objective plugs into (config sections, trainer state,
//!   the step loop), one batch's loss and gradients with the memory savers, AdamW, the
//!   schedule.
//! - [`cpt`], [`align`]: the objectives (CPT on an ALMR mixture; SFT and DPO on chat data).
//! - [`data`]: corpora to token shards, and the mixer; [`dist`]: ranks, collectives, ZeRO.
//! - [`sweep`]: the (ALMR, LR) grid and the paper's frontiers; [`eval`]: checkpoints scored by
//!   `llm-eval`; [`pipeline`]: GGUF to trained, quantized chatbot in one run; [`plot`],
//!   [`score`].

pub mod align;
pub mod alloc;
pub mod budget;
pub mod checkpoint;
pub mod cpt;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod eval;
pub mod eval_chart;
pub mod model;
pub mod pipeline;
pub mod plot;
pub mod score;
pub mod sweep;
pub mod train;

pub use error::CheckpointError;
pub use model::Llama;
