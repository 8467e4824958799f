//! ember-cuda: ember's CUDA layer — device discovery, device buffers, and hand-written kernels
//! compiled at run time by NVRTC and launched through cudarc.
//!
//! Nothing here needs a CUDA toolkit to build: cudarc loads `libcuda`, `libnvrtc` (and, for the
//! kernel lab only, `libcublas`) dynamically, and the kernel sources (this crate's `kernels/*.cu`,
//! which the repository's top-level `kernels` links to) are embedded with `include_str!` and
//! compiled for the device's exact architecture on first use, or loaded precompiled. On a
//! machine without a GPU every entry point returns a clear [`CudaError`]; nothing panics.
//!
//! Like ember-cpu, every kernel is a plain function over device slices with sizes and strides,
//! knowing nothing of tensors or autograd, so ember-core can dispatch `Storage::Cuda` with one
//! `match` per op, and each kernel can be tested and benchmarked alone.
//!
//! Modules:
//! - [`device`]: [`device_count`], [`CudaDevice`] (context, one stream, module cache),
//!   [`DeviceBuffer`] and the borrowed [`DevSlice`] / [`DevSliceMut`] kernels take.
//! - [`compile`]: NVRTC compilation of the embedded modules ([`compile_module`]), usable with no
//!   GPU, and the ptxas resource report.
//! - [`precompiled`]: `EMBER_CUDA_KERNEL_DIR`, a folder of CUBINs compiled elsewhere
//!   (`<module>.<arch>.cubin`, written by [`precompiled::precompile`] or the `precompile`
//!   example), so a machine with only an NVIDIA driver, no NVRTC, runs the kernels.
//! - [`view`]: [`Strided`] views and their checked kernel form.
//! - [`elementwise`], [`index`], [`reduce`], [`loss`], [`optim`], [`gemm`]: the kernel families
//!   ([`index`]: index_select, gather and their adjoints, where, f32/f64 casts, concatenation).
//! - [`conv`]: 2-D convolution forward, backward-data and backward-weight (implicit GEMM and
//!   direct kernels); [`pool`]: max/average/adaptive pooling, nearest upsampling and padding,
//!   forward and backward; [`qgemm`]: the int8 GEMM (`dp4a`) with a dequantizing epilogue.
//! - [`bench`](mod@bench): the kernel lab (timings against a device copy and cuBLAS).
//! - [`error`]: the error type, [`CudaError`].

#![warn(missing_docs)]

pub mod bench;
pub mod compile;
pub mod conv;
pub mod device;
pub mod elementwise;
pub mod error;
pub mod gemm;
pub mod index;
mod launch;
pub mod loss;
pub mod optim;
pub mod pool;
pub mod precompiled;
pub mod qgemm;
pub mod reduce;
pub mod view;

pub use compile::{CompiledModule, KernelResources, compile_module};
pub use device::{
    CudaDevice, DType, DevSlice, DevSliceMut, DeviceBuffer, DeviceElem, FloatElem, HalfElem,
    device_count, driver_available,
};
pub use error::CudaError;
pub use view::Strided;
