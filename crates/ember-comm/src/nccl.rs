//! [`Nccl`]: the [`Communicator`] over NVIDIA's NCCL, one process per GPU (cargo feature
//! `nccl`; cudarc loads libnccl and the CUDA driver at run time, like the rest of ember-cuda,
//! so the feature builds on machines without either).
//!
//! NCCL has no launcher of its own: the ranks are started by `mpirun` (or any launcher) and
//! agree on a 128-byte NCCL unique id, which rank 0 creates and a *bootstrap* communicator
//! (MPI) broadcasts. After that, NCCL's collectives run on the GPU over NVLink/PCIe/IB.
//!
//! The trait works on host slices, so each collective here copies the slice to the GPU, runs
//! the NCCL collective on the communicator's stream, and copies the result back. That is the
//! simple, correct seam for ember-nn's host-side gradient exchange; a device-resident path
//! (gradients all-reduced where backward leaves them) is the planned next step. Barrier is an
//! all-reduce of one element; `all_gather_v` is an all-gather of equal-sized blocks padded to
//! the largest count (NCCL has no variable-count all-gather), trimmed on the host.
//! `broadcast_bytes` carries the bytes in
//! f32 words (length first), so any byte string works.

use crate::{CommError, Communicator, Result, check_gather, err};
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};
use std::sync::Arc;

/// A NCCL communicator on one GPU.
pub struct Nccl {
    comm: Comm,
    stream: Arc<CudaStream>,
    rank: usize,
    size: usize,
}

fn nccl_err<E: std::fmt::Debug>(op: &str) -> impl FnOnce(E) -> CommError + '_ {
    move |e| CommError(format!("NCCL {op}: {e:?}"))
}

impl Nccl {
    /// Joins the NCCL group of `bootstrap`'s ranks on GPU `ordinal` (usually the rank's local
    /// index on its node). Every rank of `bootstrap` must call it.
    pub fn init(bootstrap: &dyn Communicator, ordinal: usize) -> Result<Nccl> {
        let (rank, size) = (bootstrap.rank(), bootstrap.size());
        // cudarc panics on first use of a library it cannot load: probe both first.
        // SAFETY: the probes only try to open the shared libraries.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return err("NCCL init: the CUDA driver library (libcuda.so) is not installed");
        }
        // SAFETY: as above.
        if !unsafe { cudarc::nccl::sys::is_culib_present() } {
            return err("NCCL init: libnccl.so is not installed");
        }
        let ctx = CudaContext::new(ordinal).map_err(nccl_err("CUDA context"))?;
        let stream = ctx.default_stream();
        let mut id_bytes = if rank == 0 {
            let id = Id::new().map_err(nccl_err("unique id"))?;
            id.internal().iter().map(|&c| c as u8).collect()
        } else {
            Vec::new()
        };
        bootstrap.broadcast_bytes(&mut id_bytes, 0)?;
        let mut internal = [0 as std::ffi::c_char; 128];
        if id_bytes.len() != internal.len() {
            return err(format!(
                "NCCL init: the unique id broadcast from rank 0 has {} bytes, not 128",
                id_bytes.len()
            ));
        }
        for (d, s) in internal.iter_mut().zip(&id_bytes) {
            *d = *s as std::ffi::c_char;
        }
        let comm = Comm::from_rank(stream.clone(), rank, size, Id::uninit(internal))
            .map_err(nccl_err("init"))?;
        Ok(Nccl {
            comm,
            stream,
            rank,
            size,
        })
    }

    fn reduce<T>(&self, buf: &mut [T]) -> Result<()>
    where
        T: cudarc::nccl::NcclType + cudarc::driver::DeviceRepr + Default + Copy,
    {
        if buf.is_empty() {
            return Ok(());
        }
        let mut d = self
            .stream
            .clone_htod(buf)
            .map_err(nccl_err("copy to GPU"))?;
        self.comm
            .all_reduce_in_place(&mut d, &ReduceOp::Sum)
            .map_err(nccl_err("all_reduce"))?;
        self.stream
            .memcpy_dtoh(&d, buf)
            .map_err(nccl_err("copy to host"))?;
        self.stream.synchronize().map_err(nccl_err("synchronize"))
    }

    fn gather<T>(&self, send: &[T], counts: &[usize]) -> Result<Vec<T>>
    where
        T: cudarc::nccl::NcclType
            + cudarc::driver::DeviceRepr
            + cudarc::driver::ValidAsZeroBits
            + Default
            + Copy,
    {
        let total = check_gather(
            "NCCL all_gather_v",
            self.rank,
            self.size,
            send.len(),
            counts,
        )?;
        let block = counts.iter().copied().max().unwrap_or(0);
        if block == 0 {
            return Ok(Vec::new());
        }
        let mut padded = send.to_vec();
        padded.resize(block, T::default());
        let d_send = self
            .stream
            .clone_htod(&padded)
            .map_err(nccl_err("copy to GPU"))?;
        let mut d_recv = self
            .stream
            .alloc_zeros::<T>(block * self.size)
            .map_err(nccl_err("alloc"))?;
        self.comm
            .all_gather(&d_send, &mut d_recv)
            .map_err(nccl_err("all_gather"))?;
        let all = self
            .stream
            .clone_dtoh(&d_recv)
            .map_err(nccl_err("copy to host"))?;
        let mut out = Vec::with_capacity(total);
        for (r, &n) in counts.iter().enumerate() {
            if let Some(part) = all.get(r * block..r * block + n) {
                out.extend_from_slice(part);
            }
        }
        Ok(out)
    }

    fn bcast<T>(&self, buf: &mut [T], root: usize) -> Result<()>
    where
        T: cudarc::nccl::NcclType + cudarc::driver::DeviceRepr + Default + Copy,
    {
        if root >= self.size {
            return err(format!(
                "NCCL broadcast: root {root} is not a rank of {}",
                self.size
            ));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let mut d = self
            .stream
            .clone_htod(buf)
            .map_err(nccl_err("copy to GPU"))?;
        self.comm
            .broadcast_in_place(&mut d, root as i32)
            .map_err(nccl_err("broadcast"))?;
        self.stream
            .memcpy_dtoh(&d, buf)
            .map_err(nccl_err("copy to host"))?;
        self.stream.synchronize().map_err(nccl_err("synchronize"))
    }
}

impl Communicator for Nccl {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn name(&self) -> String {
        format!("NCCL, rank {} of {}", self.rank, self.size)
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
        self.bcast(buf, root)
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()> {
        self.bcast(buf, root)
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        // Length first (as f64: exact below 2^53), then the bytes widened to f32 words.
        let mut len = [buf.len() as f64];
        self.bcast(&mut len, root)?;
        let n = len[0] as usize;
        let mut words: Vec<f32> = buf.iter().map(|&b| f32::from(b)).collect();
        words.resize(n, 0.0);
        self.bcast(&mut words, root)?;
        *buf = words.iter().map(|&w| w as u8).collect();
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        let mut one = [0.0f32];
        self.reduce(&mut one)
    }
}
