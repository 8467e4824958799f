//! int8 convolutions (`QuantizedConv2d`): the layer against an f64 reference of its own
//! arithmetic (dequantized codes convolved exactly), against its f32 original, every geometry
//! Conv2d accepts (stride, explicit and `same` padding, dilation), thread-count independence,
//! save/load with pooling layers, static calibration, a small CNN on real data (digits), and
//! clear errors.

use ember_core::qgemm::quant;
use ember_core::{Activation, Device, Padding, PoolOptions, Tensor};
use ember_nn::conv::{Conv2d, ConvOptions};
use ember_nn::data::{self, LabelColumn, Scaler, Table};
use ember_nn::pooling::{AvgPool2d, MaxPool2d};
use ember_nn::prelude::*;
use ember_nn::quantize::{
    QLayer, QuantizedConv2d, QuantizedNet, quantize_dynamic, quantize_static,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A batch of `[n, c, h, w]` values in [-1, 2) (negative and positive, so the zero point is
/// inside the code range).
fn input(n: usize, c: usize, h: usize, w: usize, seed: u64) -> (Vec<f32>, Tensor) {
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n * c * h * w)
        .map(|_| rng.random_range(-1.0f32..2.0))
        .collect();
    let t = Tensor::from_vec(v.clone(), (n, c, h, w), Device::Cpu).unwrap();
    (v, t)
}

/// The f64 convolution of the dequantized input codes with the dequantized weight codes, plus
/// the bias, through the activation: what the int8 layer computes, up to f32 rounding.
fn reference(layer: &QuantizedConv2d, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f64> {
    let g = layer.gemm();
    let mut codes = vec![0u8; x.len()];
    let p = match g.input_params() {
        Some(p) => {
            quant::quantize_u8(x, p, &mut codes).unwrap();
            p
        }
        None => quant::quantize_acts(x, &mut codes).unwrap(),
    };
    let xd: Vec<f64> = codes
        .iter()
        .map(|&q| (f64::from(q) - f64::from(p.zero_point)) * f64::from(p.scale))
        .collect();
    let wq = g.weights();
    let (c, o) = (layer.in_channels(), layer.out_channels());
    let (kh, kw) = layer.kernel_size();
    let (sh, sw) = layer.stride();
    let ((pt, pb), (pl, pr)) = layer.padding();
    let (dh, dw) = layer.dilation();
    let oh = (h + pt + pb - dh * (kh - 1) - 1) / sh + 1;
    let ow = (w + pl + pr - dw * (kw - 1) - 1) / sw + 1;
    let mut out = vec![0f64; n * o * oh * ow];
    for b in 0..n {
        for oc in 0..o {
            let scale = f64::from(wq.scales[oc]);
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = 0f64;
                    for ic in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (y * sh + i * dh) as isize - pt as isize;
                                let iw = (xx * sw + j * dw) as isize - pl as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                    continue;
                                }
                                let xv = xd[((b * c + ic) * h + ih as usize) * w + iw as usize];
                                // The GEMM's weight is tap-major [O, kh, kw, C].
                                let k = (i * kw + j) * c + ic;
                                acc += xv * f64::from(wq.codes[oc * c * kh * kw + k]) * scale;
                            }
                        }
                    }
                    if let Some(bias) = g.bias() {
                        acc += f64::from(bias[oc]);
                    }
                    if g.activation() == Activation::Relu {
                        acc = acc.max(0.0);
                    }
                    out[((b * o + oc) * oh + y) * ow + xx] = acc;
                }
            }
        }
    }
    out
}

fn conv(c: usize, o: usize, k: (usize, usize), opts: ConvOptions, seed: u64) -> Conv2d {
    Conv2d::with_options(c, o, k, opts, &mut StdRng::seed_from_u64(seed)).unwrap()
}

/// Largest |a − b| over max(1, |b|).
fn max_rel(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - y).abs() / y.abs().max(1.0))
        .fold(0.0, f64::max)
}

