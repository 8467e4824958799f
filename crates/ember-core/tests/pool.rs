//! Pooling, upsampling, padding and batch norm through the tensor API: PyTorch goldens
//! (`goldens/pool.txt`, made by `scripts/goldens/pool.py`), f64 gradient checks, views and
//! 3-D inputs against the plain path, empty batches, bit-identity across thread counts, and
//! the errors. The kernels' naive f64 references are in ember-cpu's `pool::tests`.

mod common;
use common::*;
use ember_core::gradcheck::gradcheck;
use ember_core::{BatchNormOptions, Device, Pad2d, PadMode, PoolOptions, Result, Tensor};
use std::collections::HashMap;

/// The script's input formula: distinct values (k·7919 + salt mod n) / n · 4 − 2, in f64, cast.
fn inputs(shape: &[usize], salt: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (((i * 7919 + salt) % n) as f64 / n as f64 * 4.0 - 2.0) as f32)
        .collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn weights(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 53) % 17) as f64 / 17.0 - 0.4) as f32)
        .collect()
}

fn goldens() -> HashMap<(String, String), Vec<f32>> {
    let text = include_str!("goldens/pool.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            let case = it.next().unwrap().to_string();
            let name = it.next().unwrap().to_string();
            let vals = it.map(|v| v.parse::<f32>().unwrap()).collect();
            ((case, name), vals)
        })
        .collect()
}

fn close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}[{i}]: ember {g}, PyTorch {w}"
        );
    }
}

/// Runs `f` on variables made of `xs`, compares y and d(Σ y·w)/d(each input) with the goldens.
fn golden(
    g: &HashMap<(String, String), Vec<f32>>,
    case: &str,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    xs: &[Tensor],
) {
    let vars: Vec<Tensor> = xs.iter().map(|x| x.as_variable()).collect();
    let y = f(&vars).unwrap();
    let key = |n: &str| (case.to_string(), n.to_string());
    close(
        &format!("{case} y"),
        &y.to_vec::<f32>().unwrap(),
        &g[&key("y")],
    );
    let w = Tensor::from_vec(weights(y.elem_count()), y.shape(), Device::Cpu).unwrap();
    let grads = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    for (i, v) in vars.iter().enumerate() {
        let d = grads.get(v).expect("a gradient").to_vec::<f32>().unwrap();
        close(&format!("{case} d{i}"), &d, &g[&key(&format!("d{i}"))]);
    }
}

