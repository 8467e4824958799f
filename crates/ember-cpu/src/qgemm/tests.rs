//! int8 GEMM tests: every path this CPU runs, bit for bit against a scalar i64 reference, over
//! odd shapes (M, N around the tile sizes, K not a multiple of 4), leading dimensions, zero
//! points, the epilogues, thread counts and bad operands. AVX-VNNI runs only where the CPU has
//! it (`QPath::supported`); on a CPU without it the test says so in its output.

use super::quant::{self, ACT_QMAX, QParams};
use super::*;
use crate::gemm::tests_rng::Rng;

/// A random u8 matrix with values in [0, hi].
fn rand_u8(rng: &mut Rng, len: usize, hi: u8) -> Vec<u8> {
    (0..len)
        .map(|_| rng.below(usize::from(hi) + 1) as u8)
        .collect()
}

/// A random i8 matrix over the full range [-128, 127].
fn rand_i8(rng: &mut Rng, len: usize) -> Vec<i8> {
    (0..len)
        .map(|_| (rng.below(256) as i32 - 128) as i8)
        .collect()
}

/// The reference: `Σ_k (A[i,k] − za)·B[k,j]` in i64, B given as its transpose `bt` [n, k].
fn reference(m: usize, n: usize, k: usize, a: &[u8], lda: usize, za: i32, bt: &[i8]) -> Vec<i64> {
    let mut c = vec![0i64; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|p| (i64::from(a[i * lda + p]) - i64::from(za)) * i64::from(bt[j * k + p]))
                .sum();
        }
    }
    c
}

fn paths() -> Vec<QPath> {
    let p = QPath::supported();
    if !p.contains(&QPath::AvxVnni) {
        println!(
            "note: this CPU has no AVX-VNNI; the avx-vnni kernel is compiled but not run here"
        );
    }
    p
}

#[test]
fn every_path_is_exact_on_odd_shapes() {
    let mut rng = Rng::new(17);
    let ms = [1, 2, 3, 5, 8, 9, 17, 64, 67];
    let ns = [1, 7, 31, 32, 33, 65];
    let ks = [1, 2, 3, 4, 5, 7, 13, 64, 101];
    for path in paths() {
        for (t, (&m, &n)) in ms.iter().zip(ns.iter().cycle()).enumerate() {
            for &k in &ks {
                let lda = k + t % 3;
                // AVX2 gets 7-bit A here (its fast path); the fallback is tested below.
                let hi = if path == QPath::Avx2 { 127 } else { 255 };
                let a = rand_u8(&mut rng, m * lda, hi);
                let bt = rand_i8(&mut rng, n * k);
                let za = [0, 3, 64, 127, -5][rng.below(5)];
                let b = PackedB::from_transposed(k, n, &bt, k).unwrap();
                let ldc = n + t % 2;
                let mut c = vec![i32::MIN; m * ldc];
                let acts = QActs {
                    data: &a,
                    m,
                    lda,
                    zero_point: za,
                };
                qgemm_with(path, acts, &b, QOut::I32 { c: &mut c, ldc }).unwrap();
                let want = reference(m, n, k, &a, lda, za, &bt);
                for i in 0..m {
                    for j in 0..n {
                        assert_eq!(
                            i64::from(c[i * ldc + j]),
                            want[i * n + j],
                            "{path}: m {m} n {n} k {k} za {za} at ({i}, {j})"
                        );
                    }
                    // Padding columns of C are left alone.
                    for j in n..ldc {
                        assert_eq!(c[i * ldc + j], i32::MIN);
                    }
                }
            }
        }
    }
}

