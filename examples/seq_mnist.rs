//! Sequential MNIST: each 28×28 image read as 28 steps of 28 pixels by an LSTM(128), whose
//! final state feeds a Dense 10 (logits); Adam 1e-3, batch 64, cross-entropy. The data are the
//! 10 000-image training subset and the 2 000-image test subset in `data/mnist/` — the task of
//! issue 15 and of `../shared/peers/seq_cnn_peers.py --task lstm` (PyTorch: 95.4–96.7 % test
//! accuracy at epochs 14–20).
//!
//! Run from the repository root:
//! `cargo run --release --example seq_mnist [-- EPOCHS [THREADS]]` (default 20 epochs, all
//! cores). Prints the training throughput and the test accuracy after every epoch.

use ember_nn::data::load_mnist;
use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::Path;
use std::time::Instant;

fn main() -> ember_nn::Result<()> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    let threads: Option<usize> = args.next().and_then(|s| s.parse().ok());
    if let Some(t) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .map_err(|e| NnError::Config(format!("cannot start {t} threads: {e}")))?;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let (x_train, y_train) = load_mnist(
        &dir.join("train-images-idx3-ubyte.gz"),
        &dir.join("train-labels-idx1-ubyte.gz"),
    )?;
    let (x_test, y_test) = load_mnist(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &dir.join("t10k-labels-idx1-ubyte.gz"),
    )?;
    // [n, 784] → [n, 28 steps, 28 pixels].
    let x_train = x_train.reshape(vec![x_train.shape()[0], 28, 28])?;
    let x_test = x_test.reshape(vec![x_test.shape()[0], 28, 28])?;
    println!(
        "train {:?}, test {:?}, {} thread(s)",
        x_train.shape(),
        x_test.shape(),
        rayon::current_num_threads()
    );

    let mut rng = StdRng::seed_from_u64(0);
    let mut model = Sequential::new()
        .add(Recurrent::lstm(
            28,
            128,
            RecurrentOptions::default(),
            &mut rng,
        )?)
        .add(Dense::new(128, 10, Activation::None, &mut rng)?)
        .compile(Optimizer::adam(), Loss::CrossEntropy, &[Metric::Accuracy]);
    print!("{}", model.summary(&[28, 28])?);
    let n = x_train.shape()[0];
    let mut total = 0.0;
    for epoch in 0..epochs {
        let start = Instant::now();
        let h = model.fit(
            &x_train,
            &y_train,
            FitConfig {
                epochs: 1,
                batch_size: 64,
                seed: epoch as u64,
                verbose: 0,
                ..FitConfig::default()
            },
        )?;
        let seconds = start.elapsed().as_secs_f64();
        total += seconds;
        let eval = model.evaluate(&x_test, &y_test, 500)?;
        let loss = h.epochs.last().map_or(f64::NAN, |e| e.loss);
        println!(
            "epoch {:>2}: loss {loss:.4}, {:.0} samples/s, test accuracy {:.4}",
            epoch + 1,
            n as f64 / seconds,
            eval.get("accuracy").unwrap_or(f64::NAN)
        );
    }
    println!("{epochs} epochs in {total:.1} s");
    Ok(())
}
