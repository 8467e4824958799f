//! GPU tests of the elementwise kernels against f64 references written here, on fresh random
//! inputs of odd sizes, contiguous and not (offset by one element so the 16-byte path is
//! misaligned, stepped, transposed, broadcast), with every output poisoned with NaN first.
//!
//! Tolerances: the reference is evaluated in f64 on the exact stored inputs, so only the
//! kernel's own rounding shows. CUDA's single-precision functions are within 4 ulp (2^-23 each)
//! and the longest formula here (GELU and its derivative) chains about ten operations, so
//! |error| <= ~40 ulp ~ 5e-6 relative: f32 uses 1e-5 relative plus 1e-6 absolute (for results
//! near zero, e.g. sin near 0). f64 uses 1e-12 relative plus 1e-13 absolute by the same argument.
//! Without a GPU each test prints one `SKIPPED:` line (or fails under EMBER_REQUIRE_GPU=1).

mod common;

use common::*;
use ember_cuda::elementwise::{
    BinaryOp, UnaryOp, binary, cast_from_f32, cast_to_f32, copy_strided, unary, unary_backward,
};
use ember_cuda::{CudaDevice, FloatElem, Strided};
use std::sync::Arc;

/// Every unary op (a new op in ember-ops is tested here without an edit).
const UNARY: [UnaryOp; UnaryOp::ALL.len()] = UnaryOp::ALL;

/// Input range on which the op and its derivative are defined and well conditioned.
fn domain(op: UnaryOp) -> (f64, f64) {
    match op {
        UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Recip | UnaryOp::Powf(_) => (0.1, 3.0),
        UnaryOp::Exp | UnaryOp::Softplus | UnaryOp::Sigmoid => (-8.0, 8.0),
        _ => (-3.0, 3.0),
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        x.exp() / (1.0 + x.exp())
    }
}