#[test]
fn values_and_gradients_match_pytorch() {
    let g = goldens();
    let o = PoolOptions::new;
    golden(
        &g,
        "max_k3s2p1_ceil",
        |x| x[0].max_pool2d(o(3).stride(2).padding(1).ceil_mode(true)),
        &[inputs(&[2, 3, 7, 8], 0)],
    );
    golden(
        &g,
        "max_2x2",
        |x| x[0].max_pool2d(o(2)),
        &[inputs(&[2, 2, 6, 6], 0)],
    );
    golden(
        &g,
        "max_2x2_odd",
        |x| x[0].max_pool2d(o(2)),
        &[inputs(&[2, 2, 7, 9], 0)],
    );
    golden(
        &g,
        "max_dil2",
        |x| x[0].max_pool2d(o(2).stride(1).padding(1).dilation(2)),
        &[inputs(&[1, 2, 7, 7], 0)],
    );
    golden(
        &g,
        "avg_k3s2p1_ceil_incl",
        |x| x[0].avg_pool2d(o(3).stride(2).padding(1).ceil_mode(true)),
        &[inputs(&[2, 3, 7, 8], 0)],
    );
    golden(
        &g,
        "avg_k3s2p1_ceil_excl",
        |x| {
            x[0].avg_pool2d(
                o(3).stride(2)
                    .padding(1)
                    .ceil_mode(true)
                    .count_include_pad(false),
            )
        },
        &[inputs(&[2, 3, 7, 8], 0)],
    );
    let mut rect = PoolOptions::rect(2, 3);
    rect.stride = [1, 2];
    golden(
        &g,
        "avg_k2",
        |x| x[0].avg_pool2d(rect),
        &[inputs(&[1, 2, 5, 7], 0)],
    );
    golden(
        &g,
        "adaptive_3x2",
        |x| x[0].adaptive_avg_pool2d((3, 2)),
        &[inputs(&[2, 3, 7, 8], 0)],
    );
    golden(
        &g,
        "global",
        |x| x[0].global_avg_pool2d(),
        &[inputs(&[2, 3, 5, 6], 0)],
    );
    golden(
        &g,
        "upsample_2x3",
        |x| x[0].upsample_nearest2d((2, 3)),
        &[inputs(&[1, 2, 3, 4], 0)],
    );
    golden(
        &g,
        "pad_reflect",
        |x| x[0].pad(Pad2d::new(2, 1, 1, 2), PadMode::Reflect),
        &[inputs(&[1, 2, 4, 5], 0)],
    );
    golden(
        &g,
        "pad_const",
        |x| x[0].pad(Pad2d::new(1, 2, 0, 3), PadMode::Constant(0.5)),
        &[inputs(&[1, 2, 4, 5], 0)],
    );
    golden(
        &g,
        "max1d",
        |x| x[0].max_pool1d(o(3).stride(2).padding(1)),
        &[inputs(&[2, 3, 11], 0)],
    );
    golden(
        &g,
        "avg1d",
        |x| x[0].avg_pool1d(o(4).stride(3).padding(2).count_include_pad(false)),
        &[inputs(&[2, 3, 11], 0)],
    );

    // Batch norm: training (with the running update), evaluation, and [N, C] input.
    let wt = inputs(&[3], 1)
        .mul_scalar(0.5)
        .unwrap()
        .add_scalar(1.0)
        .unwrap();
    let bs = inputs(&[3], 2).mul_scalar(0.25).unwrap();
    let rm = Tensor::full(0.25, 3, ember_core::DType::F32, Device::Cpu).unwrap();
    let rv = Tensor::full(1.5, 3, ember_core::DType::F32, Device::Cpu).unwrap();
    let x = inputs(&[4, 3, 5, 5], 0);
    golden(
        &g,
        "bn_train",
        |v| {
            v[0].batch_norm(
                Some(&v[1]),
                Some(&v[2]),
                Some((&rm, &rv)),
                BatchNormOptions::default(),
            )
        },
        &[x.clone(), wt.clone(), bs.clone()],
    );
    let key = |n: &str| ("bn_train".to_string(), n.to_string());
    close(
        "running_mean",
        &rm.to_vec::<f32>().unwrap(),
        &g[&key("running_mean")],
    );
    close(
        "running_var",
        &rv.to_vec::<f32>().unwrap(),
        &g[&key("running_var")],
    );
    let erm = Tensor::from_vec(vec![0.1f32, -0.2, 0.3], 3, Device::Cpu).unwrap();
    let erv = Tensor::from_vec(vec![0.5f32, 1.5, 2.0], 3, Device::Cpu).unwrap();
    let eval = BatchNormOptions {
        training: false,
        ..Default::default()
    };
    golden(
        &g,
        "bn_eval",
        |v| v[0].batch_norm(Some(&v[1]), Some(&v[2]), Some((&erm, &erv)), eval),
        &[x, wt, bs],
    );
    golden(
        &g,
        "bn_train_2d",
        |v| v[0].batch_norm(None, None, None, BatchNormOptions::default()),
        &[inputs(&[6, 4], 0)],
    );
}

/// Distinct f64 values (a ramp scattered by a prime stride), so max pooling has no ties and no
/// finite-difference step crosses one.
fn distinct(shape: &[usize], salt: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|i| ((i * 7919 + salt) % n) as f64 / n as f64 * 4.0 - 2.0)
        .collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn check(name: &str, f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) {
    let report = gradcheck(f, inputs, 1e-6, 1e-6).unwrap();
    assert!(report.passed, "{name}: {report}");
    assert!(report.checked > 0, "{name}: nothing checked");
}

