//! `MaskedMean`: the mean over the real steps of a padded sequence batch, `[N, T, F]` → `[N, F]`.
//!
//! A stand-in for a masked `GlobalAveragePooling1D` (Keras's layer averages only the steps
//! whose mask is 1) so that `Embedding(mask_zero) → MaskedMean → Dense` classifies padded
//! verses before the attention work lands; drop it in favour of that layer once it does.
//! Without a mask every step counts. A row whose mask is all zeros averages to zeros (the
//! count is clamped to 1) rather than dividing by zero.

use crate::error::{Result, config_err};
use crate::module::Module;
use ember_core::Tensor;

/// Mean over the time axis of `[N, T, F]`, counting only steps whose mask is 1.
pub struct MaskedMean;

impl MaskedMean {
    fn check(x: &Tensor) -> Result<()> {
        if x.rank() != 3 {
            return config_err(format!(
                "MaskedMean takes [batch, steps, features], got {:?}",
                x.shape()
            ));
        }
        Ok(())
    }
}

impl Module for MaskedMean {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        MaskedMean::check(x)?;
        Ok(x.mean(&[1], false)?)
    }

    /// Σ_t x[n, t]·m[n, t] / max(Σ_t m[n, t], 1); the output has no time axis, so no mask.
    fn forward_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        training: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let Some(m) = mask else {
            return Ok((self.forward(x, training)?, None));
        };
        MaskedMean::check(x)?;
        if m.shape() != &x.shape()[..2] {
            return config_err(format!(
                "MaskedMean: mask {:?} does not match input {:?}",
                m.shape(),
                x.shape()
            ));
        }
        let m = m.detach().to_dtype(x.dtype())?;
        let sum = x.mul(&m.unsqueeze(2)?)?.sum(&[1], false)?;
        let count = m.sum(&[1], true)?.maximum_scalar(1.0)?;
        Ok((sum.div(&count)?, None))
    }

    fn kind(&self) -> &'static str {
        "MaskedMean"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match input {
            [_, f] => Ok(vec![*f]),
            _ => config_err(format!(
                "MaskedMean takes [steps, features] per example, got {input:?}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_core::Device;

    #[test]
    fn averages_only_real_steps() {
        // 2 examples, 3 steps, 2 features.
        let x = Tensor::from_vec(
            vec![
                1.0f64, 2.0, 3.0, 4.0, 100.0, 100.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0,
            ],
            [2, 3, 2],
            Device::Cpu,
        )
        .unwrap();
        let m =
            Tensor::from_vec(vec![1.0f64, 1.0, 0.0, 0.0, 0.0, 0.0], [2, 3], Device::Cpu).unwrap();
        let (y, out_mask) = MaskedMean.forward_masked(&x, Some(&m), false).unwrap();
        assert!(out_mask.is_none());
        assert_eq!(y.to_vec::<f64>().unwrap(), [2.0, 3.0, 0.0, 0.0]);
        let y = MaskedMean.forward(&x, false).unwrap();
        let y = y.to_vec::<f64>().unwrap();
        assert!((y[0] - 104.0 / 3.0).abs() < 1e-12 && (y[1] - 106.0 / 3.0).abs() < 1e-12);
    }
}
