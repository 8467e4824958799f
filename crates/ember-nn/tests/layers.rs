//! Each layer: forward against a hand computation, and a finite-difference gradient check
//! (`ember_core::gradcheck`) of its parameters and input, in f64.

use ember_core::gradcheck::gradcheck;
use ember_core::{Activation, DType, Device, Tensor};
use ember_nn::layers::{ActivationLayer, BatchNorm1d, Dense, Dropout, Flatten, LeakyRelu, Softmax};
use ember_nn::loss::Loss;
use ember_nn::module::Module;
use ember_nn::regularizer::Regularizer;
use ember_nn::sequential::Sequential;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn t(values: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape.to_vec(), Device::Cpu).unwrap()
}

fn var(values: &[f64], shape: &[usize]) -> Tensor {
    t(values, shape).as_variable()
}

fn close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

/// Runs the core's gradient check of `f` at `inputs` and fails the test if it does not pass.
fn check_grad(f: impl Fn(&[Tensor]) -> ember_core::Result<Tensor>, inputs: &[Tensor]) {
    let report = gradcheck(f, inputs, 1e-6, 1e-6).expect("gradcheck runs");
    assert!(report.passed, "gradcheck failed: {report:?}");
}

/// A fixed, non-uniform weighting so the checked scalar depends on every output element.
fn weighted_sum(y: &Tensor) -> ember_core::Result<Tensor> {
    let n = y.elem_count();
    let w: Vec<f64> = (0..n).map(|i| 0.3 + 0.1 * i as f64).collect();
    let w = Tensor::from_vec(w, y.shape().to_vec(), Device::Cpu)?;
    y.mul(&w)?.sum_all()
}

const X: [f64; 6] = [0.5, -1.0, 2.0, -0.3, 0.8, 0.1]; // [2, 3]
const W: [f64; 6] = [0.2, -0.4, 0.1, 0.7, 0.3, -0.5]; // [2 out, 3 in]
const B: [f64; 2] = [0.05, -0.2];

fn dense_by_hand(act: fn(f64) -> f64) -> Vec<f64> {
    let mut out = Vec::new();
    for r in 0..2 {
        for o in 0..2 {
            let mut z = B[o];
            for i in 0..3 {
                z += X[r * 3 + i] * W[o * 3 + i];
            }
            out.push(act(z));
        }
    }
    out
}

#[test]
fn dense_forward_matches_hand_computation_for_each_activation() {
    type Case = (Activation, fn(f64) -> f64);
    let cases: [Case; 4] = [
        (Activation::None, |z| z),
        (Activation::Relu, |z| z.max(0.0)),
        (Activation::Sigmoid, |z| 1.0 / (1.0 + (-z).exp())),
        (Activation::Tanh, f64::tanh),
    ];
    for (act, f) in cases {
        let layer = Dense::from_tensors(var(&W, &[2, 3]), Some(var(&B, &[2])), act).unwrap();
        let y = layer.forward(&t(&X, &[2, 3]), true).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        close(&y.to_vec::<f64>().unwrap(), &dense_by_hand(f), 1e-12);
    }
}

#[test]
fn dense_gradcheck_input_weight_bias() {
    for act in [
        Activation::None,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
    ] {
        check_grad(
            |inp| {
                let layer = Dense::from_tensors(inp[1].clone(), Some(inp[2].clone()), act)
                    .map_err(|e| match e {
                        ember_nn::NnError::Core(c) => c,
                        other => panic!("{other}"),
                    })?;
                let y = layer.forward(&inp[0], true).map_err(|e| match e {
                    ember_nn::NnError::Core(c) => c,
                    other => panic!("{other}"),
                })?;
                weighted_sum(&y)
            },
            &[var(&X, &[2, 3]), var(&W, &[2, 3]), var(&B, &[2])],
        );
    }
}

