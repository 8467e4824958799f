//! Forward ops against a naive f64 reference, over shapes with sizes 0, 1 and primes, through
//! contiguous, transposed, narrowed and broadcast inputs, in f64 and f32.

mod common;
use common::*;
use ember_core::{DType, Device, Tensor};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn erf(x: f64) -> f64 {
    ember_cpu::element::erf_f64(x)
}

type Ref = fn(f64) -> f64;
type UnaryFn = fn(&Tensor) -> ember_core::Result<Tensor>;
/// (name, op, reference, lo, hi): inputs are drawn from [lo, hi).
type UnaryCase = (&'static str, UnaryFn, Ref, f64, f64);

fn unary_cases() -> Vec<UnaryCase> {
    vec![
        ("neg", |t| t.neg(), |x| -x, -3.0, 3.0),
        ("abs", |t| t.abs(), f64::abs, -3.0, 3.0),
        ("exp", |t| t.exp(), f64::exp, -3.0, 3.0),
        ("log", |t| t.log(), f64::ln, 0.1, 5.0),
        ("sqrt", |t| t.sqrt(), f64::sqrt, 0.1, 5.0),
        ("sqr", |t| t.sqr(), |x| x * x, -3.0, 3.0),
        ("recip", |t| t.recip(), |x| 1.0 / x, 0.5, 3.0),
        ("sin", |t| t.sin(), f64::sin, -3.0, 3.0),
        ("cos", |t| t.cos(), f64::cos, -3.0, 3.0),
        ("tanh", |t| t.tanh(), f64::tanh, -3.0, 3.0),
        ("sigmoid", |t| t.sigmoid(), sigmoid, -8.0, 8.0),
        ("relu", |t| t.relu(), |x| x.max(0.0), -3.0, 3.0),
        (
            "leaky_relu",
            |t| t.leaky_relu(0.1),
            |x| if x > 0.0 { x } else { 0.1 * x },
            -3.0,
            3.0,
        ),
        (
            "elu",
            |t| t.elu(1.5),
            |x| if x > 0.0 { x } else { 1.5 * (x.exp() - 1.0) },
            -3.0,
            3.0,
        ),
        (
            "gelu_tanh",
            |t| t.gelu_tanh(),
            |x| {
                0.5 * x
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
            },
            -4.0,
            4.0,
        ),
        (
            "gelu",
            |t| t.gelu(),
            |x| 0.5 * x * (1.0 + erf(x / 2f64.sqrt())),
            -4.0,
            4.0,
        ),
        (
            "softplus",
            |t| t.softplus(),
            |x| (1.0 + x.exp()).ln(),
            -5.0,
            5.0,
        ),
        (
            "clamp",
            |t| t.clamp(-0.5, 1.0),
            |x| x.clamp(-0.5, 1.0),
            -3.0,
            3.0,
        ),
        ("add_scalar", |t| t.add_scalar(2.5), |x| x + 2.5, -3.0, 3.0),
        ("sub_scalar", |t| t.sub_scalar(2.5), |x| x - 2.5, -3.0, 3.0),
        (
            "mul_scalar",
            |t| t.mul_scalar(-1.5),
            |x| x * -1.5,
            -3.0,
            3.0,
        ),
        ("div_scalar", |t| t.div_scalar(4.0), |x| x / 4.0, -3.0, 3.0),
        (
            "pow_scalar",
            |t| t.pow_scalar(1.7),
            |x| x.powf(1.7),
            0.1,
            3.0,
        ),
    ]
}

/// Every op in the vocabulary (so a new op is covered without editing a list), in f32 and f64
/// on every layout, against ember-cpu's scalar formula evaluated in f64.
#[test]
fn every_unary_op_matches_its_f64_formula() {
    let mut r = rng(11);
    for op in ember_core::UnaryOp::ALL {
        let (lo, hi) = op.smooth_domain();
        for shape in shapes() {
            let a = rand_arr(&shape, lo, hi, &mut r);
            let want = a.map(|x| ember_cpu::unary::apply(op, x));
            for (layout, t) in layouts(&a) {
                let what = format!("{op:?} {shape:?} {layout}");
                assert_close(&t.unary_op(op).unwrap(), &want, 1e-12, &what);
                let t32 = t.to_dtype(DType::F32).unwrap();
                assert_close(
                    &t32.unary_op(op).unwrap(),
                    &want,
                    4e-6,
                    &format!("f32 {what}"),
                );
            }
        }
    }
}

#[test]
fn unary_ops_match_reference_on_every_layout() {
    let mut r = rng(1);
    for (name, op, reference, lo, hi) in unary_cases() {
        for shape in shapes() {
            let a = rand_arr(&shape, lo, hi, &mut r);
            let want = a.map(reference);
            for (layout, t) in layouts(&a) {
                assert_close(
                    &op(&t).unwrap(),
                    &want,
                    1e-12,
                    &format!("{name} {shape:?} {layout}"),
                );
                let t32 = t.to_dtype(DType::F32).unwrap();
                assert_close(
                    &op(&t32).unwrap(),
                    &want,
                    2e-6,
                    &format!("{name} f32 {shape:?} {layout}"),
                );
            }
        }
    }
}

type BinOp = fn(&Tensor, &Tensor) -> ember_core::Result<Tensor>;

type BinaryCase = (&'static str, BinOp, fn(f64, f64) -> f64);

fn binary_cases() -> Vec<BinaryCase> {
    vec![
        ("add", |a, b| a.add(b), |x, y| x + y),
        ("sub", |a, b| a.sub(b), |x, y| x - y),
        ("mul", |a, b| a.mul(b), |x, y| x * y),
        ("div", |a, b| a.div(b), |x, y| x / y),
        ("pow", |a, b| a.pow(b), f64::powf),
        ("maximum", |a, b| a.maximum(b), f64::max),
        ("minimum", |a, b| a.minimum(b), f64::min),
        ("eq", |a, b| a.eq(b), |x, y| (x == y) as u8 as f64),
        ("ne", |a, b| a.ne(b), |x, y| (x != y) as u8 as f64),
        ("lt", |a, b| a.lt(b), |x, y| (x < y) as u8 as f64),
        ("le", |a, b| a.le(b), |x, y| (x <= y) as u8 as f64),
        ("gt", |a, b| a.gt(b), |x, y| (x > y) as u8 as f64),
        ("ge", |a, b| a.ge(b), |x, y| (x >= y) as u8 as f64),
    ]
}

#[test]
fn binary_ops_broadcast_like_numpy() {
    let pairs: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![2, 7], vec![2, 7]),
        (vec![2, 7], vec![7]),
        (vec![3, 1], vec![1, 5]),
        (vec![67, 3], vec![67, 1]),
        (vec![2, 3, 5], vec![3, 1]),
        (vec![], vec![4]),
        (vec![0, 3], vec![1, 3]),
        (vec![1], vec![1]),
    ];
    let mut r = rng(2);
    for (name, op, reference) in binary_cases() {
        for (sa, sb) in &pairs {
            let a = rand_arr(sa, 0.5, 2.0, &mut r);
            // Round b so comparisons see some ties.
            let mut b = rand_arr(sb, 0.5, 2.0, &mut r);
            b.data.iter_mut().enumerate().for_each(|(i, v)| {
                if i % 3 == 0 && !a.data.is_empty() {
                    *v = a.data[i % a.data.len()]
                }
            });
            let want = a.zip(&b, reference);
            for (la, ta) in layouts(&a) {
                for (lb, tb) in layouts(&b) {
                    let what = format!("{name} {sa:?}x{sb:?} {la}/{lb}");
                    assert_close(&op(&ta, &tb).unwrap(), &want, 1e-12, &what);
                }
            }
        }
    }
}

