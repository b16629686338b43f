//! The NCCL engine (cudarc's `nccl` module), one GPU per process, GPU = local rank.
//!
//! Start-up: rank 0 creates the NCCL unique id and hands its 128 bytes to the other ranks
//! through [`rendezvous`] (one TCP connection each to `MASTER_ADDR:MASTER_PORT`, what
//! torchrun's store does); after that every byte moves through NCCL.
//!
//! Buffers arrive as host slices (the [`Collective`] contract, shared with MPI) and are staged
//! through device buffers kept between calls. burn 0.22 does not expose a tensor's raw CUDA
//! pointer, so a zero-copy path (NCCL straight on burn's gradient buffers) waits for that; the
//! staging costs two PCIe copies of the gradients per step (see docs/distributed.md).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};

use super::{check_scatter, rendezvous, Collective, CommError, DistError, Launch};

pub struct NcclCollective {
    comm: Comm,
    stream: Arc<CudaStream>,
    /// Staging buffers (f32, f64), grown as needed.
    a: RefCell<Option<CudaSlice<f32>>>,
    b: RefCell<Option<CudaSlice<f32>>>,
    d: RefCell<Option<CudaSlice<f64>>>,
}

fn err(e: impl std::fmt::Debug) -> CommError {
    CommError::Engine {
        engine: "nccl",
        message: format!("{e:?}"),
    }
}

impl NcclCollective {
    pub fn init(launch: &Launch, timeout: Duration) -> Result<Self, DistError> {
        let start = |message: String| DistError::Start {
            engine: "nccl",
            message,
        };
        let ctx = CudaContext::new(launch.local_rank).map_err(|e| {
            start(format!(
                "CUDA device {} (local rank): {e:?}",
                launch.local_rank
            ))
        })?;
        let stream = ctx.default_stream();
        let id = exchange_id(launch, timeout).map_err(|e| start(e.to_string()))?;
        let comm = Comm::from_rank(stream.clone(), launch.rank, launch.world, id).map_err(|e| {
            start(format!(
                "ncclCommInitRank (rank {} of {}): {e:?}",
                launch.rank, launch.world
            ))
        })?;
        Ok(Self {
            comm,
            stream,
            a: RefCell::new(None),
            b: RefCell::new(None),
            d: RefCell::new(None),
        })
    }

    /// Make `cell` hold at least `len` elements (buffers only grow: one allocation for the
    /// largest parameter, not one per call).
    fn grow<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        cell: &RefCell<Option<CudaSlice<T>>>,
        len: usize,
    ) -> Result<(), CommError> {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|s| s.len() < len) {
            *slot = None;
            *slot = Some(self.stream.alloc_zeros::<T>(len.max(1)).map_err(err)?);
        }
        Ok(())
    }

    /// In-place collective `op` on `buf`, staged through device buffer `cell`.
    fn in_place<T, F>(
        &self,
        cell: &RefCell<Option<CudaSlice<T>>>,
        buf: &mut [T],
        op: F,
    ) -> Result<(), CommError>
    where
        T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits,
        F: FnOnce(&mut cudarc::driver::CudaViewMut<'_, T>) -> Result<(), CommError>,
    {
        if buf.is_empty() {
            return Ok(());
        }
        self.grow(cell, buf.len())?;
        let mut slot = cell.borrow_mut();
        let dev = slot.as_mut().ok_or_else(|| err("no staging buffer"))?;
        let mut view = dev.slice_mut(0..buf.len());
        self.stream.memcpy_htod(buf, &mut view).map_err(err)?;
        op(&mut view)?;
        self.stream.memcpy_dtoh(&view, buf).map_err(err)?;
        self.stream.synchronize().map_err(err)
    }

    /// `send` -> `recv` collective `op`, staged through the two f32 buffers.
    fn send_recv<F>(&self, send: &[f32], recv: &mut [f32], op: F) -> Result<(), CommError>
    where
        F: FnOnce(
            &cudarc::driver::CudaView<'_, f32>,
            &mut cudarc::driver::CudaViewMut<'_, f32>,
        ) -> Result<(), CommError>,
    {
        self.grow(&self.a, send.len())?;
        self.grow(&self.b, recv.len())?;
        let mut a = self.a.borrow_mut();
        let mut b = self.b.borrow_mut();
        let src = a.as_mut().ok_or_else(|| err("no staging buffer"))?;
        let dst = b.as_mut().ok_or_else(|| err("no staging buffer"))?;
        {
            let mut sv = src.slice_mut(0..send.len());
            self.stream.memcpy_htod(send, &mut sv).map_err(err)?;
        }
        let sv = src.slice(0..send.len());
        let mut dv = dst.slice_mut(0..recv.len());
        op(&sv, &mut dv)?;
        self.stream.memcpy_dtoh(&dv, recv).map_err(err)?;
        self.stream.synchronize().map_err(err)
    }
}

/// The NCCL unique id: rank 0 makes it, [`rendezvous::exchange_id`] hands it out.
fn exchange_id(launch: &Launch, timeout: Duration) -> Result<Id, rendezvous::RendezvousError> {
    let bytes = rendezvous::exchange_id(launch, timeout, || {
        let id = Id::new()
            .map_err(|e| rendezvous::RendezvousError(format!("ncclGetUniqueId: {e:?}")))?;
        Ok(std::array::from_fn(|i| id.internal()[i] as u8))
    })?;
    Ok(Id::uninit(bytes.map(|b| b as std::ffi::c_char)))
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.comm.rank()
    }
    fn world(&self) -> usize {
        self.comm.world_size()
    }
    fn engine(&self) -> &'static str {
        "nccl"
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CommError> {
        self.in_place(&self.a, buf, |v| {
            self.comm
                .all_reduce_in_place(v, &ReduceOp::Sum)
                .map(drop)
                .map_err(err)
        })
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError> {
        self.in_place(&self.d, buf, |v| {
            self.comm
                .all_reduce_in_place(v, &ReduceOp::Sum)
                .map(drop)
                .map_err(err)
        })
    }
    fn reduce_scatter_sum(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        check_scatter("reduce_scatter", self.world(), send.len(), recv.len())?;
        self.send_recv(send, recv, |s, r| {
            self.comm
                .reduce_scatter(s, r, &ReduceOp::Sum)
                .map(drop)
                .map_err(err)
        })
    }
    fn all_gather(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        check_scatter("all_gather", self.world(), recv.len(), send.len())?;
        self.send_recv(send, recv, |s, r| {
            self.comm.all_gather(s, r).map(drop).map_err(err)
        })
    }
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        self.in_place(&self.a, buf, |v| {
            self.comm
                .broadcast_in_place(v, root as i32)
                .map(drop)
                .map_err(err)
        })
    }
    fn barrier(&self) -> Result<(), CommError> {
        // NCCL has no barrier: a one-element all-reduce orders the ranks the same way.
        let mut one = [0f32];
        self.all_reduce_sum(&mut one)
    }
}
