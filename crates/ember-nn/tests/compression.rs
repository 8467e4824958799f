//! Pruning, sparse inference and distillation: the masks and the schedule against hand
//! computations, pruned weights staying exactly zero through training (Adam's moments too) and
//! a checkpoint, the sparse layer against the dense one, the distillation loss against a hand
//! computation, and bad settings giving errors.

use ember_core::{Activation, Device, Tensor};
use ember_nn::distill::soft_target_loss;
use ember_nn::layers::Dense;
use ember_nn::module::Module;
use ember_nn::prelude::*;
use ember_nn::prune::{
    PolynomialDecay, PruneScope, Pruning, magnitude_masks, prune, sparsity_report,
};
use ember_nn::sparse::sparsify;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn t(values: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape.to_vec(), Device::Cpu).unwrap()
}

fn mlp(seed: u64) -> Sequential {
    let mut rng = StdRng::seed_from_u64(seed);
    Sequential::new()
        .add(Dense::new(6, 16, Activation::Relu, &mut rng).unwrap())
        .add(Dense::new(16, 3, Activation::None, &mut rng).unwrap())
}

fn data() -> (Tensor, Tensor) {
    let n = 96;
    let x: Vec<f32> = (0..n * 6)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 3) as f32).collect();
    (
        Tensor::from_vec(x, vec![n, 6], Device::Cpu).unwrap(),
        Tensor::from_vec(y, vec![n], Device::Cpu).unwrap(),
    )
}

#[test]
fn masks_drop_the_smallest_magnitudes_per_layer_or_globally() {
    let a = ("a.weight".to_string(), t(&[0.5, -0.1, 0.3, -0.9], &[2, 2]));
    let b = (
        "b.weight".to_string(),
        t(&[0.05, 0.2, -0.04, 0.6, 0.7, 0.8], &[2, 3]),
    );
    let params = vec![a, b];
    let per = magnitude_masks(&params, 0.5, PruneScope::PerLayer).unwrap();
    assert_eq!(per[0].1.to_vec::<f64>().unwrap(), vec![1.0, 0.0, 0.0, 1.0]);
    assert_eq!(
        per[1].1.to_vec::<f64>().unwrap(),
        vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    );
    // Global: 5 of the 10 smallest |w| overall: 0.04, 0.05, 0.1, 0.2, 0.3.
    let global = magnitude_masks(&params, 0.5, PruneScope::Global).unwrap();
    assert_eq!(
        global[0].1.to_vec::<f64>().unwrap(),
        vec![1.0, 0.0, 0.0, 1.0]
    );
    assert_eq!(
        global[1].1.to_vec::<f64>().unwrap(),
        vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    );
    let global = magnitude_masks(&params, 0.3, PruneScope::Global).unwrap();
    assert_eq!(
        global[0].1.to_vec::<f64>().unwrap(),
        vec![1.0, 0.0, 1.0, 1.0]
    );
    assert!(magnitude_masks(&params, 1.0, PruneScope::Global).is_err());
    assert!(magnitude_masks(&params, -0.1, PruneScope::Global).is_err());
}

#[test]
fn the_schedule_is_zhu_and_gupta_cubic() {
    let s = PolynomialDecay::new(0.1, 0.9, 10, 110, 10).unwrap();
    assert_eq!(s.sparsity_at(5), 0.0);
    assert_eq!(s.sparsity_at(10), 0.1);
    let mid = 0.9 + (0.1 - 0.9) * (1.0f64 - 0.5).powi(3);
    assert!((s.sparsity_at(60) - mid).abs() < 1e-15);
    assert_eq!(s.sparsity_at(110), 0.9);
    assert_eq!(s.sparsity_at(500), 0.9);
    assert!(s.is_update_step(10) && s.is_update_step(20) && !s.is_update_step(25));
    assert!(!s.is_update_step(120));
    let odd = PolynomialDecay::new(0.0, 0.5, 0, 25, 10).unwrap();
    assert!(odd.is_update_step(25), "the end step always updates");
    assert!(PolynomialDecay::new(0.0, 1.0, 0, 10, 1).is_err());
    assert!(PolynomialDecay::new(0.0, 0.5, 10, 5, 1).is_err());
    assert!(PolynomialDecay::new(0.0, 0.5, 0, 5, 0).is_err());
}

