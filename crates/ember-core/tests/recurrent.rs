//! The recurrent sequence op (`ember_core::recurrent`): every cell against a naive per-step
//! f64 reference written here (forward, masks, reverse, final states), gradients by finite
//! differences through time (every input, with and without masks, both directions), padded
//! steps changing nothing, and bit-identical results for 1 and 3 threads.

use ember_core::gradcheck::gradcheck;
use ember_core::{CellKind, DType, Device, RecurrentInputs, RnnActivation, Tensor, recurrent};

/// Deterministic pseudo-random values in [-scale, scale).
fn vals(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape, Device::Cpu).unwrap()
}

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The operands of one case.
struct Case {
    kind: CellKind,
    n: usize,
    t: usize,
    h: usize,
    xp: Vec<f64>,
    h0: Vec<f64>,
    c0: Vec<f64>,
    w: Vec<f64>,
    b: Vec<f64>,
    mask: Option<Vec<f64>>,
}

impl Case {
    fn new(kind: CellKind, n: usize, t: usize, h: usize, seed: u64) -> Case {
        let g = kind.gates() * h;
        Case {
            kind,
            n,
            t,
            h,
            xp: vals(n * t * g, seed, 1.0),
            h0: vals(n * h, seed + 1, 0.5),
            c0: if kind == CellKind::Lstm {
                vals(n * h, seed + 2, 0.5)
            } else {
                vec![]
            },
            w: vals(g * h, seed + 3, 0.6),
            b: vals(g, seed + 4, 0.3),
            mask: None,
        }
    }

    /// Rows of `lens[r]` real steps (at the start), padding after.
    fn with_lengths(mut self, lens: &[usize]) -> Case {
        let mut m = vec![0.0; self.n * self.t];
        for (r, &l) in lens.iter().enumerate() {
            for s in 0..l {
                m[r * self.t + s] = 1.0;
            }
        }
        self.mask = Some(m);
        self
    }

    /// The naive per-step reference: (output [N, T, H], h_n, c_n).
    fn reference(&self, reverse: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (n, t, hs) = (self.n, self.t, self.h);
        let g = self.kind.gates() * hs;
        let mut out = vec![0.0; n * t * hs];
        let mut hn = vec![0.0; n * hs];
        let mut cn = vec![
            0.0;
            if self.kind == CellKind::Lstm {
                n * hs
            } else {
                0
            }
        ];
        for r in 0..n {
            let mut h = self.h0[r * hs..(r + 1) * hs].to_vec();
            let mut c = if self.kind == CellKind::Lstm {
                self.c0[r * hs..(r + 1) * hs].to_vec()
            } else {
                vec![]
            };
            for s in 0..t {
                let tt = if reverse { t - 1 - s } else { s };
                let real = self.mask.as_ref().is_none_or(|m| m[r * t + tt] != 0.0);
                if real {
                    let x = &self.xp[(r * t + tt) * g..(r * t + tt + 1) * g];
                    let q: Vec<f64> = (0..g)
                        .map(|j| {
                            self.b[j] + (0..hs).map(|k| self.w[j * hs + k] * h[k]).sum::<f64>()
                        })
                        .collect();
                    match self.kind {
                        CellKind::Rnn(a) => {
                            for j in 0..hs {
                                let v = x[j] + q[j];
                                h[j] = match a {
                                    RnnActivation::Tanh => v.tanh(),
                                    RnnActivation::Relu => v.max(0.0),
                                };
                            }
                        }
                        CellKind::Lstm => {
                            for j in 0..hs {
                                let i = sig(x[j] + q[j]);
                                let f = sig(x[hs + j] + q[hs + j]);
                                let gg = (x[2 * hs + j] + q[2 * hs + j]).tanh();
                                let o = sig(x[3 * hs + j] + q[3 * hs + j]);
                                c[j] = f * c[j] + i * gg;
                                h[j] = o * c[j].tanh();
                            }
                        }
                        CellKind::Gru => {
                            let hp = h.clone();
                            for j in 0..hs {
                                let rr = sig(x[j] + q[j]);
                                let z = sig(x[hs + j] + q[hs + j]);
                                let nn = (x[2 * hs + j] + rr * q[2 * hs + j]).tanh();
                                h[j] = (1.0 - z) * nn + z * hp[j];
                            }
                        }
                    }
                }
                out[(r * t + tt) * hs..(r * t + tt + 1) * hs].copy_from_slice(&h);
            }
            hn[r * hs..(r + 1) * hs].copy_from_slice(&h);
            if self.kind == CellKind::Lstm {
                cn[r * hs..(r + 1) * hs].copy_from_slice(&c);
            }
        }
        (out, hn, cn)
    }

