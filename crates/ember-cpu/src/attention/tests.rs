//! The tiled kernels against a naive f64 reference that materialises the probabilities.

use super::*;

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// (out, dq, dk, dv) by the textbook formulas, P materialised.
#[allow(clippy::type_complexity)]
fn reference(
    s: &AttentionSpec,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    keep: Option<&[f64]>,
    dout: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (tq, tk, dh, dv) = (s.tq, s.tk, s.dh, s.dv);
    let g = s.batch * s.heads;
    let mut out = vec![0.0; g * tq * dv];
    let mut dq = vec![0.0; g * tq * dh];
    let mut dk = vec![0.0; g * tk * dh];
    let mut dvv = vec![0.0; g * tk * dv];
    for gi in 0..g {
        let n = gi / s.heads;
        for i in 0..tq {
            let allowed =
                |j: usize| !(s.causal && j > i) && keep.is_none_or(|m| m[n * tk + j] != 0.0);
            let logits: Vec<f64> = (0..tk)
                .map(|j| {
                    (0..dh)
                        .map(|d| q[(gi * tq + i) * dh + d] * k[(gi * tk + j) * dh + d])
                        .sum::<f64>()
                        * s.scale
                })
                .collect();
            let mx = (0..tk)
                .filter(|&j| allowed(j))
                .map(|j| logits[j])
                .fold(f64::NEG_INFINITY, f64::max);
            if mx == f64::NEG_INFINITY {
                continue;
            }
            let e: Vec<f64> = (0..tk)
                .map(|j| {
                    if allowed(j) {
                        (logits[j] - mx).exp()
                    } else {
                        0.0
                    }
                })
                .collect();
            let z: f64 = e.iter().sum();
            let p: Vec<f64> = e.iter().map(|x| x / z).collect();
            let o = &mut out[(gi * tq + i) * dv..(gi * tq + i + 1) * dv];
            for j in 0..tk {
                for d in 0..dv {
                    o[d] += p[j] * v[(gi * tk + j) * dv + d];
                }
            }
            let go = &dout[(gi * tq + i) * dv..(gi * tq + i + 1) * dv];
            let dp: Vec<f64> = (0..tk)
                .map(|j| (0..dv).map(|d| go[d] * v[(gi * tk + j) * dv + d]).sum())
                .collect();
            let dd: f64 = (0..tk).map(|j| p[j] * dp[j]).sum();
            for j in 0..tk {
                let ds = p[j] * (dp[j] - dd) * s.scale;
                for d in 0..dv {
                    dvv[(gi * tk + j) * dv + d] += p[j] * go[d];
                }
                for d in 0..dh {
                    dq[(gi * tq + i) * dh + d] += ds * k[(gi * tk + j) * dh + d];
                    dk[(gi * tk + j) * dh + d] += ds * q[(gi * tq + i) * dh + d];
                }
            }
        }
    }
    (out, dq, dk, dvv)
}

#[allow(clippy::type_complexity)]
fn run<T: Float>(
    s: &AttentionSpec,
    q: &[T],
    k: &[T],
    v: &[T],
    keep: Option<&[T]>,
    dout: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
    let g = s.batch * s.heads;
    let mut out = vec![T::ZERO; g * s.tq * s.dv];
    let mut lse = vec![T::ZERO; g * s.tq];
    attention_forward(s, q, k, v, keep, &mut out, &mut lse).unwrap();
    let mut dq = vec![T::ZERO; q.len()];
    let mut dk = vec![T::ZERO; k.len()];
    let mut dvv = vec![T::ZERO; v.len()];
    attention_backward(
        s, q, k, v, keep, &out, &lse, dout, &mut dq, &mut dk, &mut dvv,
    )
    .unwrap();
    (out, lse, dq, dk, dvv)
}

fn spec(
    batch: usize,
    heads: usize,
    tq: usize,
    tk: usize,
    dh: usize,
    dv: usize,
    causal: bool,
) -> AttentionSpec {
    AttentionSpec {
        batch,
        heads,
        tq,
        tk,
        dh,
        dv,
        causal,
        scale: 1.0 / (dh as f64).sqrt(),
    }
}

