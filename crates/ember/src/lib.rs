//! ember: a from-scratch tensor engine in Rust.
//!
//! This facade re-exports the workspace's crates so a user depends on one package:
//! - [`core`]: tensors, views, the op set and autograd (`ember-core`);
//! - [`cpu`]: the CPU kernels over raw slices (`ember-cpu`);
//! - [`cuda`]: the CUDA device layer and hand-written kernels (`ember-cuda`);
//! - [`nn`]: layers, losses, optimizers, metrics and a Keras-like `fit` (`ember-nn`);
//! - [`rand`]: the `rand` 0.9 crate whose generators ember's APIs take (`&mut StdRng`).
//!
//! It pulls no command-line dependency: the `ember` binary lives in the `ember-cli` package.
//! There are no cargo features; a build needs no GPU, driver or CUDA toolkit (CUDA is loaded at
//! run time, and every CUDA call returns an error on a machine without one).
//!
//! ```
//! use ember::nn::prelude::*;
//! use ember::rand::{SeedableRng, rngs::StdRng};
//!
//! fn main() -> ember::nn::Result<()> {
//!     // XOR: four points, one hidden layer.
//!     let x = Tensor::from_vec(vec![0f32, 0., 0., 1., 1., 0., 1., 1.], (4, 2), Device::Cpu)?;
//!     let y = Tensor::from_vec(vec![0f32, 1., 1., 0.], (4, 1), Device::Cpu)?;
//!     let mut rng = StdRng::seed_from_u64(1);
//!     let mut model = Sequential::new()
//!         .add(Dense::new(2, 8, Activation::Tanh, &mut rng)?)
//!         .add(Dense::new(8, 1, Activation::Sigmoid, &mut rng)?)
//!         .compile(Optimizer::adam().with_lr(0.05), Loss::BinaryCrossEntropy, &[Metric::Accuracy]);
//!     let config = FitConfig { epochs: 300, batch_size: 4, verbose: 0, ..FitConfig::default() };
//!     let history = model.fit(&x, &y, config)?;
//!     assert!(history.series("loss")[299] < history.series("loss")[0]);
//!     // `predict` runs the layers with `training = false` and changes no state.
//!     let p = model.predict(&x, 4)?.to_vec::<f32>()?;
//!     assert_eq!(p.len(), 4);
//!     // Errors are matchable (with a wildcard arm: the enums are non-exhaustive) and keep
//!     // their cause: here the operating system's error.
//!     match ember::nn::data::load_csv("no-such.csv".as_ref(), &LabelColumn::Last) {
//!         Err(NnError::Io { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
//!         other => panic!("expected an I/O error, got {other:?}"),
//!     }
//!     Ok(())
//! }
//! ```

/// Tensors, views, dtypes, devices, the op graph and autograd: the `ember-core` crate.
pub use ember_core as core;
/// CPU kernels over raw slices with sizes and strides: the `ember-cpu` crate.
pub use ember_cpu as cpu;
/// The CUDA device layer and its NVRTC-compiled kernels: the `ember-cuda` crate.
pub use ember_cuda as cuda;
/// Layers, losses, optimizers, metrics, `Sequential` with `fit`, data and checkpoints: the
/// `ember-nn` crate.
pub use ember_nn as nn;
/// The `rand` crate (0.9) that ember's APIs take generators from. Use it (or a `rand = "0.9"`
/// dependency of your own) so that the `StdRng` you pass is the type ember expects.
pub use rand;
