//! Tests of the pooling, upsampling and padding kernels (kernels/pool.cu, ember_cuda::pool):
//! - with NVRTC only: the module compiles for sm_80 and sm_90a with no register spill and every
//!   entry point the launch code loads;
//! - on a GPU, in f32 and f64, against naive f64 references written here from PyTorch's
//!   definitions: max pooling (values and argmax indices exactly, on inputs full of ties and
//!   with NaNs; the backward routed through the indices), average pooling (count_include_pad
//!   both ways, ceil_mode, asymmetric padding), adaptive average pooling (down, up, global),
//!   nearest upsampling, constant and reflect padding, forward and backward; empty batches;
//!   bad lengths and specs as errors naming the op.
//!
//! Outputs are filled with NaN before each launch, so an element a kernel forgets shows up.
//! Forward values are compared exactly where the kernel adds the same terms in the same order
//! as the reference (max, upsampling, padding), and within rel · Σ|terms| otherwise (rel 1e-6
//! for f32, 1e-14 for f64). Without a GPU each GPU test prints one `SKIPPED:` line (or fails
//! under EMBER_REQUIRE_GPU=1).

mod common;

use std::sync::Arc;

use common::*;
use ember_cuda::compile::compile_module;
use ember_cuda::pool::{
    IndexBuffer, Pad2d, PadMode, adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
    avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward,
    pad2d_backward, pad2d_forward, upsample_nearest2d_backward, upsample_nearest2d_forward,
};
use ember_cuda::{CudaDevice, DeviceBuffer, FloatElem};
use ember_ops::{Axis, Pool2dSpec, PoolKind};
use rand::Rng;
use rand::rngs::StdRng;

// ---- NVRTC ------------------------------------------------------------------------------------