#[test]
fn where_cond_and_scalar_comparisons() {
    let mut r = rng(3);
    let a = rand_arr(&[4, 5], -1.0, 1.0, &mut r);
    let b = rand_arr(&[5], -1.0, 1.0, &mut r);
    let mask = a.tensor().gt_scalar(0.0).unwrap();
    let out = mask.where_cond(&a.tensor(), &b.tensor()).unwrap();
    let want = a.zip(&b, |x, y| if x > 0.0 { x } else { y });
    assert_close(&out, &want, 0.0, "where_cond");
    assert_close(
        &a.tensor().maximum_scalar(0.25).unwrap(),
        &a.map(|x| x.max(0.25)),
        0.0,
        "maximum_scalar",
    );
    assert_close(
        &a.tensor().le_scalar(0.0).unwrap(),
        &a.map(|x| (x <= 0.0) as u8 as f64),
        0.0,
        "le_scalar",
    );
}

#[test]
fn reductions_over_axis_sets() {
    let mut r = rng(4);
    let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![7], vec![0]),
        (vec![2, 7], vec![0]),
        (vec![2, 7], vec![1]),
        (vec![2, 7], vec![0, 1]),
        (vec![67, 3], vec![0]),
        (vec![2, 3, 5], vec![0, 2]),
        (vec![2, 3, 5], vec![1]),
        (vec![1, 1, 1], vec![1]),
    ];
    for (shape, axes) in cases {
        let a = rand_arr(&shape, -2.0, 2.0, &mut r);
        let drop = |arr: Arr| {
            let s: Vec<usize> = arr
                .shape
                .iter()
                .enumerate()
                .filter(|(d, _)| !axes.contains(d))
                .map(|(_, &e)| e)
                .collect();
            Arr::new(&s, arr.data)
        };
        for (layout, t) in layouts(&a) {
            let what = |op: &str| format!("{op} {shape:?} axes {axes:?} {layout}");
            let sum = a.reduce(&axes, |g| g.iter().sum());
            assert_close(
                &t.sum(&axes, true).unwrap(),
                &sum,
                1e-12,
                &what("sum keepdim"),
            );
            assert_close(
                &t.sum(&axes, false).unwrap(),
                &drop(sum.clone()),
                1e-12,
                &what("sum"),
            );
            let mean = a.reduce(&axes, |g| g.iter().sum::<f64>() / g.len() as f64);
            assert_close(&t.mean(&axes, true).unwrap(), &mean, 1e-12, &what("mean"));
            let max = a.reduce(&axes, |g| {
                g.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            });
            assert_close(&t.max(&axes, true).unwrap(), &max, 0.0, &what("max"));
            let min = a.reduce(&axes, |g| g.iter().cloned().fold(f64::INFINITY, f64::min));
            assert_close(&t.min(&axes, false).unwrap(), &drop(min), 0.0, &what("min"));
            let var = a.reduce(&axes, |g| {
                let m = g.iter().sum::<f64>() / g.len() as f64;
                g.iter().map(|v| (v - m).powi(2)).sum::<f64>() / g.len() as f64
            });
            assert_close(&t.var(&axes, true).unwrap(), &var, 1e-12, &what("var"));
            let lse = a.reduce(&axes, |g| g.iter().map(|v| v.exp()).sum::<f64>().ln());
            assert_close(
                &t.logsumexp(&axes, true).unwrap(),
                &lse,
                1e-12,
                &what("logsumexp"),
            );
            if axes.len() == 1 {
                let argmax = a.reduce(&axes, |g| {
                    let m = g.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    g.iter().position(|&v| v == m).unwrap() as f64
                });
                assert_close(
                    &t.argmax(axes[0], true).unwrap(),
                    &argmax,
                    0.0,
                    &what("argmax"),
                );
                let argmin = a.reduce(&axes, |g| {
                    let m = g.iter().cloned().fold(f64::INFINITY, f64::min);
                    g.iter().position(|&v| v == m).unwrap() as f64
                });
                assert_close(
                    &t.argmin(axes[0], true).unwrap(),
                    &argmin,
                    0.0,
                    &what("argmin"),
                );
            }
        }
    }
}

