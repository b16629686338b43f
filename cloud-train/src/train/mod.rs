//! Training: one step's loss and gradients (with the memory savers), optimizers and loops.

pub mod cross_entropy;
pub mod step;

pub use step::{loss_and_grads, Batch, LossGrads, MemoryPlan, IGNORE};
