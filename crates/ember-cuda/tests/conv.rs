//! Tests of the convolution kernels (kernels/conv.cu, ember_cuda::conv):
//! - with NVRTC only: the module compiles for sm_80 and sm_90a with no register spill and every
//!   entry point the launch code loads;
//! - on a GPU: forward, backward-data and backward-weight (with the bias gradient) of every
//!   algorithm (implicit GEMM, direct, auto) in f32 and f64, against a naive f64 reference
//!   written here, over specs with stride 2, asymmetric padding, dilation, groups, depthwise
//!   (with and without a channel multiplier), 1×1 kernels, a window larger than the input, and
//!   sizes that are not multiples of the 64×64×16 tiles (several M and N tiles, split-K in the
//!   backward-weight); backward-weight repeated to check bit-identical results; conv_transpose2d
//!   (forward with bias, both gradients) against the same reference with the roles exchanged;
//!   an empty batch; and bad lengths as errors naming the op.
//!
//! Outputs are filled with NaN before each launch, so an element a kernel forgets to write
//! shows up. Tolerances: |got − want| ≤ rel · Σ|terms| + tiny, with rel = 3e-5 (f32) and 1e-12
//! (f64), where Σ|terms| is the sum of the absolute products the element adds (an indexing
//! error is off by O(1) of that scale). Without a GPU each GPU test prints one `SKIPPED:` line
//! (or fails under EMBER_REQUIRE_GPU=1).

mod common;

use std::sync::Arc;

use common::*;
use ember_cuda::compile::compile_module;
use ember_cuda::conv::{
    ConvAlgo, conv_transpose2d_backward_data, conv_transpose2d_backward_weight,
    conv_transpose2d_forward, conv2d_backward_data_with, conv2d_backward_weight_with,
    conv2d_forward_with,
};
use ember_cuda::{CudaDevice, DeviceBuffer, FloatElem};
use ember_ops::{Axis, Conv2dSpec};

// ---- NVRTC ------------------------------------------------------------------------------------

#[test]
fn conv_module_compiles_for_sm80_and_sm90a_without_spills() {
    if !nvrtc_or_skip("conv::compile") {
        return;
    }
    let entries = [
        "conv_igemm_fwd",
        "conv_igemm_bwd_data",
        "conv_igemm_bwd_weight",
        "conv_direct_fwd",
        "conv_direct_bwd_data",
        "conv_direct_bwd_weight",
        "conv_bias_grad",
        "conv_splitk_reduce",
    ];
    for arch in ["sm_80", "sm_90a"] {
        let m = compile_module("conv", arch).unwrap_or_else(|e| panic!("conv for {arch}: {e}"));
        let res = m.resources();
        for r in &res {
            println!(
                "{arch} {:<28} {:>3} regs {:>6} B smem {:>3} B stack",
                r.kernel, r.registers, r.smem_bytes, r.stack_bytes
            );
            assert_eq!(
                (r.spill_stores, r.spill_loads),
                (0, 0),
                "{arch} {}: register spills",
                r.kernel
            );
        }
        for e in entries {
            for t in ["f32", "f64"] {
                let name = format!("{e}_{t}");
                assert!(
                    res.iter().any(|r| r.kernel == name),
                    "{arch}: entry point {name} missing"
                );
            }
        }
    }
}

// ---- Reference --------------------------------------------------------------------------------

fn axis(input: usize, kernel: usize, stride: usize, dilation: usize, pad: (usize, usize)) -> Axis {
    Axis {
        input,
        kernel,
        stride,
        dilation,
        pad_begin: pad.0,
        pad_end: pad.1,
    }
}

#[allow(clippy::too_many_arguments)]
fn spec(
    n: usize,
    c: usize,
    o: usize,
    groups: usize,
    hw: (usize, usize),
    k: (usize, usize),
    stride: (usize, usize),
    dil: (usize, usize),
    pad_h: (usize, usize),
    pad_w: (usize, usize),
) -> Conv2dSpec {
    Conv2dSpec {
        batch: n,
        in_channels: c,
        out_channels: o,
        groups,
        h: axis(hw.0, k.0, stride.0, dil.0, pad_h),
        w: axis(hw.1, k.1, stride.1, dil.1, pad_w),
    }
}