#[test]
fn matches_the_f64_reference_for_every_geometry() {
    let geometries = [
        ((3, 3), (1, 1), Padding::valid(), (1, 1)),
        ((3, 3), (2, 2), Padding::symmetric(1, 1), (1, 1)),
        (
            (3, 2),
            (1, 2),
            Padding::Explicit {
                h: (0, 2),
                w: (1, 0),
            },
            (2, 1),
        ),
        ((5, 5), (1, 1), Padding::Same, (1, 1)),
        ((2, 2), (1, 1), Padding::Same, (2, 2)),
        ((1, 1), (1, 1), Padding::valid(), (1, 1)),
    ];
    for (idx, (k, stride, padding, dilation)) in geometries.into_iter().enumerate() {
        let opts = ConvOptions {
            stride,
            padding,
            dilation,
            activation: if idx % 2 == 0 {
                Activation::Relu
            } else {
                Activation::None
            },
            use_bias: idx != 4,
            ..Default::default()
        };
        let f32_layer = conv(3, 5, k, opts, idx as u64);
        let q = QuantizedConv2d::from_conv(&f32_layer).unwrap();
        let (n, h, w) = (2, 9, 8);
        let (xv, x) = input(n, 3, h, w, 10 + idx as u64);
        let y = q.forward(&x, false).unwrap();
        let want = reference(&q, &xv, n, h, w);
        let err = max_rel(&y.to_vec::<f32>().unwrap(), &want);
        assert!(err < 1e-5, "geometry {idx}: max relative error {err:e}");
        // Same shape as the f32 layer, and close to it (quantization error only).
        let yf = f32_layer.forward(&x, false).unwrap();
        assert_eq!(y.shape(), yf.shape(), "geometry {idx}");
        let (a, b) = (y.to_vec::<f32>().unwrap(), yf.to_vec::<f32>().unwrap());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 0.05 * scale,
            "geometry {idx}: int8 {worst} off f32 (scale {scale})"
        );
        assert_eq!(
            q.output_shape(&[3, h, w]).unwrap(),
            yf.shape()[1..].to_vec(),
            "geometry {idx}"
        );
    }
}

#[test]
fn static_parameters_are_used_and_inputs_clamp() {
    let q = QuantizedConv2d::from_conv(&conv(2, 4, (3, 3), ConvOptions::default(), 3))
        .unwrap()
        .with_input_params(quant::choose_act_params(-0.5, 1.0).unwrap())
        .unwrap();
    let (xv, x) = input(3, 2, 6, 7, 4);
    let y = q.forward(&x, false).unwrap().to_vec::<f32>().unwrap();
    assert!(max_rel(&y, &reference(&q, &xv, 3, 6, 7)) < 1e-5);
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let q = QuantizedConv2d::from_conv(&conv(8, 16, (3, 3), ConvOptions::default(), 5)).unwrap();
    let (_, x) = input(64, 8, 20, 20, 6);
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| q.forward(&x, false).unwrap().to_vec::<f32>().unwrap())
    };
    let one = run(1);
    assert_eq!(one, run(3));
    // A batch bigger than one patch chunk gives the same rows as image by image.
    let big = input(2, 8, 20, 20, 7).1;
    let whole = q.forward(&big, false).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(whole.len(), 2 * 16 * 18 * 18);
}

/// A small CNN for 1×8×8 images.
fn small_cnn(seed: u64) -> Sequential {
    let mut rng = StdRng::seed_from_u64(seed);
    let same = ConvOptions {
        padding: Padding::Same,
        activation: Activation::Relu,
        ..Default::default()
    };
    Sequential::new()
        .add(Conv2d::with_options(1, 16, (3, 3), same, &mut rng).unwrap())
        .add(MaxPool2d::new(2))
        .add(
            Conv2d::with_options(
                16,
                32,
                (3, 3),
                ConvOptions {
                    activation: Activation::Relu,
                    ..Default::default()
                },
                &mut rng,
            )
            .unwrap(),
        )
        .add(AvgPool2d::with_options(PoolOptions::new(2)))
        .add(Flatten::new())
        .add(Dense::new(32, 10, Activation::None, &mut rng).unwrap())
}

