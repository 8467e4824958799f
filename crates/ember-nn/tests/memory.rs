//! Memory stays flat over a training run: `fit` drops each step's graph once `backward` has
//! consumed it. (Its own test binary, so no other test allocates tensors meanwhile.)

use ember_core::memory::live_bytes;
use ember_core::{Activation, Device, Tensor};
use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn live_tensor_memory_does_not_grow_with_epochs() {
    let x: Vec<f32> = (0..400).map(|i| ((i * 37) % 101) as f32 / 101.0).collect();
    let y: Vec<f32> = x
        .chunks(4)
        .map(|r| f32::from(u8::from(r[0] > r[1])))
        .collect();
    let x = Tensor::from_vec(x, (100, 4), Device::Cpu).unwrap();
    let y = Tensor::from_vec(y, (100, 1), Device::Cpu).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    let mut model = Sequential::new()
        .add(Dense::new(4, 16, Activation::Relu, &mut rng).unwrap())
        .add(Dense::new(16, 1, Activation::Sigmoid, &mut rng).unwrap())
        .compile(
            Optimizer::adam(),
            Loss::BinaryCrossEntropy,
            &[Metric::Accuracy],
        );
    let cfg = |initial_epoch, epochs| FitConfig {
        epochs,
        initial_epoch,
        batch_size: 10,
        validation_split: 0.2,
        verbose: 0,
        ..FitConfig::default()
    };
    // The first epoch creates the optimizer state; after that nothing may accumulate.
    model.fit(&x, &y, cfg(0, 1)).unwrap();
    let after_one = live_bytes();
    model.fit(&x, &y, cfg(1, 20)).unwrap();
    assert_eq!(live_bytes(), after_one);
}
