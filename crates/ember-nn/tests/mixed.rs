//! Mixed precision (`ember_nn::mixed`): layers under a bf16/f16 policy against f64 references of
//! the rounded operands, f32 master weights and gradients, the loss scaler's skip / back-off /
//! growth, f16 underflow without scaling, determinism across thread and rank counts, and
//! accuracy on the digits data beside f32.

use ember_comm::local::LocalGroup;
use ember_comm::{Communicator, SingleProcess};
use ember_core::{Activation, Conv2dOptions, DType, Device, Tensor};
use ember_nn::data::{self, LabelColumn, Scaler};
use ember_nn::dist::{AllReduce, Distributed};
use ember_nn::mixed::{LossScaler, LossScaling, Precision, autocast};
use ember_nn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;
use std::time::Duration;

const DIGITS: &[u8] = include_bytes!("../../../data/digits.csv");

fn quiet(epochs: usize, batch_size: usize) -> FitConfig {
    FitConfig {
        epochs,
        batch_size,
        verbose: 0,
        ..FitConfig::default()
    }
}

fn round(half: DType, v: f32) -> f64 {
    Tensor::from_vec(vec![v], vec![1], Device::Cpu)
        .unwrap()
        .to_dtype(half)
        .unwrap()
        .to_vec::<f64>()
        .unwrap()[0]
}

fn rounded_f64(t: &Tensor, half: DType) -> Tensor {
    t.to_dtype(half).unwrap().to_dtype(DType::F64).unwrap()
}