    /// The operands as tensors of `dtype`: [xp, h0, c0 (LSTM), w, b].
    fn tensors(&self, dtype: DType) -> Vec<Tensor> {
        let (n, t, h, g) = (self.n, self.t, self.h, self.kind.gates() * self.h);
        let mut v = vec![t64(&self.xp, &[n, t, g]), t64(&self.h0, &[n, h])];
        if self.kind == CellKind::Lstm {
            v.push(t64(&self.c0, &[n, h]));
        }
        v.push(t64(&self.w, &[g, h]));
        v.push(t64(&self.b, &[g]));
        v.into_iter()
            .map(|x| x.to_dtype(dtype).unwrap().as_variable())
            .collect()
    }

    fn mask_tensor(&self, dtype: DType) -> Option<Tensor> {
        self.mask
            .as_ref()
            .map(|m| t64(m, &[self.n, self.t]).to_dtype(dtype).unwrap())
    }

    /// Runs the op on `ts` (as made by `tensors`).
    fn run(
        &self,
        ts: &[Tensor],
        mask: Option<&Tensor>,
        reverse: bool,
    ) -> ember_core::RecurrentOutput {
        let lstm = self.kind == CellKind::Lstm;
        let k = if lstm { 1 } else { 0 };
        recurrent(
            self.kind,
            reverse,
            RecurrentInputs {
                x_proj: &ts[0],
                h0: Some(&ts[1]),
                c0: if lstm { Some(&ts[2]) } else { None },
                w_hh: &ts[2 + k],
                b_hh: &ts[3 + k],
                mask,
            },
        )
        .unwrap()
    }
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn every_cell_matches_the_naive_reference() {
    for (ci, kind) in CellKind::ALL.into_iter().enumerate() {
        for masked in [false, true] {
            for reverse in [false, true] {
                let mut case = Case::new(kind, 3, 5, 4, 7 + ci as u64);
                if masked {
                    case = case.with_lengths(&[5, 2, 0]);
                }
                let (want, hn, cn) = case.reference(reverse);
                for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 2e-5)] {
                    let ts = case.tensors(dtype);
                    let m = case.mask_tensor(dtype);
                    let r = case.run(&ts, m.as_ref(), reverse);
                    let what = format!(
                        "{} masked {masked} reverse {reverse} {dtype:?}",
                        kind.name()
                    );
                    assert_eq!(r.output.shape(), &[3, 5, 4], "{what}");
                    let got = r
                        .output
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_vec::<f64>()
                        .unwrap();
                    assert!(
                        max_diff(&got, &want) < tol,
                        "{what}: output off by {}",
                        max_diff(&got, &want)
                    );
                    let got = r.h_n.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap();
                    assert!(max_diff(&got, &hn) < tol, "{what}: h_n");
                    match r.c_n {
                        Some(c) => {
                            let got = c.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap();
                            assert!(max_diff(&got, &cn) < tol, "{what}: c_n");
                        }
                        None => assert_ne!(kind, CellKind::Lstm),
                    }
                }
            }
        }
    }
}

#[test]
fn gradients_through_time_match_finite_differences() {
    for (ci, kind) in CellKind::ALL.into_iter().enumerate() {
        for (masked, reverse) in [(false, false), (false, true), (true, false), (true, true)] {
            let t = 3 + ci % 3;
            let mut case = Case::new(kind, 2, t, 3, 100 + ci as u64);
            if masked {
                case = case.with_lengths(&[t, t - 2]);
            }
            let ts = case.tensors(DType::F64);
            let m = case.mask_tensor(DType::F64);
            let report = gradcheck(
                |a| {
                    let r = case.run(a, m.as_ref(), reverse);
                    // The output sequence plus the final state again, so h_n's path is weighted
                    // on its own too.
                    let hn = r.h_n.reshape(vec![2, 1, 3])?;
                    Tensor::cat(&[&r.output, &hn], 1)
                },
                &ts,
                1e-6,
                1e-6,
            )
            .unwrap();
            assert!(
                report.passed,
                "{} masked {masked} reverse {reverse}: {report}",
                kind.name()
            );
        }
    }
}

