//! Iris (150 flowers, 4 measurements, 3 species) with a softmax classifier trained by
//! cross-entropy on class ids.
//!
//! Stratified 80/20 split, standardisation fitted on the training part, Dense(4 → 16, relu) →
//! Dense(16 → 3) logits, Adam.
//!
//! Run: `cargo run --release --example iris`

use ember_nn::data::{self, LabelColumn};
use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn main() -> ember_nn::Result<()> {
    let table = data::parse_csv(
        include_bytes!("../data/iris.csv"),
        "data/iris.csv",
        &LabelColumn::Name("label".into()),
    )?;
    let (train, test) = data::split_and_standardise(&table, 0.2, 0, true)?;
    let mut rng = StdRng::seed_from_u64(0);
    let mut model = Sequential::new()
        .add(Dense::new(4, 16, Activation::Relu, &mut rng)?)
        .add(Dense::new(16, 3, Activation::None, &mut rng)?)
        .compile(
            Optimizer::adam().with_lr(0.01),
            Loss::CrossEntropy,
            &[Metric::Accuracy],
        );
    print!("{}", model.summary(&[4])?);
    let history = model.fit(
        &train.features_tensor(DType::F32)?,
        &train.labels_tensor(DType::F32)?,
        FitConfig {
            epochs: 60,
            batch_size: 16,
            validation_split: 0.1,
            verbose: 0,
            ..FitConfig::default()
        },
    )?;
    if let Some(last) = history.last() {
        println!("epoch {}: {}", last.epoch, last.line());
    }
    let eval = model.evaluate(
        &test.features_tensor(DType::F32)?,
        &test.labels_tensor(DType::F32)?,
        64,
    )?;
    println!(
        "test ({} flowers): loss {:.4}, accuracy {:.4}",
        test.rows(),
        eval.loss,
        eval.get("accuracy").unwrap_or(f64::NAN)
    );
    Ok(())
}
