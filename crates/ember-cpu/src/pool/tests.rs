//! Tests of the pooling family against naive f64 references written from the definitions
//! (padded coordinates, no precomputed ranges), adjoint identities for the backward kernels
//! (⟨f(x), g⟩ = ⟨x, fᵀ(g)⟩ for the linear ones), finite differences for batch norm, the 2×2 fast
//! path against the general one, every ISA, and bit-identity across thread counts.

use super::*;
use crate::isa;
use ember_ops::{Axis, Pad2d, PadMode, Pool2dSpec, PoolKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn rnd(n: usize, seed: u64) -> Vec<f64> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-2.0..2.0)).collect()
}

/// Distinct values (a shuffled ramp), so max pooling has no ties.
fn distinct(n: usize, seed: u64) -> Vec<f64> {
    let mut r = StdRng::seed_from_u64(seed);
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * 0.37 - n as f64 * 0.1).collect();
    for i in (1..n).rev() {
        v.swap(i, r.random_range(0..=i));
    }
    v
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axis(input: usize, kernel: usize, stride: usize, dilation: usize, pb: usize, pe: usize) -> Axis {
    Axis {
        input,
        kernel,
        stride,
        dilation,
        pad_begin: pb,
        pad_end: pe,
    }
}

/// Naive pooling from the definition, in padded coordinates.
fn pool_ref(x: &[f64], s: &Pool2dSpec) -> (Vec<f64>, Vec<u32>) {
    let (h, w, oh, ow) = (s.h.input, s.w.input, s.out_h(), s.out_w());
    let mut out = vec![];
    let mut arg = vec![];
    for p in 0..s.batch * s.channels {
        let xp = &x[p * h * w..(p + 1) * h * w];
        for i in 0..oh {
            for j in 0..ow {
                let mut best = f64::NEG_INFINITY;
                let mut at = None;
                let (mut sum, mut real, mut clipped_h, mut clipped_w) = (0.0, 0, 0, 0);
                for ki in 0..s.h.kernel {
                    let ph = i * s.h.stride + ki * s.h.dilation; // padded coordinate
                    if ph < h + s.h.pad_begin + s.h.pad_end {
                        clipped_h += 1;
                    }
                }
                for kj in 0..s.w.kernel {
                    let pw = j * s.w.stride + kj * s.w.dilation;
                    if pw < w + s.w.pad_begin + s.w.pad_end {
                        clipped_w += 1;
                    }
                }
                for ki in 0..s.h.kernel {
                    for kj in 0..s.w.kernel {
                        let ph =
                            (i * s.h.stride + ki * s.h.dilation) as isize - s.h.pad_begin as isize;
                        let pw =
                            (j * s.w.stride + kj * s.w.dilation) as isize - s.w.pad_begin as isize;
                        if ph < 0 || pw < 0 || ph >= h as isize || pw >= w as isize {
                            continue;
                        }
                        let off = ph as usize * w + pw as usize;
                        let v = xp[off];
                        if at.is_none() {
                            at = Some(off);
                        }
                        if v > best || v.is_nan() {
                            best = v;
                            at = Some(off);
                        }
                        sum += v;
                        real += 1;
                    }
                }
                match s.kind {
                    PoolKind::Max => out.push(best),
                    PoolKind::Avg { count_include_pad } => {
                        let d = if count_include_pad {
                            clipped_h * clipped_w
                        } else {
                            real
                        };
                        out.push(sum / d as f64)
                    }
                    _ => unreachable!(),
                }
                arg.push(at.unwrap() as u32);
            }
        }
    }
    (out, arg)
}

