//! Pruned Dense layers stored sparse, for inference.
//!
//! After magnitude pruning ([`crate::prune`]) most entries of a Dense weight are exact zeros.
//! [`SparseDense`] keeps only the nonzeros, in CSR form, and computes `act(x·Wᵀ + b)` with
//! `ember_core::sparse::csr_linear` (ember-cpu), whose work is proportional to the nonzeros (see that module
//! for the loop order). [`sparsify`] swaps every Dense layer of a trained network whose weight is
//! sparse enough for its sparse twin; the rest of the network is kept as it is.
//!
//! The sparse layer is for inference: f32 on the CPU, no gradient (a pruned model is
//! fine-tuned dense, with masks, and converted at the end). Calling it in training mode, or
//! with another dtype or device, is an error naming the layer.

use crate::error::{Result, config_err};
use crate::layers::{Dense, activation_name};
use crate::module::Module;
use crate::sequential::Sequential;
use ember_core::sparse::{Csr, csr_linear};
use ember_core::{Activation, DType, Device, Tensor};

/// A Dense layer whose weight is stored as CSR (inference only).
#[derive(Debug, Clone)]
pub struct SparseDense {
    weight: Csr,
    bias: Option<Vec<f32>>,
    activation: Activation,
}

impl SparseDense {
    /// The sparse twin of a Dense layer (its exact zeros are dropped).
    pub fn from_dense(d: &Dense) -> Result<SparseDense> {
        let w = d.weight();
        let (rows, cols) = (w.shape()[0], w.shape()[1]);
        let values = w.to_vec::<f32>()?;
        let weight = Csr::from_dense(&values, rows, cols)
            .map_err(|e| crate::error::NnError::Config(e.to_string()))?;
        let bias = match d.bias() {
            Some(b) => Some(b.to_vec::<f32>()?),
            None => None,
        };
        Ok(SparseDense {
            weight,
            bias,
            activation: d.activation(),
        })
    }

    /// The weight in CSR form.
    pub fn weight(&self) -> &Csr {
        &self.weight
    }
}

impl Module for SparseDense {
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let (rows, cols) = (self.weight.rows, self.weight.cols);
        if training {
            return config_err(format!(
                "SparseDense({cols} -> {rows}) is for inference: fine-tune the dense model \
                 with pruning masks, then convert it"
            ));
        }
        if x.rank() != 2 || x.shape()[1] != cols {
            return config_err(format!(
                "SparseDense({cols} -> {rows}): expected input [batch, {cols}], got {:?}",
                x.shape()
            ));
        }
        if x.dtype() != DType::F32 || x.device() != Device::Cpu {
            return config_err(format!(
                "SparseDense({cols} -> {rows}) runs f32 on the CPU, got {:?} on {:?}",
                x.dtype(),
                x.device()
            ));
        }
        let n = x.shape()[0];
        let input = x.to_vec::<f32>()?;
        let mut out = vec![0.0f32; n * rows];
        csr_linear(&input, n, &self.weight, self.bias.as_deref(), &mut out)
            .map_err(|e| crate::error::NnError::Config(e.to_string()))?;
        let y = Tensor::from_vec(out, vec![n, rows], Device::Cpu)?;
        Ok(match self.activation.as_unary() {
            Some(op) => y.unary_op(op)?,
            None => y,
        })
    }

    fn kind(&self) -> &'static str {
        "SparseDense"
    }

    fn describe(&self) -> String {
        format!(
            "SparseDense {}, {}, {:.1} % nonzero",
            self.weight.rows,
            activation_name(self.activation),
            100.0 * self.weight.density()
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input != [self.weight.cols] {
            return config_err(format!(
                "SparseDense({} -> {}): expected input shape [{}], got {input:?}",
                self.weight.cols, self.weight.rows, self.weight.cols
            ));
        }
        Ok(vec![self.weight.rows])
    }
}

/// Replaces each Dense layer whose weight has at least `min_sparsity` exact zeros (and is f32
/// on the CPU) by its [`SparseDense`] twin; other layers are kept. Returns the new network and
/// how many layers were converted.
pub fn sparsify(network: Sequential, min_sparsity: f64) -> Result<(Sequential, usize)> {
    if !(0.0..=1.0).contains(&min_sparsity) {
        return config_err(format!(
            "sparsify: min_sparsity must be in [0, 1], got {min_sparsity}"
        ));
    }
    let mut out = Sequential::new();
    let mut converted = 0;
    for layer in network.into_layers() {
        let dense = layer.as_any().and_then(|a| a.downcast_ref::<Dense>());
        match dense {
            Some(d) if d.weight().dtype() == DType::F32 && d.weight().device() == Device::Cpu => {
                let v = d.weight().to_vec::<f32>()?;
                let zeros = v.iter().filter(|&&w| w == 0.0).count();
                if zeros as f64 >= min_sparsity * v.len() as f64 {
                    out.push(SparseDense::from_dense(d)?);
                    converted += 1;
                } else {
                    out.push_boxed(layer);
                }
            }
            _ => out.push_boxed(layer),
        }
    }
    Ok((out, converted))
}