/// The specs every GPU test walks (name, spec).
fn specs() -> Vec<(&'static str, Conv2dSpec)> {
    vec![
        (
            "3x3 valid",
            spec(2, 3, 5, 1, (7, 9), (3, 3), (1, 1), (1, 1), (0, 0), (0, 0)),
        ),
        (
            "3x3 stride 2 pad 1",
            spec(3, 4, 6, 1, (11, 10), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
        ),
        (
            "4x2 dilation 2, asymmetric padding",
            spec(2, 5, 7, 1, (9, 8), (4, 2), (1, 2), (2, 2), (1, 2), (2, 0)),
        ),
        (
            "groups 2",
            spec(2, 6, 4, 2, (8, 8), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
        ),
        (
            "depthwise",
            spec(2, 8, 8, 8, (10, 10), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
        ),
        (
            "depthwise x2 stride 2",
            spec(2, 4, 8, 4, (9, 11), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
        ),
        (
            "1x1 stride 2",
            spec(3, 17, 33, 1, (9, 9), (1, 1), (2, 2), (1, 1), (0, 0), (0, 0)),
        ),
        (
            "window larger than the input",
            spec(1, 2, 3, 1, (2, 3), (3, 4), (1, 1), (1, 1), (2, 2), (1, 2)),
        ),
        (
            "several tiles, split-K",
            spec(
                4,
                70,
                67,
                1,
                (13, 15),
                (3, 3),
                (1, 1),
                (1, 1),
                (1, 1),
                (1, 1),
            ),
        ),
        (
            "long reduction, many splits",
            spec(
                8,
                16,
                16,
                1,
                (32, 32),
                (3, 3),
                (1, 1),
                (1, 1),
                (1, 1),
                (1, 1),
            ),
        ),
        (
            "groups 3, stride (2,1), dilation (1,3)",
            spec(
                2,
                9,
                12,
                3,
                (12, 13),
                (3, 2),
                (2, 1),
                (1, 3),
                (1, 0),
                (1, 1),
            ),
        ),
    ]
}

/// Every (output, weight, input, tap) of the convolution, in a fixed order: calls
/// `f(y_index, w_index, x_index)` for each tap that lies inside the input.
fn for_each_tap(s: &Conv2dSpec, mut f: impl FnMut(usize, usize, usize)) {
    let [n, c, h, w] = s.input_shape();
    let [o, cg, kh, kw] = s.weight_shape();
    let (oh, ow) = (s.out_h(), s.out_w());
    let og = o / s.groups;
    for b in 0..n {
        for oc in 0..o {
            let grp = oc / og;
            for y in 0..oh {
                for x in 0..ow {
                    let yi = ((b * o + oc) * oh + y) * ow + x;
                    for ci in 0..cg {
                        for ky in 0..kh {
                            let iy = (y * s.h.stride + ky * s.h.dilation) as isize
                                - s.h.pad_begin as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (x * s.w.stride + kx * s.w.dilation) as isize
                                    - s.w.pad_begin as isize;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                let wi = ((oc * cg + ci) * kh + ky) * kw + kx;
                                let xi =
                                    ((b * c + grp * cg + ci) * h + iy as usize) * w + ix as usize;
                                f(yi, wi, xi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Reference results and the scale (Σ|terms|) of each element.
struct Reference {
    y: Vec<f64>,
    y_scale: Vec<f64>,
    dx: Vec<f64>,
    dx_scale: Vec<f64>,
    dw: Vec<f64>,
    dw_scale: Vec<f64>,
    db: Vec<f64>,
    db_scale: Vec<f64>,
}

fn reference(s: &Conv2dSpec, x: &[f64], w: &[f64], b: &[f64], dy: &[f64]) -> Reference {
    let (nx, nw, ny) = (x.len(), w.len(), dy.len());
    let o = s.out_channels;
    let per_o = ny / o.max(1) / s.batch.max(1);
    let mut r = Reference {
        y: vec![0.0; ny],
        y_scale: vec![0.0; ny],
        dx: vec![0.0; nx],
        dx_scale: vec![0.0; nx],
        dw: vec![0.0; nw],
        dw_scale: vec![0.0; nw],
        db: vec![0.0; o],
        db_scale: vec![0.0; o],
    };
    for (i, v) in r.y.iter_mut().enumerate() {
        let oc = (i / per_o) % o;
        *v = b[oc];
        r.y_scale[i] = b[oc].abs();
    }
    for (i, &g) in dy.iter().enumerate() {
        let oc = (i / per_o) % o;
        r.db[oc] += g;
        r.db_scale[oc] += g.abs();
    }
    for_each_tap(s, |yi, wi, xi| {
        r.y[yi] += w[wi] * x[xi];
        r.y_scale[yi] += (w[wi] * x[xi]).abs();
        r.dx[xi] += w[wi] * dy[yi];
        r.dx_scale[xi] += (w[wi] * dy[yi]).abs();
        r.dw[wi] += dy[yi] * x[xi];
        r.dw_scale[wi] += (dy[yi] * x[xi]).abs();
    });
    r
}

// ---- GPU --------------------------------------------------------------------------------------

trait El: FloatElem + Into<f64> {
    const REL: f64;
}
impl El for f32 {
    const REL: f64 = 3e-5;
}
impl El for f64 {
    const REL: f64 = 1e-12;
}

fn up<T: El>(dev: &Arc<CudaDevice>, v: &[f64]) -> DeviceBuffer<T> {
    let host: Vec<T> = v.iter().map(|&x| T::from_f64(x)).collect();
    dev.upload(&host).expect("upload")
}

/// A buffer of `n` NaNs (so unwritten elements show).
fn nans<T: El>(dev: &Arc<CudaDevice>, n: usize) -> DeviceBuffer<T> {
    up(dev, &vec![f64::NAN; n])
}

fn down<T: El>(b: &DeviceBuffer<T>) -> Vec<f64> {
    b.to_host()
        .expect("download")
        .into_iter()
        .map(Into::into)
        .collect()
}

/// The inputs rounded to T, so the f64 reference sees exactly what the kernel sees.
fn rounded<T: El>(v: Vec<f64>) -> Vec<f64> {
    v.into_iter().map(|x| T::from_f64(x).into()).collect()
}

fn check_spec<T: El>(
    dev: &Arc<CudaDevice>,
    name: &str,
    s: &Conv2dSpec,
    r: &mut rand::rngs::StdRng,
) {
    let nx: usize = s.input_shape().iter().product();
    let nw: usize = s.weight_shape().iter().product();
    let ny: usize = s.output_shape().iter().product();
    let x = rounded::<T>(uniform(r, nx, -1.0, 1.0));
    let w = rounded::<T>(uniform(r, nw, -1.0, 1.0));
    let b = rounded::<T>(uniform(r, s.out_channels, -1.0, 1.0));
    let dy = rounded::<T>(uniform(r, ny, -1.0, 1.0));
    let want = reference(s, &x, &w, &b, &dy);
    let (dx_, dw_, db_, dyd) = (
        up::<T>(dev, &x),
        up::<T>(dev, &w),
        up::<T>(dev, &b),
        up::<T>(dev, &dy),
    );
    let t = std::any::type_name::<T>();
    let tiny = 1e-30;
    for algo in ConvAlgo::ALL {
        let what = format!("{name} [{t}, {algo:?}]");
        let mut y = nans::<T>(dev, ny);
        conv2d_forward_with(
            algo,
            s,
            dx_.view(),
            dw_.view(),
            Some(db_.view()),
            y.view_mut(),
        )
        .unwrap_or_else(|e| panic!("{what}: forward: {e}"));
        assert_close(
            &format!("{what} y"),
            &down(&y),
            &want.y,
            &want.y_scale,
            T::REL,
            tiny,
        );

        let mut dx = nans::<T>(dev, nx);
        conv2d_backward_data_with(algo, s, dyd.view(), dw_.view(), dx.view_mut())
            .unwrap_or_else(|e| panic!("{what}: backward-data: {e}"));
        assert_close(
            &format!("{what} dx"),
            &down(&dx),
            &want.dx,
            &want.dx_scale,
            T::REL,
            tiny,
        );

        let mut dw = nans::<T>(dev, nw);
        let mut db = nans::<T>(dev, s.out_channels);
        conv2d_backward_weight_with(
            algo,
            s,
            dx_.view(),
            dyd.view(),
            dw.view_mut(),
            Some(db.view_mut()),
        )
        .unwrap_or_else(|e| panic!("{what}: backward-weight: {e}"));
        let got_dw = down(&dw);
        assert_close(
            &format!("{what} dw"),
            &got_dw,
            &want.dw,
            &want.dw_scale,
            T::REL,
            tiny,
        );
        assert_close(
            &format!("{what} db"),
            &down(&db),
            &want.db,
            &want.db_scale,
            T::REL,
            tiny,
        );

        // Deterministic: the same call again gives the same bits (split-K included), and
        // without db the weight gradient is unchanged.
        let mut dw2 = nans::<T>(dev, nw);
        conv2d_backward_weight_with(algo, s, dx_.view(), dyd.view(), dw2.view_mut(), None)
            .unwrap_or_else(|e| panic!("{what}: backward-weight again: {e}"));
        let again = down(&dw2);
        assert!(
            got_dw
                .iter()
                .zip(&again)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{what}: backward-weight differs between two identical calls"
        );
        // Forward without bias.
        let mut y2 = nans::<T>(dev, ny);
        conv2d_forward_with(algo, s, dx_.view(), dw_.view(), None, y2.view_mut())
            .unwrap_or_else(|e| panic!("{what}: forward without bias: {e}"));
        let no_bias: Vec<f64> = want
            .y
            .iter()
            .enumerate()
            .map(|(i, v)| v - b[(i / (ny / s.out_channels / s.batch)) % s.out_channels])
            .collect();
        assert_close(
            &format!("{what} y (no bias)"),
            &down(&y2),
            &no_bias,
            &want.y_scale,
            T::REL * 4.0,
            tiny,
        );
    }
}

/// conv_transpose2d on the same spec, checked against the same reference with the roles
/// exchanged: its input x_t is the convolution's output-shaped `dy`, its output gradient dy_t
/// the input-shaped `x`. Then y_t = want.dx + bias_t, dx_t = conv(x) = want.y − b,
/// dw_t = want.dw, db_t = the per-channel sums of x.
#[allow(clippy::too_many_arguments)]
fn check_transpose<T: El>(
    dev: &Arc<CudaDevice>,
    name: &str,
    s: &Conv2dSpec,
    r: &mut rand::rngs::StdRng,
    x: &[f64],
    w: &[f64],
    b: &[f64],
    dy: &[f64],
) {
    let want = reference(s, x, w, b, dy);
    let (nx, nw, ny) = (x.len(), w.len(), dy.len());
    let c = s.in_channels;
    let plane = nx / c / s.batch;
    let bt = rounded::<T>(uniform(r, c, -1.0, 1.0));
    let y_t: Vec<f64> = (0..nx).map(|i| want.dx[i] + bt[(i / plane) % c]).collect();
    let y_t_scale: Vec<f64> = (0..nx)
        .map(|i| want.dx_scale[i] + bt[(i / plane) % c].abs())
        .collect();
    let per_o = ny / s.out_channels / s.batch;
    let dx_t: Vec<f64> = (0..ny)
        .map(|i| want.y[i] - b[(i / per_o) % s.out_channels])
        .collect();
    let (mut db_t, mut db_t_scale) = (vec![0.0; c], vec![0.0; c]);
    for (i, v) in x.iter().enumerate() {
        db_t[(i / plane) % c] += v;
        db_t_scale[(i / plane) % c] += v.abs();
    }
    let (xd, wd, btd, dyd) = (
        up::<T>(dev, dy),
        up::<T>(dev, w),
        up::<T>(dev, &bt),
        up::<T>(dev, x),
    );
    let t = std::any::type_name::<T>();
    let tiny = 1e-30;
    for algo in ConvAlgo::ALL {
        let what = format!("{name} transposed [{t}, {algo:?}]");
        let mut y = nans::<T>(dev, nx);
        conv_transpose2d_forward(
            algo,
            s,
            xd.view(),
            wd.view(),
            Some(btd.view()),
            y.view_mut(),
        )
        .unwrap_or_else(|e| panic!("{what}: forward: {e}"));
        assert_close(
            &format!("{what} y"),
            &down(&y),
            &y_t,
            &y_t_scale,
            T::REL,
            tiny,
        );
        let mut dx = nans::<T>(dev, ny);
        conv_transpose2d_backward_data(algo, s, dyd.view(), wd.view(), dx.view_mut())
            .unwrap_or_else(|e| panic!("{what}: backward-data: {e}"));
        assert_close(
            &format!("{what} dx"),
            &down(&dx),
            &dx_t,
            &want.y_scale,
            T::REL * 4.0,
            tiny,
        );
        let mut dw = nans::<T>(dev, nw);
        let mut db = nans::<T>(dev, c);
        conv_transpose2d_backward_weight(
            algo,
            s,
            xd.view(),
            dyd.view(),
            dw.view_mut(),
            Some(db.view_mut()),
        )
        .unwrap_or_else(|e| panic!("{what}: backward-weight: {e}"));
        assert_close(
            &format!("{what} dw"),
            &down(&dw),
            &want.dw,
            &want.dw_scale,
            T::REL,
            tiny,
        );
        assert_close(
            &format!("{what} db"),
            &down(&db),
            &db_t,
            &db_t_scale,
            T::REL,
            tiny,
        );
    }
}

#[test]
fn conv_transpose_matches_the_adjoint_reference() {
    let Some(dev) = gpu_or_skip("conv::transpose") else {
        return;
    };
    let mut r = rng("conv::transpose");
    for (name, s) in specs() {
        let nx: usize = s.input_shape().iter().product();
        let nw: usize = s.weight_shape().iter().product();
        let ny: usize = s.output_shape().iter().product();
        let x = rounded::<f32>(uniform(&mut r, nx, -1.0, 1.0));
        let w = rounded::<f32>(uniform(&mut r, nw, -1.0, 1.0));
        let b = rounded::<f32>(uniform(&mut r, s.out_channels, -1.0, 1.0));
        let dy = rounded::<f32>(uniform(&mut r, ny, -1.0, 1.0));
        check_transpose::<f32>(&dev, name, &s, &mut r, &x, &w, &b, &dy);
        check_transpose::<f64>(&dev, name, &s, &mut r, &x, &w, &b, &dy);
    }
}

#[test]
fn conv_matches_the_f64_reference() {
    let Some(dev) = gpu_or_skip("conv::reference") else {
        return;
    };
    let mut r = rng("conv::reference");
    for (name, s) in specs() {
        s.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        check_spec::<f32>(&dev, name, &s, &mut r);
        check_spec::<f64>(&dev, name, &s, &mut r);
    }
}

#[test]
fn empty_batch_gives_zero_weight_gradients() {
    let Some(dev) = gpu_or_skip("conv::empty_batch") else {
        return;
    };
    let s = spec(0, 4, 6, 2, (5, 5), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1));
    let w = up::<f32>(&dev, &vec![1.0; 6 * 2 * 9]);
    let x = up::<f32>(&dev, &[]);
    let dy = up::<f32>(&dev, &[]);
    for algo in ConvAlgo::ALL {
        let mut y = up::<f32>(&dev, &[]);
        conv2d_forward_with(algo, &s, x.view(), w.view(), None, y.view_mut()).expect("forward");
        let mut dx = up::<f32>(&dev, &[]);
        conv2d_backward_data_with(algo, &s, dy.view(), w.view(), dx.view_mut()).expect("bwd data");
        let mut dw = nans::<f32>(&dev, 6 * 2 * 9);
        let mut db = nans::<f32>(&dev, 6);
        conv2d_backward_weight_with(
            algo,
            &s,
            x.view(),
            dy.view(),
            dw.view_mut(),
            Some(db.view_mut()),
        )
        .expect("bwd weight");
        assert!(
            down(&dw).iter().all(|&v| v == 0.0),
            "{algo:?}: dw of an empty batch"
        );
        assert!(
            down(&db).iter().all(|&v| v == 0.0),
            "{algo:?}: db of an empty batch"
        );
    }
}

#[test]
fn bad_lengths_and_specs_are_errors_naming_the_op() {
    let Some(dev) = gpu_or_skip("conv::errors") else {
        return;
    };
    let s = spec(2, 3, 4, 1, (6, 6), (3, 3), (1, 1), (1, 1), (0, 0), (0, 0));
    let x = nans::<f32>(&dev, 2 * 3 * 36);
    let w = nans::<f32>(&dev, 4 * 3 * 9);
    let short = nans::<f32>(&dev, 5);
    let mut y = nans::<f32>(&dev, 2 * 4 * 16);
    let e = conv2d_forward_with(
        ConvAlgo::Auto,
        &s,
        x.view(),
        short.view(),
        None,
        y.view_mut(),
    )
    .expect_err("short weight");
    let msg = e.to_string();
    assert!(
        msg.contains("conv2d_forward") && msg.contains("weight") && msg.contains("[4, 3, 3, 3]"),
        "{msg}"
    );
    let mut bad = s;
    bad.groups = 2;
    let e = conv2d_forward_with(ConvAlgo::Auto, &bad, x.view(), w.view(), None, y.view_mut())
        .expect_err("groups do not divide channels");
    assert!(e.to_string().contains("divisible"), "{e}");
    let mut dw = nans::<f32>(&dev, 4 * 3 * 9);
    let mut db = nans::<f32>(&dev, 3);
    let e = conv2d_backward_weight_with(
        ConvAlgo::Auto,
        &s,
        x.view(),
        y.view(),
        dw.view_mut(),
        Some(db.view_mut()),
    )
    .expect_err("db of 3 for 4 channels");
    assert!(
        e.to_string().contains("conv2d_backward_weight") && e.to_string().contains("db"),
        "{e}"
    );
    let mut dx = nans::<f32>(&dev, 7);
    let e = conv2d_backward_data_with(ConvAlgo::Auto, &s, y.view(), w.view(), dx.view_mut())
        .expect_err("short dx");
    assert!(
        e.to_string().contains("conv2d_backward_data") && e.to_string().contains("dx"),
        "{e}"
    );
}

// ---- SASS -------------------------------------------------------------------------------------

/// cuobjdump from EMBER_CUOBJDUMP or PATH (scripts/cuda-wheels.sh provides both).
fn cuobjdump() -> Option<String> {
    if let Ok(p) = std::env::var("EMBER_CUOBJDUMP")
        && std::path::Path::new(&p).exists()
    {
        return Some(p);
    }
    std::process::Command::new("cuobjdump")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "cuobjdump".to_string())
}

/// The implicit-GEMM kernels' inner loop is fully unrolled register-tile arithmetic: per
/// 16-deep K tile each thread issues 16 × 4 × 4 = 256 fused multiply-adds (FFMA in f32, DFMA
/// in f64) out of shared memory.
#[test]
fn implicit_gemm_inner_loop_is_unrolled_fma() {
    if !nvrtc_or_skip("conv::sass") {
        return;
    }
    let Some(tool) = cuobjdump() else {
        if std::env::var("EMBER_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
            panic!("EMBER_REQUIRE_NVRTC=1 but cuobjdump not found (source scripts/cuda-wheels.sh)");
        }
        skipped("conv::sass: cuobjdump not found (source scripts/cuda-wheels.sh)");
        return;
    };
    for arch in ["sm_80", "sm_90a"] {
        let m = compile_module("conv", arch).unwrap_or_else(|e| panic!("conv for {arch}: {e}"));
        let dir = std::env::temp_dir().join(format!("ember-conv-sass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(format!("conv.{arch}.cubin"));
        std::fs::write(&path, &m.cubin).expect("write cubin");
        let out = std::process::Command::new(&tool)
            .arg("-sass")
            .arg(&path)
            .output()
            .expect("run cuobjdump");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success(), "cuobjdump failed");
        let sass = String::from_utf8_lossy(&out.stdout);
        for (kernel, op) in [
            ("conv_igemm_fwd_f32", "FFMA"),
            ("conv_igemm_bwd_data_f32", "FFMA"),
            ("conv_igemm_bwd_weight_f32", "FFMA"),
            ("conv_igemm_fwd_f64", "DFMA"),
        ] {
            let header = format!("Function : {kernel}\n");
            let start = sass
                .find(&header)
                .unwrap_or_else(|| panic!("{arch}: no {kernel} in the SASS"));
            let rest = &sass[start + header.len()..];
            let body = &rest[..rest.find("Function : ").unwrap_or(rest.len())];
            let n = body
                .split_whitespace()
                .filter(|w| *w == op || w.starts_with(&format!("{op}.")))
                .count();
            println!("{arch} {kernel}: {n} {op}");
            assert!(n >= 256, "{arch} {kernel}: expected >= 256 {op}, found {n}");
        }
    }
}