/// Dense on `[N, F]` and `[N, T, F]` under bf16 and f16: the f32 result equals the f64 product
/// of the rounded input and weight (plus the f32 bias, then relu) to f32 rounding.
#[test]
fn dense_forward_is_the_product_of_rounded_operands() {
    let mut rng = StdRng::seed_from_u64(1);
    let layer = Dense::new(40, 24, Activation::Relu, &mut rng).unwrap();
    let b = layer.bias().unwrap().to_vec::<f64>().unwrap();
    for half in [DType::BF16, DType::F16] {
        let p = if half == DType::BF16 {
            Precision::BF16
        } else {
            Precision::F16
        };
        for shape in [vec![33, 40], vec![3, 11, 40]] {
            let x =
                Tensor::rand(-2.0, 2.0, shape.clone(), DType::F32, Device::Cpu, &mut rng).unwrap();
            let y = autocast(p, || layer.forward(&x, true)).unwrap();
            assert_eq!(y.dtype(), DType::F32);
            let rows: usize = shape[..shape.len() - 1].iter().product();
            let xr = rounded_f64(&x.reshape(vec![rows, 40]).unwrap(), half);
            let wr = rounded_f64(layer.weight(), half);
            let z = xr
                .matmul(&wr.t().unwrap())
                .unwrap()
                .to_vec::<f64>()
                .unwrap();
            let got = y.to_vec::<f32>().unwrap();
            for (i, (g, z)) in got.iter().zip(&z).enumerate() {
                let want = (z + b[i % 24]).max(0.0);
                assert!(
                    (*g as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{half:?} {shape:?}[{i}]: {g} vs {want}"
                );
            }
            // And it differs from the plain f32 layer (the rounding is really applied).
            let f = layer.forward(&x, true).unwrap().to_vec::<f32>().unwrap();
            assert_ne!(got, f, "{half:?}: the policy changed nothing");
        }
    }
}

/// Conv2d under bf16: the f64 convolution of the rounded operands; the weight's gradient is
/// f32 and equals the f32 convolution gradient taken at the rounded input (straight-through).
#[test]
fn conv_forward_and_weight_gradient_under_bf16() {
    let mut rng = StdRng::seed_from_u64(2);
    let conv = Conv2d::new(3, 4, (3, 3), &mut rng).unwrap();
    let x = Tensor::rand(-1.0, 1.0, (2, 3, 7, 6), DType::F32, Device::Cpu, &mut rng).unwrap();
    let y = autocast(Precision::BF16, || conv.forward(&x, true)).unwrap();
    let w = conv.parameters()[0].1.clone();
    let b = conv.parameters()[1].1.to_dtype(DType::F64).unwrap();
    let opts = Conv2dOptions::default();
    let want = rounded_f64(&x, DType::BF16)
        .conv2d(&rounded_f64(&w, DType::BF16), Some(&b), &opts)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    for (g, w) in y.to_vec::<f32>().unwrap().iter().zip(&want) {
        assert!(
            (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{g} vs {w}"
        );
    }
    let grads = y.sum(&[0, 1, 2, 3], false).unwrap().backward().unwrap();
    let gw = grads.get(&w).unwrap();
    assert_eq!(gw.dtype(), DType::F32);
    assert_eq!(w.dtype(), DType::F32);
    // d(sum)/dw at the rounded input, in f64.
    let xr = rounded_f64(&x, DType::BF16);
    let w64 = rounded_f64(&w, DType::BF16).as_variable();
    let g64 = xr
        .conv2d(&w64, None, &opts)
        .unwrap()
        .sum(&[0, 1, 2, 3], false)
        .unwrap()
        .backward()
        .unwrap();
    let want_gw = g64.get(&w64).unwrap().to_vec::<f64>().unwrap();
    for (g, w) in gw.to_vec::<f32>().unwrap().iter().zip(&want_gw) {
        assert!(
            (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{g} vs {w}"
        );
    }
}

/// A small MLP classifier on `rows` random rows (two informative features).
fn mlp(seed: u64, rows: usize) -> (Model, Tensor, Tensor) {
    let mut rng = StdRng::seed_from_u64(seed);
    let net = Sequential::new()
        .add(Dense::new(20, 48, Activation::Relu, &mut rng).unwrap())
        .add(Dense::new(48, 40, Activation::Relu, &mut rng).unwrap())
        .add(Dense::new(40, 1, Activation::None, &mut rng).unwrap());
    let m = net.compile(
        Optimizer::adam(),
        Loss::BinaryCrossEntropyWithLogits,
        &[Metric::Accuracy],
    );
    let x = Tensor::rand(0.0, 1.0, (rows, 20), DType::F32, Device::Cpu, &mut rng).unwrap();
    let y = x
        .narrow(1, 0, 1)
        .unwrap()
        .add(&x.narrow(1, 1, 1).unwrap())
        .unwrap()
        .ge_scalar(1.0)
        .unwrap();
    (m, x, y)
}

fn weights(m: &Model) -> Vec<Vec<f32>> {
    m.network
        .parameters_ref()
        .iter()
        .map(|(_, p)| p.to_vec::<f32>().unwrap())
        .collect()
}

/// Master weights and optimizer state stay f32 through bf16 and f16 training.
#[test]
fn master_weights_and_optimizer_state_stay_f32() {
    for p in [Precision::BF16, Precision::F16] {
        let (mut m, x, y) = mlp(3, 64);
        m.precision = p;
        let h = m.fit(&x, &y, quiet(2, 16)).unwrap();
        assert!(h.last().unwrap().loss.is_finite());
        for (name, t) in m.network.parameters_ref() {
            assert_eq!(t.dtype(), DType::F32, "{p:?} {name}");
        }
        for (name, t) in m.optimizer.state_tensors() {
            assert_eq!(t.dtype(), DType::F32, "{p:?} {name}");
        }
        assert_eq!(m.optimizer.iterations(), 8);
        // f16 reports its scale and skipped steps in the history; bf16 does not scale.
        let logs = h.last().unwrap();
        assert_eq!(
            logs.get("loss_scale").is_some(),
            p == Precision::F16,
            "{p:?}"
        );
    }
}

/// An overflowing scaled gradient: the step is skipped (weights, Adam's moments and step
/// count unchanged) and the scale halves; good steps afterwards train and, after the growth
/// interval, double the scale.
#[test]
fn overflow_skips_the_step_and_halves_the_scale() {
    let (mut m, x, y) = mlp(4, 32);
    m.precision = Precision::F16;
    // Warm the optimizer up with two ordinary steps so its state is not all zeros.
    m.train_step(&x, &y).unwrap();
    m.train_step(&x, &y).unwrap();
    let before_w = weights(&m);
    let before_state: Vec<Vec<f32>> = m
        .optimizer
        .state_tensors()
        .iter()
        .map(|(_, t)| t.to_vec::<f32>().unwrap())
        .collect();
    let steps = m.optimizer.iterations();
    // A scale so large that the scaled gradients overflow f16 (65504) in the backward GEMMs.
    m.loss_scaler = LossScaler::new(LossScaling {
        init_scale: 2f64.powi(60),
        growth_interval: 3,
        ..LossScaling::default()
    });
    m.train_step(&x, &y).unwrap();
    assert_eq!(m.loss_scaler.scale(), 2f64.powi(59));
    assert_eq!(m.loss_scaler.skipped_steps(), 1);
    assert_eq!(
        m.optimizer.iterations(),
        steps,
        "Adam's step count advanced"
    );
    assert_eq!(weights(&m), before_w, "weights changed on a skipped step");
    let after_state: Vec<Vec<f32>> = m
        .optimizer
        .state_tensors()
        .iter()
        .map(|(_, t)| t.to_vec::<f32>().unwrap())
        .collect();
    assert_eq!(after_state, before_state, "optimizer state changed");
    // Back off until the step goes through, then count good steps to the growth.
    let mut guard = 0;
    while m.optimizer.iterations() == steps {
        m.train_step(&x, &y).unwrap();
        guard += 1;
        assert!(guard < 80, "the scale never came down");
    }
    assert_ne!(weights(&m), before_w);
    let good_scale = m.loss_scaler.scale();
    assert_eq!(m.loss_scaler.good_steps(), 1);
    m.train_step(&x, &y).unwrap();
    m.train_step(&x, &y).unwrap();
    assert_eq!(
        m.loss_scaler.scale(),
        good_scale * 2.0,
        "3 good steps must double it"
    );
    assert_eq!(m.loss_scaler.good_steps(), 0);
}

/// A loss so small that its gradients round to zero in f16: without scaling nothing trains;
/// with the default scale (2^16) the same model learns.
#[test]
fn f16_underflows_without_scaling_and_trains_with_it() {
    let run = |scaling: bool| -> (Vec<f32>, f64, f64) {
        let w = Tensor::zeros(vec![1, 4], DType::F32, Device::Cpu)
            .unwrap()
            .as_variable();
        let net = Sequential::new().add(Dense::from_tensors(w, None, Activation::None).unwrap());
        let mut m = net.compile(Optimizer::sgd().with_lr(0.1), Loss::MeanSquaredError, &[]);
        m.precision = Precision::F16;
        m.loss_scaler = LossScaler::new(LossScaling {
            enabled: Some(scaling),
            ..LossScaling::default()
        });
        let mut rng = StdRng::seed_from_u64(5);
        let x = Tensor::rand(0.5, 1.0, (64, 4), DType::F32, Device::Cpu, &mut rng).unwrap();
        // Targets of 5e-7: dL/dout = 2(out − y)/64 ≈ 1.6e-8, below half f16's smallest
        // subnormal (6e-8), so it rounds to 0 before the weight-gradient GEMM.
        let y = Tensor::full(5e-7, vec![64, 1], DType::F32, Device::Cpu).unwrap();
        let h = m.fit(&x, &y, quiet(20, 64)).unwrap();
        let l = h.series("loss");
        (weights(&m).remove(0), l[0], *l.last().unwrap())
    };
    let (w_off, first_off, last_off) = run(false);
    assert!(
        w_off.iter().all(|&v| v == 0.0),
        "unscaled f16 trained: {w_off:?}"
    );
    assert_eq!(first_off, last_off);
    let (w_on, first_on, last_on) = run(true);
    assert!(w_on.iter().any(|&v| v != 0.0), "scaled f16 did not train");
    assert!(
        last_on < 0.25 * first_on,
        "scaled f16: loss {first_on} -> {last_on}"
    );
}

/// bf16 training gives bit-identical weights with 1 and 3 threads.
#[test]
fn bf16_training_is_bit_identical_across_thread_counts() {
    let train = || {
        let (mut m, x, y) = mlp(6, 200);
        m.precision = Precision::BF16;
        m.fit(&x, &y, quiet(2, 64)).unwrap();
        weights(&m)
    };
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1).install(train);
    let three = pool(3).install(train);
    assert!(one == three, "weights differ between 1 and 3 threads");
}

/// Distributed f16 fit: forced overflows skip the first steps on every rank alike, then training
/// goes on, and the weights stay bit-identical between 1 and 2 ranks (tree all-reduce) through
/// skipped and good steps (every part's gradient must be scaled alike for that to hold).
#[test]
fn distributed_f16_skips_together_and_stays_bit_identical() {
    let run = |p: usize| -> Vec<(Vec<Vec<f32>>, f64, u64)> {
        let comms: Vec<Arc<dyn Communicator + Send + Sync>> = if p == 1 {
            vec![Arc::new(SingleProcess)]
        } else {
            LocalGroup::ranks(p, Duration::from_secs(120))
                .into_iter()
                .map(|c| Arc::new(c) as Arc<dyn Communicator + Send + Sync>)
                .collect()
        };
        let handles: Vec<_> = comms
            .into_iter()
            .map(|comm| {
                std::thread::spawn(move || {
                    let (mut m, x, y) = mlp(7, 96);
                    m.precision = Precision::F16;
                    m.loss_scaler = LossScaler::new(LossScaling {
                        // Large enough that the first steps overflow f16, small enough that
                        // training then goes on (so the weights compare real updates).
                        init_scale: 2f64.powi(24),
                        ..LossScaling::default()
                    });
                    m.fit(
                        &x,
                        &y,
                        FitConfig {
                            distributed: Some(Distributed::new(
                                comm as Arc<dyn Communicator>,
                                AllReduce::Tree { micro_shards: 4 },
                            )),
                            ..quiet(4, 32)
                        },
                    )
                    .unwrap();
                    (
                        weights(&m),
                        m.loss_scaler.scale(),
                        m.loss_scaler.skipped_steps(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    };
    let one = run(1).remove(0);
    // 96 rows in batches of 32 for 4 epochs: 12 steps.
    assert!(
        one.2 > 0 && one.2 < 12,
        "{} of 12 steps skipped at scale 2^24",
        one.2
    );
    let start = weights(&mlp(7, 96).0);
    assert!(one.0 != start, "no step was applied");
    for (r, got) in run(2).into_iter().enumerate() {
        assert_eq!(got.1, one.1, "rank {r}: scale");
        assert_eq!(got.2, one.2, "rank {r}: skipped steps");
        assert!(got.0 == one.0, "rank {r}: weights differ from one process");
    }
}

/// The digits MLP (64-64-10) trained in f32, bf16 and f16: the 16-bit policies land within
/// 2 points of f32's test accuracy (the CLI's MNIST measurement in BENCHMARKS.md holds them to
/// 0.3 points on a full run; this is the short CI version).
#[test]
fn digits_accuracy_under_bf16_and_f16_is_close_to_f32() {
    let table = data::parse_csv(DIGITS, "digits.csv", &LabelColumn::Name("label".into())).unwrap();
    let (train_idx, test_idx) = data::stratified_split(&table.labels, 0.2, 0).unwrap();
    let (mut train, mut test) = (
        table.select(&train_idx).unwrap(),
        table.select(&test_idx).unwrap(),
    );
    let scaler = Scaler::fit_min_max(&train).unwrap();
    scaler.transform(&mut train).unwrap();
    scaler.transform(&mut test).unwrap();
    let (x, y) = (
        train.features_tensor(DType::F32).unwrap(),
        train.labels_tensor(DType::F32).unwrap(),
    );
    let (xt, yt) = (
        test.features_tensor(DType::F32).unwrap(),
        test.labels_tensor(DType::F32).unwrap(),
    );
    let acc = |p: Precision| {
        let mut rng = StdRng::seed_from_u64(0);
        let mut model = Sequential::new()
            .add(Dense::new(64, 64, Activation::Relu, &mut rng).unwrap())
            .add(Dense::new(64, 10, Activation::None, &mut rng).unwrap())
            .compile(
                Optimizer::adam().with_lr(0.003),
                Loss::CrossEntropy,
                &[Metric::Accuracy],
            );
        model.precision = p;
        model.fit(&x, &y, quiet(20, 32)).unwrap();
        model
            .evaluate(&xt, &yt, 128)
            .unwrap()
            .get("accuracy")
            .unwrap()
    };
    let f32_acc = acc(Precision::F32);
    assert!(f32_acc > 0.93, "f32 {f32_acc}");
    for p in [Precision::BF16, Precision::F16] {
        let a = acc(p);
        assert!(
            (a - f32_acc).abs() <= 0.02,
            "{p:?}: accuracy {a} vs f32 {f32_acc}"
        );
    }
}

/// Bad policy settings and unsupported combinations are errors, not panics or silent f32.
#[test]
fn bad_settings_are_errors() {
    let (mut m, x, y) = mlp(8, 16);
    m.precision = Precision::F16;
    m.loss_scaler = LossScaler::new(LossScaling {
        backoff_factor: 1.5,
        ..LossScaling::default()
    });
    assert!(m.fit(&x, &y, quiet(1, 8)).is_err());
    assert_eq!(round(DType::F16, 70000.0), f64::INFINITY);
}
