//! layer_norm and scaled_dot_product_attention: against naive f64 references and composed
//! primitives, gradient checks (with causal and padding masks), leak tests (a future token or a
//! padded key changes nothing, bit for bit), thread-count independence, errors, and PyTorch's
//! values from `tests/goldens/attention.txt` (written by `scripts/goldens/attention.py`).

mod common;

use common::{Goldens, parse_goldens};
use ember_core::gradcheck::gradcheck;
use ember_core::{AttentionOptions, DType, Device, Tensor, scaled_dot_product_attention};

const GOLDENS: &str = include_str!("goldens/attention.txt");

/// The script's formula: element i of seed s is sin(0.37·i + s)·0.8 (f32 when `f32`).
fn fill_f64(shape: &[usize], seed: f64) -> Vec<f64> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| (0.37 * i as f64 + seed).sin() * 0.8)
        .collect()
}

fn t64(shape: &[usize], v: Vec<f64>) -> Tensor {
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn fill32(shape: &[usize], seed: f64) -> Tensor {
    let v: Vec<f32> = fill_f64(shape, seed).iter().map(|&x| x as f32).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn upstream(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (0.11 * i as f64).cos() as f32).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

/// The golden file, parsed.
fn goldens() -> Goldens {
    parse_goldens(GOLDENS)
}

fn compare(g: &Goldens, case: &str, name: &str, t: &Tensor, tol: f32) {
    let (shape, want) = g
        .get(&(case.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no golden {case} {name}"));
    assert_eq!(t.shape(), shape.as_slice(), "{case} {name}: shape");
    let got = t.to_vec::<f32>().unwrap();
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{case} {name}[{i}]: ember {a}, PyTorch {b}"
        );
    }
}

/// Runs `f` on variables, backpropagates Σ y·upstream and compares y and every input's grad.
fn golden_case(g: &Goldens, case: &str, inputs: Vec<Tensor>, f: impl Fn(&[Tensor]) -> Tensor) {
    let xs: Vec<Tensor> = inputs.into_iter().map(|t| t.as_variable()).collect();
    let y = f(&xs);
    compare(g, case, "y", &y, 1e-5);
    let grads = y
        .mul(&upstream(y.shape()))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    for (i, x) in xs.iter().enumerate() {
        compare(g, case, &format!("d{i}"), grads.get(x).unwrap(), 2e-5);
    }
}

#[test]
fn layer_norm_and_attention_match_pytorch() {
    let g = goldens();
    golden_case(
        &g,
        "ln_affine",
        vec![
            fill32(&[2, 5, 7], 0.1)
                .mul_scalar(3.0)
                .unwrap()
                .add_scalar(1.0)
                .unwrap(),
            fill32(&[7], 0.7).add_scalar(1.0).unwrap(),
            fill32(&[7], 1.3),
        ],
        |x| x[0].layer_norm(Some(&x[1]), Some(&x[2]), 1e-5).unwrap(),
    );
    golden_case(&g, "ln_plain", vec![fill32(&[4, 6], 0.2)], |x| {
        x[0].layer_norm(None, None, 1e-5).unwrap()
    });
    let qkv = || {
        vec![
            fill32(&[2, 3, 5, 4], 0.1),
            fill32(&[2, 3, 7, 4], 0.7),
            fill32(&[2, 3, 7, 6], 1.3),
        ]
    };
    golden_case(&g, "sdpa_plain", qkv(), |x| {
        scaled_dot_product_attention(&x[0], &x[1], &x[2], AttentionOptions::default()).unwrap()
    });
    golden_case(
        &g,
        "sdpa_causal",
        vec![
            fill32(&[2, 3, 6, 4], 0.1).mul_scalar(2.0).unwrap(),
            fill32(&[2, 3, 6, 4], 0.7).mul_scalar(2.0).unwrap(),
            fill32(&[2, 3, 6, 5], 1.3),
        ],
        |x| {
            let o = AttentionOptions {
                causal: true,
                ..Default::default()
            };
            scaled_dot_product_attention(&x[0], &x[1], &x[2], o).unwrap()
        },
    );
    let keep = Tensor::from_vec(
        vec![1f32, 1., 1., 1., 1., 0., 0., 1., 1., 1., 0., 0., 0., 0.],
        [2, 7],
        Device::Cpu,
    )
    .unwrap();
    golden_case(&g, "sdpa_mask_scale", qkv(), |x| {
        let o = AttentionOptions {
            key_mask: Some(&keep),
            scale: Some(0.3),
            ..Default::default()
        };
        scaled_dot_product_attention(&x[0], &x[1], &x[2], o).unwrap()
    });
    golden_case(
        &g,
        "sdpa_3d",
        vec![
            fill32(&[3, 5, 4], 0.4),
            fill32(&[3, 9, 4], 0.5),
            fill32(&[3, 9, 2], 0.6),
        ],
        |x| scaled_dot_product_attention(&x[0], &x[1], &x[2], AttentionOptions::default()).unwrap(),
    );
}

#[test]
fn layer_norm_matches_naive_f64_and_gradchecks() {
    let (rows, d) = (11, 9);
    let xv: Vec<f64> = fill_f64(&[rows, d], 0.3)
        .iter()
        .map(|v| v * 5.0 + 2.0)
        .collect();
    let wv = fill_f64(&[d], 0.9);
    let bv = fill_f64(&[d], 1.9);
    let x = t64(&[rows, d], xv.clone());
    let (w, b) = (t64(&[d], wv.clone()), t64(&[d], bv.clone()));
    let y = x
        .layer_norm(Some(&w), Some(&b), 1e-5)
        .unwrap()
        .to_vec::<f64>()
        .unwrap();
    for r in 0..rows {
        let row = &xv[r * d..(r + 1) * d];
        let mu = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64;
        for j in 0..d {
            let want = (row[j] - mu) / (var + 1e-5).sqrt() * wv[j] + bv[j];
            assert!((y[r * d + j] - want).abs() < 1e-12, "row {r} col {j}");
        }
    }
    // Gradients, affine and plain, on a transposed (non-contiguous) 3-D input.
    let x3 = t64(&[3, 4, 5], fill_f64(&[3, 4, 5], 0.5));
    let rep = gradcheck(
        |t| {
            t[0].transpose(1, 2)?
                .layer_norm(Some(&t[1]), Some(&t[2]), 1e-5)
        },
        &[
            x3.clone(),
            t64(&[4], fill_f64(&[4], 0.1)),
            t64(&[4], fill_f64(&[4], 0.2)),
        ],
        1e-6,
        1e-6,
    )
    .unwrap();
    assert!(rep.passed, "{rep}");
    let rep = gradcheck(|t| t[0].layer_norm(None, None, 1e-3), &[x3], 1e-6, 1e-6).unwrap();
    assert!(rep.passed, "{rep}");
}

#[test]
fn layer_norm_errors_name_the_problem() {
    let x = Tensor::zeros(&[2, 3][..], DType::F32, Device::Cpu).unwrap();
    let w = Tensor::ones(4, DType::F32, Device::Cpu).unwrap();
    let e = x.layer_norm(Some(&w), None, 1e-5).unwrap_err().to_string();
    assert!(
        e.contains("layer_norm") && e.contains("[4]") && e.contains("[3]"),
        "{e}"
    );
    let e = x.layer_norm(None, None, -1.0).unwrap_err().to_string();
    assert!(e.contains("eps"), "{e}");
    let w64 = Tensor::ones(3, DType::F64, Device::Cpu).unwrap();
    assert!(x.layer_norm(Some(&w64), None, 1e-5).is_err());
}

/// softmax(scale·q·kᵀ + bias)·v composed of ember's primitives (the unfused path), with the
/// masks as a −1e30 bias.
fn composed(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool, keep: Option<&[f64]>) -> Tensor {
    let s = q.shape();
    let (n, h, tq, dh) = (s[0], s[1], s[2], s[3]);
    let tk = k.shape()[2];
    let mut bias = vec![0.0; n * tq * tk];
    for e in 0..n {
        for i in 0..tq {
            for j in 0..tk {
                if (causal && j > i) || keep.is_some_and(|m| m[e * tk + j] == 0.0) {
                    bias[(e * tq + i) * tk + j] = -1e30;
                }
            }
        }
    }
    let bias = t64(&[n, 1, tq, tk], bias);
    let _ = h;
    let scores = q
        .matmul(&k.transpose(2, 3).unwrap())
        .unwrap()
        .mul_scalar(1.0 / (dh as f64).sqrt())
        .unwrap()
        .add(&bias)
        .unwrap();
    scores.softmax(3).unwrap().matmul(v).unwrap()
}

#[test]
fn attention_matches_composed_primitives_f64() {
    // Lengths beyond one 128-key tile; 2 heads share each example's mask.
    let (n, h, tq, tk, dh, dv) = (2, 2, 70, 131, 6, 5);
    let q = t64(&[n, h, tq, dh], fill_f64(&[n, h, tq, dh], 0.1));
    let k = t64(
        &[n, h, tk, dh],
        fill_f64(&[n, h, tk, dh], 0.2)
            .iter()
            .map(|x| x * 3.0)
            .collect(),
    );
    let v = t64(&[n, h, tk, dv], fill_f64(&[n, h, tk, dv], 0.3));
    let keep: Vec<f64> = (0..n * tk)
        .map(|i| {
            if i % tk >= tk - 20 * (i / tk) - 1 {
                0.0
            } else {
                1.0
            }
        })
        .collect();
    let m = t64(&[n, tk], keep.clone());
    for causal in [false, true] {
        let o = AttentionOptions {
            causal,
            key_mask: Some(&m),
            scale: None,
        };
        let got = scaled_dot_product_attention(&q, &k, &v, o)
            .unwrap()
            .to_vec::<f64>()
            .unwrap();
        let want = composed(&q, &k, &v, causal, Some(&keep))
            .to_vec::<f64>()
            .unwrap();
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() < 1e-12,
                "causal {causal} [{i}]: fused {a}, composed {b}"
            );
        }
    }
}