#[test]
fn dense_rejects_wrong_input_width_with_layer_and_shapes() {
    let mut rng = StdRng::seed_from_u64(0);
    let layer = Dense::new(3, 2, Activation::Relu, &mut rng).unwrap();
    let err = layer
        .forward(&t(&[1.0; 8], &[2, 4]), true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Dense(3 -> 2)") && err.contains("[2, 4]"),
        "{err}"
    );
    assert!(Dense::new(0, 2, Activation::Relu, &mut rng).is_err());
}

#[test]
fn dense_new_uses_glorot_limit_and_zero_bias() {
    let mut rng = StdRng::seed_from_u64(3);
    let layer = Dense::new(30, 10, Activation::Relu, &mut rng).unwrap();
    assert_eq!(layer.weight().shape(), &[10, 30]);
    let limit = (6.0f64 / 40.0).sqrt();
    assert!(
        layer
            .weight()
            .to_vec::<f64>()
            .unwrap()
            .iter()
            .all(|w| w.abs() < limit)
    );
    assert_eq!(
        layer.bias().unwrap().to_vec::<f64>().unwrap(),
        vec![0.0; 10]
    );
    assert_eq!(layer.weight().dtype(), DType::F32);
}

fn act_layer_by_hand(make: impl Fn() -> Box<dyn Module>, f: fn(f64) -> f64) {
    let layer = make();
    let y = layer
        .forward(&t(&X, &[2, 3]), true)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    let want: Vec<f64> = X.iter().map(|&v| f(v)).collect();
    close(&y, &want, 1e-12);
    check_grad(
        |inp| weighted_sum(&make().forward(&inp[0], true).map_err(core_err)?),
        &[var(&X, &[2, 3])],
    );
}

fn core_err(e: ember_nn::NnError) -> ember_core::Error {
    match e {
        ember_nn::NnError::Core(c) => c,
        other => panic!("{other}"),
    }
}

#[test]
fn relu_layer() {
    act_layer_by_hand(
        || Box::new(ActivationLayer::new(Activation::Relu)),
        |v| v.max(0.0),
    );
}

#[test]
fn sigmoid_layer() {
    act_layer_by_hand(
        || Box::new(ActivationLayer::new(Activation::Sigmoid)),
        |v| 1.0 / (1.0 + (-v).exp()),
    );
}

#[test]
fn tanh_layer() {
    act_layer_by_hand(
        || Box::new(ActivationLayer::new(Activation::Tanh)),
        f64::tanh,
    );
}

#[test]
fn gelu_layer_tanh_approximation() {
    act_layer_by_hand(
        || Box::new(ActivationLayer::new(Activation::GeluTanh)),
        |v| {
            0.5 * v
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
        },
    );
}

#[test]
fn gelu_layer_exact() {
    // The layer is the core's exact GELU (checked against hand values in ember-core's
    // tests/semantics.rs), not the tanh approximation.
    let x = t(&X, &[2, 3]);
    let y = ActivationLayer::new(Activation::Gelu)
        .forward(&x, true)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    close(&y, &x.gelu().unwrap().to_vec::<f64>().unwrap(), 0.0);
    assert_ne!(y, x.gelu_tanh().unwrap().to_vec::<f64>().unwrap());
}

#[test]
fn identity_activation_layer() {
    act_layer_by_hand(|| Box::new(ActivationLayer::new(Activation::None)), |v| v);
}

#[test]
fn leaky_relu_layer() {
    act_layer_by_hand(
        || Box::new(LeakyRelu::new(0.2)),
        |v| {
            if v > 0.0 { v } else { 0.2 * v }
        },
    );
}

#[test]
fn softmax_layer() {
    let layer = Softmax;
    let y = layer
        .forward(&t(&X, &[2, 3]), true)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    let mut want = Vec::new();
    for row in X.chunks(3) {
        let z: f64 = row.iter().map(|v| v.exp()).sum();
        want.extend(row.iter().map(|v| v.exp() / z));
    }
    close(&y, &want, 1e-12);
    check_grad(
        |inp| weighted_sum(&Softmax.forward(&inp[0], true).map_err(core_err)?),
        &[var(&X, &[2, 3])],
    );
}