#[test]
fn zero_size_reductions_and_products() {
    let t = Tensor::zeros((0, 5), DType::F32, Device::Cpu).unwrap();
    assert_eq!(
        t.sum(&[0], false).unwrap().to_vec::<f32>().unwrap(),
        vec![0.0; 5]
    );
    assert!(
        t.mean(&[0], false)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|v| v.is_nan())
    );
    assert!(
        t.max(&[0], false).is_err(),
        "max over an empty axis has no value"
    );
    let a = Tensor::zeros((3, 0), DType::F64, Device::Cpu).unwrap();
    let b = Tensor::zeros((0, 4), DType::F64, Device::Cpu).unwrap();
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), &[3, 4]);
    assert_eq!(c.to_vec::<f64>().unwrap(), vec![0.0; 12]);
}

#[test]
fn softmax_and_log_softmax_along_each_axis() {
    let mut r = rng(5);
    for shape in [vec![7], vec![2, 7], vec![3, 4, 5], vec![67, 3]] {
        let a = rand_arr(&shape, -5.0, 5.0, &mut r);
        for axis in 0..shape.len() {
            let lse = a.reduce(&[axis], |g| g.iter().map(|v| v.exp()).sum::<f64>().ln());
            let want_log = a.zip(&lse, |x, l| x - l);
            let want = want_log.map(f64::exp);
            for (layout, t) in layouts(&a) {
                let what = format!("softmax {shape:?} axis {axis} {layout}");
                assert_close(&t.softmax(axis).unwrap(), &want, 1e-12, &what);
                assert_close(&t.log_softmax(axis).unwrap(), &want_log, 1e-12, &what);
            }
        }
    }
    // Large logits never overflow.
    let big = Tensor::from_vec(vec![1000.0f32, 0.0, -1000.0], 3, Device::Cpu).unwrap();
    let s = big.softmax(0).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(s, vec![1.0, 0.0, 0.0]);
    let ls = big.log_softmax(0).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(ls, vec![0.0, -1000.0, -2000.0]);
}

