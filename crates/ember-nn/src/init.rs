//! Weight initialisers, all driven by a caller-supplied seeded generator.
//!
//! The values are drawn here on the CPU, in `f64`, with a `rand::rngs::StdRng` the caller seeds,
//! and then become a tensor. Drawing them ourselves (rather than through a framework call) keeps
//! the numbers a pure function of the seed and the layer order, so the same seed always gives the
//! same model, on every machine and with any thread count.

use crate::error::Result;
use ember_core::{DType, Device, Tensor};
use rand::Rng;

/// How to fill a weight tensor. Fans follow Keras for a Dense kernel: `fan_in` is the number of
/// inputs and `fan_out` the number of outputs.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Initializer {
    /// Uniform on `[-l, l)` with `l = sqrt(6 / (fan_in + fan_out))`: Keras's default for Dense
    /// kernels (PyTorch's `nn.Linear` default is instead Kaiming-uniform with `a = sqrt(5)`).
    GlorotUniform,
    /// Normal with standard deviation `sqrt(2 / fan_in)`, truncated at two standard deviations
    /// (redrawn beyond them), as Keras's `HeNormal` does. PyTorch's `kaiming_normal_` does not
    /// truncate.
    HeNormal,
    /// Uniform on `[-l, l)` with `l = sqrt(6 / fan_in)`.
    HeUniform,
    /// All zeros: Keras's default for biases.
    Zeros,
    /// All ones (BatchNorm's scale).
    Ones,
    /// Every element equal to the given value.
    Constant(f64),
}

impl Initializer {
    /// Draws the values for a tensor of `count` elements.
    pub fn values(
        &self,
        count: usize,
        fan_in: usize,
        fan_out: usize,
        rng: &mut impl Rng,
    ) -> Vec<f64> {
        match *self {
            Initializer::GlorotUniform => {
                let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
                (0..count)
                    .map(|_| rng.random_range(-limit..limit))
                    .collect()
            }
            Initializer::HeUniform => {
                let limit = (6.0 / fan_in.max(1) as f64).sqrt();
                (0..count)
                    .map(|_| rng.random_range(-limit..limit))
                    .collect()
            }
            Initializer::HeNormal => {
                let std = (2.0 / fan_in.max(1) as f64).sqrt();
                (0..count).map(|_| std * truncated_normal(rng)).collect()
            }
            Initializer::Zeros => vec![0.0; count],
            Initializer::Ones => vec![1.0; count],
            Initializer::Constant(c) => vec![c; count],
        }
    }

    /// Creates a tensor of `shape` filled by this initialiser, in `dtype` on `device`.
    pub fn tensor(
        &self,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        dtype: DType,
        device: Device,
        rng: &mut impl Rng,
    ) -> Result<Tensor> {
        let count = shape.iter().product();
        let values = self.values(count, fan_in, fan_out, rng);
        let t = Tensor::from_vec(values, shape.to_vec(), Device::Cpu)?.to_dtype(dtype)?;
        Ok(if device == Device::Cpu {
            t
        } else {
            t.to_device(device)?
        })
    }
}

/// A standard normal draw, redrawn while it falls beyond two standard deviations (Box–Muller).
fn truncated_normal(rng: &mut impl Rng) -> f64 {
    loop {
        // 1 - u keeps the logarithm's argument in (0, 1].
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        if z.abs() <= 2.0 {
            return z;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn glorot_stays_within_its_limit_and_is_seeded() {
        let mut a = StdRng::seed_from_u64(7);
        let mut b = StdRng::seed_from_u64(7);
        let va = Initializer::GlorotUniform.values(1000, 30, 10, &mut a);
        let vb = Initializer::GlorotUniform.values(1000, 30, 10, &mut b);
        assert_eq!(va, vb);
        let limit = (6.0f64 / 40.0).sqrt();
        assert!(va.iter().all(|v| v.abs() < limit));
        // Not all on one side: the draw really is spread over the interval.
        assert!(va.iter().any(|&v| v > limit / 2.0) && va.iter().any(|&v| v < -limit / 2.0));
    }

    #[test]
    fn he_normal_is_truncated_at_two_std() {
        let mut rng = StdRng::seed_from_u64(1);
        let v = Initializer::HeNormal.values(5000, 8, 4, &mut rng);
        let std = 0.5; // sqrt(2/8)
        assert!(v.iter().all(|x| x.abs() <= 2.0 * std + 1e-12));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
    }

    #[test]
    fn constants() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(Initializer::Zeros.values(3, 1, 1, &mut rng), vec![0.0; 3]);
        assert_eq!(Initializer::Ones.values(2, 1, 1, &mut rng), vec![1.0; 2]);
        assert_eq!(
            Initializer::Constant(0.5).values(1, 1, 1, &mut rng),
            vec![0.5]
        );
    }
}