#[test]
fn padded_steps_change_nothing() {
    for kind in CellKind::ALL {
        let (n, t, h) = (3, 6, 5);
        let g = kind.gates() * h;
        let lens = [6, 3, 1];
        let case = Case::new(kind, n, t, h, 55).with_lengths(&lens);
        // Garbage in the padded steps' projections must not matter, bit for bit.
        let mut noisy = Case::new(kind, n, t, h, 55).with_lengths(&lens);
        let junk = vals(n * t * g, 999, 50.0);
        for r in 0..n {
            for s in lens[r]..t {
                for j in 0..g {
                    noisy.xp[(r * t + s) * g + j] = junk[(r * t + s) * g + j];
                }
            }
        }
        for reverse in [false, true] {
            let run = |c: &Case| {
                let ts = c.tensors(DType::F32);
                let m = c.mask_tensor(DType::F32);
                let r = c.run(&ts, m.as_ref(), reverse);
                let loss = r.output.sqr().unwrap().sum_all().unwrap();
                let grads = loss.backward().unwrap();
                let mut v = vec![
                    r.output.to_vec::<f32>().unwrap(),
                    r.h_n.to_vec::<f32>().unwrap(),
                ];
                for x in &ts[1..] {
                    v.push(grads.get(x).unwrap().to_vec::<f32>().unwrap());
                }
                let dxp = grads.get(&ts[0]).unwrap().to_vec::<f32>().unwrap();
                (v, dxp)
            };
            let (a, da) = run(&case);
            let (b, db) = run(&noisy);
            assert_eq!(
                a,
                b,
                "{} reverse {reverse}: padded inputs leaked",
                kind.name()
            );
            assert_eq!(da, db, "{} reverse {reverse}: dxp", kind.name());
            for r in 0..n {
                for s in lens[r]..t {
                    assert!(
                        da[(r * t + s) * g..(r * t + s + 1) * g]
                            .iter()
                            .all(|&v| v == 0.0)
                    );
                }
            }
            // A padded row equals the same row run alone without padding (f64, the batch
            // products may take other GEMM paths, so within rounding).
            let full = {
                let ts = case.tensors(DType::F64);
                let m = case.mask_tensor(DType::F64);
                let r = case.run(&ts, m.as_ref(), reverse);
                (
                    r.output.to_vec::<f64>().unwrap(),
                    r.h_n.to_vec::<f64>().unwrap(),
                )
            };
            for (r, &l) in lens.iter().enumerate() {
                let mut one = Case::new(kind, 1, l, h, 0);
                for s in 0..l {
                    one.xp[s * g..(s + 1) * g]
                        .copy_from_slice(&case.xp[(r * t + s) * g..(r * t + s + 1) * g]);
                }
                one.h0 = case.h0[r * h..(r + 1) * h].to_vec();
                if kind == CellKind::Lstm {
                    one.c0 = case.c0[r * h..(r + 1) * h].to_vec();
                }
                one.w = case.w.clone();
                one.b = case.b.clone();
                let ts = one.tensors(DType::F64);
                let res = one.run(&ts, None, reverse);
                let o = res.output.to_vec::<f64>().unwrap();
                for s in 0..l {
                    let got = &full.0[(r * t + s) * h..(r * t + s + 1) * h];
                    assert!(
                        max_diff(got, &o[s * h..(s + 1) * h]) < 1e-13,
                        "{} row {r} step {s}",
                        kind.name()
                    );
                }
                let hn = res.h_n.to_vec::<f64>().unwrap();
                assert!(
                    max_diff(&full.1[r * h..(r + 1) * h], &hn) < 1e-13,
                    "{} row {r} h_n",
                    kind.name()
                );
            }
        }
    }
}

