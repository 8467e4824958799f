//! The seed program, written with ember: the Keras script ember grew from
//! (`peers/seed_keras.py`), step for step.
//!
//! X is 100×10 uniform [0, 1), y random 0/1. Dense(10, relu) → Dense(5, relu) → Dense(1,
//! sigmoid), Adam + binary cross-entropy + accuracy, `fit(epochs=100, batch_size=10,
//! validation_split=0.2)`, then `evaluate` and `predict`. `--variant sgd` uses sigmoid hidden
//! activations, SGD and 1000 epochs, as the Python script does. The labels are random, so the
//! accuracy only shows that the model can memorise; the figures of interest are the timings.
//!
//! Run: `cargo run --release --example seed_keras [-- --variant sgd]`

use ember_nn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn main() -> ember_nn::Result<()> {
    let sgd = std::env::args().any(|a| a == "sgd" || a == "--variant=sgd");
    let (epochs, act, optimizer) = if sgd {
        (1000, Activation::Sigmoid, Optimizer::sgd())
    } else {
        (100, Activation::Relu, Optimizer::adam())
    };

    // X = rng.random((100, 10)); y = rng.integers(0, 2, size=(100, 1))
    let mut rng = StdRng::seed_from_u64(0);
    let x: Vec<f32> = (0..100 * 10).map(|_| rng.random::<f32>()).collect();
    let y: Vec<f32> = (0..100)
        .map(|_| f32::from(u8::from(rng.random::<bool>())))
        .collect();
    let x = Tensor::from_vec(x, (100, 10), Device::Cpu)?;
    let y = Tensor::from_vec(y, (100, 1), Device::Cpu)?;

    let t0 = Instant::now();
    let mut model = Sequential::new()
        .add(Dense::new(10, 10, act, &mut rng)?)
        .add(Dense::new(10, 5, act, &mut rng)?)
        .add(Dense::new(5, 1, Activation::Sigmoid, &mut rng)?)
        .compile(optimizer, Loss::BinaryCrossEntropy, &[Metric::Accuracy]);
    let t1 = Instant::now();
    let history = model.fit(
        &x,
        &y,
        FitConfig {
            epochs,
            batch_size: 10,
            validation_split: 0.2,
            verbose: 0,
            ..FitConfig::default()
        },
    )?;
    let t2 = Instant::now();
    let eval = model.evaluate(&x, &y, 32)?;
    let t3 = Instant::now();
    let pred = model.predict(&x, 32)?;
    let t4 = Instant::now();

    print!("{}", model.summary(&[10])?);
    let fit_s = (t2 - t1).as_secs_f64();
    let steps = model.optimizer.iterations();
    let last = history.last().map(|e| e.line()).unwrap_or_default();
    println!("last epoch: {last}");
    println!(
        "variant {} | build+compile {:.4} s | fit {:.3} s ({} steps, {:.1} µs/step, {:.0} steps/s) | evaluate {:.4} s | predict {:.4} s",
        if sgd { "sgd" } else { "adam" },
        (t1 - t0).as_secs_f64(),
        fit_s,
        steps,
        1e6 * fit_s / steps as f64,
        steps as f64 / fit_s,
        (t3 - t2).as_secs_f64(),
        (t4 - t3).as_secs_f64()
    );
    println!(
        "final loss {:.4}, accuracy {:.3}, predictions {:?}",
        eval.loss,
        eval.get("accuracy").unwrap_or(f64::NAN),
        pred.shape()
    );
    Ok(())
}
