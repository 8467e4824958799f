//! The `Embedding` layer: token ids to learned vectors, the first layer of a text model.
//!
//! Input is a float tensor of whole-number ids (ember has only float dtypes), `[N, T]` for a
//! batch of sequences; output is `[N, T, D]`, one row of the `[V, D]` table per id
//! ([`Tensor::embedding`], whose backward sums repeated ids deterministically). The parameter
//! is named `weight` and initialised N(0, 1) as PyTorch's `nn.Embedding` (Keras draws
//! uniform(−0.05, 0.05) instead).
//!
//! Two options handle padding, which the text pipeline encodes as id 0:
//! - `mask_zero` (Keras): the layer emits a `[N, T]` mask, 1.0 where the id is not 0, through
//!   [`Module::forward_masked`], so recurrent layers, attention and masked pooling downstream
//!   skip padded steps. Row 0 is still looked up and, as in Keras, still trained.
//! - `padding_idx` (PyTorch): that row receives no gradient (it stays what it was initialised
//!   to; PyTorch also zeroes it at construction, which this layer does too).

use crate::error::{Result, config_err};
use crate::module::Module;
use ember_core::{DType, Device, Tensor};
use rand::Rng;
use rand::rngs::StdRng;

/// Options of [`Embedding`]; `Default` is PyTorch's (no padding row, no mask, f32 on the CPU).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmbeddingOptions {
    /// Emit a mask (1.0 where the id is not 0) for the layers after it (Keras's `mask_zero`).
    pub mask_zero: bool,
    /// A row that gets no gradient and starts as zeros (PyTorch's `padding_idx`).
    pub padding_idx: Option<usize>,
    /// The table's dtype.
    pub dtype: DType,
    /// The table's device.
    pub device: Device,
}

impl Default for EmbeddingOptions {
    fn default() -> Self {
        EmbeddingOptions {
            mask_zero: false,
            padding_idx: None,
            dtype: DType::F32,
            device: Device::Cpu,
        }
    }
}

/// A lookup table of `vocab` vectors of size `dim`, PyTorch's `nn.Embedding` with Keras's
/// `mask_zero` (see the module doc).
pub struct Embedding {
    weight: Tensor,
    vocab: usize,
    dim: usize,
    opts: EmbeddingOptions,
}

impl Embedding {
    /// A table of `vocab` rows of size `dim`, drawn N(0, 1) from `rng`.
    pub fn new(
        vocab: usize,
        dim: usize,
        opts: EmbeddingOptions,
        rng: &mut StdRng,
    ) -> Result<Embedding> {
        if vocab == 0 || dim == 0 {
            return config_err(format!(
                "Embedding: vocabulary size and dimension must be positive, got vocab {vocab}, \
                 dim {dim}"
            ));
        }
        if let Some(p) = opts.padding_idx
            && p >= vocab
        {
            return config_err(format!(
                "Embedding: padding_idx {p} is outside the vocabulary of {vocab}"
            ));
        }
        let mut values: Vec<f64> = (0..vocab * dim).map(|_| standard_normal(rng)).collect();
        if let Some(p) = opts.padding_idx {
            values[p * dim..(p + 1) * dim].fill(0.0);
        }
        let t = Tensor::from_vec(values, [vocab, dim], Device::Cpu)?.to_dtype(opts.dtype)?;
        let t = if opts.device == Device::Cpu {
            t
        } else {
            t.to_device(opts.device)?
        };
        Ok(Embedding {
            weight: t.as_variable(),
            vocab,
            dim,
            opts,
        })
    }

    /// A layer around an existing `[V, D]` table (used as given: call `as_variable()` on it
    /// first if it should be trained).
    pub fn from_weight(weight: Tensor, opts: EmbeddingOptions) -> Result<Embedding> {
        let s = weight.shape().to_vec();
        if s.len() != 2 || s[0] == 0 || s[1] == 0 {
            return config_err(format!(
                "Embedding: the weight must be a non-empty [vocab, dim] table, got {s:?}"
            ));
        }
        if let Some(p) = opts.padding_idx
            && p >= s[0]
        {
            return config_err(format!(
                "Embedding: padding_idx {p} is outside the vocabulary of {}",
                s[0]
            ));
        }
        Ok(Embedding {
            weight,
            vocab: s[0],
            dim: s[1],
            opts,
        })
    }

