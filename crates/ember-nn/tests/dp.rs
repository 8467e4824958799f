//! DP-SGD: the clipped gradient sum from ghost norms and one GEMM per layer equals a
//! batch-of-one loop (each example's gradient computed alone, clipped to C, summed), and
//! layers or settings that would void the guarantee are refused.

use ember_core::{Activation, DType, Device, Tensor};
use ember_nn::dp::DpSgd;
use ember_nn::layers::{BatchNorm1d, Dense, DenseOptions};
use ember_nn::loss::Loss;
use ember_nn::model::{FitConfig, Model};
use ember_nn::module::Module;
use ember_nn::optim::Optimizer;
use ember_nn::sequential::Sequential;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn model(seed: u64) -> Model {
    let mut rng = StdRng::seed_from_u64(seed);
    let opts = |activation| DenseOptions {
        activation,
        dtype: DType::F64,
        ..DenseOptions::default()
    };
    let mut net = Sequential::new();
    net.push(Dense::with_options(3, 4, opts(Activation::Tanh), &mut rng).unwrap());
    net.push(Dense::with_options(4, 2, opts(Activation::None), &mut rng).unwrap());
    net.compile(Optimizer::sgd().with_lr(1.0), Loss::CrossEntropy, &[])
}

fn data() -> (Tensor, Tensor) {
    let x: Vec<f64> = (0..15).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.7).collect();
    let y = vec![0.0, 1.0, 1.0, 0.0, 1.0];
    (
        Tensor::from_vec(x, vec![5, 3], Device::Cpu).unwrap(),
        Tensor::from_vec(y, vec![5], Device::Cpu).unwrap(),
    )
}

fn weights(m: &Model) -> Vec<Vec<f64>> {
    m.network
        .named_parameters()
        .iter()
        .map(|(_, t)| t.to_vec::<f64>().unwrap())
        .collect()
}

/// The reference for one DP-SGD step: each example's gradient computed alone (a batch of
/// one), clipped to `clip`, summed. Returns the per-parameter sums and how many examples were
/// clipped.
fn batch_of_one_clipped_sum(
    reference: &Model,
    x: &Tensor,
    y: &Tensor,
    clip: f64,
) -> (Vec<Vec<f64>>, usize) {
    let params = reference.network.named_parameters();
    let mut sum: Vec<Vec<f64>> = params
        .iter()
        .map(|(_, t)| vec![0.0; t.elem_count()])
        .collect();
    let mut clipped = 0;
    for i in 0..x.shape()[0] {
        let xi = x.narrow(0, i, 1).unwrap();
        let yi = y.narrow(0, i, 1).unwrap();
        let out = reference.network.forward(&xi, true).unwrap();
        let loss = Loss::CrossEntropy.compute(&out, &yi).unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<Vec<f64>> = params
            .iter()
            .map(|(_, p)| grads.get(p).unwrap().to_vec::<f64>().unwrap())
            .collect();
        let norm = g.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
        let c = (clip / (norm + 1e-6)).min(1.0);
        clipped += usize::from(c < 1.0);
        for (s, gi) in sum.iter_mut().zip(&g) {
            for (a, b) in s.iter_mut().zip(gi) {
                *a += c * b;
            }
        }
    }
    (sum, clipped)
}

#[test]
fn ghost_clipping_equals_a_batch_of_one_loop() {
    let (x, y) = data();
    let clip = 0.5;
    // DP-SGD with (next to) no noise, q = 1 (batch = all 5 rows), one step of SGD with lr 1.
    let mut dp = model(3);
    let before = weights(&dp);
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 5,
        shuffle: false,
        verbose: 0,
        dp: Some(DpSgd {
            noise_multiplier: 1e-12,
            max_grad_norm: clip,
            delta: 1e-5,
        }),
        ..FitConfig::default()
    };
    dp.fit(&x, &y, cfg).unwrap();
    let after = weights(&dp);
    // Reference: each example's gradient alone, clipped, summed, divided by q·n = 5.
    let (sum, clipped) = batch_of_one_clipped_sum(&model(3), &x, &y, clip);
    assert!(clipped > 0, "the test data must make clipping matter");
    for ((b, a), s) in before.iter().zip(&after).zip(&sum) {
        for ((b, a), s) in b.iter().zip(a).zip(s) {
            let want = b - s / 5.0;
            assert!((a - want).abs() < 1e-9, "after {a}, want {want}");
        }
    }
    // One epoch of one step was accounted: ε is finite and positive.
    assert_eq!(dp.accountant.steps(), 1);
    assert!(dp.accountant.epsilon(1e-5).unwrap().0 > 0.0);
}