#[test]
fn bit_identical_for_1_and_3_threads() {
    for kind in CellKind::ALL {
        // Large enough for the parallel cell pass (N·G·H ≥ 2^14) and parallel GEMMs.
        let mut case = Case::new(kind, 64, 4, 64, 3);
        let mut lens = vec![4; 64];
        lens[5] = 2;
        case = case.with_lengths(&lens);
        let go = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let ts = case.tensors(DType::F32);
                let m = case.mask_tensor(DType::F32);
                let r = case.run(&ts, m.as_ref(), false);
                let gy = Tensor::from_vec(vals(64 * 4 * 64, 8, 1.0), [64, 4, 64], Device::Cpu)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap();
                let grads = r
                    .output
                    .mul(&gy)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let mut v = vec![r.output.to_vec::<f32>().unwrap()];
                for x in &ts {
                    v.push(grads.get(x).unwrap().to_vec::<f32>().unwrap());
                }
                v
            })
        };
        let a = go(1);
        let b = go(3);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(
                same,
                "{}: result {i} differs between 1 and 3 threads",
                kind.name()
            );
        }
    }
}

#[test]
fn bad_operands_are_clear_errors() {
    let x = Tensor::zeros(vec![2, 3, 8], DType::F32, Device::Cpu).unwrap();
    let w = Tensor::zeros(vec![8, 2], DType::F32, Device::Cpu).unwrap();
    let b = Tensor::zeros(vec![8], DType::F32, Device::Cpu).unwrap();
    let run =
        |kind, x: &Tensor, w: &Tensor, b: &Tensor, mask: Option<&Tensor>, c0: Option<&Tensor>| {
            recurrent(
                kind,
                false,
                RecurrentInputs {
                    x_proj: x,
                    h0: None,
                    c0,
                    w_hh: w,
                    b_hh: b,
                    mask,
                },
            )
            .map(|_| ())
            .unwrap_err()
            .to_string()
        };
    // GRU needs 3·H rows of w_hh.
    let e = run(CellKind::Gru, &x, &w, &b, None, None);
    assert!(e.contains("w_hh [8, 2]") && e.contains("gru"), "{e}");
    let e = run(
        CellKind::Lstm,
        &x.narrow(2, 0, 6).unwrap(),
        &w,
        &b,
        None,
        None,
    );
    assert!(e.contains("x_proj [2, 3, 6]"), "{e}");
    let m = Tensor::zeros(vec![2, 4], DType::F32, Device::Cpu).unwrap();
    let e = run(CellKind::Lstm, &x, &w, &b, Some(&m), None);
    assert!(e.contains("mask [2, 4]"), "{e}");
    let c0 = Tensor::zeros(vec![2, 2], DType::F32, Device::Cpu).unwrap();
    let w4 = Tensor::zeros(vec![2, 2], DType::F32, Device::Cpu).unwrap();
    let e = run(
        CellKind::Rnn(RnnActivation::Tanh),
        &x.narrow(2, 0, 2).unwrap(),
        &w4,
        &b.narrow(0, 0, 2).unwrap(),
        None,
        Some(&c0),
    );
    assert!(e.contains("no cell state"), "{e}");
    let b64 = b.to_dtype(DType::F64).unwrap();
    let e = run(CellKind::Lstm, &x, &w, &b64, None, None);
    assert!(e.contains("recurrent"), "{e}");
}

#[test]
fn half_precision_runs_through_f32_kernels() {
    let case = Case::new(CellKind::Lstm, 2, 3, 4, 21).with_lengths(&[3, 2]);
    let run = |dtype: DType| {
        let ts = case.tensors(dtype);
        let m = case.mask_tensor(dtype);
        let r = case.run(&ts, m.as_ref(), false);
        let grads = r.output.sum_all().unwrap().backward().unwrap();
        let dw = grads.get(&ts[3]).unwrap().to_dtype(DType::F64).unwrap();
        (
            r.output
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec::<f64>()
                .unwrap(),
            dw.to_vec::<f64>().unwrap(),
        )
    };
    let (y32, dw32) = run(DType::F32);
    for dtype in [DType::F16, DType::BF16] {
        let (y, dw) = run(dtype);
        assert!(max_diff(&y, &y32) < 3e-2, "{dtype:?} output");
        assert!(max_diff(&dw, &dw32) < 6e-2, "{dtype:?} dW_hh");
    }
}