#[test]
fn extreme_values_are_exact() {
    // All-255 A against all -128 / all 127 B: the largest products, the ones vpmaddubsw
    // would saturate on; the AVX2 path must fall back and stay exact.
    for path in paths() {
        for (av, bv) in [(255u8, -128i8), (255, 127), (127, -128), (0, -128)] {
            let (m, n, k) = (9, 33, 37);
            let a = vec![av; m * k];
            let bt = vec![bv; n * k];
            let b = PackedB::from_transposed(k, n, &bt, k).unwrap();
            let mut c = vec![0i32; m * n];
            let acts = QActs {
                data: &a,
                m,
                lda: k,
                zero_point: 0,
            };
            qgemm_with(path, acts, &b, QOut::I32 { c: &mut c, ldc: n }).unwrap();
            let want = i32::from(av) * i32::from(bv) * k as i32;
            assert!(c.iter().all(|&v| v == want), "{path}: {av} x {bv}");
        }
    }
}

#[test]
fn avx2_with_high_bytes_matches_reference() {
    if !QPath::Avx2.is_supported() {
        println!("skipped: no AVX2");
        return;
    }
    let mut rng = Rng::new(5);
    let (m, n, k) = (13, 40, 67);
    let a = rand_u8(&mut rng, m * k, 255);
    let bt = rand_i8(&mut rng, n * k);
    let b = PackedB::from_transposed(k, n, &bt, k).unwrap();
    let mut c = vec![0i32; m * n];
    let acts = QActs {
        data: &a,
        m,
        lda: k,
        zero_point: 0,
    };
    qgemm_with(QPath::Avx2, acts, &b, QOut::I32 { c: &mut c, ldc: n }).unwrap();
    let want = reference(m, n, k, &a, k, 0, &bt);
    assert!(c.iter().zip(&want).all(|(&x, &y)| i64::from(x) == y));
}

#[test]
fn the_ukr_itself_is_exact_for_7_bit_a() {
    // The AVX2 microkernel called directly (no fallback) with A ≤ 127 and the extreme B.
    let mut rng = Rng::new(9);
    for path in paths() {
        for (ukr, mr, cols) in [
            (path.kernel().0, path.kernel().1, NR),
            (path.narrow_kernel().0, path.narrow_kernel().1, NR / 2),
        ] {
            let k = 4 * 19 + 3;
            let a: Vec<u8> = (0..MAX_MR * k)
                .map(|i| {
                    if i % 3 == 0 {
                        127
                    } else {
                        rng.below(128) as u8
                    }
                })
                .collect();
            let bt: Vec<i8> = (0..NR * k)
                .map(|i| {
                    if i % 2 == 0 {
                        -128
                    } else {
                        rng.below(256) as i32 as i8
                    }
                })
                .collect();
            let b = PackedB::from_transposed(k, NR, &bt, k).unwrap();
            let rows: [*const u8; MAX_MR] = std::array::from_fn(|r| a[r * k..].as_ptr());
            let tail: [i32; MAX_MR] = std::array::from_fn(|r| {
                let t = &a[r * k + 4 * (k / 4)..r * k + k];
                i32::from_le_bytes([t[0], t[1], t[2], 0])
            });
            let mut out = [0i32; MAX_MR * NR];
            // SAFETY: every row holds k bytes, the sliver k.div_ceil(4) quads; the path is supported.
            unsafe { ukr(k / 4, &rows, Some(&tail), b.sliver(0).as_ptr(), &mut out) };
            let want = reference(mr, NR, k, &a, k, 0, &bt);
            for i in 0..mr {
                for j in 0..cols {
                    assert_eq!(
                        i64::from(out[i * NR + j]),
                        want[i * NR + j],
                        "{path} {mr}x{cols} ({i}, {j})"
                    );
                }
            }
        }
    }
}

/// A random dequantizing epilogue for n columns.
fn rand_dq(rng: &mut Rng, n: usize) -> (Vec<f32>, Vec<f32>) {
    let scales = (0..n)
        .map(|_| 0.001 + rng.uniform().abs() as f32 * 0.01)
        .collect();
    let bias = (0..n).map(|_| rng.uniform() as f32).collect();
    (scales, bias)
}