fn specs() -> Vec<Pool2dSpec> {
    let mut v = vec![];
    let axes = [
        axis(7, 2, 2, 1, 0, 0),
        axis(7, 3, 2, 1, 1, 1),
        axis(6, 3, 1, 1, 1, 1),
        axis(5, 2, 2, 1, 0, 0),
        axis(8, 3, 3, 1, 1, 1),
        axis(9, 2, 2, 2, 1, 1),
        axis(4, 4, 1, 1, 2, 2),
        axis(1, 1, 1, 1, 0, 0),
        axis(8, 2, 2, 1, 0, 0),
    ];
    for (i, &h) in axes.iter().enumerate() {
        let w = axes[(i * 4 + 3) % axes.len()];
        for kind in PoolKind::ALL {
            for ceil_mode in [false, true] {
                let mut s = Pool2dSpec {
                    batch: 2,
                    channels: 3,
                    kind,
                    ceil_mode,
                    h,
                    w,
                };
                if !matches!(kind, PoolKind::Max) {
                    s.h.dilation = 1;
                    s.w.dilation = 1;
                }
                if s.validate().is_ok() {
                    v.push(s);
                }
            }
        }
    }
    // The 2×2/2 fast path, square and not.
    for (h, w) in [(8, 8), (7, 9), (26, 26), (2, 34)] {
        v.push(Pool2dSpec {
            batch: 2,
            channels: 2,
            kind: PoolKind::Max,
            ceil_mode: false,
            h: axis(h, 2, 2, 1, 0, 0),
            w: axis(w, 2, 2, 1, 0, 0),
        });
    }
    v
}

fn to32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn pooling_matches_the_reference_on_every_isa() {
    for isa_ in isa::supported() {
        for (k, s) in specs().iter().enumerate() {
            let n_in = s.batch * s.channels * s.h.input * s.w.input;
            let n_out = s.batch * s.channels * s.out_h() * s.out_w();
            let x = distinct(n_in, k as u64);
            let (want, want_arg) = pool_ref(&x, s);
            let mut out = vec![0.0f64; n_out];
            let mut out32 = vec![0.0f32; n_out];
            let mut arg = vec![0u32; n_out];
            let mut arg32 = vec![0u32; n_out];
            isa::with(isa_, || match s.kind {
                PoolKind::Max => {
                    max_pool2d(&x, s, &mut out, Some(&mut arg)).unwrap();
                    max_pool2d(&to32(&x), s, &mut out32, Some(&mut arg32)).unwrap();
                }
                _ => {
                    avg_pool2d(&x, s, &mut out).unwrap();
                    avg_pool2d(&to32(&x), s, &mut out32).unwrap();
                }
            })
            .unwrap();
            for (i, (&a, &b)) in out.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-12, "{isa_} {s:?} out {i}: {a} vs {b}");
                assert!(
                    (out32[i] as f64 - b).abs() < 1e-6 * (1.0 + b.abs()),
                    "{isa_} f32 {s:?} out {i}"
                );
            }
            if matches!(s.kind, PoolKind::Max) {
                assert_eq!(arg, want_arg, "{isa_} {s:?}");
                assert_eq!(arg32, want_arg, "{isa_} f32 {s:?}");
            }
        }
    }
}

#[test]
fn pooling_backward_is_the_adjoint() {
    for (k, s) in specs().iter().enumerate() {
        let n_in = s.batch * s.channels * s.h.input * s.w.input;
        let n_out = s.batch * s.channels * s.out_h() * s.out_w();
        let x = distinct(n_in, 100 + k as u64);
        let g = rnd(n_out, 200 + k as u64);
        let mut y = vec![0.0; n_out];
        let mut dx = vec![f64::NAN; n_in];
        match s.kind {
            PoolKind::Max => {
                let mut arg = vec![0u32; n_out];
                max_pool2d(&x, s, &mut y, Some(&mut arg)).unwrap();
                max_pool2d_backward(&g, &arg, s, &mut dx).unwrap();
            }
            _ => {
                avg_pool2d(&x, s, &mut y).unwrap();
                avg_pool2d_backward(&g, s, &mut dx).unwrap();
            }
        }
        // Max pool is linear in x where no window's argmax changes (distinct values).
        let (l, r) = (dot(&y, &g), dot(&x, &dx));
        assert!((l - r).abs() < 1e-9 * (1.0 + l.abs()), "{s:?}: {l} vs {r}");
    }
}

