//! ember-core on a GPU: every op with a CUDA path against the same op on the CPU, a small
//! MLP's training steps (forward, backward, fused Adam) matching the CPU's, an autograd graph
//! through the index ops (index_select, gather, cat, where, to_dtype, one_hot, BCE) matching the
//! CPU's values and gradients, and AdaGrad / RMSProp steps matching the CPU's bit for bit.
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

/// A copy of `t` on `device` with storage of its own. (`to_device` to the tensor's own device
/// and `contiguous` on a dense tensor return the same storage, and `as_variable` shares it, so
/// without a copy the CPU run's in-place optimizer steps would also move the initial values the
/// GPU run starts from.) Multiplying by 1 is exact.
fn private_copy(t: &Tensor, device: Device) -> Tensor {
    t.to_device(device).unwrap().mul_scalar(1.0).unwrap()
}

/// |gpu - cpu| <= tol (1 + |cpu|) elementwise, compared in f64 (so f64 results are not
/// rounded to f32 first).
fn close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    let (x, y) = (a.to_vec::<f64>().unwrap(), b.to_vec::<f64>().unwrap());
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
            .map(|t| private_copy(t, device).as_variable())
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

/// The inputs of [`index_graph`]: x [7, 5], w [5, 4] and 0/1 targets [5, 4], as f64 on the CPU.
fn index_graph_inputs() -> (Tensor, Tensor, Tensor) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let x = Tensor::randn(0.0, 1.0, (7, 5), DType::F64, Device::Cpu, &mut rng).unwrap();
    let w = Tensor::randn(0.0, 1.0, (5, 4), DType::F64, Device::Cpu, &mut rng).unwrap();
    let y = Tensor::rand(0.0, 1.0, (5, 4), DType::F64, Device::Cpu, &mut rng)
        .unwrap()
        .gt_scalar(0.5)
        .unwrap();
    (x, w, y)
}

/// x → index_select rows (with a repeat) → gather along columns → cat with a strided narrow
/// view → where (a leaky ReLU) → to_dtype round trip → times w → plus a one-hot → sigmoid → BCE.
/// Returns the loss, the probabilities, and the gradients of x and w.
fn index_graph(device: Device, dtype: DType) -> (Tensor, Tensor, Tensor, Tensor) {
    let (x0, w0, y0) = index_graph_inputs();
    let on = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(device).unwrap();
    let (x, w, y) = (on(&x0).as_variable(), on(&w0).as_variable(), on(&y0));
    let rows = Tensor::from_slice(&[0.0, 3.0, 3.0, 6.0, 1.0], 5, device).unwrap();
    let cols = [4.0, 0.0, 2.0, 2.0, 1.0, 1.0, 3.0, 0.0, 4.0, 4.0];
    let cols = Tensor::from_slice(&cols, (5, 2), device).unwrap();
    let labels = Tensor::from_slice(&[3.0, 0.0, 1.0, 3.0, 2.0], 5, device).unwrap();
    let s = x.index_select(&rows, 0).unwrap(); // [5, 5]
    let g = s.gather(1, &cols).unwrap(); // [5, 2], columns repeat
    let v = s.t().unwrap().narrow(0, 1, 2).unwrap().t().unwrap(); // [5, 2], strided
    let c = Tensor::cat(&[&g, &v], 1).unwrap(); // [5, 4]
    let h = c
        .gt_scalar(0.0)
        .unwrap()
        .where_cond(&c, &c.mul_scalar(0.1).unwrap())
        .unwrap();
    let h = h
        .to_dtype(DType::F64)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
        .mul(&w)
        .unwrap();
    let onehot = Tensor::one_hot(&labels, 4, dtype).unwrap();
    let p = h.add(&onehot).unwrap().sigmoid().unwrap();
    let l = loss::binary_cross_entropy(&p, &y, Reduction::Mean).unwrap();
    let grads = l.backward().unwrap();
    let gx = grads.get(&x).unwrap().clone();
    let gw = grads.get(&w).unwrap().clone();
    assert_eq!(gx.device(), device, "gradients stay on the device");
    (l, p, gx, gw)
}

/// The graph the GPU test below runs, on the CPU alone: it builds, and every row of x that
/// index_select picked (0, 1, 3, 6) gets a gradient while the others get exact zeros.
#[test]
fn index_graph_runs_on_the_cpu() {
    let (l, _, gx, gw) = index_graph(Device::Cpu, DType::F64);
    assert!(l.to_scalar::<f64>().unwrap().is_finite());
    let gx = gx.to_vec2::<f64>().unwrap();
    for (r, row) in gx.iter().enumerate() {
        let picked = [0, 1, 3, 6].contains(&r);
        assert_eq!(row.iter().any(|&v| v != 0.0), picked, "row {r}: {row:?}");
    }
    assert_eq!(gw.shape(), &[5, 4]);
}

