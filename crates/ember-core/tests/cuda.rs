//! ember-core on a GPU: every op with a CUDA path against the same op on the CPU, and a small
//! MLP's training steps (forward, backward, fused Adam) matching the CPU's.
//!
//! Without a usable GPU each test prints one `SKIPPED: <reason>` line and passes, unless
//! `EMBER_REQUIRE_GPU=1` is set (as scripts/gpu-check.sh does), which turns the skip into a
//! failure.

use ember_core::{Activation, DType, Device, Reduction, Tensor, loss, optim};
use rand::SeedableRng;

/// The GPU to test on, or None after printing why there is none.
fn gpu() -> Option<Device> {
    match Tensor::zeros(1, DType::F32, Device::Cuda(0)) {
        Ok(_) => Some(Device::Cuda(0)),
        Err(e) => {
            if std::env::var("EMBER_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("EMBER_REQUIRE_GPU=1 but no usable GPU: {e}");
            }
            println!("SKIPPED: no usable GPU ({e})");
            None
        }
    }
}

fn close(a: &Tensor, b: &Tensor, tol: f32, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    let (x, y) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        let ok = (p.is_nan() && q.is_nan()) || (p - q).abs() <= tol * (1.0 + q.abs());
        assert!(ok, "{what}: element {i}: gpu {p} vs cpu {q}");
    }
}

#[test]
fn errors_without_a_gpu_name_the_device() {
    if gpu().is_some() {
        return;
    }
    let e = Tensor::zeros(3, DType::F32, Device::Cuda(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cuda:0"), "{e}");
}

#[test]
fn ops_match_the_cpu() {
    let Some(dev) = gpu() else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let a = Tensor::randn(0.0, 1.0, (67, 33), DType::F32, Device::Cpu, &mut rng).unwrap();
    let b = Tensor::randn(0.0, 1.0, (33,), DType::F32, Device::Cpu, &mut rng).unwrap();
    let w = Tensor::randn(0.0, 1.0, (7, 33), DType::F32, Device::Cpu, &mut rng).unwrap();
    let bias = Tensor::randn(0.0, 1.0, (7,), DType::F32, Device::Cpu, &mut rng).unwrap();
    let (ga, gb, gw, gbias) = (
        a.to_device(dev).unwrap(),
        b.to_device(dev).unwrap(),
        w.to_device(dev).unwrap(),
        bias.to_device(dev).unwrap(),
    );
    type Case = fn(&Tensor, &Tensor, &Tensor, &Tensor) -> ember_core::Result<Tensor>;
    let cases: Vec<(&str, Case)> = vec![
        ("relu", |a, _, _, _| a.relu()),
        ("sigmoid", |a, _, _, _| a.sigmoid()),
        ("tanh", |a, _, _, _| a.tanh()),
        ("gelu", |a, _, _, _| a.gelu()),
        ("exp", |a, _, _, _| a.exp()),
        ("add broadcast", |a, b, _, _| a.add(b)),
        ("mul", |a, _, _, _| a.mul(a)),
        ("gt", |a, b, _, _| a.gt(b)),
        ("transpose contiguous", |a, _, _, _| a.t()?.contiguous()),
        ("sum axis 0", |a, _, _, _| a.sum(&[0], false)),
        ("sum axis 1", |a, _, _, _| a.sum(&[1], true)),
        ("max", |a, _, _, _| a.max(&[1], false)),
        ("argmax", |a, _, _, _| a.argmax(1, false)),
        ("softmax", |a, _, _, _| a.softmax(1)),
        ("log_softmax", |a, _, _, _| a.log_softmax(0)),
        ("matmul", |a, _, w, _| a.matmul(&w.t()?)),
        ("linear relu", |a, _, w, b| {
            a.linear(w, Some(b), Activation::Relu)
        }),
        ("linear sigmoid", |a, _, w, b| {
            a.linear(w, Some(b), Activation::Sigmoid)
        }),
    ];
    for (name, f) in cases {
        let want = f(&a, &b, &w, &bias).unwrap();
        let got = f(&ga, &gb, &gw, &gbias).unwrap();
        assert_eq!(got.device(), dev, "{name} stays on the GPU");
        close(&got, &want, 1e-4, name);
    }
}

#[test]
fn training_steps_match_the_cpu() {
    let Some(dev) = gpu() else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let x = Tensor::randn(0.0, 1.0, (10, 10), DType::F32, Device::Cpu, &mut rng).unwrap();
    let y = x.narrow(1, 0, 1).unwrap().gt_scalar(0.0).unwrap();
    let shapes = [(10, 10), (5, 10), (1, 5)];
    let mut init = vec![];
    for (o, i) in shapes {
        init.push(Tensor::randn(0.0, 0.3, (o, i), DType::F32, Device::Cpu, &mut rng).unwrap());
        init.push(Tensor::zeros(o, DType::F32, Device::Cpu).unwrap());
    }
    let run = |device: Device| -> Vec<Vec<f32>> {
        let params: Vec<Tensor> = init
            .iter()
            .map(|t| {
                t.to_device(device)
                    .unwrap()
                    .contiguous()
                    .unwrap()
                    .as_variable()
            })
            .collect();
        let state: Vec<(Tensor, Tensor)> = params
            .iter()
            .map(|p| (p.zeros_like().unwrap(), p.zeros_like().unwrap()))
            .collect();
        let (xd, yd) = (x.to_device(device).unwrap(), y.to_device(device).unwrap());
        for step in 1..=5 {
            let h = xd
                .linear(&params[0], Some(&params[1]), Activation::Relu)
                .unwrap();
            let h = h
                .linear(&params[2], Some(&params[3]), Activation::Relu)
                .unwrap();
            let p = h
                .linear(&params[4], Some(&params[5]), Activation::Sigmoid)
                .unwrap();
            let l = loss::binary_cross_entropy(&p, &yd, Reduction::Mean).unwrap();
            let grads = l.backward().unwrap();
            let cfg = optim::AdamConfig {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-7,
                weight_decay: 0.0,
                step,
            };
            for (p, (m, v)) in params.iter().zip(&state) {
                optim::adam_step(p, grads.get(p).unwrap(), m, v, &cfg).unwrap();
            }
        }
        params.iter().map(|p| p.to_vec::<f32>().unwrap()).collect()
    };
    let (cpu, gpu) = (run(Device::Cpu), run(dev));
    for (k, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        for (a, b) in c.iter().zip(g) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
                "param {k}: cpu {a} vs gpu {b}"
            );
        }
    }
}
