//! conv1d, conv2d and conv_transpose2d: forward against direct f64 definitions written here,
//! gradient checks in f64 for input, weight and bias over several specs, strided inputs, empty
//! batches, bit-identity across thread counts, and the errors.

use ember_core::gradcheck::gradcheck;
use ember_core::{
    Conv1dOptions, Conv2dOptions, ConvTranspose2dOptions, DType, Device, Padding, Result, Tensor,
};

/// A small deterministic generator (xorshift) for test values in [-1, 1).
struct Rng(u64);
impl Rng {
    fn vals(&mut self, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }
    fn tensor(&mut self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::from_vec(self.vals(n), shape, Device::Cpu).unwrap()
    }
}

fn idx4(s: &[usize], i: [usize; 4]) -> usize {
    ((i[0] * s[1] + i[1]) * s[2] + i[2]) * s[3] + i[3]
}

/// Direct conv2d from the definition (PyTorch's docs): y[n, o, oh, ow] = b[o] +
/// Σ_{c, i, j} w[o, c, i, j] · x[n, g·C/G + c, oh·s − p + i·d, ow·s − p + j·d].
fn naive_conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: (usize, usize),
    pad: ((usize, usize), (usize, usize)),
    dil: (usize, usize),
    groups: usize,
) -> (Vec<usize>, Vec<f64>) {
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    let (xv, wv) = (x.to_vec::<f64>().unwrap(), w.to_vec::<f64>().unwrap());
    let bv = b.map(|b| b.to_vec::<f64>().unwrap());
    let out = |inp: usize, k: usize, s: usize, d: usize, p: (usize, usize)| {
        (inp + p.0 + p.1 - d * (k - 1) - 1) / s + 1
    };
    let oh = out(xs[2], ws[2], stride.0, dil.0, pad.0);
    let ow = out(xs[3], ws[3], stride.1, dil.1, pad.1);
    let ys = vec![xs[0], ws[0], oh, ow];
    let mut y = vec![0.0; ys.iter().product()];
    let (cg, og) = (xs[1] / groups, ws[0] / groups);
    for n in 0..xs[0] {
        for o in 0..ws[0] {
            for r in 0..oh {
                for q in 0..ow {
                    let mut acc = bv.as_ref().map_or(0.0, |b| b[o]);
                    for c in 0..cg {
                        for i in 0..ws[2] {
                            for j in 0..ws[3] {
                                let ih = (r * stride.0 + i * dil.0) as isize - pad.0.0 as isize;
                                let iw = (q * stride.1 + j * dil.1) as isize - pad.1.0 as isize;
                                if ih < 0 || iw < 0 || ih >= xs[2] as isize || iw >= xs[3] as isize
                                {
                                    continue;
                                }
                                let ci = (o / og) * cg + c;
                                acc += wv[idx4(&ws, [o, c, i, j])]
                                    * xv[idx4(&xs, [n, ci, ih as usize, iw as usize])];
                            }
                        }
                    }
                    y[idx4(&ys, [n, o, r, q])] = acc;
                }
            }
        }
    }
    (ys, y)
}

