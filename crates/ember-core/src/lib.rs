//! ember-core: tensors, views, the op set and reverse-mode autograd.
//!
//! Read it in this order:
//! 1. [`dtype`], [`shape`], [`layout`]: what a tensor is made of (element type, extents,
//!    strides). Views (transpose, narrow, broadcast) are layouts over shared storage.
//! 2. `tensor.rs`: the [`Tensor`] handle (an `Arc` to an immutable node), creation and read-back.
//! 3. `ops/`: the forward ops. Each validates its inputs, calls one method of the dispatch seam
//!    (`backend/mod.rs`: the trait each device's storage implements, and the one device
//!    match; `backend/cpu/` and `backend/cuda.rs` call the kernels) and records an op record
//!    (`op.rs`) when a gradient may flow.
//! 4. `backprop.rs`: `backward()` and the derivative rule of every primitive, one short
//!    commented rule per op; `fused/`: the fused ops (Dense layer, BCE, pooling,
//!    upsampling, padding, batch norm, recurrent sequences) with their own rules.
//! 5. [`loss`], [`optim`], [`gradcheck`]: losses, fused optimizer updates, gradient checking.
//!
//! ```
//! use ember_core::{Device, Tensor};
//! let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], 3, Device::Cpu)?.as_variable();
//! let y = x.sqr()?.sum_all()?; // y = Σ x²
//! let grads = y.backward()?;
//! assert_eq!(grads.get(&x).unwrap().to_vec::<f64>()?, vec![2.0, 4.0, 6.0]);
//! # Ok::<(), ember_core::Error>(())
//! ```

mod backend;
mod backprop;
pub mod dtype;
pub mod error;
mod fused;
pub mod grad_mode;
pub mod gradcheck;
mod id_map;
pub mod layout;
pub mod loss;
pub mod memory;
mod op;
mod ops;
pub mod optim;
pub mod shape;
mod storage;
mod sugar;
mod tensor;

pub use backprop::GradStore;
pub use dtype::{DType, Device, WithDType};
/// The int8 GEMM and quantization utilities of ember-cpu (host-side kernels over slices),
/// re-exported so ember-nn's quantized inference reaches them through ember-core alone.
pub use ember_cpu::qgemm;
/// Sparse (CSR) × dense products for pruned layers (ember-cpu's `sparse` module).
pub use ember_cpu::sparse;
/// The op vocabulary shared by every ember crate (re-exported: users never name a kernel crate).
pub use ember_ops;
pub use ember_ops::{Activation, BceForm, BinaryOp, Pad2d, PadMode, ReduceOp, UnaryOp};
pub use ember_ops::{CellKind, RnnActivation};
pub use error::{Error, ErrorSource, Result};
pub use fused::{AttentionOptions, BatchNormOptions, PoolOptions, scaled_dot_product_attention};
pub use fused::{RecurrentInputs, RecurrentOutput, recurrent};
pub use grad_mode::{NoGradGuard, is_grad_enabled, no_grad};
pub use layout::Layout;
pub use loss::Reduction;
pub use ops::conv::{Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, Padding};
pub use shape::Shape;
pub use tensor::{Tensor, TensorId};

pub(crate) use ops::check_same as ops_check_same;
