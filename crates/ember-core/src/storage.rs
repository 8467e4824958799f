//! Storage: the flat buffers behind tensors, and the count of live bytes.
//!
//! [`StorageData`] is an enum over devices, [`CpuStorage`] and [`CudaStorage`] enums over
//! dtypes. Each device's storage implements the backend trait (`backend/mod.rs`), where the
//! one device match lives; the f32/f64 cases of each CPU op are one generic body.
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

/// A device buffer of one dtype. CUDA tensors are f32 or f64 (the kernels' compute types);
/// 16-bit data is converted on the host before upload.
#[derive(Debug)]
pub enum CudaStorage {
    /// f32 elements.
    F32(ember_cuda::DeviceBuffer<f32>),
    /// f64 elements.
    F64(ember_cuda::DeviceBuffer<f64>),
}

impl CudaStorage {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            CudaStorage::F32(_) => DType::F32,
            CudaStorage::F64(_) => DType::F64,
        }
    }

    /// The device ordinal the buffer lives on.
    pub fn ordinal(&self) -> usize {
        match self {
            CudaStorage::F32(b) => b.device().ordinal(),
            CudaStorage::F64(b) => b.device().ordinal(),
        }
    }
}

/// The device-specific buffer inside a [`Storage`].
#[derive(Debug)]
pub enum StorageData {
    /// Host memory.
    Cpu(CpuStorage),
    /// GPU memory.
    Cuda(CudaStorage),
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

    /// Wraps a device buffer (device bytes are not counted in `live_bytes`, which is host memory).
    pub fn cuda(s: CudaStorage) -> Self {
        Storage {
            data: StorageData::Cuda(s),
            counted: 0,
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

impl From<CpuStorage> for StorageData {
    fn from(s: CpuStorage) -> Self {
        StorageData::Cpu(s)
    }
}

impl From<CudaStorage> for StorageData {
    fn from(s: CudaStorage) -> Self {
        StorageData::Cuda(s)
    }
}

impl StorageData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            StorageData::Cpu(c) => c.dtype(),
            StorageData::Cuda(c) => c.dtype(),
        }
    }

    /// The device holding the data.
    pub fn device(&self) -> crate::dtype::Device {
        match self {
            StorageData::Cpu(_) => crate::dtype::Device::Cpu,
            StorageData::Cuda(c) => crate::dtype::Device::Cuda(c.ordinal()),
        }
    }
}

impl Storage {
    /// Wraps either kind of buffer (host bytes are counted as live).
    pub fn new(data: StorageData) -> Self {
        match data {
            StorageData::Cpu(c) => Storage::cpu(c),
            StorageData::Cuda(c) => Storage::cuda(c),
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        memory::sub(self.counted);
    }
}