#[test]
fn attention_gradchecks_with_causal_and_padding_masks() {
    let (n, h, tq, tk, dh, dv) = (2, 2, 4, 5, 3, 2);
    let q = t64(&[n, h, tq, dh], fill_f64(&[n, h, tq, dh], 0.1));
    let k = t64(&[n, h, tk, dh], fill_f64(&[n, h, tk, dh], 0.2));
    let v = t64(&[n, h, tk, dv], fill_f64(&[n, h, tk, dv], 0.3));
    // Example 1 ignores its last two keys; with causal its first row still sees key 0.
    let m = t64(&[n, tk], vec![1., 1., 1., 1., 1., 1., 1., 1., 0., 0.]);
    for causal in [false, true] {
        for mask in [None, Some(&m)] {
            let rep = gradcheck(
                |t| {
                    let o = AttentionOptions {
                        causal,
                        key_mask: mask,
                        scale: Some(0.7),
                    };
                    scaled_dot_product_attention(&t[0], &t[1], &t[2], o)
                },
                &[q.clone(), k.clone(), v.clone()],
                1e-6,
                1e-6,
            )
            .unwrap();
            assert!(
                rep.passed,
                "causal {causal}, mask {}: {rep}",
                mask.is_some()
            );
        }
    }
    // 3-D operands, query longer than keys, through a permuted (non-contiguous) view of q.
    let q3 = t64(&[2, 3, 6], fill_f64(&[2, 3, 6], 0.4));
    let k3 = t64(&[2, 4, 3], fill_f64(&[2, 4, 3], 0.5));
    let v3 = t64(&[2, 4, 2], fill_f64(&[2, 4, 2], 0.6));
    let rep = gradcheck(
        |t| {
            let o = AttentionOptions {
                causal: true,
                ..Default::default()
            };
            scaled_dot_product_attention(&t[0].transpose(1, 2)?, &t[1], &t[2], o)
        },
        &[q3, k3, v3],
        1e-6,
        1e-6,
    )
    .unwrap();
    assert!(rep.passed, "3-D: {rep}");
}

