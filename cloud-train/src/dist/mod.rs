//! Data-parallel training across processes, on existing collective engines.
//!
//! One process per device (one per CPU rank or GPU). Ranks talk only through the
//! [`Collective`] trait, which has two engines besides the trivial [`Single`]:
//! - MPI (`--features mpi`, OpenMPI from the OS packages): CPU ranks, clusters without NCCL,
//!   and CI (`mpirun -np 2/4`).
//! - NCCL (`--features nccl`, through cudarc): one GPU per process; the NCCL unique id is
//!   handed out by rank 0 over `MASTER_ADDR:MASTER_PORT` at start-up.
//!
//! The data-parallel logic ([`DataParallel`]) is the same code on every engine: each rank
//! computes the gradients of its slice of the global batch, gradients are summed across ranks
//! before the optimizer step, and the AdamW state is either replicated (ZeRO stage 0) or
//! sharded 1/N per rank with the parameters all-gathered after the update (ZeRO stage 1);
//! stage 2 shards the gradients too, stage 3 the parameters as well (gathered layer by layer
//! as passes reach them).
//!
//! Every collective call runs under a [`Watchdog`]: a rank that waits longer than the
//! configured timeout for the others (one died or hangs) prints which call it was waiting in
//! and exits, so a job never hangs.

mod launch;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;
mod parallel;
pub mod rendezvous;
mod watchdog;
mod zero;
mod zero3;

pub use launch::{Launch, LaunchSource};
pub use parallel::{DataParallel, DistSettings, Engine, Held, Source, StepSink, ZeroStage};
pub use watchdog::{Watchdog, EXIT_CODE};
pub use zero::{Layout, ShardGrads, ShardParts, ShardedAdamW, StepError};
pub use zero3::Gatherer;

use crate::model::Llama;

/// One optimizer update's settings: the learning rate and the global-norm clip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    pub lr: f64,
    /// Clip the global gradient norm to this (`None`: no clipping).
    pub max_norm: Option<f64>,
}

/// An optimizer step's result: the updated model and the gradient norm before clipping.
pub type Stepped = Result<(Llama, f64), StepError>;

/// Why ranks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The launcher's environment is malformed or contradicts itself.
    #[error("{0}")]
    Launch(String),
    /// A collective engine could not start.
    #[error("{engine}: {message}")]
    Start {
        engine: &'static str,
        message: String,
    },
    /// Settings that this build or this world size cannot run.
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
}

/// Why a collective call failed.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    #[error("{engine}: {message}")]
    Engine {
        engine: &'static str,
        message: String,
    },
    #[error("collective {op}: buffer lengths {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("ranks disagree: {0}")]
    Mismatch(String),
}

/// The collective operations data parallelism needs. All ranks call the same operations in
/// the same order with the same lengths; `world() == 1` makes every call a copy or nothing.
pub trait Collective {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// The engine's name, for logs ("single", "mpi", "nccl").
    fn engine(&self) -> &'static str;
    /// Element-wise sum over ranks, in place.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CommError>;
    /// Element-wise sum over ranks, in place, in f64 (losses, norms, counts).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError>;
    /// `send` is `world` equal chunks; rank `r` receives the sum over ranks of chunk `r`.
    fn reduce_scatter_sum(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError>;
    /// Chunk `r` of `recv` (`world` chunks of `send.len()`) receives rank `r`'s `send`.
    fn all_gather(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError>;
    /// Every rank's `buf` becomes rank `root`'s.
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError>;
    fn barrier(&self) -> Result<(), CommError>;
    /// Multiply the collective timeout by `factor` until set back to 1: for calls that wait
    /// on slow work of another rank by design (rank 0 writing a checkpoint).
    fn set_patience(&self, factor: u32) {
        let _ = factor;
    }
}

/// Checks the length contracts shared by every engine.
pub(crate) fn check_scatter(
    op: &'static str,
    world: usize,
    whole: usize,
    part: usize,
) -> Result<(), CommError> {
    if whole != world * part {
        return Err(CommError::Shape {
            op,
            detail: format!("{whole} != world {world} x {part}"),
        });
    }
    Ok(())
}

/// One process: every collective is the identity.
#[derive(Debug, Default, Clone, Copy)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn engine(&self) -> &'static str {
        "single"
    }
    fn all_reduce_sum(&self, _: &mut [f32]) -> Result<(), CommError> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _: &mut [f64]) -> Result<(), CommError> {
        Ok(())
    }
    fn reduce_scatter_sum(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        check_scatter("reduce_scatter", 1, send.len(), recv.len())?;
        recv.copy_from_slice(send);
        Ok(())
    }
    fn all_gather(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        check_scatter("all_gather", 1, recv.len(), send.len())?;
        recv.copy_from_slice(send);
        Ok(())
    }
    fn broadcast(&self, _: &mut [f32], _: usize) -> Result<(), CommError> {
        Ok(())
    }
    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
    }
}

/// A collective whose every call is watched: see [`Watchdog`].
pub struct Watched<C> {
    inner: C,
    dog: Watchdog,
}

impl<C: Collective> Watched<C> {
    pub fn new(inner: C, timeout: std::time::Duration) -> Self {
        let dog = Watchdog::start(inner.rank(), inner.world(), inner.engine(), timeout);
        Self { inner, dog }
    }
}