#[test]
fn dropout_scales_survivors_is_seeded_and_off_in_eval() {
    let ones = Tensor::ones(vec![50, 40], DType::F64, Device::Cpu).unwrap();
    let d = Dropout::new(0.25, 7).unwrap();
    let a = d.forward(&ones, true).unwrap().to_vec::<f64>().unwrap();
    // Every element is 0 or 1/(1-0.25); about a quarter are dropped.
    assert!(a.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-12));
    let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
    assert!((dropped - 0.25).abs() < 0.03, "dropped fraction {dropped}");
    // Same seed, same mask; the next call draws a new mask.
    let b = Dropout::new(0.25, 7)
        .unwrap()
        .forward(&ones, true)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    assert_eq!(a, b);
    let c = d.forward(&ones, true).unwrap().to_vec::<f64>().unwrap();
    assert_ne!(a, c);
    assert_eq!(
        d.forward(&ones, false).unwrap().to_vec::<f64>().unwrap(),
        vec![1.0; 2000]
    );
    assert!(Dropout::new(1.0, 0).is_err());
}

/// Dropout drops only when the call says it is training, and an evaluation call draws nothing
/// from its generator: the masks of training calls are the same with or without evaluation
/// calls in between.
#[test]
fn dropout_is_active_only_when_training() {
    let ones = Tensor::ones(vec![20, 10], DType::F64, Device::Cpu).unwrap();
    let mask =
        |d: &Dropout, training: bool| d.forward(&ones, training).unwrap().to_vec::<f64>().unwrap();
    let interleaved = Dropout::new(0.5, 11).unwrap();
    let plain = Dropout::new(0.5, 11).unwrap();
    let first = mask(&interleaved, true);
    assert!(first.contains(&0.0), "a training call drops elements");
    assert_eq!(mask(&interleaved, false), vec![1.0; 200]);
    assert_eq!(mask(&interleaved, false), vec![1.0; 200]);
    let second = mask(&interleaved, true);
    assert_eq!(first, mask(&plain, true));
    assert_eq!(second, mask(&plain, true));
}

#[test]
fn dropout_gradcheck_with_a_fixed_mask() {
    // A fresh layer with the same seed per call draws the same mask, so the function is fixed.
    check_grad(
        |inp| {
            weighted_sum(
                &Dropout::new(0.5, 3)
                    .unwrap()
                    .forward(&inp[0], true)
                    .map_err(core_err)?,
            )
        },
        &[var(&X, &[2, 3])],
    );
}

#[test]
fn flatten_merges_trailing_dimensions() {
    let x = t(&(0..24).map(f64::from).collect::<Vec<_>>(), &[2, 3, 4]);
    let y = Flatten::new().forward(&x, true).unwrap();
    assert_eq!(y.shape(), &[2, 12]);
    assert_eq!(y.to_vec::<f64>().unwrap(), x.to_vec::<f64>().unwrap());
    assert_eq!(Flatten::new().output_shape(&[3, 4]).unwrap(), vec![12]);
    check_grad(
        |inp| weighted_sum(&Flatten::new().forward(&inp[0], true).map_err(core_err)?),
        &[var(
            &(0..24).map(|i| f64::from(i) * 0.1).collect::<Vec<_>>(),
            &[2, 3, 4],
        )],
    );
}

#[test]
fn batchnorm_training_forward_and_running_stats_by_hand() {
    // Columns: [1, 3] (mean 2, var 1) and [2, 6] (mean 4, var 4).
    let x = t(&[1.0, 2.0, 3.0, 6.0], &[2, 2]);
    let bn = BatchNorm1d::from_tensors(var(&[2.0, 1.0], &[2]), var(&[0.5, -1.0], &[2]), 0.99, 1e-3)
        .unwrap();
    let y = bn.forward(&x, true).unwrap().to_vec::<f64>().unwrap();
    let s0 = (1.0f64 + 1e-3).sqrt();
    let s1 = (4.0f64 + 1e-3).sqrt();
    let want = [
        -2.0 / s0 + 0.5,
        -2.0 / s1 - 1.0,
        2.0 / s0 + 0.5,
        2.0 / s1 - 1.0,
    ];
    close(&y, &want, 1e-12);
    let (rm, rv) = bn.running_stats();
    close(&rm.to_vec::<f64>().unwrap(), &[0.02, 0.04], 1e-12);
    close(
        &rv.to_vec::<f64>().unwrap(),
        &[0.99 + 0.01, 0.99 + 0.04],
        1e-12,
    );
}

