//! Dynamic int8 quantization of trained Dense networks: accuracy on real data (digits), the
//! quantized layer against its f32 original, checkpoints, and clear errors.

use ember_core::{Activation, DType, Device, Tensor};
use ember_nn::data::{self, LabelColumn, Scaler, Table};
use ember_nn::prelude::*;
use ember_nn::quantize::{QLayer, QuantizedDense, QuantizedNet, quantize_dynamic, quantize_static};
use rand::SeedableRng;
use rand::rngs::StdRng;

const DIGITS: &[u8] = include_bytes!("../../../data/digits.csv");

/// The stratified 80/20 split (seed 0), min-max scaled on the training rows.
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

/// Fraction of rows whose largest logit is at the label.
fn accuracy(logits: &Tensor, labels: &[f64]) -> f64 {
    let rows = logits.to_vec2::<f32>().unwrap();
    let hits = rows
        .iter()
        .zip(labels)
        .filter(|(r, y)| {
            let arg = r
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                })
                .0;
            arg == **y as usize
        })
        .count();
    hits as f64 / labels.len() as f64
}

#[test]
fn quantized_digits_mlp_loses_at_most_half_a_point() {
    let (train, test) = digits_split();
    let mut rng = StdRng::seed_from_u64(0);
    let mut model = Sequential::new()
        .add(Dense::new(64, 128, Activation::Relu, &mut rng).unwrap())
        .add(Dropout::new(0.1, 1).unwrap())
        .add(Dense::new(128, 64, Activation::Relu, &mut rng).unwrap())
        .add(Dense::new(64, 10, Activation::None, &mut rng).unwrap())
        .compile(
            Optimizer::adam().with_lr(0.003),
            Loss::CrossEntropy,
            &[Metric::Accuracy],
        );
    let x = train.features_tensor(DType::F32).unwrap();
    let y = train.labels_tensor(DType::F32).unwrap();
    let cfg = FitConfig {
        epochs: 30,
        batch_size: 32,
        validation_split: 0.0,
        verbose: 0,
        ..FitConfig::default()
    };
    model.fit(&x, &y, cfg).unwrap();
    let q = quantize_dynamic(&model.network).unwrap();
    assert_eq!(
        q.layers().len(),
        3,
        "the 3 Dense layers are kept, Dropout is dropped"
    );
    let xt = test.features_tensor(DType::F32).unwrap();
    let f32_acc = accuracy(&model.network.forward(&xt, false).unwrap(), &test.labels);
    let q_acc = accuracy(&q.forward(&xt).unwrap(), &test.labels);
    // The whole data set too (finer than the 359 test rows), reported beside it.
    let f32_train = accuracy(&model.network.forward(&x, false).unwrap(), &train.labels);
    let q_train = accuracy(&q.forward(&x).unwrap(), &train.labels);
    println!(
        "digits test: f32 {:.2} %, int8 {:.2} % (drop {:.2} points); train: f32 {:.2} %, int8 {:.2} %",
        100.0 * f32_acc,
        100.0 * q_acc,
        100.0 * (f32_acc - q_acc),
        100.0 * f32_train,
        100.0 * q_train
    );
    assert!(f32_acc >= 0.95, "the f32 model trained to {f32_acc}");
    assert!(f32_acc - q_acc <= 0.005, "int8 {q_acc} vs f32 {f32_acc}");
    // Static: input ranges calibrated on 256 training rows, then fixed.
    let s = quantize_static(&model.network, &x.narrow(0, 0, 256).unwrap()).unwrap();
    for l in s.layers() {
        if let QLayer::Dense(d) = l {
            assert!(
                d.input_params().is_some(),
                "every Dense layer is calibrated"
            );
        }
    }
    let s_acc = accuracy(&s.forward(&xt).unwrap(), &test.labels);
    println!("digits test, static int8: {:.2} %", 100.0 * s_acc);
    assert!(
        f32_acc - s_acc <= 0.005,
        "static int8 {s_acc} vs f32 {f32_acc}"
    );
    let dir = std::env::temp_dir().join(format!("ember-qstatic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("static.safetensors");
    s.save(&path).unwrap();
    let back = QuantizedNet::load(&path).unwrap();
    assert_eq!(
        back.forward(&xt).unwrap().to_vec::<f32>().unwrap(),
        s.forward(&xt).unwrap().to_vec::<f32>().unwrap(),
        "the calibrated parameters survive the file"
    );
    std::fs::remove_dir_all(&dir).ok();
    let nan = Tensor::from_vec(vec![f32::NAN; 64], vec![1, 64], Device::Cpu).unwrap();
    let err = quantize_static(&model.network, &nan)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("calibration"), "{err}");
    assert!(
        f32_train - q_train <= 0.005,
        "train: int8 {q_train} vs f32 {f32_train}"
    );
}

#[test]
fn quantized_dense_is_close_to_its_f32_original() {
    let mut rng = StdRng::seed_from_u64(3);
    for act in Activation::ALL {
        let dense = Dense::new(37, 21, act, &mut rng).unwrap();
        let q = QuantizedDense::from_dense(&dense).unwrap();
        assert_eq!(q.activation(), act);
        let x = Tensor::rand(-1.0, 2.0, (9, 37), DType::F32, Device::Cpu, &mut rng).unwrap();
        let want = dense.forward(&x, false).unwrap().to_vec::<f32>().unwrap();
        let got = q.forward(&x, false).unwrap().to_vec::<f32>().unwrap();
        // Error bound of the product: per term |x·w − x̂·ŵ| ≤ |x|·Δw/2 + |w|·Δx/2 + Δx·Δw/4,
        // with Δx = 3/127 (the input's range over 127 codes) and Δw ≤ max|w|/127.
        let wmax = dense
            .weight()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        let (dx, dw) = (3.0 / 127.0, wmax / 127.0);
        let bound = 37.0 * (2.0 * dw / 2.0 + wmax * dx / 2.0 + dx * dw / 4.0) + 1e-5;
        for (a, b) in want.iter().zip(&got) {
            // Every activation here is 1-Lipschitz or flatter (GELU's slope peaks at ~1.13).
            assert!(
                (a - b).abs() <= 1.13 * bound,
                "{act:?}: {a} vs {b} (bound {bound})"
            );
        }
        // The network-level pass agrees with the layer.
        let net = quantize_dynamic(&Sequential::new().add(dense)).unwrap();
        let via_net = net.forward(&x).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(via_net, got);
    }
}

#[test]
fn quantized_checkpoint_round_trips() {
    let mut rng = StdRng::seed_from_u64(4);
    let net = Sequential::new()
        .add(Dense::new(12, 8, Activation::Tanh, &mut rng).unwrap())
        .add(ActivationLayer::new(Activation::Relu))
        .add(
            Dense::with_options(
                8,
                3,
                DenseOptions {
                    use_bias: false,
                    ..DenseOptions::default()
                },
                &mut rng,
            )
            .unwrap(),
        )
        .add(Softmax);
    let q = quantize_dynamic(&net).unwrap();
    let dir = std::env::temp_dir().join(format!("ember-quant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("q.safetensors");
    q.save(&path).unwrap();
    let back = QuantizedNet::load(&path).unwrap();
    assert_eq!(back.layers().len(), 4);
    for (a, b) in q.layers().iter().zip(back.layers()) {
        match (a, b) {
            (QLayer::Dense(x), QLayer::Dense(y)) => {
                assert_eq!(x.weights(), y.weights());
                assert_eq!(x.bias(), y.bias());
                assert_eq!(x.activation(), y.activation());
            }
            (QLayer::Activation(x), QLayer::Activation(y)) => assert_eq!(x, y),
            (QLayer::Softmax, QLayer::Softmax) | (QLayer::Flatten, QLayer::Flatten) => {}
            _ => panic!("layer kinds differ after loading"),
        }
    }
    let x = Tensor::rand(-1.0, 1.0, (5, 12), DType::F32, Device::Cpu, &mut rng).unwrap();
    assert_eq!(
        q.forward(&x).unwrap().to_vec::<f32>().unwrap(),
        back.forward(&x).unwrap().to_vec::<f32>().unwrap()
    );
    // A plain f32 checkpoint is not a quantized model.
    let f32_path = dir.join("f32.safetensors");
    ember_nn::checkpoint::save(&f32_path, &net, None).unwrap();
    let e = QuantizedNet::load(&f32_path).err().unwrap().to_string();
    assert!(e.contains("not a quantized ember model"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_are_clear_errors() {
    let mut rng = StdRng::seed_from_u64(6);
    let net = Sequential::new()
        .add(Dense::new(4, 4, Activation::Relu, &mut rng).unwrap())
        .add(BatchNorm1d::new(4).unwrap());
    let e = quantize_dynamic(&net).err().unwrap().to_string();
    assert!(
        e.contains("layer 1 is BatchNorm1d, which has no quantized form"),
        "{e}"
    );
    let q =
        QuantizedDense::from_dense(&Dense::new(4, 2, Activation::None, &mut rng).unwrap()).unwrap();
    let x = Tensor::zeros((3, 5), DType::F32, Device::Cpu).unwrap();
    let e = q.forward(&x, false).err().unwrap().to_string();
    assert!(e.contains("expected input [batch, 4], got [3, 5]"), "{e}");
    let x = Tensor::from_vec(vec![1.0f32, f32::NAN, 0.0, 0.0], (1, 4), Device::Cpu).unwrap();
    let e = q.forward(&x, false).err().unwrap().to_string();
    assert!(
        e.contains("QuantizedDense: quantize: input element 1 of 4 is NaN"),
        "{e}"
    );
}