/// Output and the three gradients of Σ y·u, as f32 vectors.
fn run_f32(q: &Tensor, k: &Tensor, v: &Tensor, o: AttentionOptions<'_>) -> Vec<Vec<f32>> {
    let (q, k, v) = (q.as_variable(), k.as_variable(), v.as_variable());
    let y = scaled_dot_product_attention(&q, &k, &v, o).unwrap();
    let g = y
        .mul(&upstream(y.shape()))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    vec![
        y.to_vec().unwrap(),
        g.get(&q).unwrap().to_vec().unwrap(),
        g.get(&k).unwrap().to_vec().unwrap(),
        g.get(&v).unwrap().to_vec().unwrap(),
    ]
}

#[test]
fn causal_attention_leaks_nothing_from_the_future() {
    let (n, h, t, d) = (2, 2, 150, 8);
    let q = fill32(&[n, h, t, d], 0.1);
    let k = fill32(&[n, h, t, d], 0.2);
    let v = fill32(&[n, h, t, d], 0.3);
    let o = AttentionOptions {
        causal: true,
        ..Default::default()
    };
    let base = scaled_dot_product_attention(&q, &k, &v, o)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    // Perturb token 100's query, key and value in every head.
    let bump = |x: &Tensor| {
        let mut m = vec![0f32; n * h * t * d];
        for g in 0..n * h {
            for c in 0..d {
                m[(g * t + 100) * d + c] = 5.0;
            }
        }
        x.add(&Tensor::from_vec(m, [n, h, t, d], Device::Cpu).unwrap())
            .unwrap()
    };
    let after = scaled_dot_product_attention(&bump(&q), &bump(&k), &bump(&v), o)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let mut changed_later = false;
    for g in 0..n * h {
        for i in 0..t {
            for c in 0..d {
                let at = (g * t + i) * d + c;
                if i < 100 {
                    assert_eq!(
                        base[at].to_bits(),
                        after[at].to_bits(),
                        "group {g} row {i} changed"
                    );
                } else if base[at] != after[at] {
                    changed_later = true;
                }
            }
        }
    }
    assert!(
        changed_later,
        "the perturbation must reach the rows from 100 on"
    );
}

