//! Times the CUDA convolution kernels (kernels/conv.cu) on the shapes issue 14 names, beside
//! cuBLAS on the GEMM of the same size:
//!
//! ```text
//! conv_bench [--quick]
//! ```
//!
//! Shapes: the ResNet-like layer (N 32, C 64→64, 56×56, 3×3, pad 1) and the two layers of the
//! MNIST CNN at batch 64 (1→32 on 28×28; 32→64 on 13×13; 3×3, no padding). For each, the
//! forward, backward-data and backward-weight passes of the implicit GEMM and of the direct
//! kernels, f32, as the median of 5 timed batches (CUDA events, after a warm-up), in ms and
//! TFLOP/s (2 · multiply-adds of the pass), and as a percentage of cuBLAS SGEMM (TF32 off) on the
//! forward's GEMM (M = out channels, N = batch·OH·OW, K = in channels·kh·kw) — an upper bound
//! for an implicit GEMM that also gathers its operand. `--quick` runs the MNIST shapes only,
//! with short batches. Exits with status 2 and one line on stderr when there is no usable GPU.

use std::sync::Arc;

use cudarc::cublas::sys as cb;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::sys::CUevent_flags;
use ember_cuda::conv::{
    ConvAlgo, conv2d_backward_data_with, conv2d_backward_weight_with, conv2d_forward_with,
};
use ember_cuda::{CudaDevice, CudaError, DeviceBuffer};
use ember_ops::{Axis, Conv2dSpec};

fn axis(input: usize, pad: usize) -> Axis {
    Axis {
        pad_begin: pad,
        pad_end: pad,
        ..Axis::new(input, 3)
    }
}

fn spec(n: usize, c: usize, o: usize, hw: usize, pad: usize) -> Conv2dSpec {
    Conv2dSpec {
        batch: n,
        in_channels: c,
        out_channels: o,
        groups: 1,
        h: axis(hw, pad),
        w: axis(hw, pad),
    }
}

/// One timed pass: a closure launching the kernel.
type Pass<'a> = dyn FnMut() -> Result<(), CudaError> + 'a;

/// Median ms of one call of `f` over `batches` batches of about `batch_ms` each.
fn time_ms(
    dev: &CudaDevice,
    batches: usize,
    batch_ms: f64,
    f: &mut dyn FnMut() -> Result<(), CudaError>,
) -> Result<f64, String> {
    let ctx = dev.context();
    let stream = dev.stream();
    let ev = || {
        ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| format!("cuEventCreate: {e:?}"))
    };
    let (start, end) = (ev()?, ev()?);
    let mut batch = |iters: usize| -> Result<f64, String> {
        start.record(stream).map_err(|e| format!("{e:?}"))?;
        for _ in 0..iters {
            f().map_err(|e| e.to_string())?;
        }
        end.record(stream).map_err(|e| format!("{e:?}"))?;
        end.synchronize().map_err(|e| format!("{e:?}"))?;
        Ok(start.elapsed_ms(&end).map_err(|e| format!("{e:?}"))? as f64)
    };
    batch(1)?; // warm-up: compiles and loads the module
    let one = batch(1)?.max(1e-3);
    let iters = ((batch_ms / one).round() as usize).clamp(1, 1000);
    let mut t: Vec<f64> = (0..batches)
        .map(|_| batch(iters).map(|ms| ms / iters as f64))
        .collect::<Result<_, _>>()?;
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

fn filled(dev: &Arc<CudaDevice>, n: usize, seed: usize) -> Result<DeviceBuffer<f32>, String> {
    let host: Vec<f32> = (0..n)
        .map(|i| ((i * 7 + seed * 13) % 17) as f32 / 17.0 - 0.5)
        .collect();
    dev.upload(&host).map_err(|e| e.to_string())
}

