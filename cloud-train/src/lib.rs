//! cloud-train: the burn-based continual pre-training, SFT and DPO trainer.
//!
//! The model core: [`model::Llama`] (Llama-3 in burn, matching HF transformers),
//! [`checkpoint`] (HF checkpoints in and out), [`train::loss_and_grads`] (one batch's loss and
//! gradients with the memory savers burn lacks) and [`score`]. `cpt` (issue 6), `sft`/`dpo` (issue 7), the
//! sweep and frontier (issue 8), the evaluation harness (issue 9) and multi-node training
//! (issue 11) build on it.

pub mod align;
pub mod alloc;
pub mod checkpoint;
pub mod cpt;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod eval;
pub mod model;
pub mod pipeline;
pub mod plot;
pub mod score;
pub mod sweep;
pub mod train;

pub use error::CheckpointError;
pub use model::Llama;
