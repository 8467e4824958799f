//! The convolution kernels against a direct f64 convolution written from the definition, on
//! random specs covering stride, per-side padding, dilation, groups (depthwise too), tiles that
//! split output rows, and sizes 1 and primes; plus thread-count bit-identity and the errors.

use super::*;
use crate::gemm::tests_rng::Rng;
use ember_ops::Axis;

/// Every (n, o, oh, ow, c-in-group, i, j, ih, iw) term of the convolution sum, in the direct
/// definition's order: the one place the reference states what a convolution is.
fn taps(s: &Conv2dSpec, mut f: impl FnMut([usize; 4], [usize; 4], [usize; 4])) {
    let (cg, og) = (s.in_channels / s.groups, s.out_channels / s.groups);
    for n in 0..s.batch {
        for o in 0..s.out_channels {
            let grp = o / og;
            for oh in 0..s.out_h() {
                for ow in 0..s.out_w() {
                    for c in 0..cg {
                        for i in 0..s.h.kernel {
                            for j in 0..s.w.kernel {
                                let ih = (oh * s.h.stride + i * s.h.dilation) as isize
                                    - s.h.pad_begin as isize;
                                let iw = (ow * s.w.stride + j * s.w.dilation) as isize
                                    - s.w.pad_begin as isize;
                                if ih < 0
                                    || iw < 0
                                    || ih >= s.h.input as isize
                                    || iw >= s.w.input as isize
                                {
                                    continue;
                                }
                                f(
                                    [n, o, oh, ow],
                                    [n, grp * cg + c, ih as usize, iw as usize],
                                    [o, c, i, j],
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

fn idx(shape: [usize; 4], i: [usize; 4]) -> usize {
    ((i[0] * shape[1] + i[1]) * shape[2] + i[2]) * shape[3] + i[3]
}

/// Direct f64 forward, dx and dw.
fn reference(s: &Conv2dSpec, x: &[f64], w: &[f64], dy: &[f64]) -> [Vec<f64>; 3] {
    let (xs, ws, ys) = (s.input_shape(), s.weight_shape(), s.output_shape());
    let mut y = vec![0.0; ys.iter().product()];
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    taps(s, |yi, xi, wi| {
        let (a, b, c) = (idx(ys, yi), idx(xs, xi), idx(ws, wi));
        y[a] += w[c] * x[b];
        dx[b] += w[c] * dy[a];
        dw[c] += dy[a] * x[b];
    });
    [y, dx, dw]
}

fn random_spec(rng: &mut Rng) -> Conv2dSpec {
    loop {
        let groups = [1, 1, 2, 3][rng.below(4)];
        let cg = 1 + rng.below(3);
        let og = 1 + rng.below(4);
        let axis = |rng: &mut Rng| Axis {
            input: 1 + rng.below(11),
            kernel: 1 + rng.below(4),
            stride: 1 + rng.below(3),
            dilation: 1 + rng.below(2),
            pad_begin: rng.below(3),
            pad_end: rng.below(3),
        };
        let s = Conv2dSpec {
            batch: rng.below(4),
            in_channels: cg * groups,
            out_channels: og * groups,
            groups,
            h: axis(rng),
            w: axis(rng),
        };
        if s.validate().is_ok() {
            return s;
        }
    }
}

fn vals(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.uniform()).collect()
}

/// Runs the three kernels in T and returns (y, dx, dw, db) widened to f64.
fn kernels<T: Float>(s: &Conv2dSpec, x: &[f64], w: &[f64], b: &[f64], dy: &[f64]) -> [Vec<f64>; 4] {
    let t = |v: &[f64]| v.iter().map(|&a| T::from_f64(a)).collect::<Vec<T>>();
    let (x, w, b, dy) = (t(x), t(w), t(b), t(dy));
    let mut y = vec![T::from_f64(f64::NAN); s.output_shape().iter().product()];
    conv2d_forward(s, &x, &w, Some(&b), &mut y).unwrap();
    let mut dx = vec![T::from_f64(f64::NAN); x.len()];
    conv2d_backward_data(s, &dy, &w, None, &mut dx).unwrap();
    let mut dw = vec![T::from_f64(f64::NAN); w.len()];
    let mut db = vec![T::from_f64(f64::NAN); b.len()];
    conv2d_backward_weight(s, &x, &dy, &mut dw, Some(&mut db)).unwrap();
    let f = |v: Vec<T>| v.into_iter().map(|a| a.to_f64()).collect::<Vec<f64>>();
    [f(y), f(dx), f(dw), f(db)]
}

fn close(what: &str, s: &Conv2dSpec, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what} length, {s:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}] = {g}, want {w}; {s:?}"
        );
    }
}

fn check_spec(s: &Conv2dSpec, rng: &mut Rng) {
    let x = vals(rng, s.input_shape().iter().product());
    let w = vals(rng, s.weight_shape().iter().product());
    let b = vals(rng, s.out_channels);
    let dy = vals(rng, s.output_shape().iter().product());
    let [mut y, dx, dw] = reference(s, &x, &w, &dy);
    let p = s.out_h() * s.out_w();
    for (i, v) in y.iter_mut().enumerate() {
        *v += b[(i / p) % s.out_channels];
    }
    let mut db = vec![0.0; s.out_channels];
    for (i, v) in dy.iter().enumerate() {
        db[(i / p) % s.out_channels] += v;
    }
    let got = kernels::<f64>(s, &x, &w, &b, &dy);
    for (name, g, want) in [
        ("y", &got[0], &y),
        ("dx", &got[1], &dx),
        ("dw", &got[2], &dw),
    ] {
        close(&format!("f64 {name}"), s, g, want, 1e-12);
    }
    close("f64 db", s, &got[3], &db, 1e-12);
    let got = kernels::<f32>(s, &x, &w, &b, &dy);
    for (name, g, want) in [
        ("y", &got[0], &y),
        ("dx", &got[1], &dx),
        ("dw", &got[2], &dw),
    ] {
        close(&format!("f32 {name}"), s, g, want, 1e-4);
    }
}

#[test]
fn random_specs_match_the_direct_definition() {
    let mut rng = Rng::new(14);
    for _ in 0..300 {
        let s = random_spec(&mut rng);
        check_spec(&s, &mut rng);
    }
}

#[test]
fn depthwise_and_same_padding_and_large_tiles() {
    let mut rng = Rng::new(15);
    let pad = Axis::same_padding(4, 1);
    let specs = [
        // Depthwise 3×3, stride 2 (MobileNet's).
        Conv2dSpec {
            batch: 2,
            in_channels: 5,
            out_channels: 5,
            groups: 5,
            h: Axis {
                stride: 2,
                pad_begin: 1,
                pad_end: 1,
                ..Axis::new(9, 3)
            },
            w: Axis {
                stride: 2,
                pad_begin: 1,
                pad_end: 1,
                ..Axis::new(8, 3)
            },
        },
        // "same" with an even window: the extra pad at the end.
        Conv2dSpec {
            batch: 1,
            in_channels: 2,
            out_channels: 3,
            groups: 1,
            h: Axis {
                pad_begin: pad.0,
                pad_end: pad.1,
                ..Axis::new(7, 4)
            },
            w: Axis {
                pad_begin: pad.0,
                pad_end: pad.1,
                ..Axis::new(6, 4)
            },
        },
        // Enough taps × pixels that the output is cut into several tiles splitting rows.
        Conv2dSpec {
            batch: 2,
            in_channels: 40,
            out_channels: 7,
            groups: 1,
            h: Axis {
                pad_begin: 1,
                pad_end: 1,
                ..Axis::new(37, 3)
            },
            w: Axis {
                pad_begin: 1,
                pad_end: 1,
                ..Axis::new(29, 3)
            },
        },
    ];
    assert!(tile_cols(40 * 9, 37 * 29, 8) < 37 * 29);
    for s in &specs {
        check_spec(s, &mut rng);
    }
}

#[test]
fn tile_sizes() {
    assert_eq!(tile_cols(9, 676, 4), 676);
    let t = tile_cols(576, 3136, 4);
    assert!(
        t.is_multiple_of(32) && t * 576 * 4 <= COL_TILE_BYTES && t >= 32,
        "{t}"
    );
    assert_eq!(tile_cols(1 << 20, 1000, 4), 32);
    assert_eq!(tile_cols(1 << 20, 5, 4), 5);
}

/// Every kernel gives the same bits on 1 and 3 threads (batch split, weight partials, GEMM
/// splits inside).
#[test]
fn bit_identical_for_any_thread_count() {
    let s = Conv2dSpec {
        batch: 7,
        in_channels: 16,
        out_channels: 24,
        groups: 2,
        h: Axis {
            pad_begin: 1,
            pad_end: 1,
            ..Axis::new(30, 3)
        },
        w: Axis {
            pad_begin: 1,
            pad_end: 1,
            stride: 2,
            ..Axis::new(31, 3)
        },
    };
    let mut rng = Rng::new(16);
    let x = vals(&mut rng, s.input_shape().iter().product());
    let w = vals(&mut rng, s.weight_shape().iter().product());
    let b = vals(&mut rng, s.out_channels);
    let dy = vals(&mut rng, s.output_shape().iter().product());
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (
                kernels::<f32>(&s, &x, &w, &b, &dy),
                kernels::<f64>(&s, &x, &w, &b, &dy),
            )
        })
    };
    let (one, three) = (run(1), run(3));
    for i in 0..4 {
        let bits32 = |v: &[f64]| v.iter().map(|a| (*a as f32).to_bits()).collect::<Vec<_>>();
        let bits64 = |v: &[f64]| v.iter().map(|a| a.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits32(&one.0[i]), bits32(&three.0[i]), "f32 output {i}");
        assert_eq!(bits64(&one.1[i]), bits64(&three.1[i]), "f64 output {i}");
    }
}

#[test]
fn transposed_bias_is_added_per_input_channel() {
    let s = Conv2dSpec {
        batch: 1,
        in_channels: 2,
        out_channels: 1,
        groups: 1,
        h: Axis::new(3, 2),
        w: Axis::new(3, 2),
    };
    let dy = vec![0.0f32; 4];
    let w = vec![1.0f32; 8];
    let mut dx = vec![f32::NAN; 18];
    conv2d_backward_data(&s, &dy, &w, Some(&[1.5, -2.0]), &mut dx).unwrap();
    assert!(dx[..9].iter().all(|&v| v == 1.5) && dx[9..].iter().all(|&v| v == -2.0));
}

#[test]
fn errors_name_the_operand_and_write_nothing() {
    let s = Conv2dSpec {
        batch: 2,
        in_channels: 3,
        out_channels: 4,
        groups: 1,
        h: Axis::new(5, 3),
        w: Axis::new(5, 3),
    };
    let x = vec![0.0f32; 2 * 3 * 25];
    let w = vec![0.0f32; 4 * 3 * 9];
    let mut y = vec![7.0f32; 2 * 4 * 9];
    let e = conv2d_forward(&s, &x[1..], &w, None, &mut y).unwrap_err();
    assert!(
        e.to_string()
            .contains("conv2d: the input of shape [2, 3, 5, 5]"),
        "{e}"
    );
    let e = conv2d_forward(&s, &x, &w, Some(&[1.0; 3]), &mut y).unwrap_err();
    assert!(e.to_string().contains("bias"), "{e}");
    let e = conv2d_backward_weight(&s, &x, &y, &mut [0.0; 5], None).unwrap_err();
    assert!(e.to_string().contains("weight gradient"), "{e}");
    let mut bad = s;
    bad.groups = 2;
    let e = conv2d_forward(&bad, &x, &w, None, &mut y).unwrap_err();
    assert!(e.to_string().contains("divisible by groups"), "{e}");
    bad = s;
    bad.h.input = 1;
    let e = conv2d_backward_data(&bad, &y, &w, None, &mut [0.0; 30]).unwrap_err();
    assert!(e.to_string().contains("height: input 1"), "{e}");
    assert!(y.iter().all(|&v| v == 7.0));
    let e = bias_grad(2, 3, 4, &[0.0f32; 23], &mut [0.0; 3]).unwrap_err();
    assert!(e.to_string().contains("conv_bias_grad"), "{e}");
}

#[test]
fn empty_batch_gives_empty_outputs_and_zero_weight_gradient() {
    let s = Conv2dSpec {
        batch: 0,
        in_channels: 2,
        out_channels: 2,
        groups: 1,
        h: Axis::new(4, 3),
        w: Axis::new(4, 3),
    };
    let w = vec![1.0f64; 2 * 2 * 9];
    conv2d_forward(&s, &[], &w, None, &mut []).unwrap();
    conv2d_backward_data(&s, &[], &w, None, &mut []).unwrap();
    let mut dw = vec![f64::NAN; w.len()];
    let mut db = vec![f64::NAN; 2];
    conv2d_backward_weight(&s, &[], &[], &mut dw, Some(&mut db)).unwrap();
    assert!(dw.iter().chain(&db).all(|&v| v == 0.0));
}
