//! The one error type of ember-cuda.
//!
//! Every fallible call returns [`CudaError`]. Its variants separate the cases a caller reacts to
//! differently (no driver library, no device, out of memory, a bad argument, a compile failure),
//! and every message names the operation and the sizes involved, so a user reading it knows what
//! was asked and what went wrong without a debugger.

use std::fmt;

/// Everything that can go wrong in ember-cuda.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaError {
    /// The CUDA driver library (`libcuda.so.1`) could not be loaded: no NVIDIA driver installed.
    DriverLibraryMissing,
    /// The NVRTC library (`libnvrtc.so.13`) could not be loaded, so kernels cannot be compiled.
    NvrtcLibraryMissing,
    /// The driver loaded but reports no CUDA device.
    NoDevice,
    /// The driver loaded but failed to initialise or answer (mismatched or broken installation).
    DriverBroken {
        /// What was being done.
        op: String,
        /// The driver's own description.
        detail: String,
    },
    /// A device ordinal beyond the number of devices.
    InvalidOrdinal {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many devices there are.
        count: usize,
    },
    /// The device's compute capability is below what ember's kernels need (8.0).
    UnsupportedDevice {
        /// Device name.
        name: String,
        /// Compute capability (major, minor).
        capability: (i32, i32),
    },
    /// A device allocation failed for lack of memory.
    OutOfMemory {
        /// Bytes asked for.
        bytes: usize,
        /// Device ordinal.
        ordinal: usize,
    },
    /// A driver call failed.
    Driver {
        /// What was being done.
        op: String,
        /// The driver's error name and description.
        detail: String,
    },
    /// NVRTC failed to compile a kernel module; `log` holds the compiler's messages.
    Compile {
        /// Module name (e.g. `gemm`).
        module: String,
        /// Target architecture (e.g. `sm_90a`).
        arch: String,
        /// The compiler log.
        log: String,
    },
    /// An NVRTC call other than compilation failed.
    Nvrtc {
        /// What was being done.
        op: String,
        /// NVRTC's error string.
        detail: String,
    },
    /// No embedded kernel module has this name.
    UnknownModule(String),
    /// A precompiled kernel file (`EMBER_CUDA_KERNEL_DIR`, or the precompile writer's output)
    /// could not be read or written, or is not a CUBIN.
    KernelFile {
        /// The path tried.
        path: String,
        /// What failed: the I/O error, or why the contents were refused.
        detail: String,
    },
    /// `EMBER_CUDA_KERNEL_DIR` names a folder without this module's CUBIN for the device's
    /// architecture, and NVRTC is not available to compile it instead.
    PrecompiledMissing {
        /// The folder named by `EMBER_CUDA_KERNEL_DIR`.
        dir: String,
        /// Module name (e.g. `sgemm`).
        module: String,
        /// The device's architecture (e.g. `sm_90a`).
        arch: String,
    },
    /// A caller passed arguments the operation cannot accept (shapes, strides, lengths, devices).
    InvalidArgument {
        /// The operation.
        op: &'static str,
        /// What was wrong and what was expected.
        msg: String,
    },
    /// cuBLAS (used only as a reference) is missing or failed.
    Cublas {
        /// What was being done.
        op: String,
        /// cuBLAS's description.
        detail: String,
    },
}

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CudaError::DriverLibraryMissing => write!(
                f,
                "CUDA driver library (libcuda.so.1) not found: no NVIDIA driver is installed or it \
                 is not on the library path"
            ),
            CudaError::NvrtcLibraryMissing => write!(
                f,
                "NVRTC library (libnvrtc.so.13) not found: install the nvidia-cuda-nvrtc wheel or a \
                 CUDA toolkit and put its lib folder on LD_LIBRARY_PATH"
            ),
            CudaError::NoDevice => write!(f, "the CUDA driver reports no device"),
            CudaError::DriverBroken { op, detail } => {
                write!(f, "CUDA driver unusable ({op}): {detail}")
            }
            CudaError::InvalidOrdinal { ordinal, count } => write!(
                f,
                "CUDA device {ordinal} requested but only {count} device(s) present"
            ),
            CudaError::UnsupportedDevice { name, capability } => write!(
                f,
                "CUDA device {name} has compute capability {}.{}; ember's kernels need 8.0 or newer",
                capability.0, capability.1
            ),
            CudaError::OutOfMemory { bytes, ordinal } => write!(
                f,
                "CUDA out of memory on device {ordinal}: allocating {bytes} bytes ({:.2} GiB) failed",
                *bytes as f64 / (1u64 << 30) as f64
            ),
            CudaError::Driver { op, detail } => write!(f, "CUDA driver error in {op}: {detail}"),
            CudaError::Compile { module, arch, log } => {
                write!(f, "NVRTC failed to compile {module}.cu for {arch}:\n{log}")
            }
            CudaError::Nvrtc { op, detail } => write!(f, "NVRTC error in {op}: {detail}"),
            CudaError::UnknownModule(m) => write!(f, "no kernel module named {m:?}"),
            CudaError::KernelFile { path, detail } => {
                write!(f, "precompiled kernel {path}: {detail}")
            }
            CudaError::PrecompiledMissing { dir, module, arch } => write!(
                f,
                "EMBER_CUDA_KERNEL_DIR={dir} has no {module}.{arch}.cubin and NVRTC \
                 (libnvrtc.so.13) is not available to compile module {module} for {arch}: \
                 precompile it (cargo run -p ember-cuda --example precompile -- DIR {arch}) or \
                 put NVRTC on LD_LIBRARY_PATH"
            ),
            CudaError::InvalidArgument { op, msg } => write!(f, "{op}: {msg}"),
            CudaError::Cublas { op, detail } => write!(f, "cuBLAS error in {op}: {detail}"),
        }
    }
}

impl std::error::Error for CudaError {}

/// Builds a [`CudaError::Driver`] from a cudarc driver error, naming the operation.
pub(crate) fn driver_err(op: impl Into<String>, e: cudarc::driver::DriverError) -> CudaError {
    CudaError::Driver {
        op: op.into(),
        detail: describe(&e),
    }
}

/// The driver's name and description of an error code, e.g. `CUDA_ERROR_ILLEGAL_ADDRESS (an
/// illegal memory access was encountered)`.
pub(crate) fn describe(e: &cudarc::driver::DriverError) -> String {
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    let text = e
        .error_string()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if text.is_empty() {
        name
    } else {
        format!("{name} ({text})")
    }
}

/// Shorthand for an [`CudaError::InvalidArgument`].
pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> CudaError {
    CudaError::InvalidArgument {
        op,
        msg: msg.into(),
    }
}
