//! [`Mpi`]: the [`Communicator`] over MPI's world communicator (rsmpi, cargo feature `mpi`).
//!
//! `Mpi::init` calls `MPI_Init` once per process and keeps the `Universe` alive: dropping the
//! `Mpi` value calls `MPI_Finalize`, so it must outlive every collective (the CLI holds it for
//! the whole command). Collectives map one to one onto MPI's (`MPI_Allreduce` with `MPI_SUM`,
//! `MPI_Allgatherv`, `MPI_Bcast`, `MPI_Barrier`).
//!
//! Faults: MPI's default error handler on the world communicator is `MPI_ERRORS_ARE_FATAL`,
//! and Open MPI's `mpirun` ends the whole job when one rank exits abnormally (killed, or a
//! non-zero exit before `MPI_Finalize`), so a rank blocked in a collective with a dead peer is
//! terminated by the launcher rather than hanging; `mpirun` prints which rank died and exits
//! non-zero. The errors this module returns itself are argument checks made before calling
//! MPI (MPI counts are 32-bit).

use crate::{Communicator, Result, check_gather, err};
use mpi::Count;
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
// rsmpi's trait of the same name as ours, for `rank`, `size` and `process_at_rank`.
use mpi::traits::Communicator as _;

/// MPI's world communicator, with the MPI environment it keeps alive.
pub struct Mpi {
    world: SimpleCommunicator,
    // Dropped last (after `world`): finalises MPI.
    _universe: Universe,
    rank: usize,
    size: usize,
}

impl Mpi {
    /// Initialises MPI (once per process) and returns the world communicator. Fails when MPI
    /// was already initialised in this process.
    pub fn init() -> Result<Mpi> {
        let Some(universe) = mpi::initialize() else {
            return err("MPI: MPI_Init failed or MPI was already initialised in this process");
        };
        let world = universe.world();
        let (rank, size) = (world.rank(), world.size());
        let (Ok(rank), Ok(size)) = (usize::try_from(rank), usize::try_from(size)) else {
            return err(format!("MPI: invalid rank {rank} or size {size}"));
        };
        Ok(Mpi {
            world,
            _universe: universe,
            rank,
            size,
        })
    }

    fn root(&self, op: &str, root: usize) -> Result<mpi::topology::Process<'_>> {
        if root >= self.size {
            return err(format!(
                "MPI {op}: root {root} is not a rank of {}",
                self.size
            ));
        }
        Ok(self.world.process_at_rank(root as i32))
    }

    fn gather<T: mpi::datatype::Equivalence + Copy + Default>(
        &self,
        send: &[T],
        counts: &[usize],
    ) -> Result<Vec<T>> {
        let total = check_gather("MPI all_gather_v", self.rank, self.size, send.len(), counts)?;
        let mut c = Vec::with_capacity(counts.len());
        let mut d = Vec::with_capacity(counts.len());
        let mut at = 0usize;
        for &n in counts {
            let (Ok(ci), Ok(di)) = (Count::try_from(n), Count::try_from(at)) else {
                return err(format!(
                    "MPI all_gather_v: counts {counts:?} exceed MPI's 32-bit element counts"
                ));
            };
            c.push(ci);
            d.push(di);
            at += n;
        }
        let mut out = vec![T::default(); total];
        let mut part = PartitionMut::new(&mut out[..], c, &d[..]);
        self.world.all_gather_varcount_into(send, &mut part);
        Ok(out)
    }

    fn reduce<T: mpi::datatype::Equivalence + Copy + Default>(&self, buf: &mut [T]) -> Result<()> {
        if Count::try_from(buf.len()).is_err() {
            return err(format!(
                "MPI all_reduce_sum: {} elements exceed MPI's 32-bit count",
                buf.len()
            ));
        }
        let mut out = vec![T::default(); buf.len()];
        self.world
            .all_reduce_into(&buf[..], &mut out[..], SystemOperation::sum());
        buf.copy_from_slice(&out);
        Ok(())
    }
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn name(&self) -> String {
        let lib = mpi::environment::library_version().unwrap_or_default();
        let lib = lib.split(',').next().unwrap_or("").trim().to_string();
        format!("MPI ({lib}), rank {} of {}", self.rank, self.size)
    }
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.reduce(buf)
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.reduce(buf)
    }
    fn all_gather_v_f32(&self, send: &[f32], counts: &[usize]) -> Result<Vec<f32>> {
        self.gather(send, counts)
    }
    fn all_gather_v_f64(&self, send: &[f64], counts: &[usize]) -> Result<Vec<f64>> {
        self.gather(send, counts)
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        if Count::try_from(buf.len()).is_err() {
            return err(format!(
                "MPI broadcast: {} elements exceed MPI's 32-bit count",
                buf.len()
            ));
        }
        self.root("broadcast", root)?.broadcast_into(buf);
        Ok(())
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()> {
        if Count::try_from(buf.len()).is_err() {
            return err(format!(
                "MPI broadcast: {} elements exceed MPI's 32-bit count",
                buf.len()
            ));
        }
        self.root("broadcast", root)?.broadcast_into(buf);
        Ok(())
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        let p = self.root("broadcast_bytes", root)?;
        let mut len = buf.len() as u64;
        p.broadcast_into(&mut len);
        let Ok(n) = usize::try_from(len) else {
            return err(format!(
                "MPI broadcast_bytes: length {len} does not fit this machine"
            ));
        };
        if Count::try_from(n).is_err() {
            return err(format!(
                "MPI broadcast_bytes: {n} bytes exceed MPI's 32-bit count"
            ));
        }
        buf.resize(n, 0);
        p.broadcast_into(&mut buf[..]);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
