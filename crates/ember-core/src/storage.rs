//! Storage: the flat buffers behind tensors, and the count of live bytes.
//!
//! [`Storage`] is an enum over devices, and [`CpuStorage`] an enum over dtypes; ops `match` on
//! them once (see `backend.rs`), which is easier to follow than a tree of trait objects. CUDA
//! storage arrives with the ember-cuda integration; until then a CUDA device is reported as
//! unavailable by the ops that would create it.
//!
//! Every storage adds its size to a global counter when created and subtracts it when dropped,
//! so [`crate::memory::live_bytes`] tells tests whether a training loop leaks graphs.

use crate::dtype::DType;
use crate::memory;
use half::{bf16, f16};

/// A host buffer of one dtype.
#[derive(Debug, Clone)]
pub enum CpuStorage {
    /// f32 elements.
    F32(Vec<f32>),
    /// f64 elements.
    F64(Vec<f64>),
    /// f16 elements.
    F16(Vec<f16>),
    /// bf16 elements.
    BF16(Vec<bf16>),
}

impl CpuStorage {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
        }
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
        }
    }

    /// Bytes held.
    pub fn size_in_bytes(&self) -> usize {
        self.len() * self.dtype().size_in_bytes()
    }
}

/// A tensor's buffer on some device. Created through [`Storage::cpu`] so its bytes are counted.
#[derive(Debug)]
pub struct Storage {
    data: StorageData,
    counted: usize,
}

/// The device-specific buffer inside a [`Storage`].
#[derive(Debug)]
pub enum StorageData {
    /// Host memory.
    Cpu(CpuStorage),
}

impl Storage {
    /// Wraps a host buffer, counting its bytes as live.
    pub fn cpu(s: CpuStorage) -> Self {
        let counted = s.size_in_bytes();
        memory::add(counted);
        Storage {
            data: StorageData::Cpu(s),
            counted,
        }
    }

    /// The buffer.
    pub fn data(&self) -> &StorageData {
        &self.data
    }

    /// The buffer, writable (in-place updates keep the size, so the count stays right).
    pub fn data_mut(&mut self) -> &mut StorageData {
        &mut self.data
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        memory::sub(self.counted);
    }
}