#[test]
fn gradients_match_finite_differences() {
    let o = PoolOptions::new;
    let x = distinct(&[2, 2, 7, 6], 3);
    check(
        "max_pool2d",
        |x| x[0].max_pool2d(o(3).stride(2).padding(1).ceil_mode(true)),
        std::slice::from_ref(&x),
    );
    check(
        "max_pool2d 2x2",
        |x| x[0].max_pool2d(o(2)),
        std::slice::from_ref(&x),
    );
    check(
        "max_pool2d dilated",
        |x| x[0].max_pool2d(o(2).stride(1).dilation(2)),
        std::slice::from_ref(&x),
    );
    for incl in [true, false] {
        check(
            "avg_pool2d",
            |x| {
                x[0].avg_pool2d(
                    o(3).stride(2)
                        .padding(1)
                        .ceil_mode(true)
                        .count_include_pad(incl),
                )
            },
            std::slice::from_ref(&x),
        );
    }
    check(
        "adaptive",
        |x| x[0].adaptive_avg_pool2d((4, 4)),
        std::slice::from_ref(&x),
    );
    check(
        "global",
        |x| x[0].global_avg_pool2d(),
        std::slice::from_ref(&x),
    );
    check(
        "upsample",
        |x| x[0].upsample_nearest2d((2, 3)),
        std::slice::from_ref(&x),
    );
    check(
        "pad reflect",
        |x| x[0].pad(Pad2d::new(2, 1, 3, 0), PadMode::Reflect),
        std::slice::from_ref(&x),
    );
    check(
        "pad constant",
        |x| x[0].pad(Pad2d::new(2, 1, 3, 0), PadMode::Constant(1.5)),
        std::slice::from_ref(&x),
    );
    check(
        "max_pool1d",
        |x| x[0].max_pool1d(o(3).stride(2).padding(1)),
        &[distinct(&[2, 3, 9], 1)],
    );
    check(
        "avg_pool1d",
        |x| x[0].avg_pool1d(o(3).stride(2).padding(1)),
        &[distinct(&[2, 3, 9], 1)],
    );
    // Batch norm, training: x, γ and β (the statistics depend on x).
    let w = distinct(&[2], 5).add_scalar(3.0).unwrap();
    let b = distinct(&[2], 6);
    for x in [distinct(&[3, 2, 3, 2], 4), distinct(&[5, 2], 4)] {
        check(
            "batch_norm train",
            |v| v[0].batch_norm(Some(&v[1]), Some(&v[2]), None, BatchNormOptions::default()),
            &[x.clone(), w.clone(), b.clone()],
        );
        check(
            "batch_norm no affine",
            |v| v[0].batch_norm(None, None, None, BatchNormOptions::default()),
            &[x],
        );
    }
    // Evaluation mode: running statistics are constants.
    let rm = Tensor::from_vec(vec![0.1f64, -0.3], 2, Device::Cpu).unwrap();
    let rv = Tensor::from_vec(vec![0.7f64, 1.9], 2, Device::Cpu).unwrap();
    let eval = BatchNormOptions {
        training: false,
        ..Default::default()
    };
    check(
        "batch_norm eval",
        |v| v[0].batch_norm(Some(&v[1]), Some(&v[2]), Some((&rm, &rv)), eval),
        &[distinct(&[3, 2, 3, 2], 4), w, b],
    );
}