#[test]
fn unsupported_layers_and_settings_are_refused() {
    let (x, y) = data();
    let dp = DpSgd {
        noise_multiplier: 1.0,
        max_grad_norm: 1.0,
        delta: 1e-5,
    };
    let cfg = || FitConfig {
        epochs: 1,
        batch_size: 5,
        verbose: 0,
        dp: Some(dp),
        ..FitConfig::default()
    };
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = Sequential::new();
    net.push(Dense::new(3, 4, Activation::Relu, &mut rng).unwrap());
    net.push(BatchNorm1d::new(4).unwrap());
    net.push(Dense::new(4, 2, Activation::None, &mut rng).unwrap());
    let mut m = net.compile(Optimizer::sgd(), Loss::CrossEntropy, &[]);
    let x32 = x.to_dtype(DType::F32).unwrap();
    let e = m.fit(&x32, &y, cfg()).unwrap_err().to_string();
    assert!(e.contains("layer 1 (BatchNorm1d)"), "{e}");
    let mut net = Sequential::new();
    net.push(Dense::new(3, 2, Activation::Gelu, &mut rng).unwrap());
    let mut m = net.compile(Optimizer::sgd(), Loss::CrossEntropy, &[]);
    assert!(
        m.fit(&x32, &y, cfg())
            .unwrap_err()
            .to_string()
            .contains("gelu")
    );
    for bad in [
        DpSgd {
            noise_multiplier: 0.0,
            ..dp
        },
        DpSgd {
            max_grad_norm: -1.0,
            ..dp
        },
        DpSgd { delta: 1.0, ..dp },
    ] {
        let mut m = model(1);
        let c = FitConfig {
            dp: Some(bad),
            ..cfg()
        };
        assert!(m.fit(&x, &y, c).is_err(), "{bad:?}");
    }
}

#[test]
fn a_diverged_loss_stops_before_its_update() {
    let (x, y) = data();
    let nan = x.mul_scalar(f64::NAN).unwrap();
    let mut m = model(5);
    let before = weights(&m);
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 5,
        verbose: 0,
        dp: Some(DpSgd {
            noise_multiplier: 1.0,
            max_grad_norm: 1.0,
            delta: 1e-5,
        }),
        ..FitConfig::default()
    };
    match m.fit(&nan, &y, cfg).unwrap_err() {
        ember_nn::NnError::Diverged { epoch, batch, .. } => {
            assert_eq!((epoch, batch), (Some(1), Some(0)));
        }
        other => panic!("expected Diverged, got {other}"),
    }
    assert_eq!(
        weights(&m),
        before,
        "no update may follow a non-finite loss"
    );
}

/// A small CNN in f64: Conv2d 2→3 (3×3, stride (2, 1), padding 1, dilation (1, 2), tanh) →
/// MaxPool 2 → Conv2d 3→2 (2×2, relu, no bias) → Flatten (4) → Dense 2.
fn cnn(seed: u64) -> Model {
    use ember_nn::conv::{Conv2d, ConvOptions, Padding};
    use ember_nn::layers::Flatten;
    use ember_nn::pooling::MaxPool2d;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut net = Sequential::new();
    let first = ConvOptions {
        stride: (2, 1),
        padding: Padding::symmetric(1, 1),
        dilation: (1, 2),
        activation: Activation::Tanh,
        dtype: DType::F64,
        ..ConvOptions::default()
    };
    net.push(Conv2d::with_options(2, 3, (3, 3), first, &mut rng).unwrap());
    net.push(MaxPool2d::new(2));
    let second = ConvOptions {
        activation: Activation::Relu,
        use_bias: false,
        dtype: DType::F64,
        ..ConvOptions::default()
    };
    net.push(Conv2d::with_options(3, 2, (2, 2), second, &mut rng).unwrap());
    net.push(Flatten::new());
    let dense = DenseOptions {
        dtype: DType::F64,
        ..DenseOptions::default()
    };
    net.push(Dense::with_options(4, 2, dense, &mut rng).unwrap());
    net.compile(Optimizer::sgd().with_lr(1.0), Loss::CrossEntropy, &[])
}

