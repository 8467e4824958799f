//! End-to-end training: the default `ember train` configuration on breast cancer, XOR, the
//! digits MLP, `fit`'s Keras semantics, early stopping, and thread-count determinism.

use ember_core::{Activation, DType, Device, Tensor};
use ember_nn::callbacks::{Callback, Control, EarlyStopping};
use ember_nn::data::{self, LabelColumn, Scaler};
use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::cell::RefCell;
use std::rc::Rc;

const BREAST_CANCER: &[u8] = include_bytes!("../../../data/breast_cancer.csv");
const DIGITS: &[u8] = include_bytes!("../../../data/digits.csv");

fn quiet(epochs: usize, batch_size: usize, validation_split: f64) -> FitConfig {
    FitConfig {
        epochs,
        batch_size,
        validation_split,
        verbose: 0,
        ..FitConfig::default()
    }
}

/// The `ember train` default pipeline: stratified 20% test split (seed 0), standardisation fitted on the
/// rows `fit` trains on (the first 80% of the rest), the seed architecture, Adam, BCE, batch
/// 10, validation_split 0.2.
#[test]
fn breast_cancer_default_config_reaches_95_percent() {
    let table = data::parse_csv(BREAST_CANCER, "breast_cancer.csv", &LabelColumn::Last).unwrap();
    let (trainval_idx, test_idx) = data::stratified_split(&table.labels, 0.2, 0).unwrap();
    let mut trainval = table.select(&trainval_idx).unwrap();
    let mut test = table.select(&test_idx).unwrap();
    let n_fit = (trainval.rows() as f64 * 0.8).ceil() as usize;
    let scaler =
        Scaler::fit_standard(&trainval.select(&(0..n_fit).collect::<Vec<_>>()).unwrap()).unwrap();
    scaler.transform(&mut trainval).unwrap();
    scaler.transform(&mut test).unwrap();

    let mut rng = StdRng::seed_from_u64(0);
    let mut model = Sequential::new()
        .add(Dense::new(30, 10, Activation::Relu, &mut rng).unwrap())
        .add(Dense::new(10, 5, Activation::Relu, &mut rng).unwrap())
        .add(Dense::new(5, 1, Activation::Sigmoid, &mut rng).unwrap())
        .compile(
            Optimizer::adam(),
            Loss::BinaryCrossEntropy,
            &[Metric::Accuracy],
        );
    let x = trainval.features_tensor(DType::F32).unwrap();
    let y = trainval.labels_column(DType::F32).unwrap();
    let history = model.fit(&x, &y, quiet(100, 10, 0.2)).unwrap();
    assert_eq!(history.epochs.len(), 100);
    // 456 rows left after the test split, 365 of them train: 37 steps per epoch, the last
    // one of 5 rows.
    assert_eq!(trainval.rows(), 456);
    assert_eq!(model.optimizer.iterations(), 100 * 37);
    let losses = history.series("loss");
    assert!(losses[99] < losses[0] / 3.0, "{losses:?}");
    let eval = model
        .evaluate(
            &test.features_tensor(DType::F32).unwrap(),
            &test.labels_column(DType::F32).unwrap(),
            32,
        )
        .unwrap();
    let acc = eval.get("accuracy").unwrap();
    assert!(acc >= 0.95, "test accuracy {acc}");
}

#[test]
fn xor_reaches_100_percent() {
    let x = Tensor::from_vec(vec![0f32, 0., 0., 1., 1., 0., 1., 1.], (4, 2), Device::Cpu).unwrap();
    let y = Tensor::from_vec(vec![0f32, 1., 1., 0.], (4, 1), Device::Cpu).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let mut model = Sequential::new()
        .add(Dense::new(2, 8, Activation::Tanh, &mut rng).unwrap())
        .add(Dense::new(8, 1, Activation::Sigmoid, &mut rng).unwrap())
        .compile(
            Optimizer::adam().with_lr(0.05),
            Loss::BinaryCrossEntropy,
            &[Metric::Accuracy],
        );
    model.fit(&x, &y, quiet(300, 4, 0.0)).unwrap();
    let eval = model.evaluate(&x, &y, 4).unwrap();
    assert_eq!(eval.get("accuracy"), Some(1.0), "loss {}", eval.loss);
    let p = model.predict(&x, 4).unwrap().to_vec::<f32>().unwrap();
    assert!(
        p[0] < 0.5 && p[1] > 0.5 && p[2] > 0.5 && p[3] < 0.5,
        "{p:?}"
    );
}