fn ref_matmul(a: &Arr, b: &Arr) -> Arr {
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1]);
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a.data[i * k + p] * b.data[p * n + j]).sum();
        }
    }
    Arr::new(&[m, n], out)
}

#[test]
fn matmul_2d_through_strided_operands() {
    let mut r = rng(6);
    for (m, k, n) in [
        (1, 1, 1),
        (7, 3, 5),
        (67, 7, 2),
        (0, 3, 4),
        (3, 0, 4),
        (2, 67, 1),
    ] {
        let a = rand_arr(&[m, k], -1.0, 1.0, &mut r);
        let b = rand_arr(&[k, n], -1.0, 1.0, &mut r);
        let want = ref_matmul(&a, &b);
        for (la, ta) in layouts(&a) {
            for (lb, tb) in layouts(&b) {
                assert_close(
                    &ta.matmul(&tb).unwrap(),
                    &want,
                    1e-12,
                    &format!("matmul {m}x{k}x{n} {la}/{lb}"),
                );
                let (a32, b32) = (
                    ta.to_dtype(DType::F32).unwrap(),
                    tb.to_dtype(DType::F32).unwrap(),
                );
                assert_close(
                    &a32.matmul(&b32).unwrap(),
                    &want,
                    1e-5,
                    &format!("matmul f32 {m}x{k}x{n}"),
                );
            }
        }
    }
}