#[test]
fn saved_networks_load_with_identical_outputs() {
    let net = small_cnn(1);
    let (_, x) = input(5, 1, 8, 8, 8);
    for (kind, q) in [
        ("dynamic", quantize_dynamic(&net).unwrap()),
        ("static", quantize_static(&net, &x).unwrap()),
    ] {
        assert!(matches!(q.layers()[0], QLayer::Conv2d(_)), "{kind}");
        assert!(matches!(q.layers()[1], QLayer::MaxPool2d(_)), "{kind}");
        assert!(matches!(q.layers()[3], QLayer::AvgPool2d(_)), "{kind}");
        let dir = std::env::temp_dir().join(format!("ember-qconv-{}-{kind}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("q.safetensors");
        q.save(&path).unwrap();
        let back = QuantizedNet::load(&path).unwrap();
        let (a, b) = (q.forward(&x).unwrap(), back.forward(&x).unwrap());
        assert_eq!(a.shape(), &[5, 10]);
        assert_eq!(
            a.to_vec::<f32>().unwrap(),
            b.to_vec::<f32>().unwrap(),
            "{kind}"
        );
        // The runnable network gives the same values as QuantizedNet::forward.
        let c = back.network().forward(&x, false).unwrap();
        assert_eq!(
            a.to_vec::<f32>().unwrap(),
            c.to_vec::<f32>().unwrap(),
            "{kind}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The digits (8×8) split, as images, min-max scaled on the training rows.
fn digits_images() -> (Tensor, Vec<f64>, Tensor, Vec<f64>) {
    const DIGITS: &[u8] = include_bytes!("../../../data/digits.csv");
    let table = data::parse_csv(DIGITS, "digits.csv", &LabelColumn::Name("label".into())).unwrap();
    let (tr, te) = data::stratified_split(&table.labels, 0.2, 0).unwrap();
    let (mut train, mut test): (Table, Table) =
        (table.select(&tr).unwrap(), table.select(&te).unwrap());
    let scaler = Scaler::fit_min_max(&train).unwrap();
    scaler.transform(&mut train).unwrap();
    scaler.transform(&mut test).unwrap();
    let images = |t: &Table| {
        t.features_tensor(ember_core::DType::F32)
            .unwrap()
            .reshape((t.labels.len(), 1, 8, 8))
            .unwrap()
    };
    (
        images(&train),
        train.labels.clone(),
        images(&test),
        test.labels.clone(),
    )
}

fn accuracy(logits: &Tensor, labels: &[f64]) -> f64 {
    let rows = logits.to_vec2::<f32>().unwrap();
    let hits = rows
        .iter()
        .zip(labels)
        .filter(|(r, y)| {
            let best = r
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                });
            best.0 == **y as usize
        })
        .count();
    hits as f64 / labels.len() as f64
}

#[test]
fn quantized_digits_cnn_keeps_its_accuracy() {
    let (xtr, ytr, xte, yte) = digits_images();
    let mut model = small_cnn(0).compile(
        Optimizer::adam().with_lr(0.003),
        Loss::CrossEntropy,
        &[Metric::Accuracy],
    );
    let ytr_t = Tensor::from_vec(ytr.clone(), (ytr.len(), 1), Device::Cpu)
        .unwrap()
        .to_dtype(ember_core::DType::F32)
        .unwrap();
    let config = FitConfig {
        epochs: 8,
        batch_size: 32,
        validation_split: 0.0,
        verbose: 0,
        ..FitConfig::default()
    };
    model.fit(&xtr, &ytr_t, config).unwrap();
    let f32_acc = accuracy(&model.network.forward(&xte, false).unwrap(), &yte);
    assert!(
        f32_acc > 0.9,
        "the f32 CNN should learn digits, got {f32_acc}"
    );
    let dynamic = quantize_dynamic(&model.network).unwrap();
    let d_acc = accuracy(&dynamic.forward(&xte).unwrap(), &yte);
    let calib = xtr.narrow(0, 0, 256).unwrap();
    let stat = quantize_static(&model.network, &calib).unwrap();
    let s_acc = accuracy(&stat.forward(&xte).unwrap(), &yte);
    println!(
        "digits CNN test accuracy: f32 {f32_acc:.4}, dynamic int8 {d_acc:.4}, static int8 {s_acc:.4}"
    );
    // 360 test images: one point is 3.6 images.
    assert!(
        f32_acc - d_acc <= 0.01 && f32_acc - s_acc <= 0.01,
        "f32 {f32_acc}, dynamic int8 {d_acc}, static int8 {s_acc}"
    );
}

#[test]
fn bad_inputs_are_clear_errors() {
    let grouped = conv(
        4,
        4,
        (3, 3),
        ConvOptions {
            groups: 2,
            ..Default::default()
        },
        0,
    );
    let e = QuantizedConv2d::from_conv(&grouped)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("groups = 2"), "{e}");
    let q = QuantizedConv2d::from_conv(&conv(2, 3, (3, 3), ConvOptions::default(), 0)).unwrap();
    let e = q
        .forward(&input(1, 3, 5, 5, 0).1, false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("[1, 3, 5, 5]"), "{e}");
    let e = q
        .forward(&input(1, 2, 2, 5, 0).1, false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("height"), "{e}");
    let mut bad = input(1, 2, 5, 5, 0).0;
    bad[7] = f32::NAN;
    let t = Tensor::from_vec(bad, (1, 2, 5, 5), Device::Cpu).unwrap();
    assert!(q.forward(&t, false).is_err());
    // A BatchNorm2d still has no quantized form, and says so.
    let net = Sequential::new()
        .add(conv(1, 2, (3, 3), ConvOptions::default(), 0))
        .add(ember_nn::pooling::BatchNorm2d::new(2).unwrap());
    let e = quantize_dynamic(&net).err().unwrap().to_string();
    assert!(e.contains("BatchNorm2d"), "{e}");
}
