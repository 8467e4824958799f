//! Handwritten digits (8×8 pixels, 1797 images) with a multi-layer perceptron.
//!
//! Pixels 0..16 are min-max scaled to [0, 1] (fitted on the training part), stratified 80/20
//! split, Dense(64 → 64, relu) → Dense(64 → 10) logits, Adam, cross-entropy.
//!
//! Run: `cargo run --release --example digits`

use ember_nn::data::{self, LabelColumn, Scaler};
use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::Instant;

fn main() -> ember_nn::Result<()> {
    let table = data::parse_csv(
        include_bytes!("../data/digits.csv"),
        "data/digits.csv",
        &LabelColumn::Name("label".into()),
    )?;
    let (train_idx, test_idx) = data::stratified_split(&table.labels, 0.2, 0)?;
    let (mut train, mut test) = (table.select(&train_idx)?, table.select(&test_idx)?);
    let scaler = Scaler::fit_min_max(&train)?;
    scaler.transform(&mut train)?;
    scaler.transform(&mut test)?;

    let mut rng = StdRng::seed_from_u64(0);
    let mut model = Sequential::new()
        .add(Dense::new(64, 64, Activation::Relu, &mut rng)?)
        .add(Dense::new(64, 10, Activation::None, &mut rng)?)
        .compile(
            Optimizer::adam().with_lr(0.003),
            Loss::CrossEntropy,
            &[Metric::Accuracy],
        );
    let start = Instant::now();
    let history = model.fit(
        &train.features_tensor(DType::F32)?,
        &train.labels_tensor(DType::F32)?,
        FitConfig {
            epochs: 30,
            batch_size: 32,
            validation_split: 0.1,
            verbose: 1,
            ..FitConfig::default()
        },
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let eval = model.evaluate(
        &test.features_tensor(DType::F32)?,
        &test.labels_tensor(DType::F32)?,
        256,
    )?;
    println!(
        "{} epochs in {:.2} s; test ({} images): loss {:.4}, accuracy {:.4}",
        history.epochs.len(),
        seconds,
        test.rows(),
        eval.loss,
        eval.get("accuracy").unwrap_or(f64::NAN)
    );
    Ok(())
}