#[test]
fn views_and_3d_inputs_match_the_plain_path() {
    let x = distinct(&[2, 3, 6, 5], 2);
    // A transposed view of the same values: [2, 3, 5, 6] viewed back as [2, 3, 6, 5].
    let xt = x
        .transpose(2, 3)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    assert!(!xt.is_contiguous());
    let o = PoolOptions::new(3).stride(2).padding(1);
    type OpFn = Box<dyn Fn(&Tensor) -> Result<Tensor>>;
    let ops: Vec<(&str, OpFn)> = vec![
        ("max", Box::new(move |t| t.max_pool2d(o))),
        ("avg", Box::new(move |t| t.avg_pool2d(o))),
        ("adaptive", Box::new(|t| t.adaptive_avg_pool2d((2, 3)))),
        ("upsample", Box::new(|t| t.upsample_nearest2d((2, 2)))),
        (
            "pad",
            Box::new(|t| t.pad(Pad2d::uniform(2), PadMode::Reflect)),
        ),
    ];
    for (name, f) in &ops {
        let want = f(&x).unwrap().to_vec::<f64>().unwrap();
        assert_eq!(
            f(&xt).unwrap().to_vec::<f64>().unwrap(),
            want,
            "{name} on a view"
        );
        let one = x.narrow(0, 1, 1).unwrap();
        let y3 = f(&one.squeeze(0).unwrap()).unwrap();
        let y4 = f(&one).unwrap();
        assert_eq!(y3.rank(), 3, "{name}");
        assert_eq!(
            y3.to_vec::<f64>().unwrap(),
            y4.to_vec::<f64>().unwrap(),
            "{name} 3-D"
        );
    }
    // Max pooling's gradient through a view lands on the view's elements.
    let v = xt.as_variable();
    let g = v
        .max_pool2d(o)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let gv = g.get(&v).unwrap().to_vec::<f64>().unwrap();
    let p = x.as_variable();
    let g2 = p
        .max_pool2d(o)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(gv, g2.get(&p).unwrap().to_vec::<f64>().unwrap());
    // f16 storage computes in f32 and keeps its dtype.
    let h = x.to_dtype(ember_core::DType::F16).unwrap();
    assert_eq!(h.max_pool2d(o).unwrap().dtype(), ember_core::DType::F16);
}

#[test]
fn empty_batches_give_empty_outputs() {
    let x = Tensor::zeros((0, 3, 4, 4), ember_core::DType::F32, Device::Cpu)
        .unwrap()
        .as_variable();
    let y = x.max_pool2d(PoolOptions::new(2)).unwrap();
    assert_eq!(y.shape(), [0, 3, 2, 2]);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().shape(), [0, 3, 4, 4]);
    assert_eq!(
        x.avg_pool2d(PoolOptions::new(2)).unwrap().shape(),
        [0, 3, 2, 2]
    );
    assert_eq!(x.global_avg_pool2d().unwrap().shape(), [0, 3, 1, 1]);
    assert_eq!(x.upsample_nearest2d((2, 2)).unwrap().shape(), [0, 3, 8, 8]);
    assert_eq!(
        x.pad(Pad2d::uniform(1), PadMode::Reflect).unwrap().shape(),
        [0, 3, 6, 6]
    );
    // Batch norm of an empty batch: empty output, running statistics untouched (PyTorch 2.15).
    let rm = Tensor::full(0.5, 3, ember_core::DType::F32, Device::Cpu).unwrap();
    let rv = Tensor::full(2.0, 3, ember_core::DType::F32, Device::Cpu).unwrap();
    let y = x
        .batch_norm(None, None, Some((&rm, &rv)), BatchNormOptions::default())
        .unwrap();
    assert_eq!(y.shape(), [0, 3, 4, 4]);
    assert_eq!(rm.to_vec::<f32>().unwrap(), vec![0.5; 3]);
    assert_eq!(rv.to_vec::<f32>().unwrap(), vec![2.0; 3]);
}

#[test]
fn forward_and_backward_are_bit_identical_across_thread_counts() {
    let mut r = rng(9);
    let x = rand_arr(&[16, 8, 30, 30], -1.0, 1.0, &mut r)
        .tensor()
        .to_dtype(ember_core::DType::F32)
        .unwrap();
    let w = Tensor::full(1.25, 8, ember_core::DType::F32, Device::Cpu).unwrap();
    let run = || {
        let (v, wv) = (x.as_variable(), w.as_variable());
        let y = v
            .batch_norm(Some(&wv), None, None, BatchNormOptions::default())
            .unwrap()
            .max_pool2d(PoolOptions::new(3).stride(2).padding(1))
            .unwrap()
            .upsample_nearest2d((2, 2))
            .unwrap()
            .avg_pool2d(PoolOptions::new(2))
            .unwrap()
            .pad(Pad2d::uniform(1), PadMode::Reflect)
            .unwrap();
        let s = y.sqr().unwrap().sum_all().unwrap();
        let g = s.backward().unwrap();
        let mut bits: Vec<u32> = y
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|f| f.to_bits())
            .collect();
        for t in [&v, &wv] {
            bits.extend(
                g.get(t)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|f| f.to_bits()),
            );
        }
        bits
    };
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1).install(run);
    let three = pool(3).install(run);
    assert!(one == three, "1 and 3 threads differ");
}

