//! ember-comm: the collective operations data-parallel training needs, behind one trait.
//!
//! Data-parallel training runs one process ("rank") per core group, machine or GPU; every
//! rank holds the whole model and a part of each batch, and the ranks combine their gradients
//! with collective operations. This crate names those operations once, as the
//! [`Communicator`] trait, so that ember-nn's training loop is written against the trait and
//! neither ember-core nor a single-process build ever links MPI or NCCL:
//!
//! - [`SingleProcess`]: size 1, no dependency; every collective is the identity. It is what a
//!   build without features has, and what tests use.
//! - `mpi::Mpi` (cargo feature `mpi`): MPI through the rsmpi crate, over the system's MPI
//!   library (OpenMPI on Debian). One process per rank, launched by `mpirun`.
//! - [`local::LocalGroup`]: p ranks as p threads of one process (tests, no MPI needed).
//! - `nccl::Nccl` (cargo feature `nccl`): NCCL through cudarc, loaded at run time, one process
//!   per GPU, the NCCL unique id broadcast over a bootstrap communicator (MPI).
//!
//! The trait works on host slices of `f32` and `f64`, the element types of ember's parameters.
//! [`Word`] lets generic code (ember-nn's sharded step) pick the right method by type.
//!
//! Errors are values ([`CommError`]), never panics: a collective that fails (a peer died, a
//! size does not fit MPI's 32-bit counts) returns a message naming the operation and sizes.

use std::fmt;

pub mod local;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;

/// What went wrong in a collective operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommError(pub String);

impl fmt::Display for CommError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CommError {}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, CommError>;

/// Builds a [`CommError`] result from a message.
pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(CommError(msg.into()))
}