#[test]
fn pruned_weights_and_their_adam_moments_stay_zero_through_training_and_a_checkpoint() {
    let (x, y) = data();
    let mut model = mlp(1).compile(Optimizer::adam(), Loss::CrossEntropy, &[Metric::Accuracy]);
    // One dense epoch first, so Adam's moments are nonzero everywhere when the masks arrive.
    let cfg = |pruning| FitConfig {
        epochs: 2,
        batch_size: 16,
        verbose: 0,
        pruning,
        ..FitConfig::default()
    };
    model.fit(&x, &y, cfg(None)).unwrap();
    let schedule = PolynomialDecay::new(0.2, 0.8, 12, 18, 2).unwrap();
    model
        .fit(&x, &y, cfg(Some(Pruning::new(schedule))))
        .unwrap();
    let (per, overall) = sparsity_report(model.network.parameters_ref()).unwrap();
    for (name, s) in &per {
        assert!((s - 0.8).abs() < 0.01, "{name}: sparsity {s}");
    }
    assert!((overall - 0.8).abs() < 0.01);
    // Zero in the weights exactly where the masks are zero, and in Adam's moments there.
    let state = model.optimizer.state_tensors();
    for (name, p) in model.network.parameters_ref() {
        let Some(mask) = model.optimizer.mask(name) else {
            continue;
        };
        let (m, w) = (mask.to_vec::<f64>().unwrap(), p.to_vec::<f64>().unwrap());
        for buf in ["m", "v"] {
            let key = format!("optimizer.{name}.{buf}");
            let s = state
                .iter()
                .find(|(n, _)| *n == key)
                .unwrap()
                .1
                .to_vec::<f64>()
                .unwrap();
            for i in 0..m.len() {
                if m[i] == 0.0 {
                    assert_eq!(w[i], 0.0, "{name}[{i}]");
                    assert_eq!(s[i], 0.0, "{key}[{i}]");
                }
            }
        }
    }
    // Training on (one-shot masks kept) leaves them zero; a checkpoint stores exact zeros.
    model.fit(&x, &y, cfg(None)).unwrap();
    let dir = std::env::temp_dir().join(format!("ember-prune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pruned.safetensors");
    model.save(&path).unwrap();
    let mut back = mlp(9).compile(Optimizer::adam(), Loss::CrossEntropy, &[]);
    back.load(&path).unwrap();
    let (_, again) = sparsity_report(back.network.parameters_ref()).unwrap();
    assert!((again - 0.8).abs() < 0.01, "{again}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_sparse_network_computes_what_the_dense_one_does() {
    let (x, y) = data();
    let mut model = mlp(2).compile(Optimizer::adam(), Loss::CrossEntropy, &[]);
    prune(&mut model, 0.9, PruneScope::Global).unwrap();
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 32,
        verbose: 0,
        ..FitConfig::default()
    };
    model.fit(&x, &y, cfg).unwrap();
    let dense_out = model
        .network
        .forward(&x, false)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let (sparse, converted) = sparsify(model.network, 0.5).unwrap();
    assert_eq!(converted, 2);
    let sparse_out = sparse.forward(&x, false).unwrap().to_vec::<f32>().unwrap();
    for (a, b) in dense_out.iter().zip(&sparse_out) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert!(
        sparse.forward(&x, true).is_err(),
        "sparse layers are inference-only"
    );
    assert!(sparse.layers()[0].describe().contains("nonzero"));
}

#[test]
fn the_distillation_loss_matches_a_hand_computation() {
    let s = [1.0, 2.0, 0.5, -1.0, 0.0, 3.0];
    let te = [2.0, 0.0, 1.0, 0.5, 0.5, 0.5];
    let temp = 2.0;
    let mut want = 0.0;
    for r in 0..2 {
        let soft = |v: &[f64]| -> Vec<f64> {
            let z: Vec<f64> = v.iter().map(|a| (a / temp).exp()).collect();
            let sum: f64 = z.iter().sum();
            z.iter().map(|a| a / sum).collect()
        };
        let p = soft(&te[r * 3..r * 3 + 3]);
        let q = soft(&s[r * 3..r * 3 + 3]);
        want += (0..3).map(|i| p[i] * (p[i] / q[i]).ln()).sum::<f64>();
    }
    want = want / 2.0 * temp * temp;
    let got = soft_target_loss(&t(&s, &[2, 3]), &t(&te, &[2, 3]), temp)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    // A student equal to its teacher has nothing to learn from it.
    let same = soft_target_loss(&t(&te, &[2, 3]), &t(&te, &[2, 3]), temp)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(same.abs() < 1e-15);
    assert!(soft_target_loss(&t(&s, &[2, 3]), &t(&te, &[3, 2]), temp).is_err());
}

#[test]
fn a_distilled_student_trains_and_bad_settings_are_refused() {
    let (x, y) = data();
    let mut teacher = mlp(3).compile(Optimizer::adam(), Loss::CrossEntropy, &[]);
    let cfg = || FitConfig {
        epochs: 3,
        batch_size: 16,
        verbose: 0,
        ..FitConfig::default()
    };
    teacher.fit(&x, &y, cfg()).unwrap();
    let student = || {
        let mut rng = StdRng::seed_from_u64(4);
        Sequential::new().add(Dense::new(6, 3, Activation::None, &mut rng).unwrap())
    };
    let mut s = student().compile(Optimizer::adam(), Loss::CrossEntropy, &[]);
    assert!(s.distill_from(mlp(3), 0.0, 0.5).is_err());
    assert!(s.distill_from(mlp(3), 2.0, 1.5).is_err());
    s.distill_from(teacher.network, 4.0, 0.1).unwrap();
    let h = s.fit(&x, &y, cfg()).unwrap();
    let losses = h.series("loss");
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[2] < losses[0], "{losses:?}");
    // With alpha = 1 the teacher has no weight: the same as training on labels alone.
    let mut plain = student().compile(Optimizer::adam(), Loss::CrossEntropy, &[]);
    let mut alpha1 = student().compile(Optimizer::adam(), Loss::CrossEntropy, &[]);
    alpha1.distill_from(mlp(5), 3.0, 1.0).unwrap();
    let a = plain.fit(&x, &y, cfg()).unwrap().series("loss");
    let b = alpha1.fit(&x, &y, cfg()).unwrap().series("loss");
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() < 1e-6, "{a:?} vs {b:?}");
    }
    let mut bce = student().compile(Optimizer::adam(), Loss::MeanSquaredError, &[]);
    assert!(bce.distill_from(mlp(3), 2.0, 0.5).is_err());
}