#[test]
fn f32_and_u8_epilogues_agree_across_paths_and_with_f64() {
    let mut rng = Rng::new(23);
    let (m, n, k) = (37, 45, 71);
    let a = rand_u8(&mut rng, m * k, ACT_QMAX as u8);
    let bt = rand_i8(&mut rng, n * k);
    let b = PackedB::from_transposed(k, n, &bt, k).unwrap();
    let (scales, bias) = rand_dq(&mut rng, n);
    let (za, a_scale) = (11, 0.02f32);
    let acts = QActs {
        data: &a,
        m,
        lda: k,
        zero_point: za,
    };
    let exact = reference(m, n, k, &a, k, za, &bt);
    for act in [Activation::None, Activation::Relu, Activation::Sigmoid] {
        let dq = Dequant {
            a_scale,
            b_scales: &scales,
            bias: Some(&bias),
            act,
        };
        let rq = Requant {
            scale: 0.05,
            zero_point: 20,
            qmax: 127,
        };
        let mut first: Option<(Vec<f32>, Vec<u8>)> = None;
        for path in paths() {
            let mut cf = vec![0f32; m * n];
            qgemm_with(
                path,
                acts,
                &b,
                QOut::F32 {
                    c: &mut cf,
                    ldc: n,
                    dq,
                },
            )
            .unwrap();
            let mut cq = vec![0u8; m * n];
            qgemm_with(
                path,
                acts,
                &b,
                QOut::U8 {
                    c: &mut cq,
                    ldc: n,
                    dq,
                    rq,
                },
            )
            .unwrap();
            // The requantized codes are the f32 results quantized.
            for (&y, &q) in cf.iter().zip(&cq) {
                assert_eq!(i32::from(q), quant::quantize_one(y, 0.05, 20, 0, 127));
            }
            match &first {
                None => first = Some((cf.clone(), cq)),
                Some((f0, q0)) => {
                    assert!(
                        f0.iter().zip(&cf).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "{path}: f32 epilogue differs from the first path ({act:?})"
                    );
                    assert_eq!(q0, &cq, "{path}: u8 epilogue differs ({act:?})");
                }
            }
            // Against f64 arithmetic on the exact sums.
            for i in 0..m {
                for j in 0..n {
                    let mut y = exact[i * n + j] as f64 * f64::from(a_scale) * f64::from(scales[j])
                        + f64::from(bias[j]);
                    y = match act {
                        Activation::Relu => y.max(0.0),
                        Activation::Sigmoid => 1.0 / (1.0 + (-y).exp()),
                        _ => y,
                    };
                    let got = f64::from(cf[i * n + j]);
                    assert!(
                        (got - y).abs() <= 1e-5 * (1.0 + y.abs()),
                        "{path} {act:?} ({i}, {j}): {got} vs {y}"
                    );
                }
            }
        }
    }
}

#[test]
fn bit_identical_for_any_thread_count() {
    let mut rng = Rng::new(31);
    let (m, n, k) = (150, 200, 130);
    assert!(m * n * k >= PARALLEL_MIN_MNK);
    let a = rand_u8(&mut rng, m * k, 127);
    let bt = rand_i8(&mut rng, n * k);
    let b = PackedB::from_transposed(k, n, &bt, k).unwrap();
    let (scales, bias) = rand_dq(&mut rng, n);
    for path in paths() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut c = vec![0f32; m * n];
                let dq = Dequant {
                    a_scale: 0.01,
                    b_scales: &scales,
                    bias: Some(&bias),
                    act: Activation::Relu,
                };
                let acts = QActs {
                    data: &a,
                    m,
                    lda: k,
                    zero_point: 7,
                };
                qgemm_with(
                    path,
                    acts,
                    &b,
                    QOut::F32 {
                        c: &mut c,
                        ldc: n,
                        dq,
                    },
                )
                .unwrap();
                c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            })
        };
        let one = run(1);
        assert_eq!(one, run(2), "{path}");
        assert_eq!(one, run(3), "{path}");
    }
}