/// A group of `size()` processes that run the same program and meet in collective calls.
///
/// Every rank must make the same sequence of collective calls with matching sizes; a rank that
/// calls something else deadlocks the group (MPI's contract). Methods take `&self`: a
/// communicator is shared by the training loop and the callbacks that report from rank 0.
pub trait Communicator {
    /// This process's index in `0..size()`.
    fn rank(&self) -> usize;
    /// Number of processes in the group.
    fn size(&self) -> usize;
    /// A one-line description for `ember info` and logs, e.g. `MPI (Open MPI v4.1.4), rank 0 of 2`.
    fn name(&self) -> String;
    /// Replaces `buf` on every rank with the element-wise sum over the ranks. The order of the
    /// additions is the library's: it may depend on the rank count (not bit-reproducible
    /// across rank counts).
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// [`Communicator::all_reduce_sum_f32`] for `f64`.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Concatenates every rank's `send` in rank order; `counts[r]` is rank r's length (known to
    /// all ranks) and `send.len()` must equal `counts[rank()]`.
    fn all_gather_v_f32(&self, send: &[f32], counts: &[usize]) -> Result<Vec<f32>>;
    /// [`Communicator::all_gather_v_f32`] for `f64`.
    fn all_gather_v_f64(&self, send: &[f64], counts: &[usize]) -> Result<Vec<f64>>;
    /// Copies `buf` from rank `root` to every other rank (same length everywhere).
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()>;
    /// [`Communicator::broadcast_f32`] for `f64`.
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()>;
    /// Copies a byte string of any length from `root` to every rank (`buf` is replaced).
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;
    /// Ends this process after an error, and with it every other rank (MPI_Abort), so that no
    /// peer waits forever in a collective this rank will never join. The default, for groups
    /// without a launcher to stop, exits this process with `code`.
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Checks the arguments of an all-gather-v on rank `rank` of `size`: one count per rank and
/// this rank's count equal to its send length. Returns the total length.
pub fn check_gather(
    op: &str,
    rank: usize,
    size: usize,
    send_len: usize,
    counts: &[usize],
) -> Result<usize> {
    if counts.len() != size {
        return err(format!(
            "{op}: {} counts given for {size} ranks",
            counts.len()
        ));
    }
    match counts.get(rank) {
        Some(&c) if c == send_len => {}
        _ => {
            return err(format!(
                "{op}: rank {rank} sends {send_len} elements but counts say {:?}",
                counts.get(rank)
            ));
        }
    }
    counts
        .iter()
        .try_fold(0usize, |a, &c| a.checked_add(c))
        .ok_or_else(|| CommError(format!("{op}: counts {counts:?} overflow")))
}

/// An element type the communicators move: `f32` or `f64`. Generic code calls these instead of
/// the typed trait methods.
pub trait Word:
    Copy + Default + PartialEq + fmt::Debug + std::ops::Add<Output = Self> + 'static
{
    /// [`Communicator::all_reduce_sum_f32`] or its `f64` twin.
    fn all_reduce_sum(comm: &dyn Communicator, buf: &mut [Self]) -> Result<()>;
    /// [`Communicator::all_gather_v_f32`] or its `f64` twin.
    fn all_gather_v(comm: &dyn Communicator, send: &[Self], counts: &[usize]) -> Result<Vec<Self>>;
    /// [`Communicator::broadcast_f32`] or its `f64` twin.
    fn broadcast(comm: &dyn Communicator, buf: &mut [Self], root: usize) -> Result<()>;
}

impl Word for f32 {
    fn all_reduce_sum(comm: &dyn Communicator, buf: &mut [Self]) -> Result<()> {
        comm.all_reduce_sum_f32(buf)
    }
    fn all_gather_v(comm: &dyn Communicator, send: &[Self], counts: &[usize]) -> Result<Vec<Self>> {
        comm.all_gather_v_f32(send, counts)
    }
    fn broadcast(comm: &dyn Communicator, buf: &mut [Self], root: usize) -> Result<()> {
        comm.broadcast_f32(buf, root)
    }
}

impl Word for f64 {
    fn all_reduce_sum(comm: &dyn Communicator, buf: &mut [Self]) -> Result<()> {
        comm.all_reduce_sum_f64(buf)
    }
    fn all_gather_v(comm: &dyn Communicator, send: &[Self], counts: &[usize]) -> Result<Vec<Self>> {
        comm.all_gather_v_f64(send, counts)
    }
    fn broadcast(comm: &dyn Communicator, buf: &mut [Self], root: usize) -> Result<()> {
        comm.broadcast_f64(buf, root)
    }
}

/// The communicator of one process alone: rank 0 of 1. Every collective leaves its buffer as
/// it is (a sum, gather or broadcast over one rank is the identity), so training under it is
/// training in one process, with the same calls as under MPI.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl SingleProcess {
    fn root(op: &str, root: usize) -> Result<()> {
        if root != 0 {
            return err(format!(
                "{op}: root {root} is not a rank of a 1-process group"
            ));
        }
        Ok(())
    }
}

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn name(&self) -> String {
        "single process (no MPI)".into()
    }
    fn all_reduce_sum_f32(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn all_gather_v_f32(&self, send: &[f32], counts: &[usize]) -> Result<Vec<f32>> {
        check_gather("all_gather_v", 0, 1, send.len(), counts)?;
        Ok(send.to_vec())
    }
    fn all_gather_v_f64(&self, send: &[f64], counts: &[usize]) -> Result<Vec<f64>> {
        check_gather("all_gather_v", 0, 1, send.len(), counts)?;
        Ok(send.to_vec())
    }
    fn broadcast_f32(&self, _buf: &mut [f32], root: usize) -> Result<()> {
        Self::root("broadcast", root)
    }
    fn broadcast_f64(&self, _buf: &mut [f64], root: usize) -> Result<()> {
        Self::root("broadcast", root)
    }
    fn broadcast_bytes(&self, _buf: &mut Vec<u8>, root: usize) -> Result<()> {
        Self::root("broadcast_bytes", root)
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}

/// Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun`): one of
/// the environment variables Open MPI, MPICH/PMI or PMIx set for their ranks is present.
pub fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Whether this build has the MPI communicator (cargo feature `mpi`).
pub const HAS_MPI: bool = cfg!(feature = "mpi");

/// Whether this build has the NCCL communicator (cargo feature `nccl`).
pub const HAS_NCCL: bool = cfg!(feature = "nccl");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_process_collectives_are_identities() {
        let c = SingleProcess;
        assert_eq!((c.rank(), c.size()), (0, 1));
        let mut v = vec![1.5f32, -2.0];
        c.all_reduce_sum_f32(&mut v).unwrap();
        assert_eq!(v, [1.5, -2.0]);
        assert_eq!(f64::all_gather_v(&c, &[3.0], &[1]).unwrap(), [3.0]);
        let mut b = b"abc".to_vec();
        c.broadcast_bytes(&mut b, 0).unwrap();
        assert_eq!(b, b"abc");
        c.barrier().unwrap();
    }

    #[test]
    fn bad_arguments_are_errors() {
        let c = SingleProcess;
        assert!(
            c.all_gather_v_f32(&[1.0, 2.0], &[1])
                .unwrap_err()
                .0
                .contains("sends 2")
        );
        assert!(
            c.all_gather_v_f32(&[1.0], &[1, 1])
                .unwrap_err()
                .0
                .contains("2 counts")
        );
        assert!(
            c.broadcast_f32(&mut [1.0], 1)
                .unwrap_err()
                .0
                .contains("root 1")
        );
    }
}
