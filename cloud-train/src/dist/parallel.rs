//! The data-parallel optimizer step, the same code on every engine.

use std::cell::{Cell, RefCell, RefMut};
use std::path::Path;

use burn::optim::GradientsParams;
use burn::prelude::*;

use super::zero::{Layout, ShardGrads, ShardedAdamW, StepError};
use super::zero3::Gatherer;
use super::{Collective, CommError, DistError, Single, Stepped, Update};
use crate::error::CheckpointError;
use crate::model::params::IdParam;
use crate::model::Llama;
use crate::train::{AdamW, AdamWSettings, FullGrads, GradSink, Local, ParamSource};

/// Which collective engine a multi-rank run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// One process: no engine; several: NCCL on CUDA, MPI otherwise.
    #[default]
    Auto,
    Single,
    Mpi,
    Nccl,
}

/// How the AdamW state and the gradients are kept across ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroStage {
    /// Every rank holds the whole state and makes the same update.
    #[default]
    Replicated,
    /// ZeRO-1: each rank holds and updates 1/N of the state; parameters are all-gathered after.
    Sharded,
    /// ZeRO-2: ZeRO-1, and each rank keeps only its 1/N of the gradient, reduce-scattered
    /// layer by layer during the backward pass.
    ShardedGrads,
    /// ZeRO-3: ZeRO-2, and each rank keeps only its 1/N of the parameters; a pass all-gathers
    /// the root once and each decoder layer just before it runs (again in backward, where the
    /// layer is recomputed), and drops it after.
    ShardedParams,
}

impl ZeroStage {
    pub fn from_stage(stage: u8) -> Result<Self, DistError> {
        match stage {
            0 => Ok(ZeroStage::Replicated),
            1 => Ok(ZeroStage::Sharded),
            2 => Ok(ZeroStage::ShardedGrads),
            3 => Ok(ZeroStage::ShardedParams),
            s => Err(DistError::Unsupported(format!(
                "zero_stage = {s}: the stages are 0 (replicated AdamW), 1 (sharded AdamW state), 2 (sharded gradients too) and 3 (sharded parameters too)"
            ))),
        }
    }
}

/// The `[train]` settings of distributed runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DistSettings {
    pub collective: Engine,
    pub zero: ZeroStage,
    /// Seconds a rank waits in one collective call before it gives up (see `Watchdog`).
    pub collective_timeout_s: f64,
}

impl Default for DistSettings {
    fn default() -> Self {
        Self {
            collective: Engine::Auto,
            zero: ZeroStage::Replicated,
            collective_timeout_s: 600.0,
        }
    }
}

/// The optimizer, with the parameter layout it works on (one layout per run).
enum Optimizer {
    Replicated { adamw: AdamW, layout: Layout },
    Sharded(ShardedAdamW),
}

impl Optimizer {
    fn layout(&self) -> &Layout {
        match self {
            Optimizer::Replicated { layout, .. } => layout,
            Optimizer::Sharded(s) => &s.layout,
        }
    }
}

/// The step's gradient as the passes hand it over: whole (stages 0 and 1), or this rank's
/// parts (stages 2 and 3).
enum GradBuffer {
    Full(FullGrads),
    Shards(ShardGrads),
}

/// Elements of model state one rank holds: for memory reports and the ZeRO tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Parameter values kept between passes: the whole model, or (ZeRO-3) this rank's parts.
    pub params: usize,
    /// ZeRO-3: the most whole parameter values a pass held gathered at once (the root and one
    /// layer); 0 at other stages.
    pub gathered: usize,
    /// The most gradient values held at once between passes (at the optimizer step).
    pub grads_peak: usize,
    /// AdamW moments (and compensations).
    pub optimizer: usize,
}

impl Held {
    /// The state kept between passes: parameters, gradient, optimizer (without `gathered`,
    /// which does not depend on the number of ranks).
    pub fn total(&self) -> usize {
        self.params + self.grads_peak + self.optimizer
    }
}

/// A backward pass's [`GradSink`] into the step's buffer (see [`DataParallel::sink`]).
pub struct StepSink<'a> {
    comm: &'a dyn Collective,
    layout: &'a Layout,
    buffer: RefMut<'a, GradBuffer>,
    source: Source<'a>,
}

/// Where a pass of this run reads the parameters: the model, or (ZeRO-3) the ranks' parts.
pub struct Source<'a>(Option<Gatherer<'a>>);