#[test]
fn batchnorm_eval_uses_running_stats() {
    let bn = BatchNorm1d::from_tensors(var(&[1.0], &[1]), var(&[0.0], &[1]), 0.99, 1e-3).unwrap();
    // Running mean 0, var 1: y = x / sqrt(1 + eps).
    let y = bn
        .forward(&t(&[2.0, -4.0], &[2, 1]), false)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    close(&y, &[2.0 / 1.001f64.sqrt(), -4.0 / 1.001f64.sqrt()], 1e-12);
    // Evaluation leaves the running statistics as they were.
    let (rm, rv) = bn.running_stats();
    assert_eq!(rm.to_vec::<f64>().unwrap(), vec![0.0]);
    assert_eq!(rv.to_vec::<f64>().unwrap(), vec![1.0]);
}

#[test]
fn batchnorm_gradcheck_input_gamma_beta() {
    check_grad(
        |inp| {
            let bn = BatchNorm1d::from_tensors(inp[1].clone(), inp[2].clone(), 0.99, 1e-3)
                .map_err(core_err)?;
            weighted_sum(&bn.forward(&inp[0], true).map_err(core_err)?)
        },
        &[
            var(&[0.5, -1.0, 2.0, -0.3, 0.8, 0.1, 1.5, 0.2, -0.7], &[3, 3]),
            var(&[1.2, 0.8, -0.5], &[3]),
            var(&[0.1, 0.0, -0.2], &[3]),
        ],
    );
}

#[test]
fn sequential_names_summary_and_mermaid() {
    let mut rng = StdRng::seed_from_u64(0);
    let net = Sequential::new()
        .add(Dense::new(10, 10, Activation::Relu, &mut rng).unwrap())
        .add(Dropout::new(0.1, 0).unwrap())
        .add(Dense::new(10, 5, Activation::Relu, &mut rng).unwrap())
        .add(BatchNorm1d::new(5).unwrap())
        .add(Dense::new(5, 1, Activation::Sigmoid, &mut rng).unwrap());
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.weight",
            "layers.1.bias",
            "batchnorm1d.0.weight",
            "batchnorm1d.0.bias",
            "layers.2.weight",
            "layers.2.bias"
        ]
    );
    let buffers: Vec<String> = net.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        buffers,
        ["batchnorm1d.0.running_mean", "batchnorm1d.0.running_var"]
    );
    // 110 + 55 + 10 + 6 trainable, 10 running statistics.
    let summary = net.summary(&[10]).unwrap();
    assert!(summary.contains("Total params: 191"), "{summary}");
    assert!(summary.contains("Trainable params: 181"), "{summary}");
    assert!(summary.contains("Non-trainable params: 10"), "{summary}");
    assert!(summary.contains("(None, 5)"), "{summary}");
    let mermaid = net.to_mermaid(&[10]).unwrap();
    assert!(mermaid.starts_with("flowchart TD"));
    assert_eq!(mermaid.matches("-->").count(), 5, "{mermaid}");
    assert!(mermaid.contains("Dense 1, sigmoid"), "{mermaid}");
    // A wrong input shape is reported with the layer.
    assert!(
        net.summary(&[11])
            .unwrap_err()
            .to_string()
            .contains("Dense(10 -> 10)")
    );
}

