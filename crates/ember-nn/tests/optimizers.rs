//! Each optimizer's first three updates against values computed by hand from its published
//! (Keras 3) update rule with the documented defaults, plus clipping, weight decay and
//! schedules. Parameters are f64 so the comparison can be tight.

use ember_core::{Device, Tensor};
use ember_nn::optim::{Clip, Optimizer, Schedule};

const P0: [f64; 2] = [1.0, -0.5];
const GRADS: [[f64; 2]; 3] = [[0.5, -1.0], [0.2, 0.3], [-0.4, 0.8]];

/// Applies three steps whose gradients are exactly `GRADS` (the gradient of `Σ p·g` is `g`)
/// and returns the parameter after each step.
fn run(opt: &mut Optimizer) -> Vec<[f64; 2]> {
    let p = Tensor::from_vec(P0.to_vec(), vec![2], Device::Cpu)
        .unwrap()
        .as_variable();
    let mut out = Vec::new();
    for g in GRADS {
        let c = Tensor::from_vec(g.to_vec(), vec![2], Device::Cpu).unwrap();
        let grads = p.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
        opt.step(&[("w".to_string(), p.clone())], &grads).unwrap();
        let v = p.to_vec::<f64>().unwrap();
        out.push([v[0], v[1]]);
    }
    out
}

/// The same three steps computed by `rule(param, grad, step, state)` element by element.
fn reference(
    mut rule: impl FnMut(f64, f64, u64, &mut [f64; 3]) -> f64,
    init: f64,
) -> Vec<[f64; 2]> {
    let mut p = P0;
    let mut state = [[init, 0.0, 0.0], [init, 0.0, 0.0]];
    let mut out = Vec::new();
    for (t, g) in GRADS.iter().enumerate() {
        for i in 0..2 {
            p[i] = rule(p[i], g[i], t as u64 + 1, &mut state[i]);
        }
        out.push(p);
    }
    out
}

fn assert_close(got: &[[f64; 2]], want: &[[f64; 2]], tol: f64) {
    for (s, (a, b)) in got.iter().zip(want).enumerate() {
        for i in 0..2 {
            assert!(
                (a[i] - b[i]).abs() <= tol,
                "step {}: got {a:?}, want {b:?}",
                s + 1
            );
        }
    }
}

#[test]
fn sgd_defaults() {
    let got = run(&mut Optimizer::sgd());
    // lr 0.01: p -= 0.01 g. By hand: 1 - 0.005 = 0.995; -0.5 + 0.01 = -0.49.
    assert_close(&got[..1], &[[0.995, -0.49]], 1e-15);
    assert_close(&got, &reference(|p, g, _, _| p - 0.01 * g, 0.0), 1e-15);
}

#[test]
fn sgd_momentum_and_nesterov() {
    let got = run(&mut Optimizer::sgd().with_momentum(0.9).unwrap());
    let want = reference(
        |p, g, _, s| {
            s[0] = 0.9 * s[0] - 0.01 * g;
            p + s[0]
        },
        0.0,
    );
    assert_close(&got, &want, 1e-15);
    // By hand, first coordinate: v1 = -0.005, p1 = 0.995; v2 = -0.0045 - 0.002 = -0.0065,
    // p2 = 0.9885.
    assert!((got[1][0] - 0.9885).abs() < 1e-15);

    let mut nesterov = Optimizer::sgd().with_momentum(0.9).unwrap();
    if let ember_nn::optim::Algorithm::Sgd { nesterov: n, .. } = &mut nesterov.algorithm {
        *n = true;
    }
    let want = reference(
        |p, g, _, s| {
            s[0] = 0.9 * s[0] - 0.01 * g;
            p + 0.9 * s[0] - 0.01 * g
        },
        0.0,
    );
    assert_close(&run(&mut nesterov), &want, 1e-15);
}

fn adam_rule(lr: f64, wd: f64) -> impl FnMut(f64, f64, u64, &mut [f64; 3]) -> f64 {
    move |p, g, t, s| {
        let p = p - lr * wd * p;
        s[0] += (1.0 - 0.9) * (g - s[0]);
        s[1] += (1.0 - 0.999) * (g * g - s[1]);
        let alpha = lr * (1.0 - 0.999f64.powi(t as i32)).sqrt() / (1.0 - 0.9f64.powi(t as i32));
        p - alpha * s[0] / (s[1].sqrt() + 1e-7)
    }
}

#[test]
fn adam_defaults() {
    let got = run(&mut Optimizer::adam());
    assert_close(&got, &reference(adam_rule(0.001, 0.0), 0.0), 1e-14);
    // By hand: the first Adam step moves each coordinate by lr against the gradient's sign,
    // less a relative 1e-7 / (sqrt(1-0.999)|g|).
    let step0 = 0.001 * (1.0 - 1e-7 / (0.001f64.sqrt() * 0.5 + 1e-7));
    assert!((got[0][0] - (1.0 - step0)).abs() < 1e-12, "{:?}", got[0]);
}

