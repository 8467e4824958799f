//! MNIST (the 10 000-image training subset and 2 000-image test subset in `data/mnist/`, IDX
//! format, gzip) with a multi-layer perceptron: Flatten-free 784 → 128 relu → 10 logits, Adam.
//!
//! Run from the repository root: `cargo run --release --example mnist [-- EPOCHS]`

use ember_nn::data::load_mnist;
use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::Path;
use std::time::Instant;

fn main() -> ember_nn::Result<()> {
    let epochs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let (x_train, y_train) = load_mnist(
        &dir.join("train-images-idx3-ubyte.gz"),
        &dir.join("train-labels-idx1-ubyte.gz"),
    )?;
    let (x_test, y_test) = load_mnist(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &dir.join("t10k-labels-idx1-ubyte.gz"),
    )?;
    println!("train {:?}, test {:?}", x_train.shape(), x_test.shape());

    let mut rng = StdRng::seed_from_u64(0);
    let mut model = Sequential::new()
        .add(Dense::new(784, 128, Activation::Relu, &mut rng)?)
        .add(Dense::new(128, 10, Activation::None, &mut rng)?)
        .compile(Optimizer::adam(), Loss::CrossEntropy, &[Metric::Accuracy]);
    print!("{}", model.summary(&[784])?);
    let start = Instant::now();
    model.fit(
        &x_train,
        &y_train,
        FitConfig {
            epochs,
            batch_size: 64,
            validation_split: 0.1,
            verbose: 1,
            ..FitConfig::default()
        },
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let eval = model.evaluate(&x_test, &y_test, 500)?;
    println!(
        "{epochs} epochs in {seconds:.2} s ({:.0} steps/s); test ({} images): loss {:.4}, accuracy {:.4}",
        model.optimizer.iterations() as f64 / seconds,
        x_test.shape()[0],
        eval.loss,
        eval.get("accuracy").unwrap_or(f64::NAN)
    );
    Ok(())
}