/// A CNN whose conv1 filters 1, 3 (of 4), conv2 filters 0, 2, 4 (of 6) and Dense units 0, 2
/// (of 4) are exactly zero: removing
/// half the channels removes exactly those, and the outputs do not change.
#[test]
fn channel_pruning_removes_the_weakest_filters_and_keeps_the_function() {
    use ember_nn::conv::Conv2d;
    use ember_nn::layers::{ActivationLayer, Flatten};
    use ember_nn::pooling::MaxPool2d;
    use ember_nn::shrink::prune_channels;
    let mut rng = StdRng::seed_from_u64(7);
    let c1 = Conv2d::new(1, 4, (3, 3), &mut rng).unwrap();
    let c2 = Conv2d::new(4, 6, (3, 3), &mut rng).unwrap();
    let d1 = Dense::new(6 * 3 * 3, 4, Activation::Relu, &mut rng).unwrap();
    let d2 = Dense::new(4, 3, Activation::None, &mut rng).unwrap();
    ember_core::no_grad(|| {
        let zero_rows = |w: &Tensor, rows: &[usize]| {
            let mut v = w.to_vec::<f32>().unwrap();
            let per = v.len() / w.shape()[0];
            for &r in rows {
                v[r * per..(r + 1) * per].iter_mut().for_each(|x| *x = 0.0);
            }
            w.assign(&Tensor::from_vec(v, w.shape().to_vec(), Device::Cpu).unwrap())
                .unwrap();
        };
        zero_rows(c1.weight(), &[1, 3]);
        zero_rows(c1.bias().unwrap(), &[1, 3]);
        zero_rows(c2.weight(), &[0, 2, 4]);
        zero_rows(c2.bias().unwrap(), &[0, 2, 4]);
        zero_rows(d1.weight(), &[0, 2]);
        zero_rows(d1.bias().unwrap(), &[0, 2]);
    });
    let net = Sequential::new()
        .add(c1)
        .add(ActivationLayer::new(Activation::Relu))
        .add(MaxPool2d::new(2))
        .add(c2)
        .add(ActivationLayer::new(Activation::Relu))
        .add(Flatten::new())
        .add(d1)
        .add(d2);
    let x: Vec<f32> = (0..2 * 12 * 12)
        .map(|i| ((i as f32) * 0.37).sin())
        .collect();
    let x = Tensor::from_vec(x, vec![2, 1, 12, 12], Device::Cpu).unwrap();
    let before = net.forward(&x, false).unwrap().to_vec::<f32>().unwrap();
    let (small, report) = prune_channels(net, &[1, 12, 12], 0.5).unwrap();
    let after = small.forward(&x, false).unwrap().to_vec::<f32>().unwrap();
    for (a, b) in before.iter().zip(&after) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // conv1 4 → 2, conv2 6 → 3, dense1 4 → 2; the output layer untouched.
    assert_eq!(report.layers, vec![(0, 4, 2), (3, 6, 3), (6, 4, 2)]);
    assert!(report.parameters.1 < report.parameters.0);
    let shapes: Vec<Vec<usize>> = small
        .parameters_ref()
        .iter()
        .map(|(_, t)| t.shape().to_vec())
        .collect();
    assert_eq!(shapes[0], vec![2, 1, 3, 3]);
    assert_eq!(shapes[2], vec![3, 2, 3, 3]);
    assert_eq!(shapes[4], vec![2, 27]);
    assert_eq!(shapes[6], vec![3, 2]);
    assert!(prune_channels(small, &[1, 12, 12], 1.0).is_err());
}