#[test]
fn pool_module_compiles_for_sm80_and_sm90a_without_spills() {
    if !nvrtc_or_skip("pool::compile") {
        return;
    }
    let entries = [
        "max_pool2d_fwd",
        "max_pool2d_bwd",
        "avg_pool2d_fwd",
        "avg_pool2d_bwd",
        "adaptive_avg_pool2d_fwd",
        "adaptive_avg_pool2d_bwd",
        "upsample_nearest2d_fwd",
        "upsample_nearest2d_bwd",
        "pad2d_fwd",
        "pad2d_bwd",
    ];
    for arch in ["sm_80", "sm_90a"] {
        let m = compile_module("pool", arch).unwrap_or_else(|e| panic!("pool for {arch}: {e}"));
        let res = m.resources();
        for r in &res {
            println!(
                "{arch} {:<28} {:>3} regs {:>3} B stack",
                r.kernel, r.registers, r.stack_bytes
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

// ---- Helpers ----------------------------------------------------------------------------------

trait El: FloatElem + Into<f64> {
    const REL: f64;
}
impl El for f32 {
    const REL: f64 = 1e-6;
}
impl El for f64 {
    const REL: f64 = 1e-14;
}

fn up<T: El>(dev: &Arc<CudaDevice>, v: &[f64]) -> DeviceBuffer<T> {
    let host: Vec<T> = v.iter().map(|&x| T::from_f64(x)).collect();
    dev.upload(&host).expect("upload")
}

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

fn rounded<T: El>(v: Vec<f64>) -> Vec<f64> {
    v.into_iter().map(|x| T::from_f64(x).into()).collect()
}

fn exact(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

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

fn pool(n: usize, c: usize, kind: PoolKind, ceil_mode: bool, h: Axis, w: Axis) -> Pool2dSpec {
    Pool2dSpec {
        batch: n,
        channels: c,
        kind,
        ceil_mode,
        h,
        w,
    }
}

/// The clipped taps of window (oy, ox): (iy, ix) inside the input, row-major window order.
fn taps(s: &Pool2dSpec, oy: usize, ox: usize) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for ky in 0..s.h.kernel {
        let iy = (oy * s.h.stride + ky * s.h.dilation) as isize - s.h.pad_begin as isize;
        if iy < 0 || iy >= s.h.input as isize {
            continue;
        }
        for kx in 0..s.w.kernel {
            let ix = (ox * s.w.stride + kx * s.w.dilation) as isize - s.w.pad_begin as isize;
            if ix < 0 || ix >= s.w.input as isize {
                continue;
            }
            v.push((iy as usize, ix as usize));
        }
    }
    v
}

// ---- Max pooling ------------------------------------------------------------------------------

fn max_specs() -> Vec<Pool2dSpec> {
    let m = PoolKind::Max;
    vec![
        pool(
            2,
            3,
            m,
            false,
            axis(9, 2, 2, 1, (0, 0)),
            axis(8, 2, 2, 1, (0, 0)),
        ),
        pool(
            2,
            2,
            m,
            true,
            axis(10, 3, 2, 1, (1, 1)),
            axis(7, 3, 2, 1, (1, 1)),
        ),
        pool(
            1,
            3,
            m,
            false,
            axis(11, 3, 1, 2, (1, 0)),
            axis(9, 2, 2, 1, (0, 1)),
        ),
        pool(
            3,
            1,
            m,
            true,
            axis(5, 2, 2, 1, (0, 0)),
            axis(26, 2, 2, 1, (0, 0)),
        ),
        pool(
            2,
            2,
            m,
            false,
            axis(13, 3, 3, 1, (1, 1)),
            axis(6, 1, 1, 1, (0, 0)),
        ),
    ]
}

/// PyTorch's rule: scan the window row-major; take a tap that is greater than the best or NaN.
fn max_reference(s: &Pool2dSpec, x: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<u32>, Vec<f64>) {
    let (h, w, oh, ow) = (s.h.input, s.w.input, s.out_h(), s.out_w());
    let planes = s.batch * s.channels;
    let mut y = vec![0.0; planes * oh * ow];
    let mut idx = vec![0u32; y.len()];
    let mut dx = vec![0.0; planes * h * w];
    for p in 0..planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = (p * oh + oy) * ow + ox;
                let mut best = f64::NEG_INFINITY;
                let mut bi: Option<usize> = None;
                for (iy, ix) in taps(s, oy, ox) {
                    let v = x[(p * h + iy) * w + ix];
                    if bi.is_none() || v > best || v.is_nan() {
                        best = v;
                        bi = Some(iy * w + ix);
                    }
                }
                y[o] = best;
                idx[o] = bi.map_or(u32::MAX, |i| i as u32);
                if let Some(i) = bi {
                    dx[p * h * w + i] += dy[o];
                }
            }
        }
    }
    (y, idx, dx)
}

fn check_max<T: El>(dev: &Arc<CudaDevice>, s: &Pool2dSpec, r: &mut StdRng, with_nans: bool) {
    let nx = s.batch * s.channels * s.h.input * s.w.input;
    let ny = s.batch * s.channels * s.out_h() * s.out_w();
    // Few distinct values: ties in most windows.
    let mut x: Vec<f64> = (0..nx).map(|_| r.random_range(-2i32..3) as f64).collect();
    if with_nans {
        for _ in 0..(nx / 10).max(1) {
            let i = r.random_range(0..nx);
            x[i] = f64::NAN;
        }
    }
    let dy = rounded::<T>(uniform(r, ny, -1.0, 1.0));
    let (wy, widx, wdx) = max_reference(s, &x, &dy);
    let what = format!("max_pool2d {s:?} [{}]", std::any::type_name::<T>());
    let xd = up::<T>(dev, &x);
    let mut y = nans::<T>(dev, ny);
    let mut idx = IndexBuffer::upload(dev, &vec![7u32; ny]).expect("indices");
    max_pool2d_forward(s, xd.view(), y.view_mut(), &mut idx)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    exact(&format!("{what} y"), &down(&y), &wy);
    assert_eq!(idx.to_host().expect("indices"), widx, "{what}: indices");
    let dyd = up::<T>(dev, &dy);
    let mut dx = nans::<T>(dev, nx);
    max_pool2d_backward(s, dyd.view(), &idx, dx.view_mut())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let scale: Vec<f64> = vec![4.0; nx]; // at most kh·kw windows of |dy| < 1 reach an input
    assert_close(&format!("{what} dx"), &down(&dx), &wdx, &scale, T::REL, 0.0);
}

#[test]
fn max_pool_matches_pytorch_rules() {
    let Some(dev) = gpu_or_skip("pool::max") else {
        return;
    };
    let mut r = rng("pool::max");
    for s in max_specs() {
        s.validate().unwrap_or_else(|e| panic!("{s:?}: {e}"));
        for nan in [false, true] {
            check_max::<f32>(&dev, &s, &mut r, nan);
            check_max::<f64>(&dev, &s, &mut r, nan);
        }
    }
}

// ---- Average pooling --------------------------------------------------------------------------

fn avg_specs() -> Vec<Pool2dSpec> {
    let mut v = Vec::new();
    for include in [true, false] {
        let a = PoolKind::Avg {
            count_include_pad: include,
        };
        v.push(pool(
            2,
            3,
            a,
            false,
            axis(9, 2, 2, 1, (0, 0)),
            axis(8, 2, 2, 1, (0, 0)),
        ));
        v.push(pool(
            2,
            2,
            a,
            true,
            axis(7, 3, 2, 1, (1, 1)),
            axis(8, 3, 2, 1, (1, 1)),
        ));
        v.push(pool(
            1,
            2,
            a,
            false,
            axis(6, 2, 1, 1, (1, 0)),
            axis(5, 3, 2, 1, (0, 1)),
        ));
        v.push(pool(
            2,
            1,
            a,
            true,
            axis(5, 3, 3, 1, (1, 1)),
            axis(6, 2, 2, 1, (1, 1)),
        ));
    }
    v
}

/// PyTorch's avg_pool2d: the window clipped to [−pad_begin, input + pad_end) gives the
/// count_include_pad divisor; the taps inside the input the other one.
fn avg_divisor(s: &Pool2dSpec, oy: usize, ox: usize) -> f64 {
    let include = matches!(
        s.kind,
        PoolKind::Avg {
            count_include_pad: true
        }
    );
    let span = |a: &Axis, o: usize| {
        let start = (o * a.stride) as isize - a.pad_begin as isize;
        let end = (start + a.kernel as isize).min((a.input + a.pad_end) as isize);
        let inner = end.min(a.input as isize) - start.max(0);
        (end - start, inner)
    };
    let (ph, ih) = span(&s.h, oy);
    let (pw, iw) = span(&s.w, ox);
    (if include { ph * pw } else { ih * iw }) as f64
}

fn check_avg<T: El>(dev: &Arc<CudaDevice>, s: &Pool2dSpec, r: &mut StdRng) {
    let (h, w, oh, ow) = (s.h.input, s.w.input, s.out_h(), s.out_w());
    let planes = s.batch * s.channels;
    let (nx, ny) = (planes * h * w, planes * oh * ow);
    let x = rounded::<T>(uniform(r, nx, -1.0, 1.0));
    let dy = rounded::<T>(uniform(r, ny, -1.0, 1.0));
    let (mut wy, mut ys) = (vec![0.0; ny], vec![0.0; ny]);
    let (mut wdx, mut dxs) = (vec![0.0; nx], vec![0.0; nx]);
    for p in 0..planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = (p * oh + oy) * ow + ox;
                let div = avg_divisor(s, oy, ox);
                for (iy, ix) in taps(s, oy, ox) {
                    let i = (p * h + iy) * w + ix;
                    wy[o] += x[i];
                    ys[o] += x[i].abs();
                    wdx[i] += dy[o] / div;
                    dxs[i] += (dy[o] / div).abs();
                }
                wy[o] /= div;
                ys[o] /= div;
            }
        }
    }
    let what = format!("avg_pool2d {s:?} [{}]", std::any::type_name::<T>());
    let xd = up::<T>(dev, &x);
    let mut y = nans::<T>(dev, ny);
    avg_pool2d_forward(s, xd.view(), y.view_mut()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_close(
        &format!("{what} y"),
        &down(&y),
        &wy,
        &ys,
        T::REL * 4.0,
        1e-300,
    );
    let dyd = up::<T>(dev, &dy);
    let mut dx = nans::<T>(dev, nx);
    avg_pool2d_backward(s, dyd.view(), dx.view_mut()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_close(
        &format!("{what} dx"),
        &down(&dx),
        &wdx,
        &dxs,
        T::REL * 4.0,
        1e-300,
    );
}

#[test]
fn avg_pool_matches_pytorch_rules() {
    let Some(dev) = gpu_or_skip("pool::avg") else {
        return;
    };
    let mut r = rng("pool::avg");
    for s in avg_specs() {
        s.validate().unwrap_or_else(|e| panic!("{s:?}: {e}"));
        check_avg::<f32>(&dev, &s, &mut r);
        check_avg::<f64>(&dev, &s, &mut r);
    }
}

// ---- Adaptive average pooling -----------------------------------------------------------------

fn check_adaptive<T: El>(
    dev: &Arc<CudaDevice>,
    (n, c): (usize, usize),
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    r: &mut StdRng,
) {
    let planes = n * c;
    let (nx, ny) = (planes * h * w, planes * oh * ow);
    let x = rounded::<T>(uniform(r, nx, -1.0, 1.0));
    let dy = rounded::<T>(uniform(r, ny, -1.0, 1.0));
    let bins = |i: usize, inp: usize, out: usize| (i * inp / out, ((i + 1) * inp).div_ceil(out));
    let (mut wy, mut ys) = (vec![0.0; ny], vec![0.0; ny]);
    let (mut wdx, mut dxs) = (vec![0.0; nx], vec![0.0; nx]);
    for p in 0..planes {
        for oy in 0..oh {
            let (y0, y1) = bins(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1) = bins(ox, w, ow);
                let o = (p * oh + oy) * ow + ox;
                let cnt = ((y1 - y0) * (x1 - x0)) as f64;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        let i = (p * h + iy) * w + ix;
                        wy[o] += x[i] / cnt;
                        ys[o] += x[i].abs() / cnt;
                        wdx[i] += dy[o] / cnt;
                        dxs[i] += (dy[o] / cnt).abs();
                    }
                }
            }
        }
    }
    let what = format!(
        "adaptive_avg_pool2d {h}x{w} -> {oh}x{ow} [{}]",
        std::any::type_name::<T>()
    );
    let xd = up::<T>(dev, &x);
    let mut y = nans::<T>(dev, ny);
    adaptive_avg_pool2d_forward(n, c, (h, w), (oh, ow), xd.view(), y.view_mut())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_close(
        &format!("{what} y"),
        &down(&y),
        &wy,
        &ys,
        T::REL * 4.0,
        1e-300,
    );
    let dyd = up::<T>(dev, &dy);
    let mut dx = nans::<T>(dev, nx);
    adaptive_avg_pool2d_backward(n, c, (h, w), (oh, ow), dyd.view(), dx.view_mut())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_close(
        &format!("{what} dx"),
        &down(&dx),
        &wdx,
        &dxs,
        T::REL * 4.0,
        1e-300,
    );
}

