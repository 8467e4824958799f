//! Wine recognition (178 wines, 13 chemical measurements, 3 cultivars) with softmax +
//! cross-entropy, L2 regularisation and dropout.
//!
//! Run: `cargo run --release --example wine`

use ember_nn::data::{self, LabelColumn};
use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn main() -> ember_nn::Result<()> {
    let table = data::parse_csv(
        include_bytes!("../data/wine.csv"),
        "data/wine.csv",
        &LabelColumn::Name("label".into()),
    )?;
    let (train, test) = data::split_and_standardise(&table, 0.2, 0, true)?;
    let mut rng = StdRng::seed_from_u64(0);
    let l2 = Regularizer::l1_l2(0.0, 1e-3);
    let dense = |i, o, act, rng: &mut StdRng| {
        Dense::with_options(
            i,
            o,
            DenseOptions {
                activation: act,
                kernel_regularizer: l2,
                ..DenseOptions::default()
            },
            rng,
        )
    };
    let mut model = Sequential::new()
        .add(dense(13, 32, Activation::Relu, &mut rng)?)
        .add(Dropout::new(0.2, 1)?)
        .add(dense(32, 3, Activation::None, &mut rng)?)
        .compile(
            Optimizer::adam().with_lr(0.005),
            Loss::CrossEntropy,
            &[Metric::Accuracy],
        );
    print!("{}", model.summary(&[13])?);
    println!("{}", model.to_mermaid(&[13])?);
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
        "test ({} wines): loss {:.4}, accuracy {:.4}",
        test.rows(),
        eval.loss,
        eval.get("accuracy").unwrap_or(f64::NAN)
    );
    Ok(())
}