#[test]
fn batched_matmul_broadcasts_batches() {
    let mut r = rng(7);
    let a = rand_arr(&[2, 1, 3, 4], -1.0, 1.0, &mut r);
    let b = rand_arr(&[3, 4, 5], -1.0, 1.0, &mut r);
    let c = a.tensor().matmul(&b.tensor()).unwrap();
    assert_eq!(c.shape(), &[2, 3, 3, 5]);
    let got = c.to_vec::<f64>().unwrap();
    for i in 0..2 {
        for j in 0..3 {
            let am = Arr::new(&[3, 4], a.data[i * 12..(i + 1) * 12].to_vec());
            let bm = Arr::new(&[4, 5], b.data[j * 20..(j + 1) * 20].to_vec());
            let want = ref_matmul(&am, &bm);
            let off = (i * 3 + j) * 15;
            for (g, w) in got[off..off + 15].iter().zip(&want.data) {
                assert!((g - w).abs() < 1e-12);
            }
        }
    }
    // Vector operands: [k] · [k, n] → [n] and [m, k] · [k] → [m].
    let v = rand_arr(&[4], -1.0, 1.0, &mut r);
    let m = rand_arr(&[4, 3], -1.0, 1.0, &mut r);
    assert_eq!(v.tensor().matmul(&m.tensor()).unwrap().shape(), &[3]);
    assert_eq!(
        m.tensor().t().unwrap().matmul(&v.tensor()).unwrap().shape(),
        &[3]
    );
}

#[test]
fn linear_fuses_bias_and_activation() {
    let mut r = rng(8);
    let x = rand_arr(&[7, 5], -1.0, 1.0, &mut r);
    let w = rand_arr(&[3, 5], -1.0, 1.0, &mut r);
    let b = rand_arr(&[3], -1.0, 1.0, &mut r);
    let wt = Arr::new(
        &[5, 3],
        (0..15).map(|i| w.data[(i % 3) * 5 + i / 3]).collect(),
    );
    let z = ref_matmul(&x, &wt).zip(&b, |p, q| p + q);
    use ember_core::Activation::*;
    for (act, f) in [
        (None, (|v| v) as Ref),
        (Relu, |v: f64| v.max(0.0)),
        (Sigmoid, sigmoid),
        (Tanh, f64::tanh),
    ] {
        let y = x
            .tensor()
            .linear(&w.tensor(), Some(&b.tensor()), act)
            .unwrap();
        assert_close(&y, &z.map(f), 1e-12, &format!("linear {act:?}"));
    }
    let g = x
        .tensor()
        .linear(&w.tensor(), Some(&b.tensor()), GeluTanh)
        .unwrap();
    let exact = x
        .tensor()
        .linear(&w.tensor(), Some(&b.tensor()), Gelu)
        .unwrap();
    assert_close(
        &exact,
        &z.map(|v| 0.5 * v * (1.0 + erf(v / 2f64.sqrt()))),
        1e-12,
        "linear gelu (exact)",
    );
    assert_close(
        &g,
        &z.map(|v| {
            0.5 * v
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
        }),
        1e-12,
        "linear gelu_tanh",
    );
}