impl<C: Collective> Collective for Watched<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }
    fn world(&self) -> usize {
        self.inner.world()
    }
    fn engine(&self) -> &'static str {
        self.inner.engine()
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CommError> {
        let _g = self.dog.enter("all_reduce");
        self.inner.all_reduce_sum(buf)
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError> {
        let _g = self.dog.enter("all_reduce");
        self.inner.all_reduce_sum_f64(buf)
    }
    fn reduce_scatter_sum(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        let _g = self.dog.enter("reduce_scatter");
        self.inner.reduce_scatter_sum(send, recv)
    }
    fn all_gather(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        let _g = self.dog.enter("all_gather");
        self.inner.all_gather(send, recv)
    }
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        let _g = self.dog.enter("broadcast");
        self.inner.broadcast(buf, root)
    }
    fn barrier(&self) -> Result<(), CommError> {
        let _g = self.dog.enter("barrier");
        self.inner.barrier()
    }
    fn set_patience(&self, factor: u32) {
        self.dog.set_patience(factor);
    }
}

/// This process's rank, device and collective, from the launcher's environment and the
/// `[train]` settings: the common start of `cpt`, `sft` and `dpo`.
pub struct Ranks {
    pub launch: Launch,
    pub device: burn::prelude::Device,
    pub comm: Box<dyn Collective>,
}

impl Ranks {
    pub fn start(
        backend: crate::device::Backend,
        settings: &DistSettings,
    ) -> Result<Self, DistError> {
        let launch = Launch::from_env()?;
        let device = backend.device_at(launch.local_rank)?;
        let comm = connect(settings, backend)?;
        Ok(Self {
            launch,
            device,
            comm,
        })
    }

    /// The line each rank logs at start (with its pid, so an operator can find it), or
    /// `None` for a one-process run.
    pub fn banner(&self) -> Option<String> {
        (self.comm.world() > 1).then(|| {
            format!(
                "rank {} of {} ({}, local rank {}, pid {})",
                self.comm.rank(),
                self.comm.world(),
                self.comm.engine(),
                self.launch.local_rank,
                std::process::id()
            )
        })
    }
}

/// This rank's contiguous slice of a global batch dealt out in equal parts.
pub fn my_slice<T>(all: &[T], rank: usize, world: usize) -> &[T] {
    let per = all.len() / world.max(1);
    &all[(rank * per).min(all.len())..((rank + 1) * per).min(all.len())]
}

/// Items `0..n` dealt out round-robin in rounds of one per rank: this rank's item of each
/// round, `None` where it has none. Every rank sees the same number of rounds, so passes that
/// make collective calls (ZeRO-3's gathers) stay in step even where the items do not divide.
pub fn rounds(n: usize, rank: usize, world: usize) -> impl Iterator<Item = Option<usize>> {
    let world = world.max(1);
    (0..n.div_ceil(world)).map(move |r| Some(r * world + rank).filter(|&i| i < n))
}

/// The collective for this process: [`Single`] when the launcher started one process, else
/// the engine `settings` name (or, for `auto`, NCCL on CUDA and MPI otherwise), watched.
pub fn connect(
    settings: &DistSettings,
    backend: crate::device::Backend,
) -> Result<Box<dyn Collective>, DistError> {
    let launch = Launch::from_env()?;
    let timeout = std::time::Duration::from_secs_f64(settings.collective_timeout_s);
    let engine = match settings.collective {
        Engine::Auto if launch.world <= 1 => return Ok(Box::new(Single)),
        Engine::Auto if backend == crate::device::Backend::Cuda => Engine::Nccl,
        Engine::Auto => Engine::Mpi,
        e => e,
    };
    match engine {
        Engine::Single => {
            if launch.world > 1 {
                return Err(DistError::Unsupported(format!(
                    "collective = \"single\", but the launcher ({}) started {} ranks",
                    launch.source, launch.world
                )));
            }
            Ok(Box::new(Single))
        }
        Engine::Mpi => connect_mpi(&launch, timeout),
        Engine::Nccl => connect_nccl(&launch, timeout),
        Engine::Auto => unreachable!("resolved above"),
    }
}

#[cfg(feature = "mpi")]
fn connect_mpi(
    launch: &Launch,
    timeout: std::time::Duration,
) -> Result<Box<dyn Collective>, DistError> {
    let comm = mpi::MpiCollective::init()?;
    launch.check_against(comm.rank(), comm.world(), "MPI")?;
    Ok(Box::new(Watched::new(comm, timeout)))
}

#[cfg(not(feature = "mpi"))]
fn connect_mpi(launch: &Launch, _: std::time::Duration) -> Result<Box<dyn Collective>, DistError> {
    Err(DistError::Unsupported(format!(
        "{} ranks ({}) need a collective engine: this build has no MPI; rebuild with `--features mpi` (needs libopenmpi-dev and libclang-dev), or `--features nccl` for GPUs",
        launch.world, launch.source
    )))
}

#[cfg(feature = "nccl")]
fn connect_nccl(
    launch: &Launch,
    timeout: std::time::Duration,
) -> Result<Box<dyn Collective>, DistError> {
    let comm = nccl::NcclCollective::init(launch, timeout)?;
    Ok(Box::new(Watched::new(comm, timeout)))
}

#[cfg(not(feature = "nccl"))]
fn connect_nccl(launch: &Launch, _: std::time::Duration) -> Result<Box<dyn Collective>, DistError> {
    Err(DistError::Unsupported(format!(
        "{} ranks ({}) on CUDA use NCCL: this build has no NCCL; rebuild with `--features cuda,nccl`, or set [train] collective = \"mpi\"",
        launch.world, launch.source
    )))
}
