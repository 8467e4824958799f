//! conv1d, conv2d and conv_transpose2d in f32 against PyTorch's values (forward and the
//! gradients of `Σ y · gy`), from `tests/goldens/conv.txt` written by
//! `scripts/goldens/conv.py` (its doc gives the input formula, rebuilt here).

mod common;

use common::{Goldens, parse_goldens};
use ember_core::{
    Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, DType, Device, Padding, Tensor,
};

const GOLDENS: &str = include_str!("goldens/conv.txt");

/// The script's input formula: element i of seed s is sin(0.37·i + s)·0.8, rounded to f32.
fn fill(shape: &[usize], seed: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((0.37 * i as f64 + seed).sin() * 0.8) as f32)
        .collect();
    Tensor::from_vec(v, shape, Device::Cpu)
        .unwrap()
        .as_variable()
}

/// The upstream gradient gy[i] = cos(0.11·i), rounded to f32.
fn upstream(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (0.11 * i as f64).cos() as f32).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

/// The golden file, parsed.
fn goldens() -> Goldens {
    parse_goldens(GOLDENS)
}

fn compare(g: &Goldens, case: &str, name: &str, t: &Tensor) {
    let (shape, want) = g
        .get(&(case.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no golden {case} {name}"));
    assert_eq!(t.shape(), shape.as_slice(), "{case} {name}: shape");
    assert_eq!(t.dtype(), DType::F32);
    let got = t.to_vec::<f32>().unwrap();
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{case} {name}[{i}]: ember {a}, PyTorch {b}"
        );
    }
}

/// Runs one case: the op, then backward of Σ y·gy, and compares y, dx, dw (and db).
fn run(
    g: &Goldens,
    case: &str,
    xs: &[usize],
    ws: &[usize],
    bias: Option<usize>,
    op: impl Fn(&Tensor, &Tensor, Option<&Tensor>) -> Tensor,
) {
    let (x, w) = (fill(xs, 0.1), fill(ws, 0.7));
    let b = bias.map(|n| fill(&[n], 1.3));
    let y = op(&x, &w, b.as_ref());
    let loss = y.mul(&upstream(y.shape())).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    compare(g, case, "y", &y);
    compare(g, case, "dx", grads.get(&x).unwrap());
    compare(g, case, "dw", grads.get(&w).unwrap());
    if let Some(b) = &b {
        compare(g, case, "db", grads.get(b).unwrap());
    }
}

#[test]
fn conv_ops_match_pytorch() {
    let g = goldens();
    let d2 = Conv2dOptions::default();
    run(
        &g,
        "stride2_pad1",
        &[2, 3, 7, 6],
        &[4, 3, 3, 3],
        Some(4),
        |x, w, b| {
            let o = Conv2dOptions {
                stride: (2, 2),
                padding: Padding::symmetric(1, 1),
                ..d2
            };
            x.conv2d(w, b, &o).unwrap()
        },
    );
    run(
        &g,
        "same_dil2_groups2",
        &[1, 4, 6, 7],
        &[4, 2, 3, 3],
        Some(4),
        |x, w, b| {
            let o = Conv2dOptions {
                padding: Padding::Same,
                dilation: (2, 2),
                groups: 2,
                ..d2
            };
            x.conv2d(w, b, &o).unwrap()
        },
    );
    run(
        &g,
        "depthwise",
        &[2, 3, 5, 5],
        &[3, 1, 3, 3],
        None,
        |x, w, b| {
            let o = Conv2dOptions {
                padding: Padding::symmetric(1, 1),
                groups: 3,
                ..d2
            };
            x.conv2d(w, b, &o).unwrap()
        },
    );
    run(&g, "conv1d", &[2, 4, 9], &[6, 2, 3], Some(6), |x, w, b| {
        let o = Conv1dOptions {
            stride: 2,
            padding: (1, 1),
            groups: 2,
            ..Default::default()
        };
        x.conv1d(w, b, &o).unwrap()
    });
    let dt = ConvTranspose2dOptions::default();
    run(
        &g,
        "transpose_s2_op1",
        &[2, 3, 4, 4],
        &[3, 2, 4, 4],
        Some(2),
        |x, w, b| {
            let o = ConvTranspose2dOptions {
                stride: (2, 2),
                padding: (1, 1),
                output_padding: (1, 1),
                ..dt
            };
            x.conv_transpose2d(w, b, &o).unwrap()
        },
    );
    run(
        &g,
        "transpose_groups_dil",
        &[1, 4, 3, 3],
        &[4, 1, 3, 3],
        None,
        |x, w, b| {
            let o = ConvTranspose2dOptions {
                stride: (2, 2),
                groups: 2,
                dilation: (2, 2),
                ..dt
            };
            x.conv_transpose2d(w, b, &o).unwrap()
        },
    );
}
