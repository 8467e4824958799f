//! `Tensor::backward_with_hook`, the gradient-ready hook of data-parallel training: every leaf
//! that needs a gradient is reported once, as soon as its last consumer has run (the last
//! layer's parameters first), with exactly the gradient the store returns; a leaf used twice
//! is reported after both uses; an error from the hook stops the walk.

use ember_core::{Activation, Device, Tensor};

fn var(values: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape.to_vec(), Device::Cpu)
        .unwrap()
        .as_variable()
}

/// A two-layer network's loss as a `Sequential` of Dense layers builds it (fused `linear`
/// nodes): sum(linear(relu(linear(x, w1, b1)), w2, b2)); x needs no gradient.
fn two_layers() -> (Tensor, [Tensor; 4]) {
    let x = Tensor::from_vec(
        vec![0.5, -1.0, 2.0, 0.25, 1.5, -0.5],
        vec![2, 3],
        Device::Cpu,
    )
    .unwrap();
    let w1 = var(
        &[
            0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, 0.8, -0.9, 1.0, 0.2, 0.3,
        ],
        &[4, 3],
    );
    let b1 = var(&[0.01, -0.02, 0.03, 0.04], &[4]);
    let w2 = var(&[0.5, -0.25, 0.75, 1.0], &[1, 4]);
    let b2 = var(&[0.1], &[1]);
    let h = x.linear(&w1, Some(&b1), Activation::Relu).unwrap();
    let loss = h
        .linear(&w2, Some(&b2), Activation::None)
        .unwrap()
        .sum_all()
        .unwrap();
    (loss, [w1, b1, w2, b2])
}

#[test]
fn each_parameter_is_reported_once_last_layer_first_with_its_final_gradient() {
    let (loss, [w1, b1, w2, b2]) = two_layers();
    let mut seen: Vec<(ember_core::TensorId, Vec<f64>)> = Vec::new();
    let store = loss
        .backward_with_hook(&mut |leaf, g| {
            seen.push((leaf.id(), g.to_vec::<f64>()?));
            Ok(())
        })
        .unwrap();
    let ids: Vec<_> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 4, "four parameters, each once");
    let pos = |t: &Tensor| ids.iter().position(|&i| i == t.id()).expect("reported");
    // The second layer's parameters are final (and reported) before the first layer's.
    assert!(pos(&w2).max(pos(&b2)) < pos(&w1).min(pos(&b1)), "{ids:?}");
    // Each reported gradient is the one the store holds, bit for bit.
    for (id, g) in &seen {
        let want = store.get_id(*id).unwrap().to_vec::<f64>().unwrap();
        assert_eq!(
            g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
    // And the store is what plain backward gives.
    let (loss2, params2) = two_layers();
    let plain = loss2.backward().unwrap();
    for (a, b) in [&w1, &b1, &w2, &b2].iter().zip(params2.iter()) {
        assert_eq!(
            store.get(a).unwrap().to_vec::<f64>().unwrap(),
            plain.get(b).unwrap().to_vec::<f64>().unwrap()
        );
    }
}

#[test]
fn a_leaf_used_twice_is_reported_after_its_last_use() {
    // y = sum(w·a) + sum((w·a)·c) where w feeds two nodes at different depths.
    let w = var(&[2.0, 3.0], &[2]);
    let c = var(&[0.5, -1.0], &[2]);
    let a = Tensor::from_vec(vec![1.0, 4.0], vec![2], Device::Cpu).unwrap();
    let wa = w.mul(&a).unwrap();
    let late = w.mul(&c).unwrap(); // second use of w, on a different branch
    let y = wa.mul(&c).unwrap().add(&late).unwrap().sum_all().unwrap();
    let mut order = Vec::new();
    let store = y
        .backward_with_hook(&mut |leaf, g| {
            order.push((leaf.id(), g.to_vec::<f64>()?));
            Ok(())
        })
        .unwrap();
    assert_eq!(order.len(), 2);
    let (_, gw) = order
        .iter()
        .find(|(id, _)| *id == w.id())
        .expect("w reported");
    // dy/dw = a·c + c: both uses summed before the report.
    // a·c + c = (1·0.5 + 0.5, 4·(−1) − 1)
    assert_eq!(gw, &vec![1.0, -5.0]);
    assert_eq!(gw, &store.get(&w).unwrap().to_vec::<f64>().unwrap());
}

#[test]
fn an_error_from_the_hook_stops_the_walk() {
    let (loss, _) = two_layers();
    let mut calls = 0;
    let e = loss
        .backward_with_hook(&mut |_, _| {
            calls += 1;
            Err(ember_core::Error::Invalid {
                op: "test hook",
                detail: "refused".into(),
            })
        })
        .unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
    assert_eq!(calls, 1);
}

/// The hook follows backward's walk, which is one fixed topological order (the reverse of a
/// depth-first post-order), not the earliest possible one: an unfused `matmul` + broadcast
/// `add` makes the bias's broadcast its own node, which that walk visits last, so the bias is
/// reported at the end. Reports are late at worst, never early: each holds the final gradient.
#[test]
fn reports_are_never_early_whatever_the_graph() {
    let x = Tensor::from_vec(
        vec![0.5, -1.0, 2.0, 0.25, 1.5, -0.5],
        vec![2, 3],
        Device::Cpu,
    )
    .unwrap();
    let w = var(&[0.1, -0.2, 0.3, 0.4, -0.5, 0.6], &[3, 2]);
    let b = var(&[0.01, -0.02], &[1, 2]);
    let loss = x
        .matmul(&w)
        .unwrap()
        .add(&b)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap();
    let mut seen = Vec::new();
    let store = loss
        .backward_with_hook(&mut |leaf, g| {
            seen.push((leaf.id(), g.to_vec::<f64>()?));
            Ok(())
        })
        .unwrap();
    assert_eq!(seen.len(), 2);
    for (id, g) in &seen {
        assert_eq!(g, &store.get_id(*id).unwrap().to_vec::<f64>().unwrap());
    }
}