fn digits_split() -> (Table, Table) {
    let table = data::parse_csv(DIGITS, "digits.csv", &LabelColumn::Name("label".into())).unwrap();
    let (train_idx, test_idx) = data::stratified_split(&table.labels, 0.2, 0).unwrap();
    let (mut train, mut test) = (
        table.select(&train_idx).unwrap(),
        table.select(&test_idx).unwrap(),
    );
    let scaler = Scaler::fit_min_max(&train).unwrap();
    scaler.transform(&mut train).unwrap();
    scaler.transform(&mut test).unwrap();
    (train, test)
}

#[test]
fn digits_mlp_reaches_95_percent() {
    let (train, test) = digits_split();
    assert_eq!(test.rows(), 359); // rounded per class
    let mut rng = StdRng::seed_from_u64(0);
    let mut model = Sequential::new()
        .add(Dense::new(64, 64, Activation::Relu, &mut rng).unwrap())
        .add(Dense::new(64, 10, Activation::None, &mut rng).unwrap())
        .compile(
            Optimizer::adam().with_lr(0.003),
            Loss::CrossEntropy,
            &[Metric::Accuracy],
        );
    let x = train.features_tensor(DType::F32).unwrap();
    let y = train.labels_tensor(DType::F32).unwrap();
    model.fit(&x, &y, quiet(30, 32, 0.1)).unwrap();
    let eval = model
        .evaluate(
            &test.features_tensor(DType::F32).unwrap(),
            &test.labels_tensor(DType::F32).unwrap(),
            128,
        )
        .unwrap();
    let acc = eval.get("accuracy").unwrap();
    assert!(acc >= 0.95, "digits test accuracy {acc}");
}

/// Trains a wider digits model for a few epochs and returns every weight's bits.
fn train_digits_bits(train: &Table) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(5);
    let mut model = Sequential::new()
        .add(Dense::new(64, 256, Activation::Relu, &mut rng).unwrap())
        .add(Dense::new(256, 10, Activation::None, &mut rng).unwrap())
        .compile(Optimizer::adam(), Loss::CrossEntropy, &[Metric::Accuracy]);
    let x = train.features_tensor(DType::F32).unwrap();
    let y = train.labels_tensor(DType::F32).unwrap();
    model.fit(&x, &y, quiet(2, 256, 0.1)).unwrap();
    model
        .network
        .named_parameters()
        .iter()
        .flat_map(|(_, t)| t.to_vec::<f32>().unwrap())
        .map(f32::to_bits)
        .collect()
}

#[test]
fn same_seed_with_1_and_2_threads_gives_bitwise_identical_weights() {
    let (train, _) = digits_split();
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1).install(|| train_digits_bits(&train));
    let two = pool(2).install(|| train_digits_bits(&train));
    assert_eq!(one.len(), 64 * 256 + 256 + 256 * 10 + 10);
    assert!(one == two, "weights differ between 1 and 2 threads");
}

fn tiny_problem() -> (Tensor, Tensor) {
    // 10 rows, 2 features; the label is 1 when the first feature is large.
    let x: Vec<f32> = (0..20).map(|i| ((i * 7) % 11) as f32 / 10.0).collect();
    let y: Vec<f32> = x
        .chunks(2)
        .map(|r| f32::from(u8::from(r[0] > 0.5)))
        .collect();
    (
        Tensor::from_vec(x, (10, 2), Device::Cpu).unwrap(),
        Tensor::from_vec(y, (10, 1), Device::Cpu).unwrap(),
    )
}

fn tiny_model(opt: Optimizer) -> Model {
    let mut rng = StdRng::seed_from_u64(2);
    Sequential::new()
        .add(Dense::new(2, 4, Activation::Tanh, &mut rng).unwrap())
        .add(Dense::new(4, 1, Activation::Sigmoid, &mut rng).unwrap())
        .compile(opt, Loss::BinaryCrossEntropy, &[Metric::Accuracy])
}

/// Counts batches per epoch.
struct BatchCounter(Rc<RefCell<Vec<usize>>>);

impl Callback for BatchCounter {
    fn on_batch_end(&mut self, epoch: usize, _batch: usize, _loss: f64) {
        let mut v = self.0.borrow_mut();
        if v.len() <= epoch {
            v.resize(epoch + 1, 0);
        }
        v[epoch] += 1;
    }
}