/// [`index_graph`] on the GPU: loss, forward values and both gradients equal the CPU's, in f32
/// and f64 (every op on the way runs on the device).
#[test]
fn autograd_through_index_ops_matches_the_cpu() {
    let Some(dev) = gpu() else { return };
    for dtype in [DType::F32, DType::F64] {
        let (lc, pc, gxc, gwc) = index_graph(Device::Cpu, dtype);
        let (lg, pg, gxg, gwg) = index_graph(dev, dtype);
        // f32: a few ulp per op, amplified by BCE's 1/(p(1-p)) (the tolerance the other
        // GPU-vs-CPU tests here use); f64: the same argument at 2^-52.
        let tol = if dtype == DType::F32 { 1e-4 } else { 1e-10 };
        close(&lg, &lc, tol, &format!("{dtype} loss"));
        close(&pg, &pc, tol, &format!("{dtype} forward"));
        close(&gxg, &gxc, tol, &format!("{dtype} grad x"));
        close(&gwg, &gwc, tol, &format!("{dtype} grad w"));
    }
}

/// Index and cast errors on a GPU are `Err`s naming the op and the offending value.
#[test]
fn index_and_dtype_errors_on_the_gpu() {
    let Some(dev) = gpu() else { return };
    let x = Tensor::zeros((5, 3), DType::F32, dev).unwrap();
    let bad = Tensor::from_slice(&[1.0f32, 5.0], 2, dev).unwrap();
    let e = x.index_select(&bad, 0).unwrap_err().to_string();
    assert!(e.contains("index_select") && e.contains('5'), "{e}");
    let frac = Tensor::from_slice(&[0.5f32; 5], (5, 1), dev).unwrap();
    let e = x.gather(1, &frac).unwrap_err().to_string();
    assert!(e.contains("gather") && e.contains("0.5"), "{e}");
    let e = x.to_dtype(DType::F16).unwrap_err().to_string();
    assert!(e.contains("f16") && e.contains("cuda:0"), "{e}");
    let e = x.to_dtype(DType::BF16).unwrap_err().to_string();
    assert!(e.contains("bf16"), "{e}");
    let c = Tensor::zeros((5, 3), DType::F32, Device::Cpu).unwrap();
    assert!(Tensor::cat(&[&x, &c], 0).is_err());
    assert!(c.where_cond(&x, &x).is_err());
}

/// AdaGrad and RMSProp (every momentum/centered form) through ember-core on the GPU: the
/// device kernels round each operation like the CPU loops, so parameters and states match the
/// CPU's bit for bit after several steps, in f32 and f64.
#[test]
fn adagrad_and_rmsprop_steps_match_the_cpu() {
    let Some(dev) = gpu() else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for dtype in [DType::F32, DType::F64] {
        let p0 = Tensor::randn(0.0, 1.0, (67, 3), dtype, Device::Cpu, &mut rng).unwrap();
        let grads: Vec<Tensor> = (0..3)
            .map(|_| Tensor::randn(0.0, 1.0, (67, 3), dtype, Device::Cpu, &mut rng).unwrap())
            .collect();
        let fresh = |device: Device, t: &Tensor| private_copy(t, device).as_variable();
        let same = |a: &Tensor, b: &Tensor, what: &str| {
            let (x, y) = (a.to_vec::<f64>().unwrap(), b.to_vec::<f64>().unwrap());
            for (i, (p, q)) in x.iter().zip(&y).enumerate() {
                assert!(
                    p.to_bits() == q.to_bits(),
                    "{what}[{i}]: gpu {p} vs cpu {q}"
                );
            }
        };
        // AdaGrad.
        let cfg = optim::AdagradConfig {
            lr: 0.05,
            eps: 1e-7,
            weight_decay: 1e-2,
        };
        let run = |device: Device| {
            let p = fresh(device, &p0);
            let acc = fresh(device, &p0.zeros_like().unwrap());
            for g in &grads {
                optim::adagrad_step(&p, &g.to_device(device).unwrap(), &acc, &cfg).unwrap();
            }
            (p, acc)
        };
        let ((pc, ac), (pg, ag)) = (run(Device::Cpu), run(dev));
        same(&pg, &pc, &format!("adagrad {dtype} param"));
        same(&ag, &ac, &format!("adagrad {dtype} acc"));
        // RMSProp.
        for (momentum, centered) in [(0.0, false), (0.9, false), (0.0, true), (0.9, true)] {
            let cfg = optim::RmspropConfig {
                lr: 1e-2,
                rho: 0.9,
                momentum,
                eps: 1e-7,
                centered,
                weight_decay: 0.0,
            };
            let run = |device: Device| {
                let p = fresh(device, &p0);
                let sq = fresh(device, &p0.zeros_like().unwrap());
                let mom = fresh(device, &p0.zeros_like().unwrap());
                let ga = fresh(device, &p0.zeros_like().unwrap());
                for g in &grads {
                    optim::rmsprop_step(
                        &p,
                        &g.to_device(device).unwrap(),
                        &sq,
                        (momentum > 0.0).then_some(&mom),
                        centered.then_some(&ga),
                        &cfg,
                    )
                    .unwrap();
                }
                vec![p, sq, mom, ga]
            };
            let (c, g) = (run(Device::Cpu), run(dev));
            for (k, name) in ["param", "sq_avg", "momentum", "grad_avg"]
                .iter()
                .enumerate()
            {
                same(
                    &g[k],
                    &c[k],
                    &format!("rmsprop {dtype} momentum={momentum} centered={centered} {name}"),
                );
            }
        }
    }
}