#[test]
fn padded_keys_leak_nothing_and_get_no_gradient() {
    let (n, h, tq, tk, d) = (2, 3, 9, 80, 4);
    let q = fill32(&[n, h, tq, d], 0.1);
    let k = fill32(&[n, h, tk, d], 0.2);
    let v = fill32(&[n, h, tk, d], 0.3);
    // Example 0 keeps 70 keys, example 1 keeps 10.
    let keep: Vec<f32> = (0..n * tk)
        .map(|i| if i % tk < [70, 10][i / tk] { 1.0 } else { 0.0 })
        .collect();
    let m = Tensor::from_vec(keep.clone(), [n, tk], Device::Cpu).unwrap();
    let o = AttentionOptions {
        key_mask: Some(&m),
        ..Default::default()
    };
    let base = run_f32(&q, &k, &v, o);
    // Garbage in the padded keys and values.
    let junk = |x: &Tensor| {
        let mut w = x.to_vec::<f32>().unwrap();
        for g in 0..n * h {
            for j in 0..tk {
                if keep[(g / h) * tk + j] == 0.0 {
                    for c in 0..d {
                        w[(g * tk + j) * d + c] = 1e3 * (j as f32 + 1.0);
                    }
                }
            }
        }
        Tensor::from_vec(w, x.shape(), Device::Cpu).unwrap()
    };
    let after = run_f32(&q, &junk(&k), &junk(&v), o);
    assert_eq!(base[0], after[0], "outputs changed");
    assert_eq!(base[1], after[1], "dq changed");
    for (which, grad) in [(2, "dk"), (3, "dv")] {
        for g in 0..n * h {
            for j in 0..tk {
                if keep[(g / h) * tk + j] == 0.0 {
                    for c in 0..d {
                        assert_eq!(
                            after[which][(g * tk + j) * d + c],
                            0.0,
                            "{grad} on a padded key"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn fully_masked_rows_give_zeros_not_nan() {
    let q = fill32(&[1, 1, 3, 2], 0.1);
    let k = fill32(&[1, 1, 4, 2], 0.2);
    let v = fill32(&[1, 1, 4, 2], 0.3);
    let m = Tensor::zeros(&[1, 4][..], DType::F32, Device::Cpu).unwrap();
    let r = run_f32(
        &q,
        &k,
        &v,
        AttentionOptions {
            key_mask: Some(&m),
            ..Default::default()
        },
    );
    for x in &r {
        assert!(x.iter().all(|&v| v == 0.0), "{x:?}");
    }
}

#[test]
fn attention_is_bit_identical_for_1_and_3_threads() {
    let (n, h, t, d) = (3, 2, 130, 16);
    let q = fill32(&[n, h, t, d], 0.1);
    let k = fill32(&[n, h, t, d], 0.2);
    let v = fill32(&[n, h, t, d], 0.3);
    let m = Tensor::from_vec(
        (0..n * t)
            .map(|i| if i % t < 100 + i / t { 1f32 } else { 0.0 })
            .collect::<Vec<_>>(),
        [n, t],
        Device::Cpu,
    )
    .unwrap();
    let x = fill32(&[n * t, 96], 0.4).mul_scalar(4.0).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let o = AttentionOptions {
                causal: true,
                key_mask: Some(&m),
                scale: None,
            };
            let mut r = run_f32(&q, &k, &v, o);
            let xv = x.as_variable();
            let y = xv.layer_norm(None, None, 1e-5).unwrap();
            let g = y
                .mul(&upstream(y.shape()))
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            r.push(y.to_vec().unwrap());
            r.push(g.get(&xv).unwrap().to_vec().unwrap());
            r
        })
    };
    assert!(run(1) == run(3), "results depend on the thread count");
}

#[test]
fn attention_errors_name_the_shapes() {
    let q = Tensor::zeros(&[2, 3, 4, 5][..], DType::F32, Device::Cpu).unwrap();
    let k = Tensor::zeros(&[2, 3, 6, 4][..], DType::F32, Device::Cpu).unwrap();
    let e = scaled_dot_product_attention(&q, &k, &k, AttentionOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("scaled_dot_product_attention") && e.contains("[2, 3, 4, 5]"),
        "{e}"
    );
    let k = Tensor::zeros(&[2, 3, 6, 5][..], DType::F32, Device::Cpu).unwrap();
    let bad_mask = Tensor::ones(&[2, 5][..], DType::F32, Device::Cpu).unwrap();
    let o = AttentionOptions {
        key_mask: Some(&bad_mask),
        ..Default::default()
    };
    let e = scaled_dot_product_attention(&q, &k, &k, o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("key mask") && e.contains("[2, 6]"), "{e}");
    let k2 = Tensor::zeros(&[2, 6, 5][..], DType::F32, Device::Cpu).unwrap();
    assert!(scaled_dot_product_attention(&q, &k2, &k2, AttentionOptions::default()).is_err());
    let k64 = Tensor::zeros(&[2, 3, 6, 5][..], DType::F64, Device::Cpu).unwrap();
    assert!(scaled_dot_product_attention(&q, &k64, &k64, AttentionOptions::default()).is_err());
}