/// erf to ~1e-16 (series near 0, continued fraction in the tails).
fn erf(x: f64) -> f64 {
    let ax = x.abs();
    if ax < 2.5 {
        let (x2, mut term, mut sum, mut n) = (x * x, x, x, 0.0);
        loop {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-18 * sum.abs() || n > 300.0 {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else {
        let mut f = ax;
        for k in (1..80).rev() {
            f = ax + (k as f64 / 2.0) / f;
        }
        x.signum() * (1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / f)
    }
}

/// Independent f64 references for the ops written out here; an op added to the vocabulary later
/// falls back to ember-cpu's formula in f64 (the CPU twin), so it is tested without an edit.
#[allow(unreachable_patterns)]
fn ref_unary(op: UnaryOp, x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Sqr => x * x,
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::LeakyRelu(a) => {
            if x > 0.0 {
                x
            } else {
                a * x
            }
        }
        UnaryOp::Elu(a) => {
            if x > 0.0 {
                x
            } else {
                a * (x.exp() - 1.0)
            }
        }
        UnaryOp::GeluTanh => 0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh()),
        UnaryOp::GeluErf => 0.5 * x * (1.0 + erf(x / 2f64.sqrt())),
        UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
        UnaryOp::Clamp(lo, hi) => x.clamp(lo, hi),
        UnaryOp::Powf(p) => x.powf(p),
        UnaryOp::AddScalar(s) => x + s,
        UnaryOp::MulScalar(s) => x * s,
        other => ember_cpu::unary::apply(other, x),
    }
}

/// Like [`ref_unary`], for the derivative.
#[allow(unreachable_patterns)]
fn ref_deriv(op: UnaryOp, x: f64, y: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    match op {
        UnaryOp::Neg => -1.0,
        UnaryOp::Abs => x.signum() * (x != 0.0) as i32 as f64,
        UnaryOp::Exp => y,
        UnaryOp::Log => 1.0 / x,
        UnaryOp::Sqrt => 0.5 / y,
        UnaryOp::Sqr => 2.0 * x,
        UnaryOp::Recip => -y * y,
        UnaryOp::Sin => x.cos(),
        UnaryOp::Cos => -x.sin(),
        UnaryOp::Tanh => 1.0 - y * y,
        UnaryOp::Sigmoid => y * (1.0 - y),
        UnaryOp::Relu => (x > 0.0) as i32 as f64,
        UnaryOp::LeakyRelu(a) => {
            if x > 0.0 {
                1.0
            } else {
                a
            }
        }
        UnaryOp::Elu(a) => {
            if x > 0.0 {
                1.0
            } else {
                y + a
            }
        }
        UnaryOp::GeluTanh => {
            let t = (c * (x + 0.044715 * x * x * x)).tanh();
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x)
        }
        UnaryOp::GeluErf => {
            0.5 * (1.0 + erf(x / 2f64.sqrt()))
                + x * (-(x * x) / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt()
        }
        UnaryOp::Softplus => sigmoid(x),
        UnaryOp::Clamp(lo, hi) => (x >= lo && x <= hi) as i32 as f64,
        UnaryOp::Powf(0.0) => 0.0,
        UnaryOp::Powf(p) => p * x.powf(p - 1.0),
        UnaryOp::AddScalar(_) => 1.0,
        UnaryOp::MulScalar(s) => s,
        other => ember_cpu::unary::derivative(other, x, y),
    }
}

/// A test layout: buffer length, shape, strides, offset, for `n` logical elements per row.
struct Layout {
    name: &'static str,
    buf: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

fn layouts(n: usize) -> Vec<Layout> {
    vec![
        Layout {
            name: "contiguous",
            buf: n,
            shape: vec![n],
            strides: vec![1],
            offset: 0,
        },
        Layout {
            name: "offset1",
            buf: n + 1,
            shape: vec![n],
            strides: vec![1],
            offset: 1,
        },
        Layout {
            name: "step2",
            buf: 2 * n,
            shape: vec![n],
            strides: vec![2],
            offset: 0,
        },
        Layout {
            name: "transposed",
            buf: 3 * n,
            shape: vec![n, 3],
            strides: vec![1, n],
            offset: 0,
        },
        Layout {
            name: "broadcast",
            buf: n,
            shape: vec![2, n],
            strides: vec![0, 1],
            offset: 0,
        },
    ]
}

fn tol<T: FloatElem>() -> (f64, f64) {
    if std::mem::size_of::<T>() == 4 {
        (1e-5, 1e-6)
    } else {
        (1e-12, 1e-13)
    }
}

fn to_t<T: FloatElem>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

fn to_f64<T: FloatElem + Into<f64>>(v: &[T]) -> Vec<f64> {
    v.iter().map(|&x| x.into()).collect()
}

fn unary_case<T: FloatElem + Into<f64>>(dev: &Arc<CudaDevice>, r: &mut rand::rngs::StdRng) {
    let (rel, abs) = tol::<T>();
    for n in SIZES {
        for op in UNARY {
            let (lo, hi) = domain(op);
            for lay in layouts(n) {
                let host: Vec<T> = to_t(&uniform(r, lay.buf, lo, hi));
                let x = dev.upload(&host).unwrap();
                let view = Strided::new(&lay.shape, &lay.strides, lay.offset);
                let count = view.elem_count();
                let mut out = dev.upload(&vec![T::from_f64(f64::NAN); count]).unwrap();
                unary(op, x.view(), view, out.view_mut()).unwrap();
                let got = to_f64(&out.to_host().unwrap());
                let hx = to_f64(&host);
                let want: Vec<f64> = offsets(&lay.shape, &lay.strides, lay.offset)
                    .iter()
                    .map(|&o| ref_unary(op, hx[o]))
                    .collect();
                let scale: Vec<f64> = want.iter().map(|w| w.abs()).collect();
                assert_close(
                    &format!("unary {op:?} n={n} {}", lay.name),
                    &got,
                    &want,
                    &scale,
                    rel,
                    abs,
                );

                if lay.name == "contiguous" {
                    // Backward from the same x and the reference y.
                    let y: Vec<T> = to_t(&want);
                    let dy: Vec<T> = to_t(&uniform(r, n, -1.0, 1.0));
                    let (yd, dyd) = (dev.upload(&y).unwrap(), dev.upload(&dy).unwrap());
                    let mut dx = dev.upload(&vec![T::from_f64(f64::NAN); n]).unwrap();
                    unary_backward(op, x.view(), yd.view(), dyd.view(), dx.view_mut()).unwrap();
                    let got = to_f64(&dx.to_host().unwrap());
                    let (hy, hdy) = (to_f64(&y), to_f64(&dy));
                    let want: Vec<f64> = (0..n)
                        .map(|i| hdy[i] * ref_deriv(op, hx[i], hy[i]))
                        .collect();
                    let scale: Vec<f64> = (0..n)
                        .map(|i| {
                            (hdy[i] * ref_deriv(op, hx[i], hy[i]))
                                .abs()
                                .max(hdy[i].abs())
                        })
                        .collect();
                    assert_close(
                        &format!("unary_backward {op:?} n={n}"),
                        &got,
                        &want,
                        &scale,
                        rel,
                        abs,
                    );
                }
            }
        }
    }
}

#[test]
fn unary_forward_and_backward_match_f64_reference() {
    let Some(dev) = gpu_or_skip("gpu_elementwise::unary") else {
        return;
    };
    let mut r = rng("unary");
    unary_case::<f32>(&dev, &mut r);
    unary_case::<f64>(&dev, &mut r);
}

fn ref_binary(op: BinaryOp, a: f64, b: f64) -> f64 {
    let m = |c: bool| c as i32 as f64;
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Maximum => a.max(b),
        BinaryOp::Minimum => a.min(b),
        BinaryOp::Eq => m(a == b),
        BinaryOp::Ne => m(a != b),
        BinaryOp::Lt => m(a < b),
        BinaryOp::Le => m(a <= b),
        BinaryOp::Gt => m(a > b),
        BinaryOp::Ge => m(a >= b),
    }
}

/// Every binary op.
const BINARY: [BinaryOp; BinaryOp::ALL.len()] = BinaryOp::ALL;

fn binary_case<T: FloatElem + Into<f64>>(dev: &Arc<CudaDevice>, r: &mut rand::rngs::StdRng) {
    let (rel, abs) = tol::<T>();
    for n in SIZES {
        // (a buffer, a view, b buffer, b view) with a common shape.
        type Case = (usize, Vec<usize>, usize, Vec<usize>, usize);
        let cases: Vec<(&str, Vec<usize>, Case)> = vec![
            ("contiguous", vec![n], (n, vec![1], n, vec![1], 0)),
            ("offset1", vec![n], (n + 1, vec![1], n + 1, vec![1], 1)),
            // a: column [n,1] broadcast along 3 columns; b: row [3] broadcast along n rows.
            ("broadcast", vec![n, 3], (n, vec![1, 0], 3, vec![0, 1], 0)),
            // a transposed, b contiguous.
            (
                "transposed",
                vec![n, 3],
                (3 * n, vec![1, n], 3 * n, vec![3, 1], 0),
            ),
        ];
        for (name, shape, (alen, astr, blen, bstr, off)) in cases {
            for op in BINARY {
                let (alo, ahi) = if op == BinaryOp::Pow {
                    (0.1, 3.0)
                } else {
                    (-2.0, 2.0)
                };
                let (blo, bhi) = if matches!(op, BinaryOp::Div | BinaryOp::Pow) {
                    (0.5, 2.0)
                } else {
                    (-2.0, 2.0)
                };
                let mut ha: Vec<T> = to_t(&uniform(r, alen, alo, ahi));
                let hb: Vec<T> = to_t(&uniform(r, blen, blo, bhi));
                // Make some pairs equal so the comparisons see ties.
                for i in (0..alen.min(blen)).step_by(3) {
                    ha[i] = hb[i];
                }
                let (a, b) = (dev.upload(&ha).unwrap(), dev.upload(&hb).unwrap());
                let av = Strided::new(&shape, &astr, off);
                let bv = Strided::new(&shape, &bstr, off);
                let count = av.elem_count();
                let mut out = dev.upload(&vec![T::from_f64(f64::NAN); count]).unwrap();
                binary(op, a.view(), av, b.view(), bv, out.view_mut()).unwrap();
                let got = to_f64(&out.to_host().unwrap());
                let (fa, fb) = (to_f64(&ha), to_f64(&hb));
                let ao = offsets(&shape, &astr, off);
                let bo = offsets(&shape, &bstr, off);
                let want: Vec<f64> = (0..count)
                    .map(|i| ref_binary(op, fa[ao[i]], fb[bo[i]]))
                    .collect();
                let scale: Vec<f64> = want.iter().map(|w| w.abs()).collect();
                assert_close(
                    &format!("binary {op:?} n={n} {name}"),
                    &got,
                    &want,
                    &scale,
                    rel,
                    abs,
                );
            }
        }
    }
}

#[test]
fn binary_with_broadcasting_matches_f64_reference() {
    let Some(dev) = gpu_or_skip("gpu_elementwise::binary") else {
        return;
    };
    let mut r = rng("binary");
    binary_case::<f32>(&dev, &mut r);
    binary_case::<f64>(&dev, &mut r);
}

#[test]
fn strided_copy_is_exact() {
    let Some(dev) = gpu_or_skip("gpu_elementwise::copy") else {
        return;
    };
    let mut r = rng("copy");
    for n in SIZES {
        for lay in layouts(n) {
            let host: Vec<f32> = to_t(&uniform(&mut r, lay.buf, -1.0, 1.0));
            let x = dev.upload(&host).unwrap();
            let view = Strided::new(&lay.shape, &lay.strides, lay.offset);
            let mut out = dev.upload(&vec![f32::NAN; view.elem_count()]).unwrap();
            copy_strided(x.view(), view, out.view_mut()).unwrap();
            let want: Vec<f32> = offsets(&lay.shape, &lay.strides, lay.offset)
                .iter()
                .map(|&o| host[o])
                .collect();
            assert_eq!(out.to_host().unwrap(), want, "copy n={n} {}", lay.name);
        }
    }
}

#[test]
fn half_casts_round_to_nearest_even() {
    let Some(dev) = gpu_or_skip("gpu_elementwise::casts") else {
        return;
    };
    let mut r = rng("casts");
    for n in SIZES {
        let mut host: Vec<f32> = to_t(&uniform(&mut r, n, -60000.0, 60000.0));
        host[0] = 1.0 + f32::EPSILON; // rounds to 1 in both 16-bit types
        let x = dev.upload(&host).unwrap();
        let mut b = dev.alloc::<half::bf16>(n).unwrap();
        cast_from_f32(x.view(), b.view_mut()).unwrap();
        let want: Vec<half::bf16> = host.iter().map(|&v| half::bf16::from_f32(v)).collect();
        let got = b.to_host().unwrap();
        assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| g.to_bits() == w.to_bits()),
            "bf16 n={n}"
        );
        let mut back = dev.upload(&vec![f32::NAN; n]).unwrap();
        cast_to_f32(b.view(), back.view_mut()).unwrap();
        let wantf: Vec<f32> = want.iter().map(|v| v.to_f32()).collect();
        assert_eq!(back.to_host().unwrap(), wantf, "bf16 -> f32 n={n}");

        let mut h = dev.alloc::<half::f16>(n).unwrap();
        cast_from_f32(x.view(), h.view_mut()).unwrap();
        let want: Vec<half::f16> = host.iter().map(|&v| half::f16::from_f32(v)).collect();
        let got = h.to_host().unwrap();
        assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| g.to_bits() == w.to_bits()),
            "f16 n={n}"
        );
        cast_to_f32(h.view(), back.view_mut()).unwrap();
        let wantf: Vec<f32> = want.iter().map(|v| v.to_f32()).collect();
        assert_eq!(back.to_host().unwrap(), wantf, "f16 -> f32 n={n}");
    }
}

#[test]
fn bad_arguments_are_errors() {
    let Some(dev) = gpu_or_skip("gpu_elementwise::errors") else {
        return;
    };
    let x = dev.upload(&[1.0f32; 6]).unwrap();
    let mut out = dev.alloc::<f32>(6).unwrap();
    // View reaching past the buffer.
    let e = unary(
        UnaryOp::Exp,
        x.view(),
        Strided::new(&[2, 3], &[3, 1], 1),
        out.view_mut(),
    );
    assert!(e.is_err());
    // Output of the wrong length.
    let e = unary(
        UnaryOp::Exp,
        x.view(),
        Strided::new(&[5], &[1], 0),
        out.view_mut(),
    );
    assert!(e.is_err());
    // Mismatched shapes in a binary op.
    let e = binary(
        BinaryOp::Add,
        x.view(),
        Strided::new(&[6], &[1], 0),
        x.view(),
        Strided::new(&[2, 3], &[3, 1], 0),
        out.view_mut(),
    );
    assert!(e.is_err());
}