#[test]
fn validation_split_takes_the_last_rows_and_partial_batches_count() {
    let (x, y) = tiny_problem();
    let mut model = tiny_model(Optimizer::adam().with_lr(0.01));
    let counts = Rc::new(RefCell::new(Vec::new()));
    let mut cfg = quiet(2, 3, 0.3);
    cfg.callbacks.push(Box::new(BatchCounter(counts.clone())));
    let history = model.fit(&x, &y, cfg).unwrap();
    // ceil(10 · 0.7) = 7 training rows: batches of 3, 3 and 1.
    assert_eq!(*counts.borrow(), vec![3, 3]);
    assert_eq!(model.optimizer.iterations(), 6);
    // The validation loss is the loss on the last 3 rows with the final weights.
    let eval = model
        .evaluate(&x.narrow(0, 7, 3).unwrap(), &y.narrow(0, 7, 3).unwrap(), 3)
        .unwrap();
    assert_eq!(history.epochs[1].val_loss, Some(eval.loss));
    assert_eq!(history.epochs[1].get("val_accuracy"), eval.get("accuracy"));
}

#[test]
fn epoch_loss_is_the_batch_size_weighted_mean() {
    // With lr 0 the weights never move, so the epoch loss must equal the loss over all 7
    // training rows; an unweighted mean of the batch losses (3, 3, 1 rows) would not.
    let (x, y) = tiny_problem();
    let mut model = tiny_model(Optimizer::sgd().with_lr(0.0));
    let history = model.fit(&x, &y, quiet(1, 3, 0.3)).unwrap();
    let all = model
        .evaluate(&x.narrow(0, 0, 7).unwrap(), &y.narrow(0, 0, 7).unwrap(), 7)
        .unwrap();
    assert!(
        (history.epochs[0].loss - all.loss).abs() < 1e-6,
        "{} vs {}",
        history.epochs[0].loss,
        all.loss
    );
    // And the accuracy counts every training row once.
    assert_eq!(history.epochs[0].get("accuracy"), all.get("accuracy"));
}