#[test]
fn views_and_copies() {
    let a = Arr::new(&[2, 3, 4], (0..24).map(|v| v as f64).collect());
    let t = a.tensor();
    let p = t.permute(&[2, 0, 1]).unwrap();
    assert_eq!(p.shape(), &[4, 2, 3]);
    assert_eq!(
        p.to_vec::<f64>().unwrap()[..6],
        [0.0, 4.0, 8.0, 12.0, 16.0, 20.0]
    );
    assert!(!p.is_contiguous());
    assert!(p.contiguous().unwrap().is_contiguous());
    // Reshape of a non-contiguous view copies; of a contiguous one it is a view.
    assert_eq!(
        p.reshape((8, 3)).unwrap().to_vec::<f64>().unwrap()[3..6],
        [12.0, 16.0, 20.0]
    );
    assert_eq!(t.flatten(1, 2).unwrap().shape(), &[2, 12]);
    assert_eq!(t.flatten_all().unwrap().shape(), &[24]);
    assert_eq!(t.unsqueeze(1).unwrap().shape(), &[2, 1, 3, 4]);
    assert_eq!(
        t.unsqueeze(1).unwrap().squeeze(1).unwrap().shape(),
        &[2, 3, 4]
    );
    let n = t.narrow(2, 1, 2).unwrap();
    assert_eq!(n.to_vec::<f64>().unwrap()[..4], [1.0, 2.0, 5.0, 6.0]);
    let e = Tensor::from_vec(vec![1.0f32, 2.0], (2, 1), Device::Cpu)
        .unwrap()
        .expand((2, 3))
        .unwrap();
    assert_eq!(
        e.to_vec2::<f32>().unwrap(),
        vec![vec![1.0; 3], vec![2.0; 3]]
    );
    // cat / stack
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], (2, 2), Device::Cpu).unwrap();
    let y = Tensor::from_vec(vec![5.0f64, 6.0], (2, 1), Device::Cpu).unwrap();
    assert_eq!(
        Tensor::cat(&[&x, &y], 1).unwrap().to_vec::<f64>().unwrap(),
        vec![1.0, 2.0, 5.0, 3.0, 4.0, 6.0]
    );
    assert_eq!(Tensor::stack(&[&x, &x], 0).unwrap().shape(), &[2, 2, 2]);
    assert_eq!(
        Tensor::cat(&[&x.t().unwrap(), &x], 0)
            .unwrap()
            .to_vec::<f64>()
            .unwrap(),
        vec![1.0, 3.0, 2.0, 4.0, 1.0, 2.0, 3.0, 4.0]
    );
}

#[test]
fn index_ops() {
    let t = Tensor::from_vec(
        (0..12).map(|v| v as f32).collect::<Vec<_>>(),
        (3, 4),
        Device::Cpu,
    )
    .unwrap();
    let idx = Tensor::from_vec(vec![2.0f32, 0.0, 2.0], 3, Device::Cpu).unwrap();
    assert_eq!(
        t.index_select(&idx, 0).unwrap().to_vec::<f32>().unwrap()[..4],
        [8.0, 9.0, 10.0, 11.0]
    );
    assert_eq!(
        t.index_select(&idx, 1).unwrap().to_vec2::<f32>().unwrap()[1],
        vec![6.0, 4.0, 6.0]
    );
    let g = Tensor::from_vec(vec![3.0f32, 1.0, 0.0], (3, 1), Device::Cpu).unwrap();
    assert_eq!(
        t.gather(1, &g).unwrap().to_vec::<f32>().unwrap(),
        vec![3.0, 5.0, 8.0]
    );
    let oh = Tensor::one_hot(&idx, 3, DType::F32).unwrap();
    assert_eq!(
        oh.to_vec2::<f32>().unwrap(),
        vec![
            vec![0.0, 0.0, 1.0],
            vec![1.0, 0.0, 0.0],
            vec![0.0, 0.0, 1.0]
        ]
    );
}