#[test]
fn adamw_defaults_decay_0_004() {
    let got = run(&mut Optimizer::adamw());
    assert_close(&got, &reference(adam_rule(0.001, 0.004), 0.0), 1e-14);
    // Differs from Adam by the decoupled decay.
    assert_ne!(got, run(&mut Optimizer::adam()));
}

#[test]
fn adagrad_defaults_initial_accumulator_0_1() {
    let got = run(&mut Optimizer::adagrad());
    let want = reference(
        |p, g, _, s| {
            s[0] += g * g;
            p - 0.001 * g / (s[0] + 1e-7).sqrt()
        },
        0.1,
    );
    assert_close(&got, &want, 1e-15);
    // By hand, first step, first coordinate: acc = 0.1 + 0.25 = 0.35.
    assert!((got[0][0] - (1.0 - 0.001 * 0.5 / (0.35f64 + 1e-7).sqrt())).abs() < 1e-15);
}

#[test]
fn rmsprop_defaults() {
    let got = run(&mut Optimizer::rmsprop());
    let want = reference(
        |p, g, _, s| {
            s[0] = 0.9 * s[0] + 0.1 * g * g;
            p - 0.001 * g / (s[0] + 1e-7).sqrt()
        },
        0.0,
    );
    assert_close(&got, &want, 1e-15);
}

#[test]
fn rmsprop_momentum_centered() {
    let mut opt = Optimizer::rmsprop().with_momentum(0.5).unwrap();
    if let ember_nn::optim::Algorithm::RmsProp { centered, .. } = &mut opt.algorithm {
        *centered = true;
    }
    let want = reference(
        |p, g, _, s| {
            s[0] = 0.9 * s[0] + 0.1 * g * g; // squared average
            s[2] = 0.9 * s[2] + 0.1 * g; // gradient average
            let inc = 0.001 * g / (s[0] - s[2] * s[2] + 1e-7).sqrt();
            s[1] = 0.5 * s[1] + inc; // momentum
            p - s[1]
        },
        0.0,
    );
    assert_close(&run(&mut opt), &want, 1e-14);
}

#[test]
fn clipping_by_value_norm_and_global_norm() {
    // SGD lr 1 makes the applied gradient visible as the parameter change.
    let got = run(&mut Optimizer::sgd().with_lr(1.0).with_clip(Clip::Value(0.3)));
    assert_close(&got[..1], &[[1.0 - 0.3, -0.5 + 0.3]], 1e-15);
    let got = run(&mut Optimizer::sgd().with_lr(1.0).with_clip(Clip::Norm(0.5)));
    let n = 1.25f64.sqrt();
    assert_close(&got[..1], &[[1.0 - 0.5 * 0.5 / n, -0.5 + 0.5 / n]], 1e-12);
    // Second gradient [0.2, 0.3] has norm 0.36 < 0.5: applied unchanged.
    assert!((got[1][0] - (got[0][0] - 0.2)).abs() < 1e-12);
    // Global norm over two parameters: g_a = [3, 0], g_b = [0, 4], norm 5, clip to 1.
    let a = Tensor::from_vec(vec![0.0f64, 0.0], vec![2], Device::Cpu)
        .unwrap()
        .as_variable();
    let b = Tensor::from_vec(vec![0.0f64, 0.0], vec![2], Device::Cpu)
        .unwrap()
        .as_variable();
    let ca = Tensor::from_vec(vec![3.0f64, 0.0], vec![2], Device::Cpu).unwrap();
    let cb = Tensor::from_vec(vec![0.0f64, 4.0], vec![2], Device::Cpu).unwrap();
    let loss = a
        .mul(&ca)
        .unwrap()
        .sum_all()
        .unwrap()
        .add(&b.mul(&cb).unwrap().sum_all().unwrap())
        .unwrap();
    let grads = loss.backward().unwrap();
    let mut opt = Optimizer::sgd()
        .with_lr(1.0)
        .with_clip(Clip::GlobalNorm(1.0));
    opt.step(&[("a".into(), a.clone()), ("b".into(), b.clone())], &grads)
        .unwrap();
    assert_close(
        &[[a.to_vec::<f64>().unwrap()[0], b.to_vec::<f64>().unwrap()[1]]],
        &[[-0.6, -0.8]],
        1e-12,
    );
}

#[test]
fn weight_decay_is_decoupled() {
    let got = run(&mut Optimizer::sgd().with_weight_decay(0.1));
    let want = reference(|p, g, _, _| (p - 0.01 * 0.1 * p) - 0.01 * g, 0.0);
    assert_close(&got, &want, 1e-15);
}

#[test]
fn schedules_change_the_step_size_per_update() {
    let mut opt = Optimizer::sgd().with_lr(1.0).with_schedule(Schedule::Step {
        step_size: 1,
        gamma: 0.5,
    });
    let got = run(&mut opt);
    // Step t (1-based) uses lr 0.5^(t-1).
    let want = reference(|p, g, t, _| p - 0.5f64.powi(t as i32 - 1) * g, 0.0);
    assert_close(&got, &want, 1e-15);
    assert_eq!(opt.iterations(), 3);
    assert_eq!(opt.current_lr(), 0.125);
}