#[test]
fn max_pool_ties_pick_the_first_and_nan_wins() {
    let s = Pool2dSpec {
        batch: 1,
        channels: 1,
        kind: PoolKind::Max,
        ceil_mode: false,
        h: axis(2, 2, 2, 1, 0, 0),
        w: axis(4, 2, 2, 1, 0, 0),
    };
    // Window 0: all equal → offset 0. Window 1: NaN at (1, 2) → NaN, offset 6.
    let x = [1.0f32, 1.0, 5.0, 2.0, 1.0, 1.0, f32::NAN, 3.0];
    for isa_ in isa::supported() {
        let (mut out, mut arg) = ([0.0f32; 2], [9u32; 2]);
        isa::with(isa_, || {
            max_pool2d(&x, &s, &mut out, Some(&mut arg)).unwrap()
        })
        .unwrap();
        assert_eq!(out[0], 1.0);
        assert!(out[1].is_nan());
        assert_eq!(arg, [0, 6], "{isa_}");
        // The general path agrees (a padded spec cannot take the 2×2 path).
        let mut gen_spec = s;
        gen_spec.w = axis(4, 2, 2, 1, 1, 1);
        let (mut o2, mut a2) = ([0.0f32; 3], [9u32; 3]);
        max_pool2d(&x, &gen_spec, &mut o2, Some(&mut a2)).unwrap();
        // Windows over columns [-1, 0], [1, 2], [3, 4]: the NaN wins the middle one.
        assert_eq!(a2, [0, 6, 7]);
    }
}

#[test]
fn adaptive_matches_the_reference_and_its_adjoint() {
    for &((h, w), (oh, ow)) in &[
        ((5, 7), (3, 2)),
        ((6, 6), (1, 1)),
        ((2, 3), (4, 5)),
        ((7, 7), (7, 7)),
    ] {
        let planes = 3;
        let x = rnd(planes * h * w, 7);
        let mut out = vec![0.0; planes * oh * ow];
        adaptive_avg_pool2d(&x, planes, (h, w), (oh, ow), &mut out).unwrap();
        for p in 0..planes {
            for i in 0..oh {
                for j in 0..ow {
                    // PyTorch's bins, as floats: floor(i·h/oh) .. ceil((i+1)·h/oh).
                    let (h0, h1) = (
                        (i as f64 * h as f64 / oh as f64).floor() as usize,
                        ((i + 1) as f64 * h as f64 / oh as f64).ceil() as usize,
                    );
                    let (w0, w1) = (
                        (j as f64 * w as f64 / ow as f64).floor() as usize,
                        ((j + 1) as f64 * w as f64 / ow as f64).ceil() as usize,
                    );
                    let mut s = 0.0;
                    for a in h0..h1 {
                        for b in w0..w1 {
                            s += x[p * h * w + a * w + b];
                        }
                    }
                    let want = s / ((h1 - h0) * (w1 - w0)) as f64;
                    let got = out[p * oh * ow + i * ow + j];
                    assert!((got - want).abs() < 1e-12, "{h}x{w}->{oh}x{ow}");
                }
            }
        }
        let g = rnd(out.len(), 8);
        let mut dx = vec![f64::NAN; x.len()];
        adaptive_avg_pool2d_backward(&g, planes, (h, w), (oh, ow), &mut dx).unwrap();
        assert!((dot(&out, &g) - dot(&x, &dx)).abs() < 1e-10);
    }
}