#[test]
fn bad_inputs_are_errors_naming_the_op_and_shapes() {
    let x = distinct(&[1, 2, 4, 4], 0);
    let err = |r: Result<Tensor>| r.unwrap_err().to_string();
    let e = err(distinct(&[4, 4], 0).max_pool2d(PoolOptions::new(2)));
    assert!(e.contains("max_pool2d") && e.contains("[4, 4]"), "{e}");
    let e = err(x.max_pool2d(PoolOptions::new(2).padding(2)));
    assert!(
        e.contains("max_pool2d") && e.contains("[1, 2, 4, 4]") && e.contains("at most half"),
        "{e}"
    );
    let e = err(x.avg_pool2d(PoolOptions::new(2).dilation(2)));
    assert!(e.contains("avg_pool2d") && e.contains("dilation"), "{e}");
    let e = err(x.max_pool2d(PoolOptions::new(5)));
    assert!(e.contains("smaller than the window"), "{e}");
    let e = err(x.max_pool2d(PoolOptions::new(2).stride(0)));
    assert!(e.contains("stride"), "{e}");
    let e = err(x.adaptive_avg_pool2d((0, 2)));
    assert!(
        e.contains("adaptive_avg_pool2d") && e.contains("0×2"),
        "{e}"
    );
    let e = err(x.upsample_nearest2d((0, 2)));
    assert!(
        e.contains("upsample_nearest2d") && e.contains("scale"),
        "{e}"
    );
    let e = err(x.pad(Pad2d::uniform(4), PadMode::Reflect));
    assert!(
        e.contains("pad") && e.contains("[1, 2, 4, 4]") && e.contains("smaller"),
        "{e}"
    );
    let e = err(distinct(&[5], 0).pad(Pad2d::new(1, 1, 1, 0), PadMode::Constant(0.0)));
    assert!(e.contains("pad") && e.contains("[5]"), "{e}");
    let e = err(distinct(&[2, 3, 9], 0).max_pool1d(PoolOptions::new(2).padding(2)));
    assert!(e.contains("max_pool1d"), "{e}");
    let e = err(x.max_pool1d(PoolOptions::new(2)));
    assert!(e.contains("max_pool1d") && e.contains("[N, C, L]"), "{e}");
    let bn = BatchNormOptions::default();
    let w3 = distinct(&[3], 0);
    let e = err(x.batch_norm(Some(&w3), None, None, bn));
    assert!(
        e.contains("batch_norm") && e.contains("weight [3]") && e.contains("[2]"),
        "{e}"
    );
    let e = err(distinct(&[1, 2, 1, 1], 0).batch_norm(None, None, None, bn));
    assert!(e.contains("more than 1 value per channel"), "{e}");
    let e = err(distinct(&[4], 0).batch_norm(None, None, None, bn));
    assert!(e.contains("[N, C, ...]"), "{e}");
    let f32w = Tensor::ones(2, ember_core::DType::F32, Device::Cpu).unwrap();
    let e = err(x.batch_norm(Some(&f32w), None, None, bn));
    assert!(e.contains("batch_norm"), "{e}");
}

#[test]
fn running_statistics_follow_pytorch_update() {
    // Per channel: running ← 0.9·running + 0.1·batch, variance unbiased (M/(M−1)).
    let x = Tensor::from_vec(
        vec![1.0f64, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 50.0],
        (2, 2, 2),
        Device::Cpu,
    )
    .unwrap();
    let rm = Tensor::zeros(2, ember_core::DType::F64, Device::Cpu).unwrap();
    let rv = Tensor::ones(2, ember_core::DType::F64, Device::Cpu).unwrap();
    x.batch_norm(None, None, Some((&rm, &rv)), BatchNormOptions::default())
        .unwrap();
    // Channel 0: 1, 2, 10, 20 (mean 8.25); channel 1: 3, 4, 30, 50 (mean 21.75).
    let m: [f64; 2] = [8.25, 21.75];
    let vals: [[f64; 4]; 2] = [[1.0, 2.0, 10.0, 20.0], [3.0, 4.0, 30.0, 50.0]];
    let rm = rm.to_vec::<f64>().unwrap();
    let rv = rv.to_vec::<f64>().unwrap();
    for c in 0..2 {
        let unbiased = vals[c].iter().map(|v| (v - m[c]).powi(2)).sum::<f64>() / 3.0;
        assert!((rm[c] - 0.1 * m[c]).abs() < 1e-12);
        assert!((rv[c] - (0.9 + 0.1 * unbiased)).abs() < 1e-12);
    }
}

