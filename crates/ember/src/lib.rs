//! ember: a from-scratch tensor engine in Rust.
//!
//! This facade re-exports the workspace's crates so a user depends on one package:
//! - [`core`]: tensors, views, the op set and autograd (`ember-core`);
//! - [`cpu`]: the CPU kernels over raw slices (`ember-cpu`);
//! - [`cuda`]: the CUDA device layer and hand-written kernels (`ember-cuda`);
//! - [`nn`]: layers, losses, optimizers, metrics and a Keras-like `fit` (`ember-nn`).

pub use ember_core as core;
pub use ember_cpu as cpu;
pub use ember_cuda as cuda;
pub use ember_nn as nn;
