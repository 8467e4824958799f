//! GPU tests of reductions and softmax against f64 references, including non-contiguous views,
//! several axis sets, both kernel strategies (thread-per-output and chunked blocks), NaN-poisoned
//! outputs, and determinism: the same input twice gives bit-identical output.
//!
//! Tolerances: a sum of n f32 values combined in a tree has error <= ~log2(n)·2^-24·Σ|x|; for
//! n <= 4097·67 that is < 2e-6·Σ|x|, so 1e-5·Σ|x| (relative to the sum of magnitudes) is safe.
//! Max, min and their indices are exact. Softmax: each output is exp, one sum and one multiply
//! in f32 (a few ulp), so 1e-5 relative; log-softmax subtracts ln(sum) ≈ up to ln(4097), so its
//! error is absolute: 1e-5·(1 + |value|).

mod common;

use common::*;
use ember_cuda::reduce::{ReduceOp, reduce, softmax_rows};
use ember_cuda::{CudaDevice, Strided};
use std::sync::Arc;

fn reference(
    op: ReduceOp,
    x: &[f64],
    shape: &[usize],
    strides: &[usize],
    off: usize,
    axes: &[usize],
) -> (Vec<f64>, Vec<f64>) {
    let rank = shape.len();
    let kept: Vec<usize> = (0..rank).filter(|d| !axes.contains(d)).collect();
    let outer: usize = kept.iter().map(|&d| shape[d]).product();
    let mut vals: Vec<Vec<(usize, f64)>> = vec![Vec::new(); outer];
    let n: usize = shape.iter().product();
    for i in 0..n {
        // multi-index of i
        let mut idx = vec![0; rank];
        let mut t = i;
        for d in (0..rank).rev() {
            idx[d] = t % shape[d];
            t /= shape[d];
        }
        let mut o = 0;
        for &d in &kept {
            o = o * shape[d] + idx[d];
        }
        let mut r = 0;
        for &d in axes {
            r = r * shape[d] + idx[d];
        }
        let off_i: usize = off + (0..rank).map(|d| idx[d] * strides[d]).sum::<usize>();
        vals[o].push((r, x[off_i]));
    }
    let mut want = Vec::new();
    let mut scale = Vec::new();
    for v in vals {
        let mut v = v;
        v.sort_by_key(|p| p.0);
        let mag: f64 = v.iter().map(|p| p.1.abs()).sum();
        let w = match op {
            ReduceOp::Sum => v.iter().map(|p| p.1).sum(),
            ReduceOp::Mean => v.iter().map(|p| p.1).sum::<f64>() / v.len() as f64,
            ReduceOp::Max => v.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max),
            ReduceOp::Min => v.iter().map(|p| p.1).fold(f64::INFINITY, f64::min),
            ReduceOp::ArgMax | ReduceOp::ArgMin => {
                let mut best = 0;
                for (j, p) in v.iter().enumerate() {
                    let better = if op == ReduceOp::ArgMax {
                        p.1 > v[best].1
                    } else {
                        p.1 < v[best].1
                    };
                    if better {
                        best = j;
                    }
                }
                v[best].0 as f64
            }
        };
        want.push(w);
        scale.push(if op == ReduceOp::Mean {
            mag / v.len().max(1) as f64
        } else {
            mag
        });
    }
    (want, scale)
}