#[test]
fn upsample_and_pad_match_the_reference_and_their_adjoints() {
    let planes = 2;
    for &(h, w, sh, sw) in &[(3, 4, 2, 2), (2, 5, 3, 1), (1, 1, 4, 3)] {
        let x = rnd(planes * h * w, 11);
        let (oh, ow) = (h * sh, w * sw);
        let mut out = vec![0.0; planes * oh * ow];
        upsample_nearest2d(&x, planes, (h, w), (sh, sw), &mut out).unwrap();
        for p in 0..planes {
            for i in 0..oh {
                for j in 0..ow {
                    assert_eq!(
                        out[p * oh * ow + i * ow + j],
                        x[p * h * w + (i / sh) * w + j / sw]
                    );
                }
            }
        }
        let g = rnd(out.len(), 12);
        let mut dx = vec![f64::NAN; x.len()];
        upsample_nearest2d_backward(&g, planes, (h, w), (sh, sw), &mut dx).unwrap();
        assert!((dot(&out, &g) - dot(&x, &dx)).abs() < 1e-10);
    }
    for &(h, w) in &[(3, 4), (5, 5), (1, 6)] {
        for mode in [
            PadMode::Constant(0.0),
            PadMode::Constant(-1.5),
            PadMode::Reflect,
        ] {
            let pads = if h == 1 {
                Pad2d::new(3, 2, 0, 0)
            } else {
                Pad2d::new(2, 1, 1, 2)
            };
            let x = rnd(planes * h * w, 13);
            let (oh, ow) = (h + pads.top + pads.bottom, w + pads.left + pads.right);
            let mut out = vec![0.0; planes * oh * ow];
            pad2d(&x, planes, (h, w), pads, mode, &mut out).unwrap();
            for p in 0..planes {
                for i in 0..oh {
                    for j in 0..ow {
                        let (si, sj) = (
                            i as isize - pads.top as isize,
                            j as isize - pads.left as isize,
                        );
                        let want = match mode {
                            PadMode::Constant(v) => {
                                if si < 0 || sj < 0 || si >= h as isize || sj >= w as isize {
                                    v
                                } else {
                                    x[p * h * w + si as usize * w + sj as usize]
                                }
                            }
                            _ => {
                                let m = |i: isize, n: isize| {
                                    let i = i.abs();
                                    if i >= n { 2 * n - 2 - i } else { i }
                                };
                                x[p * h * w
                                    + m(si, h as isize) as usize * w
                                    + m(sj, w as isize) as usize]
                            }
                        };
                        assert_eq!(out[p * oh * ow + i * ow + j], want, "{mode:?}");
                    }
                }
            }
            // The backward is the adjoint of the linear part (the constant contributes none).
            let g = rnd(out.len(), 14);
            let mut dx = vec![f64::NAN; x.len()];
            pad2d_backward(&g, planes, (h, w), pads, mode, &mut dx).unwrap();
            let mut lin = vec![0.0; out.len()];
            let lin_mode = match mode {
                PadMode::Constant(_) => PadMode::Constant(0.0),
                m => m,
            };
            pad2d(&x, planes, (h, w), pads, lin_mode, &mut lin).unwrap();
            assert!((dot(&lin, &g) - dot(&x, &dx)).abs() < 1e-10, "{mode:?}");
        }
    }
}

/// Batch norm's loss Σ w·y in f64, for finite differences.
fn bn_loss(x: &[f64], dims: (usize, usize, usize), gm: &[f64], bt: &[f64], w: &[f64]) -> f64 {
    let c = dims.1;
    let mut y = vec![0.0; x.len()];
    let (mut m, mut v) = (vec![0.0; c], vec![0.0; c]);
    batch_norm_forward(x, dims, Some(gm), Some(bt), 1e-5, &mut y, &mut m, &mut v).unwrap();
    dot(&y, w)
}