/// On a GPU (skipped with one line without one): pooling, upsampling and padding run on
/// ember-cuda's kernels and match the CPU, forward and backward (through autograd); training-mode
/// batch norm, which has no CUDA kernel yet, refuses CUDA tensors with an error naming the op;
/// evaluation-mode batch norm, composed of primitives that have CUDA paths, matches the CPU.
#[test]
fn cuda_pooling_matches_the_cpu() {
    let Ok(probe) = Tensor::zeros(1, ember_core::DType::F32, Device::Cuda(0)) else {
        println!("SKIPPED: no usable GPU");
        return;
    };
    drop(probe);
    let x = inputs(&[2, 3, 7, 6], 0);
    let g = x.to_device(Device::Cuda(0)).unwrap();
    type Op = fn(&Tensor) -> Result<Tensor>;
    let ops: [(&str, Op); 6] = [
        ("max_pool2d", |t| t.max_pool2d(PoolOptions::new(2))),
        ("avg_pool2d", |t| {
            let mut o = PoolOptions::new(3);
            o.stride = [2, 2];
            o.padding = [1, 1];
            t.avg_pool2d(o)
        }),
        ("adaptive_avg_pool2d", |t| t.adaptive_avg_pool2d((3, 4))),
        ("upsample_nearest2d", |t| t.upsample_nearest2d((2, 3))),
        ("pad reflect", |t| {
            t.pad(Pad2d::new(2, 1, 1, 2), PadMode::Reflect)
        }),
        ("pad constant", |t| {
            t.pad(Pad2d::uniform(1), PadMode::Constant(0.5))
        }),
    ];
    for (name, op) in ops {
        let run = |t: &Tensor| {
            let v = t.as_variable();
            let y = op(&v).unwrap();
            let loss = y.mul(&y).unwrap().sum(&[0, 1, 2, 3], false).unwrap();
            let grads = loss.backward().unwrap();
            let dx = grads.get(&v).unwrap().to_device(Device::Cpu).unwrap();
            (y.to_device(Device::Cpu).unwrap(), dx)
        };
        let ((yc, dc), (yg, dg)) = (run(&x), run(&g));
        assert_eq!(yc.shape(), yg.shape(), "{name}");
        close(
            name,
            &yg.to_vec::<f32>().unwrap(),
            &yc.to_vec::<f32>().unwrap(),
        );
        close(
            &format!("{name} dx"),
            &dg.to_vec::<f32>().unwrap(),
            &dc.to_vec::<f32>().unwrap(),
        );
    }
    let e = g
        .batch_norm(None, None, None, BatchNormOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("batch_norm") && e.contains("not yet on CUDA"),
        "{e}"
    );
    let (rm, rv) = (inputs(&[3], 1), inputs(&[3], 2).add_scalar(3.0).unwrap());
    let eval = BatchNormOptions {
        training: false,
        ..Default::default()
    };
    let cpu = x.batch_norm(None, None, Some((&rm, &rv)), eval).unwrap();
    let (grm, grv) = (
        rm.to_device(Device::Cuda(0)).unwrap(),
        rv.to_device(Device::Cuda(0)).unwrap(),
    );
    let gpu = g.batch_norm(None, None, Some((&grm, &grv)), eval).unwrap();
    close(
        "bn eval on CUDA",
        &gpu.to_vec::<f32>().unwrap(),
        &cpu.to_vec::<f32>().unwrap(),
    );
}