impl ParamSource for Source<'_> {
    fn root<'m>(&self, model: &'m Llama) -> Result<std::borrow::Cow<'m, Llama>, CommError> {
        match &self.0 {
            Some(g) => g.root(model),
            None => Local.root(model),
        }
    }
    fn layer<'m>(
        &self,
        block: &'m crate::model::Block,
    ) -> Result<std::borrow::Cow<'m, crate::model::Block>, CommError> {
        match &self.0 {
            Some(g) => g.layer(block),
            None => Local.layer(block),
        }
    }
    fn layer_by_layer(&self) -> bool {
        self.0.is_some()
    }
}

impl GradSink for StepSink<'_> {
    fn take(
        &mut self,
        params: &[IdParam],
        grads: &mut GradientsParams,
        weight: f64,
    ) -> Result<(), CommError> {
        match &mut *self.buffer {
            GradBuffer::Full(full) => full.take(params, grads, weight),
            GradBuffer::Shards(shards) => {
                shards.take(self.comm, self.layout, params, grads, weight)
            }
        }
    }

    fn source(&self) -> &dyn ParamSource {
        &self.source
    }
}

/// The collective, the layout of the model's parameters, and the optimizer, replicated or
/// sharded. Each rank feeds it the gradients of its own slice of the global batch, summed
/// (not averaged) over its micro-batches with weight `1 / global micro-batches`; the sum over
/// ranks is then the gradient a single process computes for the whole batch.
pub struct DataParallel {
    comm: Box<dyn Collective>,
    opt: Optimizer,
    grads: RefCell<GradBuffer>,
    grads_peak: Cell<usize>,
    /// ZeRO-3: values of the root gathered for the current pass, and the most whole parameter
    /// values held at once.
    gathered_root: Cell<usize>,
    gathered_peak: Cell<usize>,
    zero: ZeroStage,
    device: Device,
}

impl DataParallel {
    /// Set up for `model` (after it is loaded: the layout holds its parameter ids).
    pub fn new(
        comm: Box<dyn Collective>,
        settings: AdamWSettings,
        zero: ZeroStage,
        model: &Llama,
        device: &Device,
    ) -> Self {
        let layout = Layout::new(model, &settings, comm.world());
        let grads = match zero {
            ZeroStage::ShardedGrads | ZeroStage::ShardedParams => {
                GradBuffer::Shards(ShardGrads::new(&layout))
            }
            _ => GradBuffer::Full(FullGrads::default()),
        };
        let opt = match zero {
            ZeroStage::Replicated => Optimizer::Replicated {
                adamw: AdamW::new(settings),
                layout,
            },
            ZeroStage::Sharded | ZeroStage::ShardedGrads | ZeroStage::ShardedParams => {
                Optimizer::Sharded(ShardedAdamW::new(settings, layout, comm.rank()))
            }
        };
        Self {
            comm,
            opt,
            grads: RefCell::new(grads),
            grads_peak: Cell::new(0),
            gathered_root: Cell::new(0),
            gathered_peak: Cell::new(0),
            zero,
            device: device.clone(),
        }
    }

    /// ZeRO-3 set up on `shell` (`checkpoint::shell` of `config`), each rank reading only its
    /// part of every parameter: `part(slot, range)` gives its values (from a checkpoint file,
    /// without the whole model ever loaded).
    pub fn with_parts<E>(
        comm: Box<dyn Collective>,
        settings: AdamWSettings,
        config: &llama_spec::LlamaConfig,
        shell: &Llama,
        device: &Device,
        part: impl FnMut(&super::zero::Slot, std::ops::Range<usize>) -> Result<Vec<f32>, E>,
    ) -> Result<Self, E> {
        let shapes = crate::checkpoint::hf_tensors(config).into_iter().collect();
        let layout = Layout::with_shapes(shell, &settings, comm.world(), &shapes);
        let mut opt = ShardedAdamW::new(settings, layout, comm.rank());
        opt.set_parts(part)?;
        Ok(Self {
            grads: RefCell::new(GradBuffer::Shards(ShardGrads::new(&opt.layout))),
            opt: Optimizer::Sharded(opt),
            comm,
            grads_peak: Cell::new(0),
            gathered_root: Cell::new(0),
            gathered_peak: Cell::new(0),
            zero: ZeroStage::ShardedParams,
            device: device.clone(),
        })
    }

    /// The model the run's passes see: `model` itself, or under ZeRO-3 its shell, this rank
    /// keeping only its part of every parameter.
    pub fn shard(&mut self, model: Llama) -> Result<Llama, CommError> {
        match (&mut self.opt, self.zero) {
            (Optimizer::Sharded(s), ZeroStage::ShardedParams) => s.shard_params(model),
            _ => Ok(model),
        }
    }