#[test]
fn packing_from_rows_and_transposed_agree() {
    let mut rng = Rng::new(3);
    let (k, n) = (19, 45);
    let b = rand_i8(&mut rng, k * n);
    let bt: Vec<i8> = (0..n)
        .flat_map(|j| (0..k).map(move |p| (j, p)))
        .map(|(j, p)| b[p * n + j])
        .collect();
    let p1 = PackedB::from_rows(k, n, &b, n).unwrap();
    let p2 = PackedB::from_transposed(k, n, &bt, k).unwrap();
    assert_eq!(p1, p2);
    for p in 0..k {
        for j in 0..n {
            assert_eq!(p1.get(p, j), Some(b[p * n + j]));
        }
    }
    assert_eq!(p1.get(k, 0), None);
    let sums: Vec<i32> = (0..n)
        .map(|j| (0..k).map(|p| i32::from(b[p * n + j])).sum())
        .collect();
    assert_eq!(p1.col_sums(), &sums[..]);
}

#[test]
fn empty_shapes_and_zero_depth() {
    for path in paths() {
        // K = 0: every sum is 0, the epilogue still adds the bias.
        let b = PackedB::from_transposed(0, 3, &[], 0).unwrap();
        let mut c = vec![9f32; 6];
        let dq = Dequant {
            a_scale: 1.0,
            b_scales: &[1.0; 3],
            bias: Some(&[1.0, 2.0, 3.0]),
            act: Activation::None,
        };
        let acts = QActs {
            data: &[],
            m: 2,
            lda: 0,
            zero_point: 4,
        };
        qgemm_with(
            path,
            acts,
            &b,
            QOut::F32 {
                c: &mut c,
                ldc: 3,
                dq,
            },
        )
        .unwrap();
        assert_eq!(c, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        // M = 0 writes nothing.
        let acts = QActs {
            data: &[],
            m: 0,
            lda: 0,
            zero_point: 0,
        };
        qgemm_with(path, acts, &b, QOut::I32 { c: &mut [], ldc: 3 }).unwrap();
    }
}

#[test]
fn bad_operands_are_errors() {
    let b = PackedB::from_transposed(5, 4, &[1; 20], 5).unwrap();
    let a = [1u8; 15];
    let acts = |m| QActs {
        data: &a,
        m,
        lda: 5,
        zero_point: 0,
    };
    let mut c = vec![0i32; 16];
    let e = qgemm(acts(4), &b, QOut::I32 { c: &mut c, ldc: 4 }).unwrap_err();
    assert_eq!(
        e.to_string(),
        "qgemm: A [m, k] needs 20 elements, but its slice holds 15"
    );
    let e = qgemm(
        acts(3),
        &b,
        QOut::I32 {
            c: &mut c[..11],
            ldc: 4,
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("C [m, n] needs 12"), "{e}");
    let e = qgemm(acts(3), &b, QOut::I32 { c: &mut c, ldc: 2 }).unwrap_err();
    assert!(e.to_string().contains("leading dimension 2"), "{e}");
    let mut cf = vec![0f32; 12];
    let dq = Dequant {
        a_scale: 1.0,
        b_scales: &[1.0; 3],
        bias: None,
        act: Activation::None,
    };
    let e = qgemm(
        acts(3),
        &b,
        QOut::F32 {
            c: &mut cf,
            ldc: 4,
            dq,
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("b_scales needs 4"), "{e}");
    let mut cq = vec![0u8; 12];
    let dq = Dequant {
        b_scales: &[1.0; 4],
        ..dq
    };
    let rq = Requant {
        scale: 0.0,
        zero_point: 0,
        qmax: 127,
    };
    let e = qgemm(
        acts(3),
        &b,
        QOut::U8 {
            c: &mut cq,
            ldc: 4,
            dq,
            rq,
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("positive finite scale"), "{e}");
    let e = PackedB::from_transposed(5, 4, &[1; 19], 5).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("pack_b: the weight [n, k] needs 20"),
        "{e}"
    );
    let e = PackedB::from_transposed(MAX_K + 1, 1, &vec![0; MAX_K + 1], MAX_K + 1).unwrap_err();
    assert!(e.to_string().contains("exceeds the largest depth"), "{e}");
    if !QPath::AvxVnni.is_supported() {
        let e = qgemm_with(QPath::AvxVnni, acts(3), &b, QOut::I32 { c: &mut c, ldc: 4 });
        assert_eq!(e, Err(QError::Unsupported(QPath::AvxVnni)));
    }
}

// ----- quantization utilities -----

#[test]
fn activation_round_trip_is_within_half_a_step() {
    let mut rng = Rng::new(41);
    for (lo, hi) in [
        (-1.0f32, 3.0f32),
        (0.0, 6.0),
        (-5.0, -0.5),
        (0.2, 0.9),
        (-1e-3, 1e-3),
    ] {
        let x: Vec<f32> = (0..1000)
            .map(|_| lo + (hi - lo) * (rng.uniform() as f32 * 0.5 + 0.5))
            .collect();
        let mut q = vec![0u8; x.len()];
        let p = quant::quantize_acts(&x, &mut q).unwrap();
        assert!(q.iter().all(|&c| i32::from(c) <= ACT_QMAX));
        assert!((0..=ACT_QMAX).contains(&p.zero_point));
        let mut back = vec![0f32; x.len()];
        quant::dequantize_u8(&q, p, &mut back).unwrap();
        for (&v, &w) in x.iter().zip(&back) {
            // Half a step, plus the f32 rounding of the products.
            assert!(
                (v - w).abs() <= 0.5 * p.scale * (1.0 + 1e-4) + 1e-6 * v.abs(),
                "[{lo}, {hi}]: {v} -> {w}, scale {}",
                p.scale
            );
        }
        // Zero is always a code, exactly.
        let mut z = [0u8];
        quant::quantize_u8(&[0.0], p, &mut z).unwrap();
        assert_eq!(i32::from(z[0]), p.zero_point);
    }
}

#[test]
fn rounding_is_half_to_even() {
    let p = QParams {
        scale: 1.0,
        zero_point: 10,
    };
    let mut q = [0u8; 6];
    quant::quantize_u8(&[0.5, 1.5, 2.5, -0.5, -1.5, 200.0], p, &mut q).unwrap();
    assert_eq!(q, [10, 12, 12, 10, 8, 127]);
    assert_eq!(quant::quantize_one(-2.5, 1.0, 0, -127, 127), -2);
    assert_eq!(quant::quantize_one(-1000.0, 1.0, 0, -127, 127), -127);
}

#[test]
fn activation_params_follow_fbgemm() {
    // ReLU outputs: min 0 → zero point 0, scale max/127.
    let p = quant::choose_act_params(0.0, 12.7).unwrap();
    assert_eq!(p.zero_point, 0);
    assert!((p.scale - 0.1).abs() < 1e-7);
    // Symmetric range: zero point in the middle (63.5 rounds to even: 64).
    let p = quant::choose_act_params(-1.0, 1.0).unwrap();
    assert_eq!(p.zero_point, 64);
    // An all-zero batch gets fbgemm's fallback scale 0.1.
    let p = quant::choose_act_params(0.0, 0.0).unwrap();
    assert_eq!((p.scale, p.zero_point), (0.1, 0));
    assert!(quant::choose_act_params(1.0, f32::NAN).is_err());
    assert!(quant::choose_act_params(2.0, 1.0).is_err());
    let mut q = [0u8; 3];
    let e = quant::quantize_acts(&[1.0, f32::NAN, 2.0], &mut q).unwrap_err();
    assert!(e.to_string().contains("element 1 of 3 is NaN"), "{e}");
}

#[test]
fn weight_quantization_is_per_channel_and_bounded() {
    let mut rng = Rng::new(43);
    let (rows, cols) = (7, 33);
    let mut w: Vec<f32> = (0..rows * cols).map(|_| rng.uniform() as f32).collect();
    // Channels of very different magnitude, and an all-zero one.
    for (j, row) in w.chunks_exact_mut(cols).enumerate() {
        for v in row.iter_mut() {
            *v *= 10f32.powi(j as i32 - 3);
        }
    }
    w[2 * cols..3 * cols].fill(0.0);
    let q = quant::quantize_weights(&w, rows, cols).unwrap();
    let back = q.dequantize();
    for j in 0..rows {
        let amax = w[j * cols..(j + 1) * cols]
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        let s = q.scales[j];
        assert!(s > 0.0 && (amax == 0.0 || (s - amax / 127.0).abs() <= 1e-6 * s));
        let row = &q.codes[j * cols..(j + 1) * cols];
        assert!(row.iter().all(|&c| (-127..=127).contains(&c)));
        if amax > 0.0 {
            // The largest magnitude maps to ±127.
            assert!(row.iter().any(|&c| c.abs() == 127));
        }
        for p in 0..cols {
            let (v, b) = (w[j * cols + p], back[j * cols + p]);
            assert!(
                (v - b).abs() <= 0.5 * s * (1.0 + 1e-4),
                "({j}, {p}): {v} -> {b}"
            );
        }
    }
    let e = quant::quantize_weights(&[1.0, f32::INFINITY], 1, 2).unwrap_err();
    assert!(
        e.to_string().contains("weight [0, 1] of [1, 2] is inf"),
        "{e}"
    );
    assert!(quant::quantize_weights(&[1.0; 3], 2, 2).is_err());
}

#[test]
fn fast_rounding_equals_round_ties_even() {
    let mut rng = Rng::new(47);
    let mut ys: Vec<f32> = (0..20000).map(|_| rng.uniform() as f32 * 400.0).collect();
    ys.extend((-600..600).map(|i| i as f32 * 0.5)); // every tie in range
    ys.extend([
        0.49999997,
        -0.49999997,
        126.5,
        127.5,
        -127.5,
        1e9,
        -1e9,
        4194303.5,
    ]);
    for &y in &ys {
        let want = if y.is_nan() {
            -127
        } else {
            (y.round_ties_even() as i64 + 3).clamp(-127, 127) as i32
        };
        assert_eq!(quant::quantize_one(y, 1.0, 3, -127, 127), want, "{y}");
    }
    // The vectorised slice quantizer gives the same codes as the scalar one.
    let p = QParams {
        scale: 0.37,
        zero_point: 17,
    };
    let mut q = vec![0u8; ys.len()];
    quant::quantize_u8(&ys, p, &mut q).unwrap();
    for (&y, &c) in ys.iter().zip(&q) {
        assert_eq!(
            i32::from(c),
            quant::quantize_one(y, 0.37, 17, 0, ACT_QMAX),
            "{y}"
        );
    }
}

#[test]
fn simd_and_portable_quantizers_agree() {
    // quantize_acts / quantize_u8 under every f32 path (AVX2 intrinsics vs the scalar loop),
    // over lengths around the 32-wide step, with NaN and infinities for quantize_u8.
    let mut rng = Rng::new(53);
    for len in [0, 1, 7, 31, 32, 33, 95, 1000] {
        let mut x: Vec<f32> = (0..len).map(|_| rng.uniform() as f32 * 5.0 + 1.0).collect();
        let mut runs = Vec::new();
        for isa in crate::isa::supported() {
            let mut q = vec![0u8; len];
            let p = crate::isa::with(isa, || quant::quantize_acts(&x, &mut q))
                .unwrap()
                .unwrap();
            runs.push((p, q));
        }
        assert!(runs.windows(2).all(|w| w[0] == w[1]), "len {len}");
        if len >= 3 {
            x[0] = f32::NAN;
            x[1] = f32::INFINITY;
            x[2] = f32::NEG_INFINITY;
            let p = QParams {
                scale: 0.05,
                zero_point: 9,
            };
            let codes: Vec<Vec<u8>> = crate::isa::supported()
                .into_iter()
                .map(|isa| {
                    let mut q = vec![0u8; len];
                    crate::isa::with(isa, || quant::quantize_u8(&x, p, &mut q))
                        .unwrap()
                        .unwrap();
                    q
                })
                .collect();
            assert!(codes.windows(2).all(|w| w[0] == w[1]), "len {len}");
            assert_eq!(&codes[0][..3], &[0, 127, 0]);
            let e = quant::quantize_acts(&x, &mut vec![0u8; len]).unwrap_err();
            assert!(e.to_string().contains("element 0"), "{e}");
        }
    }
}