#[test]
fn shuffling_changes_batches_but_not_with_the_same_seed() {
    let (x, y) = tiny_problem();
    let weights = |shuffle: bool, seed: u64| {
        let mut model = tiny_model(Optimizer::sgd().with_lr(0.5));
        let mut cfg = quiet(3, 3, 0.0);
        cfg.shuffle = shuffle;
        cfg.seed = seed;
        model.fit(&x, &y, cfg).unwrap();
        model.network.named_parameters()[0]
            .1
            .to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(weights(true, 9), weights(true, 9));
    assert_ne!(weights(true, 9), weights(false, 9));
    assert_ne!(weights(true, 9), weights(true, 10));
}

/// Records the first layer's weights at the end of each epoch.
struct Snapshots(Rc<RefCell<Vec<Vec<f32>>>>);

impl Callback for Snapshots {
    fn on_epoch_end(
        &mut self,
        _logs: &EpochLogs,
        params: &[(String, Tensor)],
    ) -> ember_nn::Result<Control> {
        self.0.borrow_mut().push(params[0].1.to_vec::<f32>()?);
        Ok(Control::Continue)
    }
}

#[test]
fn early_stopping_stops_and_restores_the_best_weights() {
    // Validation labels are the opposite of what the training rows teach, so val_loss rises
    // from the first epoch on: the best epoch is epoch 1.
    let (x, y) = tiny_problem();
    let mut yv = y.to_vec::<f32>().unwrap();
    for v in yv.iter_mut().skip(7) {
        *v = 1.0 - *v;
    }
    let y = Tensor::from_vec(yv, (10, 1), Device::Cpu).unwrap();
    let mut model = tiny_model(Optimizer::adam().with_lr(0.05));
    let snaps = Rc::new(RefCell::new(Vec::new()));
    let mut cfg = quiet(50, 7, 0.3);
    cfg.callbacks.push(Box::new(Snapshots(snaps.clone())));
    cfg.callbacks.push(Box::new(
        EarlyStopping::new("val_loss", 2).restore_best_weights(true),
    ));
    let history = model.fit(&x, &y, cfg).unwrap();
    let val = history.series("val_loss");
    assert!(history.epochs.len() < 50, "did not stop: {val:?}");
    let best = val
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap();
    assert_eq!(history.epochs.len(), best + 1 + 2, "{val:?}");
    let now = model.network.named_parameters()[0]
        .1
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(now, snaps.borrow()[best]);
    assert_ne!(now, *snaps.borrow().last().unwrap());
}

#[test]
fn fit_rejects_bad_settings_without_panicking() {
    let (x, y) = tiny_problem();
    let mut model = tiny_model(Optimizer::adam());
    assert!(model.fit(&x, &y, quiet(1, 0, 0.0)).is_err());
    assert!(model.fit(&x, &y, quiet(1, 3, 1.0)).is_err());
    let err = model
        .fit(&x, &y.narrow(0, 0, 9).unwrap(), quiet(1, 3, 0.0))
        .unwrap_err();
    assert!(err.to_string().contains("[10, 2]"), "{err}");
    let wrong = Tensor::zeros(vec![4, 3], DType::F32, Device::Cpu).unwrap();
    assert!(
        model
            .predict(&wrong, 2)
            .unwrap_err()
            .to_string()
            .contains("Dense(2 -> 4)")
    );
}

/// Records every (epoch, batch, loss) it is given.
struct BatchLosses(Rc<RefCell<Vec<(usize, usize, f64)>>>);

impl Callback for BatchLosses {
    fn on_batch_end(&mut self, epoch: usize, batch: usize, loss: f64) {
        self.0.borrow_mut().push((epoch, batch, loss));
    }
}

/// Reading losses and outputs once per epoch (what a GPU does by default) gives exactly the
/// history, batch losses and weights of reading them after every batch.
#[test]
fn per_epoch_host_reads_match_per_batch_reads() {
    let (x, y) = tiny_problem();
    let run = |reads: HostReads| {
        let mut model = tiny_model(Optimizer::adam().with_lr(0.05));
        let seen = Rc::new(RefCell::new(Vec::new()));
        let mut cfg = quiet(3, 3, 0.3);
        cfg.host_reads = reads;
        cfg.callbacks.push(Box::new(BatchLosses(seen.clone())));
        let history = model.fit(&x, &y, cfg).unwrap();
        let weights: Vec<u32> = model
            .network
            .named_parameters()
            .iter()
            .flat_map(|(_, t)| t.to_vec::<f32>().unwrap())
            .map(f32::to_bits)
            .collect();
        let seen = seen.borrow().clone();
        (history, seen, weights)
    };
    let (h_batch, seen_batch, w_batch) = run(HostReads::PerBatch);
    let (h_epoch, seen_epoch, w_epoch) = run(HostReads::PerEpoch);
    assert_eq!(seen_batch.len(), 9, "3 epochs of 3 batches");
    assert_eq!(seen_batch, seen_epoch);
    assert_eq!(w_batch, w_epoch);
    assert_eq!(h_batch.epochs.len(), h_epoch.epochs.len());
    for (a, b) in h_batch.epochs.iter().zip(&h_epoch.epochs) {
        assert_eq!(a.loss, b.loss);
        assert_eq!(a.metrics, b.metrics);
        assert_eq!(a.val_loss, b.val_loss);
        assert_eq!(a.val_metrics, b.val_metrics);
    }
}

/// A diverging run is still stopped with an error naming the optimizer step when losses are
/// read once per epoch.
#[test]
fn per_epoch_host_reads_still_catch_a_non_finite_loss() {
    let (x, y) = tiny_problem();
    // A NaN feature makes the first batch's loss NaN (the probability clamp keeps a merely
    // huge loss finite).
    let x = x.mul_scalar(f64::NAN).unwrap();
    for reads in [HostReads::PerBatch, HostReads::PerEpoch] {
        let mut model = tiny_model(Optimizer::sgd().with_lr(0.1));
        let mut cfg = quiet(3, 3, 0.0);
        cfg.host_reads = reads;
        let err = model.fit(&x, &y, cfg).unwrap_err();
        match &err {
            NnError::Diverged {
                step: 1,
                epoch: Some(1),
                batch: Some(0),
                loss,
            } if loss.is_nan() => {}
            other => panic!("{reads:?}: expected Diverged at step 1, got {other:?}"),
        }
        assert!(
            err.to_string()
                .contains("loss became NaN at optimizer step 1 (epoch 1, batch 0):"),
            "{reads:?}: {err}"
        );
        // Per batch, the NaN step is never applied; per epoch, the epoch's 4 batches ran
        // before the losses were read (the documented difference).
        let steps = model.optimizer.iterations();
        match reads {
            HostReads::PerEpoch => assert_eq!(steps, 4),
            _ => assert_eq!(steps, 0),
        }
    }
}

/// A learning rate far too large makes the loss overflow to infinity and then NaN. That is
/// reported as `NnError::Diverged` naming the epoch, batch and step, not as a configuration
/// error, and the update of the diverged batch is not applied.
#[test]
fn a_huge_learning_rate_is_reported_as_divergence() {
    let (x, y) = tiny_problem();
    let mut rng = StdRng::seed_from_u64(3);
    let mut model = Sequential::new()
        .add(Dense::new(2, 4, Activation::None, &mut rng).unwrap())
        .add(Dense::new(4, 1, Activation::None, &mut rng).unwrap())
        .compile(Optimizer::sgd().with_lr(1e30), Loss::MeanSquaredError, &[]);
    let err = model.fit(&x, &y, quiet(5, 2, 0.0)).unwrap_err();
    let NnError::Diverged {
        step,
        epoch: Some(epoch),
        batch: Some(batch),
        loss,
    } = err
    else {
        panic!("expected NnError::Diverged, got {err:?}");
    };
    assert!(!loss.is_finite(), "{loss}");
    assert_eq!(
        step,
        model.optimizer.iterations() + 1,
        "the bad step is not applied"
    );
    assert_eq!(step, (epoch as u64 - 1) * 5 + batch as u64 + 1);
    assert!(
        step > 1,
        "the first loss is finite; the first update blows up the weights"
    );
    assert!(std::error::Error::source(&err).is_none());
}

/// Every parameter and buffer of the model, as bits.
fn state_bits(model: &Model) -> Vec<(String, Vec<u64>)> {
    let mut all = model.network.named_parameters();
    all.extend(model.network.named_buffers());
    all.into_iter()
        .map(|(name, t)| {
            let bits = t
                .to_vec::<f64>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            (name, bits)
        })
        .collect()
}

/// `predict` and `evaluate` pass `training = false` and leave no mode behind: training after
/// them gives bit-identical weights, running statistics and dropout masks to training without
/// them, both through `fit` and through a bare `train_step` (which, when the mode was stored,
/// ran in whatever mode the last call had left).
#[test]
fn predict_between_trainings_does_not_change_them() {
    let (x, y) = tiny_problem();
    let build = || {
        let mut rng = StdRng::seed_from_u64(5);
        Sequential::new()
            .add(Dense::new(2, 6, Activation::Relu, &mut rng).unwrap())
            .add(BatchNorm1d::new(6).unwrap())
            .add(Dropout::new(0.5, 9).unwrap())
            .add(Dense::new(6, 1, Activation::Sigmoid, &mut rng).unwrap())
            .compile(
                Optimizer::adam().with_lr(0.05),
                Loss::BinaryCrossEntropy,
                &[Metric::Accuracy],
            )
    };
    let run = |look_in_between: bool| {
        let mut model = build();
        model.fit(&x, &y, quiet(2, 3, 0.0)).unwrap();
        if look_in_between {
            let before = state_bits(&model);
            let p1 = model.predict(&x, 4).unwrap().to_vec::<f64>().unwrap();
            let p2 = model.predict(&x, 4).unwrap().to_vec::<f64>().unwrap();
            assert_eq!(p1, p2, "predict is deterministic (no dropout)");
            model.evaluate(&x, &y, 4).unwrap();
            assert_eq!(
                state_bits(&model),
                before,
                "predict/evaluate change no state"
            );
        }
        model.train_step(&x, &y).unwrap();
        model.fit(&x, &y, quiet(2, 3, 0.0)).unwrap();
        model.train_step(&x, &y).unwrap();
        state_bits(&model)
    };
    let plain = run(false);
    let with_predict = run(true);
    assert_eq!(plain, with_predict);
}

#[test]
fn evaluate_on_zero_rows_is_an_error_not_a_zero_accuracy() {
    let (x, y) = tiny_problem();
    let model = tiny_model(Optimizer::adam());
    let (x0, y0) = (x.narrow(0, 0, 0).unwrap(), y.narrow(0, 0, 0).unwrap());
    let err = model.evaluate(&x0, &y0, 4).unwrap_err().to_string();
    assert!(
        err.contains("no rows") && err.contains("undefined"),
        "{err}"
    );
}