#[test]
fn creation_and_dtypes() {
    let dev = Device::Cpu;
    assert_eq!(
        Tensor::arange(0.0, 5.0, 2.0, DType::F32, dev)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![0.0, 2.0, 4.0]
    );
    assert_eq!(
        Tensor::linspace(0.0, 1.0, 5, DType::F64, dev)
            .unwrap()
            .to_vec::<f64>()
            .unwrap(),
        vec![0.0, 0.25, 0.5, 0.75, 1.0]
    );
    assert_eq!(
        Tensor::eye(2, DType::BF16, dev)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![1.0, 0.0, 0.0, 1.0]
    );
    assert_eq!(
        Tensor::full(2.5, (2,), DType::F16, dev)
            .unwrap()
            .to_vec::<f64>()
            .unwrap(),
        vec![2.5, 2.5]
    );
    let mut r = rng(9);
    let u = Tensor::rand(-1.0, 1.0, (1000,), DType::F32, dev, &mut r)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(u.iter().all(|v| (-1.0..1.0).contains(v)));
    let n = Tensor::randn(3.0, 2.0, (20000,), DType::F64, dev, &mut r).unwrap();
    let mean = n.mean_all().unwrap().to_scalar::<f64>().unwrap();
    let std = n
        .var(&[0], false)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .sqrt();
    assert!(
        (mean - 3.0).abs() < 0.05 && (std - 2.0).abs() < 0.05,
        "mean {mean} std {std}"
    );
    // Seeded generators reproduce.
    let a = Tensor::randn(0.0, 1.0, 5, DType::F32, dev, &mut rng(1))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let b = Tensor::randn(0.0, 1.0, 5, DType::F32, dev, &mut rng(1))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
    // 16-bit tensors compute through f32 and round back.
    let h = Tensor::from_vec(
        vec![half::f16::from_f32(1.5), half::f16::from_f32(-2.0)],
        2,
        dev,
    )
    .unwrap();
    assert_eq!(h.relu().unwrap().dtype(), DType::F16);
    assert_eq!(h.relu().unwrap().to_vec::<f32>().unwrap(), vec![1.5, 0.0]);
    assert_eq!(
        h.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap(),
        vec![1.5, -2.0]
    );
}

#[test]
fn ieee_specials_propagate() {
    let t = Tensor::from_vec(
        vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0],
        5,
        Device::Cpu,
    )
    .unwrap();
    let e = t.exp().unwrap().to_vec::<f32>().unwrap();
    assert!(e[0].is_nan() && e[1] == f32::INFINITY && e[2] == 0.0 && e[3] == 1.0);
    let s = t.sigmoid().unwrap().to_vec::<f32>().unwrap();
    assert!(s[0].is_nan() && s[1] == 1.0 && s[2] == 0.0 && s[3] == 0.5);
    assert!(
        t.max(&[0], false)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .is_nan()
    );
    assert!(t.relu().unwrap().to_vec::<f32>().unwrap()[0].is_nan());
    let r = t.recip().unwrap().to_vec::<f32>().unwrap();
    assert_eq!((r[3], r[4]), (f32::INFINITY, f32::NEG_INFINITY));
}

#[test]
fn losses_match_reference() {
    use ember_core::{Reduction, loss};
    let p = Tensor::from_vec(vec![0.9f64, 0.2, 0.0, 1.0], (4, 1), Device::Cpu).unwrap();
    let y = Tensor::from_vec(vec![1.0f64, 0.0, 1.0, 1.0], (4, 1), Device::Cpu).unwrap();
    let eps = 1e-7;
    let reference: f64 = [(0.9, 1.0), (0.2, 0.0), (0.0, 1.0), (1.0, 1.0)]
        .iter()
        .map(|&(p, y): &(f64, f64)| {
            let p = p.clamp(eps, 1.0 - eps);
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        })
        .sum();
    let bce = loss::binary_cross_entropy(&p, &y, Reduction::Sum)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((bce - reference).abs() < 1e-12);
    let mean = loss::binary_cross_entropy(&p, &y, Reduction::Mean)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((mean - reference / 4.0).abs() < 1e-12);
    let x = Tensor::from_vec(vec![-800.0f32, 3.0, 0.0, 800.0], (4, 1), Device::Cpu).unwrap();
    let yl = y.to_dtype(DType::F32).unwrap();
    let l = loss::binary_cross_entropy_with_logits(&x, &yl, Reduction::Sum)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    // x=-800,y=1: 800; x=3,y=0: 3 + ln(1+e^-3); x=0: ln 2; x=800,y=1: 0.
    let want = 800.0 + 3.0 + (1.0 + (-3.0f64).exp()).ln() + 2f64.ln();
    assert!((l - want).abs() < 1e-4, "{l} vs {want}");
    let mse = loss::mse(&p, &y, Reduction::Mean)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((mse - (0.01 + 0.04 + 1.0 + 0.0) / 4.0).abs() < 1e-12);
    let logits =
        Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 1.0, 1.0, 1.0], (2, 3), Device::Cpu).unwrap();
    let cls = Tensor::from_vec(vec![2.0f64, 0.0], 2, Device::Cpu).unwrap();
    let ce = loss::cross_entropy(&logits, &cls, Reduction::Mean)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let lse1 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let want = ((lse1 - 3.0) + 3f64.ln()) / 2.0;
    assert!((ce - want).abs() < 1e-12);
}

