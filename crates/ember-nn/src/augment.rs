//! Data augmentation applied by `fit` to each epoch's training images.
//!
//! Augmentation makes every epoch see slightly different examples, so a network learns what
//! does not change under small transformations (a digit shifted by two pixels is the same
//! digit). It is applied on the host to the epoch's shuffled training batch before the steps,
//! seeded from the run's seed and the epoch, so a run is reproducible; validation and test
//! data are never augmented.

use crate::error::{Result, config_err};
use ember_core::{DType, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A transformation of training examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Augmentation {
    /// Shifts each image (`[N, C, H, W]`) by a random whole number of pixels in
    /// `[-max, max]` along each of height and width, chosen per example; pixels shifted in
    /// are 0 (Keras's `RandomTranslation` with `fill_mode="constant"`, integer offsets).
    RandomShift {
        /// The largest shift, in pixels.
        max: usize,
    },
}

impl Augmentation {
    /// The augmented copy of the batch `x` (same shape, dtype and device).
    pub fn apply(&self, x: &Tensor, seed: u64) -> Result<Tensor> {
        match *self {
            Augmentation::RandomShift { max } => random_shift(x, max, seed),
        }
    }
}

/// See [`Augmentation::RandomShift`].
fn random_shift(x: &Tensor, max: usize, seed: u64) -> Result<Tensor> {
    let &[n, c, h, w] = x.shape() else {
        return config_err(format!(
            "RandomShift: expects images [N, C, H, W], got {:?}",
            x.shape()
        ));
    };
    if max == 0 || n == 0 {
        return Ok(x.clone());
    }
    let src = x.to_vec::<f32>()?;
    let mut out = vec![0f32; src.len()];
    let mut rng = StdRng::seed_from_u64(seed);
    let m = max.min(h.max(w)) as i64;
    let plane = h * w;
    for i in 0..n {
        let dy = rng.random_range(-m..=m);
        let dx = rng.random_range(-m..=m);
        for ch in 0..c {
            let base = (i * c + ch) * plane;
            for r in 0..h as i64 {
                let sr = r - dy;
                if sr < 0 || sr >= h as i64 {
                    continue;
                }
                for col in 0..w as i64 {
                    let sc = col - dx;
                    if sc < 0 || sc >= w as i64 {
                        continue;
                    }
                    out[base + r as usize * w + col as usize] =
                        src[base + sr as usize * w + sc as usize];
                }
            }
        }
    }
    let t = Tensor::from_vec(out, x.shape().to_vec(), ember_core::Device::Cpu)?;
    let t = if x.dtype() == DType::F32 {
        t
    } else {
        t.to_dtype(x.dtype())?
    };
    Ok(if x.device() == ember_core::Device::Cpu {
        t
    } else {
        t.to_device(x.device())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_core::Device;

    #[test]
    fn shifts_move_pixels_and_fill_with_zeros() {
        // One 1×3×3 image with distinct values: every output pixel is either 0 or the input
        // pixel at a constant offset within [-1, 1]², and the seed fixes the result.
        let v: Vec<f32> = (1..=9).map(|i| i as f32).collect();
        let x = Tensor::from_vec(v.clone(), vec![1, 1, 3, 3], Device::Cpu).unwrap();
        let aug = Augmentation::RandomShift { max: 1 };
        let mut offsets = std::collections::HashSet::new();
        for seed in 0..40 {
            let y = aug.apply(&x, seed).unwrap().to_vec::<f32>().unwrap();
            assert_eq!(y, aug.apply(&x, seed).unwrap().to_vec::<f32>().unwrap());
            let mut found = None;
            'search: for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let ok = (0..3i64).all(|r| {
                        (0..3i64).all(|c| {
                            let (sr, sc) = (r - dy, c - dx);
                            let want = if (0..3).contains(&sr) && (0..3).contains(&sc) {
                                v[(sr * 3 + sc) as usize]
                            } else {
                                0.0
                            };
                            y[(r * 3 + c) as usize] == want
                        })
                    });
                    if ok {
                        found = Some((dy, dx));
                        break 'search;
                    }
                }
            }
            offsets.insert(found.expect("a shift within [-1, 1]²"));
        }
        assert!(offsets.len() > 4, "only {offsets:?} over 40 seeds");
        let flat = Tensor::from_vec(v, vec![1, 9], Device::Cpu).unwrap();
        assert!(
            aug.apply(&flat, 0)
                .unwrap_err()
                .to_string()
                .contains("[N, C, H, W]")
        );
    }
}