#[test]
fn adaptive_avg_pool_uses_pytorch_bins() {
    let Some(dev) = gpu_or_skip("pool::adaptive") else {
        return;
    };
    let mut r = rng("pool::adaptive");
    for (hw, out) in [
        ((7, 5), (3, 2)),
        ((5, 5), (5, 5)),
        ((4, 6), (1, 1)),
        ((3, 3), (5, 4)),
        ((10, 13), (4, 6)),
    ] {
        check_adaptive::<f32>(&dev, (2, 3), hw, out, &mut r);
        check_adaptive::<f64>(&dev, (2, 3), hw, out, &mut r);
    }
}

// ---- Upsampling and padding -------------------------------------------------------------------

fn check_upsample<T: El>(
    dev: &Arc<CudaDevice>,
    (h, w): (usize, usize),
    (sh, sw): (usize, usize),
    r: &mut StdRng,
) {
    let (n, c) = (2, 3);
    let (oh, ow) = (h * sh, w * sw);
    let planes = n * c;
    let x = rounded::<T>(uniform(r, planes * h * w, -1.0, 1.0));
    let dy = rounded::<T>(uniform(r, planes * oh * ow, -1.0, 1.0));
    let mut wy = vec![0.0; planes * oh * ow];
    let (mut wdx, mut dxs) = (vec![0.0; planes * h * w], vec![0.0; planes * h * w]);
    for p in 0..planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = (p * oh + oy) * ow + ox;
                let i = (p * h + oy / sh) * w + ox / sw;
                wy[o] = x[i];
                wdx[i] += dy[o];
                dxs[i] += dy[o].abs();
            }
        }
    }
    let what = format!(
        "upsample {h}x{w} by {sh}x{sw} [{}]",
        std::any::type_name::<T>()
    );
    let xd = up::<T>(dev, &x);
    let mut y = nans::<T>(dev, wy.len());
    upsample_nearest2d_forward(n, c, (h, w), (sh, sw), xd.view(), y.view_mut())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    exact(&format!("{what} y"), &down(&y), &wy);
    let dyd = up::<T>(dev, &dy);
    let mut dx = nans::<T>(dev, wdx.len());
    upsample_nearest2d_backward(n, c, (h, w), (sh, sw), dyd.view(), dx.view_mut())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_close(
        &format!("{what} dx"),
        &down(&dx),
        &wdx,
        &dxs,
        T::REL * 4.0,
        1e-300,
    );
}