#[test]
fn conv_per_example_clipping_equals_a_batch_of_one_loop() {
    // 5 images of 2×8×9 (the first conv gives 4×7, the pool 2×3, the second conv 1×2).
    let xv: Vec<f64> = (0..5 * 2 * 8 * 9)
        .map(|i| ((i * 37 % 23) as f64 - 11.0) * 0.15)
        .collect();
    let x = Tensor::from_vec(xv, vec![5, 2, 8, 9], Device::Cpu).unwrap();
    let y = Tensor::from_vec(vec![0.0, 1.0, 1.0, 0.0, 1.0], vec![5], Device::Cpu).unwrap();
    // The examples' gradient norms are 0.71, 1.11, 1.12, 1.13 and 2.94.
    let clip = 1.12;
    let mut dp = cnn(4);
    let before = weights(&dp);
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 5,
        shuffle: false,
        verbose: 0,
        dp: Some(DpSgd {
            noise_multiplier: 1e-12,
            max_grad_norm: clip,
            delta: 1e-5,
        }),
        ..FitConfig::default()
    };
    dp.fit(&x, &y, cfg).unwrap();
    let after = weights(&dp);
    let (sum, clipped) = batch_of_one_clipped_sum(&cnn(4), &x, &y, clip);
    assert!(
        (1..5).contains(&clipped),
        "the test data must clip some examples and keep others whole, clipped {clipped}"
    );
    let mut moved = false;
    for ((b, a), s) in before.iter().zip(&after).zip(&sum) {
        for ((b, a), s) in b.iter().zip(a).zip(s) {
            let want = b - s / 5.0;
            moved |= (a - b).abs() > 1e-6;
            assert!((a - want).abs() < 1e-9, "after {a}, want {want}");
        }
    }
    assert!(moved, "the step must change the weights");
    let conv1_moved = before[0]
        .iter()
        .zip(&after[0])
        .any(|(b, a)| (a - b).abs() > 1e-6);
    let conv2_moved = before[2]
        .iter()
        .zip(&after[2])
        .any(|(b, a)| (a - b).abs() > 1e-6);
    assert!(
        conv1_moved && conv2_moved,
        "both convolutions must get gradients"
    );
}

#[test]
fn grouped_convolutions_are_refused() {
    use ember_nn::conv::{Conv2d, ConvOptions};
    let mut rng = StdRng::seed_from_u64(0);
    let mut net = Sequential::new();
    let grouped = ConvOptions {
        groups: 2,
        ..ConvOptions::default()
    };
    net.push(Conv2d::with_options(2, 2, (1, 1), grouped, &mut rng).unwrap());
    let mut m = net.compile(Optimizer::sgd(), Loss::CrossEntropy, &[]);
    let x = Tensor::zeros(vec![3, 2, 1, 1], DType::F32, Device::Cpu).unwrap();
    let y = Tensor::zeros(vec![3], DType::F32, Device::Cpu).unwrap();
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 3,
        verbose: 0,
        dp: Some(DpSgd {
            noise_multiplier: 1.0,
            max_grad_norm: 1.0,
            delta: 1e-5,
        }),
        ..FitConfig::default()
    };
    let e = m.fit(&x, &y, cfg).unwrap_err().to_string();
    assert!(e.contains("groups = 2"), "{e}");
}