/// cuBLAS SGEMM on the forward's GEMM shape: row-major C[m×n] = A[m×k]·B[k×n], issued as the
/// column-major C^T = B^T·A^T.
fn cublas_ms(
    dev: &Arc<CudaDevice>,
    blas: &CudaBlas,
    (m, n, k): (usize, usize, usize),
    batches: usize,
    batch_ms: f64,
) -> Result<f64, String> {
    let a = filled(dev, m * k, 1)?;
    let b = filled(dev, k * n, 2)?;
    let mut c = dev.alloc_zeros::<f32>(m * n).map_err(|e| e.to_string())?;
    let cfg = GemmConfig {
        transa: cb::cublasOperation_t::CUBLAS_OP_N,
        transb: cb::cublasOperation_t::CUBLAS_OP_N,
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha: 1.0f32,
        lda: n as i32,
        ldb: k as i32,
        beta: 0.0f32,
        ldc: n as i32,
    };
    time_ms(dev, batches, batch_ms, &mut || {
        let (Some(a), Some(b), Some(c)) = (a.cuda_slice(), b.cuda_slice(), c.cuda_slice_mut())
        else {
            return Ok(());
        };
        // SAFETY: a holds m·k, b k·n and c m·n f32, as the config describes.
        unsafe { blas.gemm(cfg, b, a, c) }.map_err(|e| CudaError::Cublas {
            op: "sgemm".into(),
            detail: format!("{e:?}"),
        })
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dev = match CudaDevice::get(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("conv_bench: no usable GPU: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&dev, quick) {
        eprintln!("conv_bench: {e}");
        std::process::exit(1);
    }
}

fn run(dev: &Arc<CudaDevice>, quick: bool) -> Result<(), String> {
    let (batches, batch_ms) = if quick { (3, 10.0) } else { (5, 100.0) };
    let mut shapes = vec![
        ("mnist conv1", spec(64, 1, 32, 28, 0)),
        ("mnist conv2", spec(64, 32, 64, 13, 0)),
    ];
    if !quick {
        shapes.push(("resnet 64x56x56", spec(32, 64, 64, 56, 1)));
    }
    // SAFETY: only tries to dlopen libcublas.
    let blas = if unsafe { cb::is_culib_present() } {
        let b = CudaBlas::new(dev.stream().clone()).map_err(|e| format!("cublasCreate: {e:?}"))?;
        // SAFETY: a live handle; DEFAULT_MATH keeps SGEMM in true fp32 (no TF32).
        unsafe { cb::cublasSetMathMode(*b.handle(), cb::cublasMath_t::CUBLAS_DEFAULT_MATH) };
        Some(b)
    } else {
        None
    };
    println!("device: {} ({})", dev.name(), dev.arch());
    println!(
        "{:<16} {:<8} {:<10} {:>10} {:>9} {:>10}",
        "shape", "algo", "pass", "ms", "TFLOP/s", "% cuBLAS"
    );
    for (name, s) in shapes {
        let flops = 2.0 * s.macs() as f64;
        let [n, c, h, w] = s.input_shape();
        let (oh, ow) = (s.out_h(), s.out_w());
        let gemm = (s.out_channels, n * oh * ow, c * 9);
        let x = filled(dev, n * c * h * w, 3)?;
        let wt = filled(dev, s.out_channels * c * 9, 4)?;
        let dy = filled(dev, n * s.out_channels * oh * ow, 5)?;
        let mut y = dev
            .alloc_zeros::<f32>(dy.len())
            .map_err(|e| e.to_string())?;
        let mut dx = dev.alloc_zeros::<f32>(x.len()).map_err(|e| e.to_string())?;
        let mut dw = dev
            .alloc_zeros::<f32>(wt.len())
            .map_err(|e| e.to_string())?;
        let ceiling = match &blas {
            Some(b) => {
                let ms = cublas_ms(dev, b, gemm, batches, batch_ms)?;
                println!(
                    "{name:<16} {:<8} {:<10} {ms:>10.4} {:>9.2} {:>10}",
                    "cublas",
                    "gemm",
                    flops / (ms * 1e-3) / 1e12,
                    "100.0"
                );
                Some(flops / (ms * 1e-3))
            }
            None => None,
        };
        for algo in [ConvAlgo::ImplicitGemm, ConvAlgo::Direct] {
            let passes: [(&str, &mut Pass<'_>); 3] = [
                ("forward", &mut || {
                    conv2d_forward_with(algo, &s, x.view(), wt.view(), None, y.view_mut())
                }),
                ("bwd data", &mut || {
                    conv2d_backward_data_with(algo, &s, dy.view(), wt.view(), dx.view_mut())
                }),
                ("bwd weight", &mut || {
                    conv2d_backward_weight_with(algo, &s, x.view(), dy.view(), dw.view_mut(), None)
                }),
            ];
            for (pass, f) in passes {
                let ms = time_ms(dev, batches, batch_ms, f)?;
                let rate = flops / (ms * 1e-3);
                let pct = ceiling
                    .map(|c| format!("{:.1}", 100.0 * rate / c))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{name:<16} {:<8} {pass:<10} {ms:>10.4} {:>9.2} {pct:>10}",
                    format!("{algo:?}").to_lowercase(),
                    rate / 1e12
                );
            }
        }
    }
    Ok(())
}
