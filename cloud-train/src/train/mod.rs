//! Training: the run harness every objective plugs into (config sections, trainer state and
//! checkpoints, the step loop), one batch's loss and gradients with the memory savers, the
//! optimizer, the schedule and the DPO loss.

pub mod config;
pub mod cross_entropy;
pub mod dpo;
pub mod error;
pub mod harness;
pub mod optim;
pub mod schedule;
pub mod source;
pub mod state;
pub mod step;

pub use config::{RunConfig, RunSections};
pub use error::TrainError;
pub use harness::{Event, Metrics, Objective, RunSummary, StepContext, StepOutcome, TrainResult};
pub use state::Resume;

pub use optim::{AdamW, AdamWSettings};
pub use schedule::{Decay, Schedule};
pub use source::{Local, ParamSource};
pub use step::{
    loss_and_grads, loss_and_grads_weighted, loss_into, loss_into_weighted, position_nll,
    position_nll_from, Batch, FullGrads, GradSink, LossGrads, MemoryPlan, PassLoss, IGNORE,
};
