//! Element types and devices.
//!
//! ember stores tensors as f32 (first class), f64 (for references and gradient checks), or
//! 16-bit f16 / bf16 (from the `half` crate). Arithmetic on 16-bit tensors is done by widening to
//! f32, running the f32 kernel and narrowing the result, so every op works on every dtype.

use half::{bf16, f16};
use std::fmt;

pub use ember_ops::DType;

/// Where a tensor's storage lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Device {
    /// Host memory, computed by ember-cpu.
    Cpu,
    /// A CUDA GPU, by ordinal, computed by ember-cuda.
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A Rust type that is a tensor element: `f32`, `f64`, `half::f16` or `half::bf16`.
///
/// Used by `Tensor::from_vec` and `Tensor::to_vec`; reading converts from the tensor's dtype.
pub trait WithDType: sealed::Sealed + Copy + Send + Sync + fmt::Debug + 'static {
    /// The dtype this Rust type stores as.
    const DTYPE: DType;
    /// Converts from f64.
    fn from_f64(v: f64) -> Self;
    /// Converts to f64.
    fn to_f64(self) -> f64;
}

impl WithDType for f32 {
    const DTYPE: DType = DType::F32;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}
impl WithDType for f64 {
    const DTYPE: DType = DType::F64;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}
impl WithDType for f16 {
    const DTYPE: DType = DType::F16;
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
}
impl WithDType for bf16 {
    const DTYPE: DType = DType::BF16;
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
}
