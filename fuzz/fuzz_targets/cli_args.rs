//! Fuzzes the path from `ember train`'s flags to a trained model, through the public ember-nn
//! calls that the CLI's argument handling ends in.
//!
//! The CLI's own parse-to-config code (`TrainArgs`, `check_args`, `parse_hidden`,
//! `build_model` in `src/cli/train.rs`) lives in the `ember` binary, which has no library
//! target, so no outside crate can call it; copying the clap struct here would fuzz the copy.
//! Instead the input becomes an argv (NUL-separated words), parsed as `--flag value` pairs the
//! way clap's default value parsers do (`str::parse`), and each value goes to the public call
//! the CLI hands it to: `LabelColumn::parse`, `parse_csv`, `stratified_split`,
//! `parse_activation`, `Optimizer::by_name` and `with_lr`, `Regularizer::l1_l2`,
//! `Dense::with_options`, `Dropout::new`, `Model::fit` with `FitConfig` and `evaluate`, and the
//! metrics with the chosen positive class. What fuzzing the binary's code itself needs is in
//! fuzz/README.md.
//!
//! Oracle: no panic, whatever the values (NaN, infinities, zero sizes, huge counts).
#![no_main]

use ember_core::{Activation, DType};
use ember_nn::data::{self, LabelColumn};
use ember_nn::layers::{Dense, DenseOptions, Dropout, parse_activation};
use ember_nn::loss::Loss;
use ember_nn::metrics::Metric;
use ember_nn::model::{FitConfig, HostReads};
use ember_nn::optim::Optimizer;
use ember_nn::regularizer::Regularizer;
use ember_nn::sequential::Sequential;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A small table: 12 rows, 3 features, labels 0..=2 (two classes when `--two-class` is given).
const TABLE: &str = "a,b,c,y\n0.1,2,3,0\n1,0.5,2,1\n2,1,0.3,2\n0.4,2,3,0\n1,0.7,2,1\n2,1,0.2,2\n\
                     0.3,2,3,0\n1,0.1,2,1\n2,1,0.9,2\n0.8,2,3,0\n1,0.6,2,1\n2,1,0.4,2\n";

/// The flags of `ember train` that reach ember-nn, with the CLI's defaults.
struct Flags {
    target: Option<String>,
    hidden: String,
    activation: String,
    optimizer: String,
    lr: Option<f64>,
    epochs: usize,
    batch_size: usize,
    validation_split: f64,
    test_split: f64,
    l1: f64,
    l2: f64,
    dropout: f64,
    seed: u64,
    positive_class: usize,
    two_class: bool,
}

impl Flags {
    /// Parses `--flag value` pairs as clap would; `None` where clap would reject the command
    /// line (an unknown flag, a missing or unparsable value).
    fn parse(argv: &[&str]) -> Option<Flags> {
        let mut f = Flags {
            target: None,
            hidden: "10,5".into(),
            activation: "relu".into(),
            optimizer: "adam".into(),
            lr: None,
            epochs: 100,
            batch_size: 10,
            validation_split: 0.2,
            test_split: 0.2,
            l1: 0.0,
            l2: 0.0,
            dropout: 0.0,
            seed: 0,
            positive_class: 1,
            two_class: false,
        };
        let mut it = argv.iter();
        while let Some(&flag) = it.next() {
            if flag == "--two-class" {
                f.two_class = true;
                continue;
            }
            let v = *it.next()?;
            match flag {
                "--target" => f.target = Some(v.to_string()),
                "--hidden" => f.hidden = v.to_string(),
                "--activation" => f.activation = v.to_string(),
                "--optimizer" => f.optimizer = v.to_string(),
                "--lr" => f.lr = Some(v.parse().ok()?),
                "--epochs" => f.epochs = v.parse().ok()?,
                "--batch-size" => f.batch_size = v.parse().ok()?,
                "--validation-split" => f.validation_split = v.parse().ok()?,
                "--test-split" => f.test_split = v.parse().ok()?,
                "--l1" => f.l1 = v.parse().ok()?,
                "--l2" => f.l2 = v.parse().ok()?,
                "--dropout" => f.dropout = v.parse().ok()?,
                "--seed" => f.seed = v.parse().ok()?,
                "--positive-class" => f.positive_class = v.parse().ok()?,
                _ => return None,
            }
        }
        Some(f)
    }
}

