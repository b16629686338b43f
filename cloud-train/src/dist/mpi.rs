//! The MPI engine (the `mpi` crate over the system's OpenMPI/MPICH). MPI counts are C `int`,
//! so long buffers go in pieces of at most [`PIECE`] elements.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};

use super::{check_scatter, Collective, CommError, DistError};

/// Elements per MPI call (well below `i32::MAX`).
const PIECE: usize = 1 << 28;

pub struct MpiCollective {
    world: SimpleCommunicator,
    // Dropping the universe finalizes MPI: it lives as long as the collective.
    _universe: Universe,
}

impl MpiCollective {
    /// `MPI_Init_thread` (funneled: only the main thread calls MPI).
    pub fn init() -> Result<Self, DistError> {
        let (universe, _) =
            mpi::initialize_with_threading(mpi::Threading::Funneled).ok_or(DistError::Start {
                engine: "mpi",
                message: "MPI was initialized already in this process".into(),
            })?;
        let world = universe.world();
        Ok(Self {
            world,
            _universe: universe,
        })
    }
}

impl MpiCollective {
    /// Element-wise sum over ranks, in place, by pieces.
    fn sum_in_place<T: mpi::datatype::Equivalence + Copy>(&self, buf: &mut [T]) {
        let mut send = Vec::with_capacity(PIECE.min(buf.len()));
        for piece in buf.chunks_mut(PIECE) {
            send.clear();
            send.extend_from_slice(piece);
            self.world
                .all_reduce_into(&send[..], piece, SystemOperation::sum());
        }
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn world(&self) -> usize {
        self.world.size() as usize
    }
    fn engine(&self) -> &'static str {
        "mpi"
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CommError> {
        self.sum_in_place(buf);
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CommError> {
        self.sum_in_place(buf);
        Ok(())
    }
    fn reduce_scatter_sum(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        let world = self.world();
        check_scatter("reduce_scatter", world, send.len(), recv.len())?;
        let part = recv.len();
        if part <= PIECE {
            self.world
                .reduce_scatter_block_into(send, recv, SystemOperation::sum());
            return Ok(());
        }
        // Piece `o..o + c` of every rank's chunk, gathered contiguously.
        let mut staged = Vec::with_capacity(world * PIECE);
        let mut o = 0;
        while o < part {
            let c = PIECE.min(part - o);
            staged.clear();
            for r in 0..world {
                staged.extend_from_slice(&send[r * part + o..r * part + o + c]);
            }
            self.world.reduce_scatter_block_into(
                &staged[..],
                &mut recv[o..o + c],
                SystemOperation::sum(),
            );
            o += c;
        }
        Ok(())
    }
    fn all_gather(&self, send: &[f32], recv: &mut [f32]) -> Result<(), CommError> {
        let world = self.world();
        check_scatter("all_gather", world, recv.len(), send.len())?;
        let part = send.len();
        if part <= PIECE {
            self.world.all_gather_into(send, recv);
            return Ok(());
        }
        let mut staged = vec![0f32; world * PIECE];
        let mut o = 0;
        while o < part {
            let c = PIECE.min(part - o);
            self.world
                .all_gather_into(&send[o..o + c], &mut staged[..world * c]);
            for r in 0..world {
                recv[r * part + o..r * part + o + c].copy_from_slice(&staged[r * c..(r + 1) * c]);
            }
            o += c;
        }
        Ok(())
    }
    fn broadcast(&self, buf: &mut [f32], root: usize) -> Result<(), CommError> {
        let root = self.world.process_at_rank(root as i32);
        for piece in buf.chunks_mut(PIECE) {
            root.broadcast_into(piece);
        }
        Ok(())
    }
    fn barrier(&self) -> Result<(), CommError> {
        self.world.barrier();
        Ok(())
    }
}