#[test]
fn upsample_nearest_repeats_and_sums_blocks() {
    let Some(dev) = gpu_or_skip("pool::upsample") else {
        return;
    };
    let mut r = rng("pool::upsample");
    for (hw, scale) in [
        ((5, 7), (2, 2)),
        ((3, 4), (3, 1)),
        ((1, 1), (4, 5)),
        ((6, 6), (1, 1)),
    ] {
        check_upsample::<f32>(&dev, hw, scale, &mut r);
        check_upsample::<f64>(&dev, hw, scale, &mut r);
    }
}

/// PyTorch's reflect: index j of the padded axis relative to the input start, mirrored.
fn reflect(j: isize, n: usize) -> usize {
    let n = n as isize;
    let j = if j < 0 { -j } else { j };
    (if j >= n { 2 * (n - 1) - j } else { j }) as usize
}

fn check_pad<T: El>(
    dev: &Arc<CudaDevice>,
    (h, w): (usize, usize),
    pads: Pad2d,
    mode: PadMode,
    r: &mut StdRng,
) {
    let (n, c) = (2, 2);
    let (oh, ow) = (h + pads.top + pads.bottom, w + pads.left + pads.right);
    let planes = n * c;
    let x = rounded::<T>(uniform(r, planes * h * w, -1.0, 1.0));
    let dy = rounded::<T>(uniform(r, planes * oh * ow, -1.0, 1.0));
    let mut wy = vec![0.0; planes * oh * ow];
    let (mut wdx, mut dxs) = (vec![0.0; planes * h * w], vec![0.0; planes * h * w]);
    for p in 0..planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let o = (p * oh + oy) * ow + ox;
                let (jy, jx) = (
                    oy as isize - pads.top as isize,
                    ox as isize - pads.left as isize,
                );
                let src = match mode {
                    PadMode::Reflect => Some((reflect(jy, h), reflect(jx, w))),
                    PadMode::Constant(_) => {
                        if jy < 0 || jx < 0 || jy >= h as isize || jx >= w as isize {
                            None
                        } else {
                            Some((jy as usize, jx as usize))
                        }
                    }
                    other => panic!("the reference knows no pad mode {other:?}"),
                };
                match (src, mode) {
                    (Some((iy, ix)), _) => {
                        let i = (p * h + iy) * w + ix;
                        wy[o] = x[i];
                        wdx[i] += dy[o];
                        dxs[i] += dy[o].abs();
                    }
                    (None, PadMode::Constant(v)) => wy[o] = T::from_f64(v).into(),
                    (None, _) => unreachable!("reflect always has a source"),
                }
            }
        }
    }
    let what = format!(
        "pad2d {h}x{w} {pads:?} {mode:?} [{}]",
        std::any::type_name::<T>()
    );
    let xd = up::<T>(dev, &x);
    let mut y = nans::<T>(dev, wy.len());
    pad2d_forward(n, c, (h, w), pads, mode, xd.view(), y.view_mut())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    exact(&format!("{what} y"), &down(&y), &wy);
    let dyd = up::<T>(dev, &dy);
    let mut dx = nans::<T>(dev, wdx.len());
    pad2d_backward(n, c, (h, w), pads, mode, dyd.view(), dx.view_mut())
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_close(
        &format!("{what} dx"),
        &down(&dx),
        &wdx,
        &dxs,
        T::REL * 4.0,
        1e-300,
    );
}