#[test]
fn batch_norm_matches_the_reference_and_finite_differences() {
    let (n, c, l) = (3, 2, 5);
    let x = rnd(n * c * l, 21);
    let gm = vec![1.5, -0.7];
    let bt = vec![0.25, 2.0];
    let mut y = vec![0.0; x.len()];
    let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
    batch_norm_forward(
        &x,
        (n, c, l),
        Some(&gm),
        Some(&bt),
        1e-5,
        &mut y,
        &mut mean,
        &mut var,
    )
    .unwrap();
    for ch in 0..c {
        let vals: Vec<f64> = (0..n)
            .flat_map(|i| x[(i * c + ch) * l..][..l].to_vec())
            .collect();
        let mu = vals.iter().sum::<f64>() / vals.len() as f64;
        let va = vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / vals.len() as f64;
        assert!((mean[ch] - mu).abs() < 1e-14 && (var[ch] - va).abs() < 1e-14);
        for i in 0..n {
            for k in 0..l {
                let at = (i * c + ch) * l + k;
                let want = (x[at] - mu) / (va + 1e-5).sqrt() * gm[ch] + bt[ch];
                assert!((y[at] - want).abs() < 1e-12);
            }
        }
    }
    let w = rnd(x.len(), 22);
    let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    batch_norm_backward(
        &x,
        &w,
        (n, c, l),
        &mean,
        &var,
        Some(&gm),
        1e-5,
        Some(&mut dx),
        &mut dg,
        &mut db,
    )
    .unwrap();
    let e = 1e-6;
    let num = |f: &dyn Fn(f64) -> f64| (f(e) - f(-e)) / (2.0 * e);
    for i in 0..x.len() {
        let d = num(&|h| {
            let mut xx = x.clone();
            xx[i] += h;
            bn_loss(&xx, (n, c, l), &gm, &bt, &w)
        });
        assert!((d - dx[i]).abs() < 1e-6, "dx[{i}] {} vs {d}", dx[i]);
    }
    for ch in 0..c {
        let d = num(&|h| {
            let mut g2 = gm.clone();
            g2[ch] += h;
            bn_loss(&x, (n, c, l), &g2, &bt, &w)
        });
        assert!((d - dg[ch]).abs() < 1e-6);
        let d = num(&|h| {
            let mut b2 = bt.clone();
            b2[ch] += h;
            bn_loss(&x, (n, c, l), &gm, &b2, &w)
        });
        assert!((d - db[ch]).abs() < 1e-6);
    }
}

/// Runs `f` in a rayon pool of `threads` threads.
fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn results_are_bit_identical_for_any_thread_count() {
    // Large enough to run in parallel: 8·16 planes of 33×35.
    let (n, c, h, w) = (8, 16, 33, 35);
    let x = to32(&rnd(n * c * h * w, 31));
    let run = || {
        let mut bits: Vec<u32> = vec![];
        let mut push = |v: &[f32]| bits.extend(v.iter().map(|f| f.to_bits()));
        for kind in PoolKind::ALL {
            let s = Pool2dSpec {
                batch: n,
                channels: c,
                kind,
                ceil_mode: true,
                h: axis(h, 3, 2, 1, 1, 1),
                w: axis(w, 3, 2, 1, 1, 1),
            };
            let mut out = vec![0.0f32; n * c * s.out_h() * s.out_w()];
            let mut dx = vec![0.0f32; x.len()];
            if let PoolKind::Max = kind {
                let mut arg = vec![0u32; out.len()];
                max_pool2d(&x, &s, &mut out, Some(&mut arg)).unwrap();
                max_pool2d_backward(&out, &arg, &s, &mut dx).unwrap();
            } else {
                avg_pool2d(&x, &s, &mut out).unwrap();
                avg_pool2d_backward(&out, &s, &mut dx).unwrap();
            }
            push(&out);
            push(&dx);
        }
        let mut y = vec![0.0f32; x.len()];
        let (mut m, mut v) = (vec![0.0f32; c], vec![0.0f32; c]);
        batch_norm_forward(&x, (n, c, h * w), None, None, 1e-5, &mut y, &mut m, &mut v).unwrap();
        let (mut dx, mut dg, mut db) = (vec![0.0f32; x.len()], vec![0.0f32; c], vec![0.0f32; c]);
        batch_norm_backward(
            &x,
            &y,
            (n, c, h * w),
            &m,
            &v,
            None,
            1e-5,
            Some(&mut dx),
            &mut dg,
            &mut db,
        )
        .unwrap();
        for part in [&y[..], &m, &v, &dx, &dg, &db] {
            push(part);
        }
        let mut up = vec![0.0f32; x.len() * 4];
        upsample_nearest2d(&x, n * c, (h, w), (2, 2), &mut up).unwrap();
        let mut back = vec![0.0f32; x.len()];
        upsample_nearest2d_backward(&up, n * c, (h, w), (2, 2), &mut back).unwrap();
        push(&back);
        let mut ad = vec![0.0f32; n * c * 5 * 3];
        adaptive_avg_pool2d(&x, n * c, (h, w), (5, 3), &mut ad).unwrap();
        push(&ad);
        bits
    };
    let one = in_pool(1, run);
    let three = in_pool(3, run);
    assert!(one == three, "results differ between 1 and 3 threads");
}