/// Runs the flags through ember-nn; every `Err` is an accepted outcome.
fn run(f: &Flags) -> ember_nn::Result<()> {
    let label = f
        .target
        .as_deref()
        .map(LabelColumn::parse)
        .unwrap_or(LabelColumn::Last);
    let text = if f.two_class {
        TABLE.replace(",2\n", ",1\n")
    } else {
        TABLE.to_string()
    };
    let table = data::parse_csv(text.as_bytes(), "fuzz.csv", &label)?;
    let classes = table.class_count();
    table.check_class_labels("fuzz.csv", classes)?;
    let (trainval, test) = data::stratified_split(&table.labels, f.test_split, f.seed)?;
    let (trainval, test) = (table.select(&trainval)?, table.select(&test)?);

    let activation = parse_activation(&f.activation)?;
    let regularizer = Regularizer::l1_l2(f.l1, f.l2);
    let mut optimizer = Optimizer::by_name(&f.optimizer)?;
    if let Some(lr) = f.lr {
        optimizer = optimizer.with_lr(lr);
    }
    let mut rng = StdRng::seed_from_u64(f.seed);
    let mut net = Sequential::new();
    let mut width = table.cols();
    for (i, part) in f
        .hidden
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .enumerate()
    {
        let Ok(h) = part.trim().parse::<usize>() else {
            return Ok(()); // The CLI rejects this before ember-nn sees it.
        };
        if h > 64 {
            return Ok(()); // Large layers only cost time and memory here.
        }
        let opts = DenseOptions {
            activation,
            kernel_regularizer: regularizer,
            ..DenseOptions::default()
        };
        net.push(Dense::with_options(width, h, opts, &mut rng)?);
        if f.dropout != 0.0 {
            net.push(Dropout::new(f.dropout, f.seed.wrapping_add(1 + i as u64))?);
        }
        width = h;
    }
    let (outputs, out_act, loss) = if classes == 2 {
        (1, Activation::Sigmoid, Loss::BinaryCrossEntropy)
    } else {
        (classes, Activation::None, Loss::CrossEntropy)
    };
    let opts = DenseOptions {
        activation: out_act,
        kernel_regularizer: regularizer,
        ..DenseOptions::default()
    };
    net.push(Dense::with_options(width, outputs, opts, &mut rng)?);
    let metrics = [
        Metric::Accuracy,
        Metric::Precision,
        Metric::Recall,
        Metric::F1,
        Metric::Auc,
    ];
    let mut model = net.compile(optimizer, loss, &metrics);
    model.positive_class = f.positive_class;

    let xy = |t: &data::Table| -> ember_nn::Result<_> {
        let x = t.features_tensor(DType::F32)?;
        let y = if classes == 2 {
            t.labels_column(DType::F32)?
        } else {
            t.labels_tensor(DType::F32)?
        };
        Ok((x, y))
    };
    let (x, y) = xy(&trainval)?;
    model.fit(
        &x,
        &y,
        FitConfig {
            epochs: f.epochs.min(2),
            batch_size: f.batch_size,
            validation_split: f.validation_split,
            shuffle: true,
            seed: f.seed,
            verbose: 0,
            initial_epoch: 0,
            callbacks: Vec::new(),
            host_reads: HostReads::Auto,
            ..FitConfig::default()
        },
    )?;
    if test.rows() > 0 {
        let (xt, yt) = xy(&test)?;
        model.evaluate(&xt, &yt, f.batch_size.max(1))?;
    }
    Ok(())
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    let argv: Vec<&str> = text.split('\0').collect();
    if let Some(flags) = Flags::parse(&argv) {
        let _ = run(&flags);
    }
});
