//! Graph behaviour: reuse, diamonds, shared subexpressions, no_grad, detach, repeated backward,
//! first-order semantics, and memory staying flat over a long training loop.

use ember_core::{DType, Device, NoGradGuard, Reduction, Tensor, loss, memory, no_grad};

fn var(values: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape.to_vec(), Device::Cpu)
        .unwrap()
        .as_variable()
}

#[test]
fn a_tensor_used_twice_accumulates() {
    let x = var(&[3.0], &[1]);
    let y = x.mul(&x).unwrap().add(&x).unwrap().sum_all().unwrap(); // x² + x
    let g = y.backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec::<f64>().unwrap(), vec![7.0]);
}

#[test]
fn diamond_and_shared_subexpression() {
    let x = var(&[0.5, -1.0], &[2]);
    let s = x.exp().unwrap(); // shared
    let a = s.mul_scalar(2.0).unwrap();
    let b = s.sqr().unwrap();
    let y = a.add(&b).unwrap().sum_all().unwrap(); // 2e^x + e^2x
    let g = y
        .backward()
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    for (gi, xi) in g.iter().zip([0.5f64, -1.0]) {
        let want = 2.0 * xi.exp() + 2.0 * (2.0 * xi).exp();
        assert!((gi - want).abs() < 1e-12);
    }
}

#[test]
fn no_grad_and_detach_stop_gradients() {
    let x = var(&[1.0, 2.0], &[2]);
    let y = no_grad(|| x.sqr().unwrap());
    assert!(!y.requires_grad());
    {
        let _g = NoGradGuard::new();
        assert!(!x.exp().unwrap().requires_grad());
    }
    assert!(
        x.exp().unwrap().requires_grad(),
        "recording resumes after the guard"
    );
    let z = x
        .sqr()
        .unwrap()
        .detach()
        .mul(&x)
        .unwrap()
        .sum_all()
        .unwrap(); // d/dx = x² (detached)
    let g = z
        .backward()
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    assert_eq!(g, vec![1.0, 4.0]);
    // Constants get no gradient entry.
    let c = Tensor::ones(2, DType::F64, Device::Cpu).unwrap();
    let grads = x.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&c).is_none());
}

#[test]
fn second_backward_on_fresh_graph_and_backward_with() {
    let x = var(&[1.0, 2.0, 3.0], &[3]);
    for _ in 0..2 {
        let y = x.sqr().unwrap().sum_all().unwrap();
        let g = y.backward().unwrap();
        assert_eq!(
            g.get(&x).unwrap().to_vec::<f64>().unwrap(),
            vec![2.0, 4.0, 6.0]
        );
    }
    // backward frees the graph: walking it again is an error, not silent zeros...
    let y = x.sqr().unwrap().sum_all().unwrap();
    y.backward().unwrap();
    let e = y.backward().unwrap_err().to_string();
    assert!(e.contains("freed by an earlier backward"), "{e}");
    // ...unless it was kept with backward_retain.
    let y = x.sqr().unwrap().sum_all().unwrap();
    let g1 = y
        .backward_retain()
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    let g2 = y
        .backward()
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    assert_eq!(g1, g2);
    let v = x.mul_scalar(3.0).unwrap();
    let seed = Tensor::from_vec(vec![1.0, 0.0, 2.0], 3, Device::Cpu).unwrap();
    let g = v.backward_with(&seed).unwrap();
    assert_eq!(
        g.get(&x).unwrap().to_vec::<f64>().unwrap(),
        vec![3.0, 0.0, 6.0]
    );
    assert!(v.backward().is_err(), "backward needs a one-element output");
}

#[test]
fn views_pass_gradients_to_their_base() {
    let x = var(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let y = x.t().unwrap().narrow(0, 1, 2).unwrap().sum_all().unwrap();
    let g = y
        .backward()
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    assert_eq!(g, vec![0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
}

#[test]
fn optimizer_updates_in_place_and_assign() {
    let w = var(&[1.0, 2.0], &[2]);
    let g = Tensor::from_vec(vec![0.5, -0.5], 2, Device::Cpu).unwrap();
    let cfg = ember_core::optim::SgdConfig {
        lr: 0.1,
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    ember_core::optim::sgd_step(&w, &g, None, &cfg).unwrap();
    assert_eq!(w.to_vec::<f64>().unwrap(), vec![0.95, 2.05]);
    let src = Tensor::from_vec(vec![7.0, 8.0], 2, Device::Cpu).unwrap();
    w.assign(&src).unwrap();
    assert_eq!(w.to_vec::<f64>().unwrap(), vec![7.0, 8.0]);
    assert!(
        w.assign(&Tensor::zeros(3, DType::F64, Device::Cpu).unwrap())
            .is_err()
    );
    // Adam state must not alias the parameter.
    assert!(
        ember_core::optim::adam_step(
            &w,
            &g,
            &w,
            &w,
            &ember_core::optim::AdamConfig {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-7,
                weight_decay: 0.0,
                step: 1
            }
        )
        .is_err()
    );
}

/// One SGD step of a 4-8-1 MLP; returns the loss.
fn train_step(params: &[Tensor], x: &Tensor, y: &Tensor, kept: &mut Vec<Tensor>) -> f64 {
    use ember_core::Activation;
    let h = x
        .linear(&params[0], Some(&params[1]), Activation::Relu)
        .unwrap();
    let p = h
        .linear(&params[2], Some(&params[3]), Activation::Sigmoid)
        .unwrap();
    let l = loss::binary_cross_entropy(&p, y, Reduction::Mean).unwrap();
    let grads = l.backward().unwrap();
    let cfg = ember_core::optim::SgdConfig {
        lr: 0.1,
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    for p in params {
        ember_core::optim::sgd_step(p, grads.get(p).unwrap(), None, &cfg).unwrap();
    }
    let v = l.to_scalar::<f64>().unwrap();
    kept.push(l);
    v
}

#[test]
fn memory_stays_flat_over_ten_thousand_steps() {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let dev = Device::Cpu;
    let params: Vec<Tensor> = [
        (vec![8, 4], 0.5),
        (vec![8], 0.0),
        (vec![1, 8], 0.5),
        (vec![1], 0.0),
    ]
    .into_iter()
    .map(|(s, std)| {
        if std == 0.0 {
            Tensor::zeros(s, DType::F32, dev).unwrap().as_variable()
        } else {
            Tensor::randn(0.0, std, s, DType::F32, dev, &mut rng)
                .unwrap()
                .as_variable()
        }
    })
    .collect();
    let x = Tensor::randn(0.0, 1.0, (16, 4), DType::F32, dev, &mut rng).unwrap();
    let y = x.narrow(1, 0, 1).unwrap().gt_scalar(0.0).unwrap();
    let first = train_step(&params, &x, &y, &mut Vec::new());
    let before = memory::live_bytes();
    let mut last = first;
    // Keep every loss tensor alive, as a careless logging loop would: backward has already freed
    // each one's graph, so only the 4-byte losses themselves accumulate (40 KB).
    let mut kept = Vec::new();
    for _ in 0..10_000 {
        last = train_step(&params, &x, &y, &mut kept);
    }
    let after = memory::live_bytes();
    // Other tests in this binary run in parallel threads and allocate too, so allow slack, but a
    // leaked graph per step (> 1 KiB each) would add more than 10 MiB.
    assert!(
        after < before + (1 << 20),
        "live bytes grew from {before} to {after}"
    );
    assert!(last < first, "the MLP should train: loss {first} -> {last}");
}
