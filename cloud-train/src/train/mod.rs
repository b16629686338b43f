//! Training: one step's loss and gradients (with the memory savers), optimizers and loops.

pub mod cross_entropy;
pub mod dpo;
pub mod optim;
pub mod schedule;
pub mod step;

pub use optim::{AdamW, AdamWSettings};
pub use schedule::{Decay, Schedule};
pub use step::{
    loss_and_grads, loss_and_grads_weighted, position_nll, Batch, LossGrads, MemoryPlan, IGNORE,
};