#[test]
fn pad_constant_and_reflect_match_pytorch() {
    let Some(dev) = gpu_or_skip("pool::pad") else {
        return;
    };
    let mut r = rng("pool::pad");
    let pads = [
        Pad2d {
            left: 1,
            right: 2,
            top: 3,
            bottom: 0,
        },
        Pad2d {
            left: 0,
            right: 0,
            top: 1,
            bottom: 1,
        },
        Pad2d {
            left: 4,
            right: 4,
            top: 4,
            bottom: 4,
        },
    ];
    for hw in [(5, 6), (7, 5)] {
        for p in pads {
            for mode in [
                PadMode::Constant(1.5),
                PadMode::Constant(0.0),
                PadMode::Reflect,
            ] {
                check_pad::<f32>(&dev, hw, p, mode, &mut r);
                check_pad::<f64>(&dev, hw, p, mode, &mut r);
            }
        }
    }
    // Reflect with pads close to the extent (pad = n - 1): every mirror is used.
    let edge = Pad2d {
        left: 4,
        right: 4,
        top: 2,
        bottom: 2,
    };
    check_pad::<f64>(&dev, (3, 5), edge, PadMode::Reflect, &mut r);
}

// ---- Empty batches and errors -----------------------------------------------------------------

#[test]
fn empty_batches_and_bad_arguments() {
    let Some(dev) = gpu_or_skip("pool::errors") else {
        return;
    };
    let empty = up::<f32>(&dev, &[]);
    let m = pool(
        0,
        3,
        PoolKind::Max,
        false,
        axis(4, 2, 2, 1, (0, 0)),
        axis(4, 2, 2, 1, (0, 0)),
    );
    let mut y = up::<f32>(&dev, &[]);
    let mut idx = IndexBuffer::zeros(&dev, 0).expect("empty indices");
    max_pool2d_forward(&m, empty.view(), y.view_mut(), &mut idx).expect("empty max pool");
    max_pool2d_backward(&m, empty.view(), &idx, y.view_mut()).expect("empty max pool backward");
    let a = Pool2dSpec {
        kind: PoolKind::Avg {
            count_include_pad: true,
        },
        ..m
    };
    avg_pool2d_forward(&a, empty.view(), y.view_mut()).expect("empty avg pool");
    adaptive_avg_pool2d_forward(0, 3, (4, 4), (2, 2), empty.view(), y.view_mut())
        .expect("empty adaptive");
    upsample_nearest2d_forward(0, 3, (4, 4), (2, 2), empty.view(), y.view_mut())
        .expect("empty upsample");
    pad2d_forward(
        0,
        3,
        (4, 4),
        Pad2d {
            left: 1,
            ..Pad2d::default()
        },
        PadMode::Reflect,
        empty.view(),
        y.view_mut(),
    )
    .expect("empty pad");

    // Wrong lengths and kinds name the op.
    let s = Pool2dSpec { batch: 1, ..m };
    let x = nans::<f32>(&dev, 3 * 16);
    let mut short = nans::<f32>(&dev, 5);
    let mut idx = IndexBuffer::zeros(&dev, 12).expect("indices");
    let e = max_pool2d_forward(&s, x.view(), short.view_mut(), &mut idx).expect_err("short y");
    assert!(
        e.to_string().contains("max_pool2d_forward") && e.to_string().contains("y"),
        "{e}"
    );
    let mut y = nans::<f32>(&dev, 12);
    let mut idx_short = IndexBuffer::zeros(&dev, 3).expect("indices");
    let e =
        max_pool2d_forward(&s, x.view(), y.view_mut(), &mut idx_short).expect_err("short indices");
    assert!(e.to_string().contains("indices"), "{e}");
    let e = avg_pool2d_forward(&s, x.view(), y.view_mut()).expect_err("max spec to avg op");
    assert!(e.to_string().contains("avg_pool2d_forward"), "{e}");
    let e = pad2d_forward(
        1,
        3,
        (4, 4),
        Pad2d {
            left: 4,
            ..Pad2d::default()
        },
        PadMode::Reflect,
        x.view(),
        y.view_mut(),
    )
    .expect_err("reflect pad = extent");
    assert!(
        e.to_string().contains("pad2d_forward") && e.to_string().contains("reflect"),
        "{e}"
    );
    let e = adaptive_avg_pool2d_backward(1, 3, (4, 4), (2, 2), x.view(), y.view_mut())
        .expect_err("dy of the input's size");
    assert!(
        e.to_string().contains("adaptive_avg_pool2d_backward"),
        "{e}"
    );
}