    /// The table `[V, D]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The vocabulary size V.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The vector size D.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The options it was built with.
    pub fn options(&self) -> EmbeddingOptions {
        self.opts
    }

    /// The mask for `ids`: 1.0 where the id is not 0, in the table's dtype.
    pub fn compute_mask(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(ids.detach().ne_scalar(0.0)?.to_dtype(self.weight.dtype())?)
    }
}

/// A standard normal draw (Box–Muller, not truncated: PyTorch's `normal_`).
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

impl Module for Embedding {
    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        Ok(Tensor::embedding(&self.weight, x, self.opts.padding_idx)?)
    }

    /// Looks the ids up and, with `mask_zero`, replaces the mask by the ids' own (a mask
    /// arriving from before an embedding would be unusual; without `mask_zero` it is passed
    /// on, the output keeping the ids' leading axes).
    fn forward_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        training: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let y = self.forward(x, training)?;
        if self.opts.mask_zero {
            let m = self.compute_mask(x)?;
            return Ok((y, Some(m)));
        }
        Ok((y, mask.cloned()))
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".to_string(), self.weight.clone())]
    }

    fn kind(&self) -> &'static str {
        "Embedding"
    }

    fn describe(&self) -> String {
        let mut s = format!("Embedding {}x{}", self.vocab, self.dim);
        if self.opts.mask_zero {
            s.push_str(", mask_zero");
        }
        s
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let mut out = input.to_vec();
        out.push(self.dim);
        Ok(out)
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ids(v: &[f32], shape: [usize; 2]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, Device::Cpu).unwrap()
    }

    #[test]
    fn looks_up_rows_and_masks_zero_ids() {
        let mut rng = StdRng::seed_from_u64(1);
        let opts = EmbeddingOptions {
            mask_zero: true,
            ..Default::default()
        };
        let e = Embedding::new(6, 3, opts, &mut rng).unwrap();
        let x = ids(&[1.0, 4.0, 0.0, 5.0, 0.0, 0.0], [2, 3]);
        let (y, m) = e.forward_masked(&x, None, true).unwrap();
        assert_eq!(y.shape(), [2, 3, 3]);
        let w = e.weight().to_vec2::<f32>().unwrap();
        let y = y.to_vec::<f32>().unwrap();
        assert_eq!(&y[3..6], w[4].as_slice());
        assert_eq!(&y[9..12], w[5].as_slice());
        let m = m.unwrap();
        assert_eq!(m.shape(), [2, 3]);
        assert_eq!(m.to_vec::<f32>().unwrap(), [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(e.output_shape(&[3]).unwrap(), [3, 3]);
    }

    #[test]
    fn init_is_standard_normal_and_padding_row_is_zero() {
        let mut rng = StdRng::seed_from_u64(2);
        let opts = EmbeddingOptions {
            padding_idx: Some(0),
            ..Default::default()
        };
        let e = Embedding::new(400, 50, opts, &mut rng).unwrap();
        let w = e.weight().to_vec::<f32>().unwrap();
        assert!(w[..50].iter().all(|&v| v == 0.0));
        let rest = &w[50..];
        let n = rest.len() as f64;
        let mean = rest.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = rest.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
        // Untruncated: some draws beyond two standard deviations.
        assert!(rest.iter().any(|v| v.abs() > 2.5));
    }

    #[test]
    fn bad_configs_and_ids_are_errors() {
        let mut rng = StdRng::seed_from_u64(3);
        assert!(Embedding::new(0, 3, EmbeddingOptions::default(), &mut rng).is_err());
        let bad = EmbeddingOptions {
            padding_idx: Some(4),
            ..Default::default()
        };
        assert!(Embedding::new(4, 3, bad, &mut rng).is_err());
        let e = Embedding::new(4, 3, EmbeddingOptions::default(), &mut rng).unwrap();
        let err = e
            .forward(&ids(&[1.0, 9.0], [1, 2]), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("id 9") && err.contains("0..4"), "{err}");
    }
}