fn check_reduce(
    dev: &Arc<CudaDevice>,
    r: &mut rand::rngs::StdRng,
    shape: &[usize],
    strides: &[usize],
    buf: usize,
    axes: &[usize],
) {
    let host: Vec<f32> = uniform(r, buf, -1.0, 1.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    // Repeat some values so arg-reductions see ties (first index must win).
    let mut host = host;
    for i in (0..buf).step_by(5) {
        host[i] = 0.5;
    }
    let hx: Vec<f64> = host.iter().map(|&v| v as f64).collect();
    let x = dev.upload(&host).unwrap();
    let view = Strided::new(shape, strides, 0);
    let ops: &[ReduceOp] = if axes.len() == 1 {
        &[
            ReduceOp::Sum,
            ReduceOp::Mean,
            ReduceOp::Max,
            ReduceOp::Min,
            ReduceOp::ArgMax,
            ReduceOp::ArgMin,
        ]
    } else {
        &[ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min]
    };
    for &op in ops {
        let (want, scale) = reference(op, &hx, shape, strides, 0, axes);
        let mut out = dev.upload(&vec![f32::NAN; want.len()]).unwrap();
        reduce(op, x.view(), view, axes, out.view_mut()).unwrap();
        let first = out.to_host().unwrap();
        let got: Vec<f64> = first.iter().map(|&v| v as f64).collect();
        let what = format!("{op:?} shape {shape:?} strides {strides:?} axes {axes:?}");
        match op {
            ReduceOp::Sum | ReduceOp::Mean => assert_close(&what, &got, &want, &scale, 1e-5, 1e-7),
            _ => assert_eq!(got, want, "{what}"),
        }
        // Determinism: a second run is bit-identical.
        let mut again = dev.upload(&vec![f32::NAN; want.len()]).unwrap();
        reduce(op, x.view(), view, axes, again.view_mut()).unwrap();
        let second = again.to_host().unwrap();
        assert!(
            first
                .iter()
                .zip(&second)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{what}: not deterministic"
        );
    }
}

#[test]
fn reductions_match_f64_reference_and_are_deterministic() {
    let Some(dev) = gpu_or_skip("gpu_reduce::reduce") else {
        return;
    };
    let mut r = rng("reduce");
    for n in SIZES {
        // 1-D: the whole vector (block strategy, chunked for large n).
        check_reduce(&dev, &mut r, &[n], &[1], n, &[0]);
        // [n, 7] contiguous: along rows (thread strategy) and along columns (inner 7 <= 16).
        check_reduce(&dev, &mut r, &[n, 7], &[7, 1], 7 * n, &[0]);
        check_reduce(&dev, &mut r, &[n, 7], &[7, 1], 7 * n, &[1]);
        // [67, n] transposed storage (column-major), both axes and all axes.
        check_reduce(&dev, &mut r, &[67, n], &[1, 67], 67 * n, &[1]);
        check_reduce(&dev, &mut r, &[67, n], &[1, 67], 67 * n, &[0]);
        check_reduce(&dev, &mut r, &[67, n], &[1, 67], 67 * n, &[0, 1]);
    }
    // A large single output (many chunks, two passes) and a broadcast (stride 0) input.
    check_reduce(&dev, &mut r, &[1 << 22], &[1], 1 << 22, &[0]);
    check_reduce(&dev, &mut r, &[3, 1000, 5], &[0, 5, 1], 5000, &[1]);
    check_reduce(&dev, &mut r, &[3, 1000, 5], &[5000, 5, 1], 15000, &[0, 2]);
}

#[test]
fn reduce_rejects_bad_axes() {
    let Some(dev) = gpu_or_skip("gpu_reduce::errors") else {
        return;
    };
    let x = dev.upload(&[1.0f32; 6]).unwrap();
    let mut out = dev.alloc::<f32>(2).unwrap();
    let v = Strided::new(&[2, 3], &[3, 1], 0);
    assert!(reduce(ReduceOp::Sum, x.view(), v, &[2], out.view_mut()).is_err());
    assert!(reduce(ReduceOp::Sum, x.view(), v, &[1, 1], out.view_mut()).is_err());
    assert!(reduce(ReduceOp::ArgMax, x.view(), v, &[0, 1], out.view_mut()).is_err());
    assert!(reduce(ReduceOp::Sum, x.view(), v, &[0], out.view_mut()).is_err()); // out needs 3
}

fn softmax_ref(x: &[f64], cols: usize, log: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(cols) {
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
        for &v in row {
            out.push(if log {
                v - m - s.ln()
            } else {
                (v - m).exp() / s
            });
        }
    }
    out
}

#[test]
fn softmax_rows_match_f64_reference() {
    let Some(dev) = gpu_or_skip("gpu_reduce::softmax") else {
        return;
    };
    let mut r = rng("softmax");
    for rows in [1usize, 7, 67] {
        for cols in SIZES {
            let host: Vec<f32> = uniform(&mut r, rows * cols, -20.0, 20.0)
                .iter()
                .map(|&v| v as f32)
                .collect();
            let hx: Vec<f64> = host.iter().map(|&v| v as f64).collect();
            let x = dev.upload(&host).unwrap();
            for log in [false, true] {
                let mut out = dev.upload(&vec![f32::NAN; rows * cols]).unwrap();
                softmax_rows(x.view(), cols, out.view_mut(), log).unwrap();
                let got: Vec<f64> = out.to_host().unwrap().iter().map(|&v| v as f64).collect();
                let want = softmax_ref(&hx, cols, log);
                let scale: Vec<f64> = want
                    .iter()
                    .map(|w| if log { 1.0 + w.abs() } else { w.abs() })
                    .collect();
                assert_close(
                    &format!("softmax rows={rows} cols={cols} log={log}"),
                    &got,
                    &want,
                    &scale,
                    1e-5,
                    1e-7,
                );
            }
        }
    }
    // Huge inputs do not overflow.
    let x = dev.upload(&[1000.0f32, 1000.0]).unwrap();
    let mut out = dev.alloc::<f32>(2).unwrap();
    softmax_rows(x.view(), 2, out.view_mut(), false).unwrap();
    assert_eq!(out.to_host().unwrap(), vec![0.5, 0.5]);
}