/// (input [N, C, H, W], output channels, window, options) of one convolution case.
type ConvCase = (
    (usize, usize, usize, usize),
    usize,
    (usize, usize),
    ember_core::Conv2dOptions,
);

/// conv2d and conv_transpose2d on a GPU (forward and every gradient through autograd) against
/// the CPU twin, in f32 and f64, over stride, padding, dilation, groups and a depthwise case.
#[test]
fn convolutions_match_the_cpu() {
    use ember_core::{Conv2dOptions, ConvTranspose2dOptions, Padding};
    let Some(dev) = gpu() else { return };
    let cases: [ConvCase; 4] = [
        ((2, 3, 9, 8), 4, (3, 3), Conv2dOptions::default()),
        (
            (2, 4, 11, 10),
            6,
            (3, 2),
            Conv2dOptions {
                stride: (2, 1),
                padding: Padding::symmetric(1, 2),
                dilation: (1, 2),
                groups: 2,
            },
        ),
        (
            (1, 5, 7, 7),
            5,
            (3, 3),
            Conv2dOptions {
                padding: Padding::Same,
                groups: 5,
                ..Conv2dOptions::default()
            },
        ),
        ((3, 2, 6, 5), 3, (1, 1), Conv2dOptions::default()),
    ];
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 1e-4 } else { 1e-10 };
        for ((n, c, h, w), o, (kh, kw), opts) in cases {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let x0 =
                Tensor::randn(0.0, 1.0, vec![n, c, h, w], dtype, Device::Cpu, &mut rng).unwrap();
            let w0 = Tensor::randn(
                0.0,
                0.5,
                vec![o, c / opts.groups, kh, kw],
                dtype,
                Device::Cpu,
                &mut rng,
            )
            .unwrap();
            let b0 = Tensor::randn(0.0, 0.5, vec![o], dtype, Device::Cpu, &mut rng).unwrap();
            let run = |device: Device| {
                let x = x0.to_device(device).unwrap().as_variable();
                let wt = w0.to_device(device).unwrap().as_variable();
                let b = b0.to_device(device).unwrap().as_variable();
                let y = x.conv2d(&wt, Some(&b), &opts).unwrap();
                let loss = y.mul(&y).unwrap().sum(&[0, 1, 2, 3], false).unwrap();
                let g = loss.backward().unwrap();
                let grads =
                    [&x, &wt, &b].map(|t| g.get(t).unwrap().to_device(Device::Cpu).unwrap());
                (y.to_device(Device::Cpu).unwrap(), grads)
            };
            let ((yc, gc), (yg, gg)) = (run(Device::Cpu), run(dev));
            let what = format!("conv2d {dtype} x [{n},{c},{h},{w}] o {o} k {kh}x{kw} {opts:?}");
            close(&yg, &yc, tol, &what);
            for (k, name) in ["dx", "dw", "db"].iter().enumerate() {
                close(&gg[k], &gc[k], tol, &format!("{what} {name}"));
            }
        }
        // The transposed convolution (the generator's upsampling step).
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let x0 = Tensor::randn(0.0, 1.0, vec![2, 4, 5, 5], dtype, Device::Cpu, &mut rng).unwrap();
        let w0 = Tensor::randn(0.0, 0.5, vec![4, 3, 4, 4], dtype, Device::Cpu, &mut rng).unwrap();
        let opts = ConvTranspose2dOptions {
            stride: (2, 2),
            padding: (1, 1),
            ..ConvTranspose2dOptions::default()
        };
        let run = |device: Device| {
            let x = x0.to_device(device).unwrap().as_variable();
            let wt = w0.to_device(device).unwrap().as_variable();
            let y = x.conv_transpose2d(&wt, None, &opts).unwrap();
            let loss = y.mul(&y).unwrap().sum(&[0, 1, 2, 3], false).unwrap();
            let g = loss.backward().unwrap();
            let grads = [&x, &wt].map(|t| g.get(t).unwrap().to_device(Device::Cpu).unwrap());
            (y.to_device(Device::Cpu).unwrap(), grads)
        };
        let ((yc, gc), (yg, gg)) = (run(Device::Cpu), run(dev));
        close(&yg, &yc, tol, &format!("conv_transpose2d {dtype}"));
        close(&gg[0], &gc[0], tol, &format!("conv_transpose2d {dtype} dx"));
        close(&gg[1], &gc[1], tol, &format!("conv_transpose2d {dtype} dw"));
    }
}
