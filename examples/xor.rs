//! XOR: the smallest problem a linear model cannot solve and a two-layer network can.
//!
//! Four points, a Dense(2 → 8, tanh) → Dense(8 → 1, sigmoid) network, Adam with a large step
//! and full-batch training; prints the four predictions, which should round to 0 1 1 0.
//!
//! Run: `cargo run --release --example xor`

use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn main() -> ember_nn::Result<()> {
    let x = Tensor::from_vec(vec![0f32, 0., 0., 1., 1., 0., 1., 1.], (4, 2), Device::Cpu)?;
    let y = Tensor::from_vec(vec![0f32, 1., 1., 0.], (4, 1), Device::Cpu)?;
    let mut rng = StdRng::seed_from_u64(1);
    let mut model = Sequential::new()
        .add(Dense::new(2, 8, Activation::Tanh, &mut rng)?)
        .add(Dense::new(8, 1, Activation::Sigmoid, &mut rng)?)
        .compile(
            Optimizer::adam().with_lr(0.05),
            Loss::BinaryCrossEntropy,
            &[Metric::Accuracy],
        );
    let history = model.fit(
        &x,
        &y,
        FitConfig {
            epochs: 300,
            batch_size: 4,
            verbose: 0,
            ..FitConfig::default()
        },
    )?;
    let p = model.predict(&x, 4)?.to_vec::<f32>()?;
    for (input, prob) in [[0, 0], [0, 1], [1, 0], [1, 1]].iter().zip(&p) {
        println!("{input:?} -> {prob:.4}");
    }
    let eval = model.evaluate(&x, &y, 4)?;
    println!(
        "after {} epochs: loss {:.4}, accuracy {:.2}",
        history.epochs.len(),
        eval.loss,
        eval.get("accuracy").unwrap_or(f64::NAN)
    );
    Ok(())
}