    /// ZeRO-3 (parameters sharded): checkpoints are written as shards.
    pub fn shards_params(&self) -> bool {
        matches!(&self.opt, Optimizer::Sharded(s) if s.shards_params())
    }

    /// This rank's part of a sharded checkpoint (ZeRO-1 to 3: the AdamW state, and under
    /// ZeRO-3 the parameters); `None` with replicated AdamW.
    pub fn shard_parts(&self) -> Option<super::zero::ShardParts> {
        match &self.opt {
            Optimizer::Sharded(s) => Some(s.shard_parts()),
            Optimizer::Replicated { .. } => None,
        }
    }

    /// Where passes read the parameters (see [`crate::train::ParamSource`]).
    pub fn source(&self) -> Source<'_> {
        Source(self.gatherer())
    }

    fn gatherer(&self) -> Option<Gatherer<'_>> {
        match &self.opt {
            Optimizer::Sharded(s) if s.shards_params() => Some(Gatherer {
                comm: self.comm.as_ref(),
                opt: s,
                root: &self.gathered_root,
                peak: &self.gathered_peak,
            }),
            _ => None,
        }
    }

    /// The whole model (under ZeRO-3 gathered from the ranks' parts: every rank must call
    /// this), for saving.
    pub fn whole_model<'m>(
        &self,
        model: &'m Llama,
    ) -> Result<std::borrow::Cow<'m, Llama>, CommError> {
        match self.gatherer() {
            Some(g) => Ok(std::borrow::Cow::Owned(g.whole(model)?)),
            None => Ok(std::borrow::Cow::Borrowed(model)),
        }
    }

    /// One process, replicated AdamW: exactly the single-process optimizer.
    pub fn single(settings: AdamWSettings, model: &Llama, device: &Device) -> Self {
        Self::new(
            Box::new(Single),
            settings,
            ZeroStage::Replicated,
            model,
            device,
        )
    }

    pub fn rank(&self) -> usize {
        self.comm.rank()
    }
    pub fn world(&self) -> usize {
        self.comm.world()
    }
    /// Rank 0 writes checkpoints, metrics and progress.
    pub fn is_main(&self) -> bool {
        self.comm.rank() == 0
    }
    pub fn comm(&self) -> &dyn Collective {
        self.comm.as_ref()
    }

    /// Micro-batches per rank and step: `gbs = mbs x accumulation x world`, checked.
    pub fn accumulation(&self, gbs: usize, mbs: usize) -> Result<usize, DistError> {
        let world = self.world();
        if mbs == 0 || !gbs.is_multiple_of(mbs * world) {
            return Err(DistError::Unsupported(format!(
                "[train] gbs {gbs} must be mbs {mbs} x gradient accumulation x world size {world}: {gbs} is not a multiple of {}",
                mbs * world
            )));
        }
        Ok(gbs / (mbs * world))
    }

    /// AdamW's step count.
    pub fn adam_step(&self) -> u64 {
        match &self.opt {
            Optimizer::Replicated { adamw: a, .. } => a.step,
            Optimizer::Sharded(s) => s.step,
        }
    }

    /// Elements of optimizer state this rank holds (for memory reports and tests).
    pub fn state_elements(&self) -> usize {
        match &self.opt {
            Optimizer::Replicated { adamw: a, .. } => a.state_elements(),
            Optimizer::Sharded(s) => s.state_elements(),
        }
    }

    /// What this rank holds: parameters, the gradient at its largest, the optimizer state.
    pub fn held(&self) -> Held {
        let params = match &self.opt {
            Optimizer::Sharded(s) => s.param_elements(),
            Optimizer::Replicated { layout, .. } => layout.elements(),
        };
        Held {
            params,
            gathered: self.gathered_peak.get(),
            grads_peak: self.grads_peak.get(),
            optimizer: self.state_elements(),
        }
    }

    /// Where a backward pass of this step puts its gradients. Every rank's passes must hand
    /// over the same parameters in the same order (ZeRO-2 runs a collective per group).
    pub fn sink(&self) -> StepSink<'_> {
        StepSink {
            comm: self.comm.as_ref(),
            layout: self.opt.layout(),
            buffer: self.grads.borrow_mut(),
            source: self.source(),
        }
    }

    /// Sum over ranks (losses, counts); nothing on one rank.
    pub fn sum_f64(&self, v: &mut [f64]) -> Result<(), CommError> {
        self.comm.all_reduce_sum_f64(v)
    }

    /// Every rank must run with the same `values` (parameter count, batch geometry, step):
    /// rank 0's are broadcast and compared, and a mismatch is named.
    pub fn check_same(&self, what: &str, values: &[f64]) -> Result<(), CommError> {
        if self.world() == 1 {
            return Ok(());
        }
        // Sums of x and x^2 equal world*x and world*x^2 on every rank only if all agree.
        let mut s: Vec<f64> = values.iter().flat_map(|&x| [x, x * x]).collect();
        self.comm.all_reduce_sum_f64(&mut s)?;
        let w = self.world() as f64;
        for (k, &x) in values.iter().enumerate() {
            let (sum, sq) = (s[2 * k], s[2 * k + 1]);
            let tol = 1e-9 * (1.0 + x.abs() * w + x * x * w);
            if (sum - w * x).abs() > tol || (sq - w * x * x).abs() > tol {
                return Err(CommError::Mismatch(format!(
                    "rank {} has {what}[{k}] = {x}, the ranks' mean is {}: start every rank from the same config and checkpoint",
                    self.rank(),
                    sum / w
                )));
            }
        }
        Ok(())
    }

    /// One optimizer step from the gradients the step's passes put into [`DataParallel::sink`]:
    /// gradients summed over ranks, the global norm, clipping, AdamW.
    pub fn step(&mut self, model: Llama, update: Update) -> Stepped {
        let held = match &mut *self.grads.borrow_mut() {
            GradBuffer::Full(full) => {
                let grads = std::mem::take(&mut full.0);
                let layout = self.opt.layout();
                let n = (0..layout.slots.len())
                    .filter(|&i| layout.has_grad(&grads, i))
                    .map(|i| layout.slots[i].numel)
                    .sum::<usize>();
                (Some(grads), n)
            }
            GradBuffer::Shards(shards) => (None, shards.elements()),
        };
        self.grads_peak.set(self.grads_peak.get().max(held.1));
        match held.0 {
            Some(grads) => self.step_full(model, grads, update),
            None => {
                let Optimizer::Sharded(s) = &mut self.opt else {
                    unreachable!("ZeRO-2 and 3 shard their optimizer")
                };
                let GradBuffer::Shards(shards) = &mut *self.grads.borrow_mut() else {
                    unreachable!("checked above")
                };
                let parts = shards.finish(self.comm.as_ref(), &s.layout, self.comm.rank())?;
                s.apply(self.comm.as_ref(), model, parts, update)
            }
        }
    }

    /// [`DataParallel::step`] from whole gradients (stages 0 and 1).
    pub fn step_full(&mut self, model: Llama, grads: GradientsParams, update: Update) -> Stepped {
        let Update { lr, max_norm } = update;
        match &mut self.opt {
            Optimizer::Replicated { adamw, layout } => {
                let grads = if self.comm.world() == 1 {
                    grads
                } else {
                    // One parameter at a time: host memory stays bounded by the largest.
                    let mut summed = GradientsParams::new();
                    for i in 0..layout.slots.len() {
                        if let Some(mut g) = layout.grad_values(&grads, i) {
                            self.comm.all_reduce_sum(&mut g)?;
                            layout.register_grad(&mut summed, i, g, &self.device);
                        }
                    }
                    summed
                };
                adamw
                    .step(model, grads, lr, max_norm)
                    .map_err(StepError::Diverged)
            }
            Optimizer::Sharded(s) => s.step(self.comm.as_ref(), model, grads, update),
        }
    }

    /// Write the optimizer state to `path` (given on rank 0 only; every rank calls this).
    pub fn save_optimizer(
        &self,
        model: &Llama,
        path: Option<&Path>,
    ) -> Result<(), CheckpointError> {
        match (&self.opt, path) {
            (Optimizer::Replicated { adamw: a, .. }, Some(p)) => a.save(model, p),
            (Optimizer::Replicated { .. }, None) => Ok(()),
            (Optimizer::Sharded(s), p) => s.save(self.comm.as_ref(), p),
        }
    }

    /// Read an optimizer state written at any world size, replicated or sharded.
    pub fn load_optimizer(
        &mut self,
        model: &Llama,
        path: &Path,
        step: u64,
    ) -> Result<(), CheckpointError> {
        match &mut self.opt {
            Optimizer::Replicated { adamw: a, .. } => a.load(model, path, step),
            Optimizer::Sharded(s) => s.load(path, step, &self.device),
        }
    }
}