#[test]
fn regularizer_penalty_by_hand_and_in_the_loss_gradient() {
    let w = var(&[1.0, -2.0, 0.5], &[3]);
    let p = Regularizer { l1: 0.1, l2: 0.01 }
        .penalty(&w)
        .unwrap()
        .unwrap();
    // 0.1 * 3.5 + 0.01 * 5.25
    assert!((p.to_scalar::<f64>().unwrap() - 0.4025).abs() < 1e-12);
    assert!(
        Regularizer { l1: 0.0, l2: 0.0 }
            .penalty(&w)
            .unwrap()
            .is_none()
    );
    check_grad(
        |inp| {
            Ok(Regularizer { l1: 0.1, l2: 0.01 }
                .penalty(&inp[0])
                .map_err(core_err)?
                .unwrap())
        },
        &[var(&[1.0, -2.0, 0.5], &[3])],
    );
}

#[test]
fn losses_by_hand() {
    let p = t(&[0.9, 0.2, 0.6], &[3, 1]);
    let y = t(&[1.0, 0.0, 0.0], &[3]); // [N] targets are accepted for an [N, 1] output
    let bce = Loss::BinaryCrossEntropy
        .compute(&p, &y)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let want = -(0.9f64.ln() + 0.8f64.ln() + 0.4f64.ln()) / 3.0;
    assert!((bce - want).abs() < 1e-6, "{bce} vs {want}");
    let z = t(&[2.0, -1.0, 0.5], &[3, 1]);
    let bcel = Loss::BinaryCrossEntropyWithLogits
        .compute(&z, &y)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let want = -(sig(2.0).ln() + (1.0 - sig(-1.0)).ln() + (1.0 - sig(0.5)).ln()) / 3.0;
    assert!((bcel - want).abs() < 1e-9);
    let mse = Loss::MeanSquaredError
        .compute(&p, &y)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((mse - (0.01 + 0.04 + 0.36) / 3.0).abs() < 1e-12);
    let logits = t(&[1.0, 2.0, 0.0, 0.5, 0.5, 3.0], &[2, 3]);
    let ids = t(&[1.0, 2.0], &[2]);
    let ce = Loss::CrossEntropy
        .compute(&logits, &ids)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let lse = |r: &[f64]| r.iter().map(|v| v.exp()).sum::<f64>().ln();
    let want = ((lse(&[1.0, 2.0, 0.0]) - 2.0) + (lse(&[0.5, 0.5, 3.0]) - 3.0)) / 2.0;
    assert!((ce - want).abs() < 1e-9);
    let err = Loss::BinaryCrossEntropy
        .compute(&p, &t(&[1.0, 0.0], &[2]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[3, 1]") && err.contains("[2]"), "{err}");
}

/// Dense on a sequence `[N, T, F]` maps every step as the same layer on `[N·T, F]` would, and
/// passes a padding mask on; Flatten, which mixes steps, refuses one.
#[test]
fn dense_maps_every_step_and_masks_pass_or_are_refused() {
    let mut rng = StdRng::seed_from_u64(3);
    let opts = ember_nn::layers::DenseOptions {
        activation: Activation::Tanh,
        dtype: DType::F64,
        ..Default::default()
    };
    let dense = Dense::with_options(3, 2, opts, &mut rng).unwrap();
    let x: Vec<f64> = (0..2 * 4 * 3).map(|i| (i as f64 * 0.37).sin()).collect();
    let seq = dense.forward(&t(&x, &[2, 4, 3]), false).unwrap();
    assert_eq!(seq.shape(), &[2, 4, 2]);
    let flat = dense.forward(&t(&x, &[8, 3]), false).unwrap();
    assert_eq!(seq.to_vec::<f64>().unwrap(), flat.to_vec::<f64>().unwrap());
    assert_eq!(dense.output_shape(&[4, 3]).unwrap(), vec![4, 2]);
    assert!(dense.output_shape(&[4, 2]).is_err());

    let mask = t(&[1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0], &[2, 4]);
    let (y, m) = dense
        .forward_masked(&t(&x, &[2, 4, 3]), Some(&mask), false)
        .unwrap();
    assert_eq!(y.shape(), &[2, 4, 2]);
    assert_eq!(
        m.unwrap().to_vec::<f64>().unwrap(),
        mask.to_vec::<f64>().unwrap()
    );
    let err = Flatten::new()
        .forward_masked(&t(&x, &[2, 4, 3]), Some(&mask), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("mask"), "{err}");
}