/// Direct transposed conv: every input element spreads `x · w` over the output window it
/// maps to (PyTorch's ConvTranspose2d definition), then the bias.
fn naive_conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    o: &ConvTranspose2dOptions,
) -> (Vec<usize>, Vec<f64>) {
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    let (xv, wv) = (x.to_vec::<f64>().unwrap(), w.to_vec::<f64>().unwrap());
    let g = o.groups;
    let cout = ws[1] * g;
    let oh = (xs[2] - 1) * o.stride.0 - 2 * o.padding.0
        + o.dilation.0 * (ws[2] - 1)
        + o.output_padding.0
        + 1;
    let ow = (xs[3] - 1) * o.stride.1 - 2 * o.padding.1
        + o.dilation.1 * (ws[3] - 1)
        + o.output_padding.1
        + 1;
    let ys = vec![xs[0], cout, oh, ow];
    let mut y = vec![0.0; ys.iter().product()];
    let cin_g = xs[1] / g;
    for n in 0..xs[0] {
        for ci in 0..xs[1] {
            let grp = ci / cin_g;
            for ih in 0..xs[2] {
                for iw in 0..xs[3] {
                    let xval = xv[idx4(&xs, [n, ci, ih, iw])];
                    for co in 0..ws[1] {
                        for i in 0..ws[2] {
                            for j in 0..ws[3] {
                                let r = (ih * o.stride.0 + i * o.dilation.0) as isize
                                    - o.padding.0 as isize;
                                let q = (iw * o.stride.1 + j * o.dilation.1) as isize
                                    - o.padding.1 as isize;
                                if r < 0 || q < 0 || r >= oh as isize || q >= ow as isize {
                                    continue;
                                }
                                let yo = idx4(&ys, [n, grp * ws[1] + co, r as usize, q as usize]);
                                y[yo] += xval * wv[idx4(&ws, [ci, co, i, j])];
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(b) = b {
        let bv = b.to_vec::<f64>().unwrap();
        let plane = oh * ow;
        for (i, v) in y.iter_mut().enumerate() {
            *v += bv[(i / plane) % cout];
        }
    }
    (ys, y)
}

fn assert_close(what: &str, got: &Tensor, shape: &[usize], want: &[f64], tol: f64) {
    assert_eq!(got.shape(), shape, "{what}: shape");
    let g = got.to_dtype(DType::F64).unwrap().to_vec::<f64>().unwrap();
    for (i, (a, b)) in g.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

/// The conv2d specs the tests run: (name, x shape, w shape, options).
fn conv2d_cases() -> Vec<(&'static str, [usize; 4], [usize; 4], Conv2dOptions)> {
    let d = Conv2dOptions::default();
    vec![
        ("plain", [2, 3, 6, 5], [4, 3, 3, 3], d),
        (
            "stride 2, padding 1",
            [2, 2, 7, 6],
            [3, 2, 3, 3],
            Conv2dOptions {
                stride: (2, 2),
                padding: Padding::symmetric(1, 1),
                ..d
            },
        ),
        (
            "same, even window",
            [1, 2, 5, 6],
            [2, 2, 4, 2],
            Conv2dOptions {
                padding: Padding::Same,
                ..d
            },
        ),
        (
            "dilation 2, asymmetric padding",
            [1, 2, 7, 7],
            [2, 2, 3, 2],
            Conv2dOptions {
                dilation: (2, 2),
                padding: Padding::Explicit {
                    h: (2, 0),
                    w: (0, 1),
                },
                ..d
            },
        ),
        (
            "groups 2",
            [2, 4, 5, 5],
            [6, 2, 3, 3],
            Conv2dOptions {
                groups: 2,
                padding: Padding::symmetric(1, 0),
                ..d
            },
        ),
        (
            "depthwise, stride 2",
            [1, 3, 6, 7],
            [3, 1, 3, 3],
            Conv2dOptions {
                groups: 3,
                stride: (2, 1),
                padding: Padding::symmetric(1, 1),
                ..d
            },
        ),
    ]
}

fn pad_of(o: &Conv2dOptions, ws: &[usize]) -> ((usize, usize), (usize, usize)) {
    match o.padding {
        Padding::Explicit { h, w } => (h, w),
        Padding::Same => {
            let s = |k: usize, d: usize| {
                let t = d * (k - 1);
                (t / 2, t - t / 2)
            };
            (s(ws[2], o.dilation.0), s(ws[3], o.dilation.1))
        }
    }
}

#[test]
fn conv2d_forward_matches_the_definition_in_f64_and_f32() {
    let mut r = Rng(0x5eed);
    for (name, xs, ws, o) in conv2d_cases() {
        let (x, w, b) = (r.tensor(&xs), r.tensor(&ws), r.tensor(&[ws[0]]));
        let (ys, want) = naive_conv2d(
            &x,
            &w,
            Some(&b),
            o.stride,
            pad_of(&o, &ws),
            o.dilation,
            o.groups,
        );
        assert_close(
            name,
            &x.conv2d(&w, Some(&b), &o).unwrap(),
            &ys,
            &want,
            1e-12,
        );
        let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let y32 = f(&x).conv2d(&f(&w), Some(&f(&b)), &o).unwrap();
        assert_eq!(y32.dtype(), DType::F32);
        assert_close(name, &y32, &ys, &want, 1e-5);
    }
}

#[test]
fn conv2d_gradients_check_for_input_weight_and_bias() {
    let mut r = Rng(0xc0ffee);
    for (name, xs, ws, o) in conv2d_cases() {
        let inputs = [r.tensor(&xs), r.tensor(&ws), r.tensor(&[ws[0]])];
        let f = |t: &[Tensor]| t[0].conv2d(&t[1], Some(&t[2]), &o);
        let rep = gradcheck(f, &inputs, 1e-6, 1e-7).unwrap();
        assert!(rep.passed, "{name}: {rep}");
    }
}

#[test]
fn conv1d_matches_conv2d_over_height_one_and_gradchecks() {
    let mut r = Rng(7);
    let (x, w, b) = (r.tensor(&[2, 4, 11]), r.tensor(&[6, 2, 3]), r.tensor(&[6]));
    let cases = [
        Conv1dOptions {
            groups: 2,
            ..Default::default()
        },
        Conv1dOptions {
            stride: 2,
            padding: (2, 1),
            dilation: 2,
            groups: 2,
            ..Default::default()
        },
        Conv1dOptions {
            same: true,
            groups: 2,
            ..Default::default()
        },
    ];
    for o in cases {
        let y = x.conv1d(&w, Some(&b), &o).unwrap();
        let pad = if o.same {
            (o.dilation, o.dilation)
        } else {
            o.padding
        };
        let (ys, want) = naive_conv2d(
            &x.unsqueeze(2).unwrap(),
            &w.unsqueeze(2).unwrap(),
            Some(&b),
            (1, o.stride),
            ((0, 0), pad),
            (1, o.dilation),
            o.groups,
        );
        assert_close("conv1d", &y, &[ys[0], ys[1], ys[3]], &want, 1e-12);
        let rep = gradcheck(
            |t| t[0].conv1d(&t[1], Some(&t[2]), &o),
            &[x.clone(), w.clone(), b.clone()],
            1e-6,
            1e-7,
        )
        .unwrap();
        assert!(rep.passed, "conv1d {o:?}: {rep}");
    }
}

fn transpose_cases() -> Vec<([usize; 4], [usize; 4], ConvTranspose2dOptions)> {
    let d = ConvTranspose2dOptions::default();
    vec![
        ([2, 3, 4, 3], [3, 2, 3, 3], d),
        (
            [1, 2, 3, 4],
            [2, 3, 3, 2],
            ConvTranspose2dOptions {
                stride: (2, 3),
                padding: (1, 0),
                output_padding: (1, 2),
                ..d
            },
        ),
        (
            [2, 4, 3, 3],
            [4, 1, 2, 3],
            ConvTranspose2dOptions {
                stride: (2, 2),
                dilation: (2, 1),
                groups: 2,
                padding: (1, 1),
                output_padding: (0, 1),
            },
        ),
        // The DCGAN generator's upsampling step: kernel 4, stride 2, padding 1 doubles H, W.
        (
            [1, 3, 4, 4],
            [3, 2, 4, 4],
            ConvTranspose2dOptions {
                stride: (2, 2),
                padding: (1, 1),
                ..d
            },
        ),
    ]
}

#[test]
fn conv_transpose2d_matches_the_definition_and_gradchecks() {
    let mut r = Rng(99);
    for (xs, ws, o) in transpose_cases() {
        let cout = ws[1] * o.groups;
        let (x, w, b) = (r.tensor(&xs), r.tensor(&ws), r.tensor(&[cout]));
        let y = x.conv_transpose2d(&w, Some(&b), &o).unwrap();
        let (ys, want) = naive_conv_transpose2d(&x, &w, Some(&b), &o);
        assert_close(&format!("{o:?}"), &y, &ys, &want, 1e-12);
        let rep = gradcheck(
            |t| t[0].conv_transpose2d(&t[1], Some(&t[2]), &o),
            &[x, w, b],
            1e-6,
            1e-7,
        )
        .unwrap();
        assert!(rep.passed, "{o:?}: {rep}");
    }
    // The DCGAN step doubles the extent.
    let x = r.tensor(&[1, 3, 7, 7]);
    let w = r.tensor(&[3, 2, 4, 4]);
    let o = ConvTranspose2dOptions {
        stride: (2, 2),
        padding: (1, 1),
        ..Default::default()
    };
    assert_eq!(
        x.conv_transpose2d(&w, None, &o).unwrap().shape(),
        [1, 2, 14, 14]
    );
}

#[test]
fn strided_views_give_the_dense_result() {
    let mut r = Rng(3);
    // x built as [N, H, W, C] and permuted to NCHW; w as a transposed view.
    let xh = r.tensor(&[2, 5, 6, 3]);
    let x = xh.permute(&[0, 3, 1, 2]).unwrap();
    let wt = r.tensor(&[3, 4, 3, 2]);
    let w = wt.permute(&[1, 0, 2, 3]).unwrap();
    assert!(!x.is_contiguous() && !w.is_contiguous());
    let o = Conv2dOptions {
        padding: Padding::symmetric(1, 1),
        ..Default::default()
    };
    let y = x.conv2d(&w, None, &o).unwrap();
    let yd = x
        .contiguous()
        .unwrap()
        .conv2d(&w.contiguous().unwrap(), None, &o)
        .unwrap();
    assert_eq!(y.to_vec::<f64>().unwrap(), yd.to_vec::<f64>().unwrap());
    let rep = gradcheck(
        |t| {
            t[0].permute(&[0, 3, 1, 2])?
                .conv2d(&t[1].permute(&[1, 0, 2, 3])?, None, &o)
        },
        &[xh, wt],
        1e-6,
        1e-7,
    )
    .unwrap();
    assert!(rep.passed, "{rep}");
}

#[test]
fn empty_batch_gives_an_empty_output_and_zero_weight_gradient() {
    let x = Tensor::zeros([0, 2, 5, 5], DType::F32, Device::Cpu).unwrap();
    let w = Tensor::ones([3, 2, 3, 3], DType::F32, Device::Cpu)
        .unwrap()
        .as_variable();
    let b = Tensor::ones(3, DType::F32, Device::Cpu)
        .unwrap()
        .as_variable();
    let y = x.conv2d(&w, Some(&b), &Conv2dOptions::default()).unwrap();
    assert_eq!(y.shape(), [0, 3, 3, 3]);
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(
        g.get(&w)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == 0.0)
    );
    assert!(
        g.get(&b)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|&v| v == 0.0)
    );
    let t = Tensor::zeros([0, 3, 3, 3], DType::F32, Device::Cpu).unwrap();
    let yt = t
        .conv_transpose2d(&w, None, &ConvTranspose2dOptions::default())
        .unwrap();
    assert_eq!(yt.shape(), [0, 2, 5, 5]);
}

/// Forward and every gradient are bit-identical on 1 and 3 threads (f32, a shape large
/// enough that the batch, the weight partials and the GEMMs all split).
#[test]
fn bit_identical_for_any_thread_count() {
    let mut r = Rng(11);
    let f = |t: Tensor| t.to_dtype(DType::F32).unwrap();
    let x = f(r.tensor(&[6, 8, 20, 20])).as_variable();
    let w = f(r.tensor(&[16, 4, 3, 3])).as_variable();
    let b = f(r.tensor(&[16])).as_variable();
    let wt = f(r.tensor(&[16, 4, 4, 4])).as_variable();
    let run = |threads: usize| -> Vec<Vec<u32>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let o = Conv2dOptions {
                groups: 2,
                padding: Padding::symmetric(1, 1),
                ..Default::default()
            };
            let y = x.conv2d(&w, Some(&b), &o).unwrap();
            let ot = ConvTranspose2dOptions {
                stride: (2, 2),
                padding: (1, 1),
                groups: 2,
                ..Default::default()
            };
            let z = y.relu().unwrap().conv_transpose2d(&wt, None, &ot).unwrap();
            let loss = z.sqr().unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            let bits = |t: &Tensor| {
                t.to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<u32>>()
            };
            vec![
                bits(&z),
                bits(g.get(&x).unwrap()),
                bits(g.get(&w).unwrap()),
                bits(g.get(&b).unwrap()),
                bits(g.get(&wt).unwrap()),
            ]
        })
    };
    assert_eq!(run(1), run(3));
}

#[test]
fn errors_name_the_op_and_the_shapes() {
    let mut r = Rng(5);
    let x = r.tensor(&[1, 4, 5, 5]);
    let d = Conv2dOptions::default();
    let msg = |e: Result<Tensor>| e.unwrap_err().to_string();
    let e = msg(x.conv2d(&r.tensor(&[2, 4, 3]), None, &d));
    assert!(
        e.starts_with("conv2d: input [1, 4, 5, 5] and weight [2, 4, 3]: both need rank 4"),
        "{e}"
    );
    let e = msg(x.conv2d(&r.tensor(&[2, 3, 3, 3]), None, &d));
    assert!(
        e.contains("conv2d") && e.contains("4 channels") && e.contains("[2, 3, 3, 3]"),
        "{e}"
    );
    let e = msg(x.conv2d(
        &r.tensor(&[3, 2, 3, 3]),
        None,
        &Conv2dOptions { groups: 2, ..d },
    ));
    assert!(e.contains("divisible by groups 2"), "{e}");
    let e = msg(x.conv2d(&r.tensor(&[2, 4, 6, 3]), None, &d));
    assert!(
        e.contains("height: input 5") && e.contains("window span 6"),
        "{e}"
    );
    let e = msg(x.conv2d(&r.tensor(&[2, 4, 3, 3]), Some(&r.tensor(&[3])), &d));
    assert!(e.contains("bias [3] must have shape [2]"), "{e}");
    let e = msg(x.conv2d(
        &r.tensor(&[2, 4, 3, 3]),
        None,
        &Conv2dOptions {
            stride: (2, 2),
            padding: Padding::Same,
            ..d
        },
    ));
    assert!(e.contains("\"same\" needs stride 1"), "{e}");
    let e = msg(x.conv2d(
        &r.tensor(&[2, 4, 3, 3]),
        None,
        &Conv2dOptions {
            stride: (0, 1),
            ..d
        },
    ));
    assert!(e.contains("height: stride must be ≥ 1"), "{e}");
    let e = msg(x.conv2d(
        &r.tensor(&[2, 4, 3, 3]).to_dtype(DType::F32).unwrap(),
        None,
        &d,
    ));
    assert!(e.contains("conv2d: dtypes differ"), "{e}");
    let e = msg(x.conv_transpose2d(
        &r.tensor(&[4, 2, 3, 3]),
        None,
        &ConvTranspose2dOptions {
            output_padding: (1, 0),
            ..Default::default()
        },
    ));
    assert!(
        e.contains("conv_transpose2d: height: output_padding 1 must be smaller than the stride 1"),
        "{e}"
    );
    let e = msg(x.conv_transpose2d(
        &r.tensor(&[3, 2, 3, 3]),
        None,
        &ConvTranspose2dOptions::default(),
    ));
    assert!(
        e.contains("conv_transpose2d") && e.contains("first extent 3"),
        "{e}"
    );
    let e =
        msg(r
            .tensor(&[1, 2, 5])
            .conv1d(&r.tensor(&[1, 2, 7]), None, &Conv1dOptions::default()));
    assert!(
        e.starts_with("conv1d:") && e.contains("width: input 5"),
        "{e}"
    );
}

/// Half-precision tensors compute in f32 and return their own dtype (the CPU backend's rule
/// for every op).
#[test]
fn half_precision_inputs_compute_in_f32() {
    let mut r = Rng(21);
    let (x, w) = (r.tensor(&[2, 3, 6, 6]), r.tensor(&[4, 3, 3, 3]));
    let o = Conv2dOptions {
        padding: Padding::symmetric(1, 1),
        ..Default::default()
    };
    for dt in [DType::F16, DType::BF16] {
        let (xh, wh) = (x.to_dtype(dt).unwrap(), w.to_dtype(dt).unwrap());
        let y = xh.conv2d(&wh, None, &o).unwrap();
        assert_eq!(y.dtype(), dt);
        // The same rounded inputs in f32, then rounded to dt: identical values.
        let f = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let want = f(&xh)
            .conv2d(&f(&wh), None, &o)
            .unwrap()
            .to_dtype(dt)
            .unwrap();
        assert_eq!(
            f(&y).to_vec::<f32>().unwrap(),
            f(&want).to_vec::<f32>().unwrap(),
            "{dt}"
        );
    }
}