#[test]
fn bad_operands_are_errors_naming_the_op() {
    let s = Pool2dSpec {
        batch: 1,
        channels: 1,
        kind: PoolKind::Max,
        ceil_mode: false,
        h: axis(4, 2, 2, 1, 0, 0),
        w: axis(4, 2, 2, 1, 0, 0),
    };
    let x = [0.0f32; 16];
    let mut out = [0.0f32; 4];
    let e = max_pool2d(&x[..15], &s, &mut out, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_pool2d") && e.contains("input"), "{e}");
    let e = avg_pool2d(&x, &s, &mut out).unwrap_err().to_string();
    assert!(e.contains("avg_pool2d") && e.contains("Max"), "{e}");
    let mut bad = s;
    bad.w.pad_begin = 2;
    bad.w.pad_end = 2;
    let e = max_pool2d(&x, &bad, &mut out, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most half"), "{e}");
    let mut dx = [0.0f32; 16];
    let e = max_pool2d_backward(&out, &[0, 1, 2, 99], &s, &mut dx)
        .unwrap_err()
        .to_string();
    assert!(e.contains("index 99"), "{e}");
    let e = upsample_nearest2d(&x, 1, (4, 4), (0, 2), &mut [0.0; 0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("scale factors"), "{e}");
    let e = pad2d(
        &x,
        1,
        (4, 4),
        Pad2d::uniform(4),
        PadMode::Reflect,
        &mut [0.0; 144],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("reflect padding"), "{e}");
    let e = adaptive_avg_pool2d(&x, 1, (4, 4), (0, 1), &mut [])
        .unwrap_err()
        .to_string();
    assert!(e.contains("non-empty"), "{e}");
    let (mut m, mut v) = ([0.0f32; 1], [0.0f32; 1]);
    let e = batch_norm_forward(
        &x[..1],
        (1, 1, 1),
        None,
        None,
        1e-5,
        &mut [0.0],
        &mut m,
        &mut v,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("more than one value per channel"), "{e}");
    // Empty batches are no error for pooling: nothing to do.
    let mut empty = s;
    empty.batch = 0;
    max_pool2d::<f32>(&[], &empty, &mut [], Some(&mut [])).unwrap();
}

#[test]
fn the_2x2_simd_rows_keep_the_tie_and_nan_rules() {
    // Few distinct values (ties everywhere), NaNs and −∞, over rows long enough for full
    // AVX-512 (16) and AVX2 (8) blocks plus a tail: width 70 → 35 outputs per row.
    let s = Pool2dSpec {
        batch: 1,
        channels: 3,
        kind: PoolKind::Max,
        ceil_mode: false,
        h: axis(6, 2, 2, 1, 0, 0),
        w: axis(70, 2, 2, 1, 0, 0),
    };
    let n = 3 * 6 * 70;
    let mut r = StdRng::seed_from_u64(41);
    let pick = [-1.0, 0.0, 1.0, 2.0, f64::NAN, f64::NEG_INFINITY];
    let x: Vec<f64> = (0..n)
        .map(|_| pick[r.random_range(0..pick.len())])
        .collect();
    let (want, want_arg) = pool_ref(&x, &s);
    for isa_ in isa::supported() {
        let (mut out, mut arg) = (vec![0.0f32; want.len()], vec![0u32; want.len()]);
        let mut out_only = vec![0.0f32; want.len()];
        isa::with(isa_, || {
            max_pool2d(&to32(&x), &s, &mut out, Some(&mut arg)).unwrap();
            max_pool2d(&to32(&x), &s, &mut out_only, None).unwrap();
        })
        .unwrap();
        assert_eq!(arg, want_arg, "{isa_}");
        for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
            assert!(
                (g.is_nan() && w.is_nan()) || g as f64 == w,
                "{isa_} output {i}: {g} vs {w}"
            );
            assert_eq!(g.to_bits(), out_only[i].to_bits(), "{isa_} without argmax");
        }
    }
}