fn close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

#[test]
fn matches_reference_f64_across_tiles_masks_and_causal() {
    // Sizes straddle the 128-row/128-key tiles; 3 heads share each example's key mask, the
    // second example's keys are all padded (a fully masked row).
    for &(tq, tk, causal) in &[
        (1, 1, false),
        (70, 130, false),
        (97, 97, true),
        (5, 131, true),
        (131, 7, true),
        (260, 270, true),
        (130, 300, false),
    ] {
        let s = spec(3, 2, tq, tk, 5, 3, causal);
        let g = 6;
        let q = values(g * tq * 5, 1);
        let k = values(g * tk * 5, 2)
            .iter()
            .map(|x| x * 3.0)
            .collect::<Vec<_>>();
        let v = values(g * tk * 3, 3);
        let dout = values(g * tq * 3, 4);
        let mut keep = vec![1.0; 3 * tk];
        for j in 0..tk {
            keep[j] = if j % 3 == 1 { 0.0 } else { 1.0 };
            keep[tk + j] = 0.0;
        }
        let (out, lse, dq, dk, dv) = run(&s, &q, &k, &v, Some(&keep), &dout);
        let want = reference(&s, &q, &k, &v, Some(&keep), &dout);
        close("out", &out, &want.0, 1e-12);
        close("dq", &dq, &want.1, 1e-11);
        close("dk", &dk, &want.2, 1e-11);
        close("dv", &dv, &want.3, 1e-11);
        // Example 1 is fully masked: lse +inf, zeros.
        assert!(lse[2 * tq..4 * tq].iter().all(|&l| l == f64::INFINITY));
        let (out, _, dq, dk, dv) = run(&s, &q, &k, &v, None, &dout);
        let want = reference(&s, &q, &k, &v, None, &dout);
        close("out (no mask)", &out, &want.0, 1e-12);
        close("dq (no mask)", &dq, &want.1, 1e-11);
        close("dk (no mask)", &dk, &want.2, 1e-11);
        close("dv (no mask)", &dv, &want.3, 1e-11);
    }
}

#[test]
fn f32_matches_reference_and_thread_counts_agree() {
    let s = spec(2, 3, 150, 200, 16, 8, true);
    let g = 6;
    let q = values(g * 150 * 16, 5);
    let k = values(g * 200 * 16, 6);
    let v = values(g * 200 * 8, 7);
    let dout = values(g * 150 * 8, 8);
    let mut keep = vec![1.0; 2 * 200];
    keep[200 + 190..].fill(0.0);
    let f = |x: &[f64]| x.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let (qf, kf, vf, df, mf) = (f(&q), f(&k), f(&v), f(&dout), f(&keep));
    let with = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run(&s, &qf, &kf, &vf, Some(&mf), &df))
    };
    let one = with(1);
    let three = with(3);
    assert!(one == three, "1 and 3 threads differ");
    let want = reference(&s, &q, &k, &v, Some(&keep), &dout);
    let w = |x: &[f32]| x.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    close("out", &w(&one.0), &want.0, 2e-5);
    close("dq", &w(&one.2), &want.1, 2e-4);
    close("dk", &w(&one.3), &want.2, 2e-4);
    close("dv", &w(&one.4), &want.3, 2e-4);
}

#[test]
fn bad_operands_are_errors() {
    let s = spec(1, 1, 2, 3, 4, 4, false);
    let (q, k, v) = (vec![0f32; 8], vec![0f32; 12], vec![0f32; 12]);
    let (mut o, mut l) = (vec![0f32; 8], vec![0f32; 2]);
    assert!(attention_forward(&s, &q, &k, &v, None, &mut o, &mut l).is_ok());
    assert!(attention_forward(&s, &q, &k[..11], &v, None, &mut o, &mut l).is_err());
    assert!(attention_forward(&s, &q, &k, &v, Some(&[1.0; 2]), &mut o, &mut l).is_err());
    let z = AttentionSpec { dh: 0, ..s };
    assert!(attention_forward(&z, &[], &[], &v, None, &mut o, &mut l).is_err());
}