#[test]
fn sugar_operators() {
    let a = Tensor::from_vec(vec![1.0f64, 2.0], 2, Device::Cpu).unwrap();
    let b = Tensor::from_vec(vec![3.0f64, 5.0], 2, Device::Cpu).unwrap();
    assert_eq!((&a + &b).to_vec::<f64>().unwrap(), vec![4.0, 7.0]);
    assert_eq!((&b - &a).to_vec::<f64>().unwrap(), vec![2.0, 3.0]);
    assert_eq!((&a * 2.0).to_vec::<f64>().unwrap(), vec![2.0, 4.0]);
    assert_eq!((&b / &a).to_vec::<f64>().unwrap(), vec![3.0, 2.5]);
    assert_eq!((-&a).to_vec::<f64>().unwrap(), vec![-1.0, -2.0]);
}

#[test]
#[should_panic(expected = "add: shapes [2] and [3] cannot be broadcast together")]
fn sugar_panics_with_the_error_message() {
    let a = Tensor::zeros(2, DType::F32, Device::Cpu).unwrap();
    let b = Tensor::zeros(3, DType::F32, Device::Cpu).unwrap();
    let _ = &a + &b;
}

#[test]
fn half_products_match_f32_on_the_widened_values() {
    // f16/bf16 matmul and linear widen their operands inside the GEMM (while packing); widening
    // is exact, so the f32 accumulation must equal an f32 product of the widened tensors,
    // rounded once to the half type. Covers the packed path (40x300x50), a transposed operand,
    // and the matrix-vector path.
    let dev = Device::Cpu;
    for dt in [DType::F16, DType::BF16] {
        let r = &mut rng(40);
        let x = Tensor::randn(0.0, 1.0, (40, 300), DType::F32, dev, r).unwrap();
        let x = x.to_dtype(dt).unwrap();
        let w = Tensor::randn(0.0, 1.0, (50, 300), DType::F32, dev, r).unwrap();
        let w = w.to_dtype(dt).unwrap();
        let b = Tensor::randn(0.0, 1.0, 50, DType::F32, dev, r).unwrap();
        let b = b.to_dtype(dt).unwrap();
        let xt = Tensor::randn(0.0, 1.0, (300, 40), DType::F32, dev, r).unwrap();
        let xt = xt.to_dtype(dt).unwrap().t().unwrap();
        let v = Tensor::randn(0.0, 1.0, (300, 1), DType::F32, dev, r).unwrap();
        let v = v.to_dtype(dt).unwrap();
        let wide = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let cases = [
            (
                x.linear(&w, Some(&b), ember_core::Activation::Relu)
                    .unwrap(),
                wide(&x).linear(&wide(&w), Some(&wide(&b)), ember_core::Activation::Relu),
            ),
            (
                xt.matmul(&w.t().unwrap()).unwrap(),
                wide(&xt).matmul(&wide(&w).t().unwrap()),
            ),
            (x.matmul(&v).unwrap(), wide(&x).matmul(&wide(&v))),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got.dtype(), dt);
            let want = want.unwrap().to_dtype(dt).unwrap();
            assert_eq!(
                got.to_vec::<f32>().unwrap(),
                want.to_vec::<f32>().unwrap(),
                "{dt:?} case {i}"
            );
        }
    }
}
