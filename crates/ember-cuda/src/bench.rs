//! The kernel lab: times each kernel with CUDA events and reports it against a measured ceiling.
//!
//! For people who benchmark kernels: every record says what ran (kernel, ladder version, dtype,
//! shape), how long one launch took (median of several timed batches, after warm-up), its
//! rate (TFLOP/s for products, GB/s of bytes read + written for memory-bound kernels), and its
//! percentage of a ceiling measured in the same process on the same device:
//! - GEMM: cuBLAS on the same problem (fp32 SGEMM with TF32 off; bf16/f16 inputs with f32
//!   accumulation and 16-bit output, the same as `hgemm_out16`);
//! - memory-bound kernels: a large device-to-device copy (`cuMemcpyDtoD`), read + write bytes.
//!
//! Nothing here is a fixed number: all figures come from the run that prints them. Records
//! render as one-line JSON ([`BenchRecord::to_json`]) for `ember bench --json`, or as a table.

use std::sync::Arc;

use cudarc::cublas::sys as cb;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::CudaSlice;
use cudarc::driver::sys::CUevent_flags;

use crate::device::{CudaDevice, DeviceBuffer, DeviceElem, HalfElem};
use crate::elementwise::{UnaryOp, unary, unary_backward};
use crate::error::{CudaError, driver_err};
use crate::gemm::{
    Epilogue, HgemmVersion, MatMut, MatRef, SgemmVersion, hgemm_version, sgemm_version,
};
use crate::loss::{bce_logits_grad, bce_logits_sum};
use crate::optim::{AdamConfig, adam_step};
use crate::view::Strided;

/// One measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRecord {
    /// Device name.
    pub device: String,
    /// Kernel family, e.g. `sgemm`, `hgemm`, `relu`, `bce_logits_sum`, `copy`.
    pub kernel: String,
    /// Ladder version or variant (`naive`, `vec`, `mma`, `cublas`, `forward`, ...).
    pub version: String,
    /// Element type.
    pub dtype: String,
    /// Problem shape, e.g. `4096x4096x4096` or `268435456`.
    pub shape: String,
    /// Median time of one launch, milliseconds.
    pub time_ms: f64,
    /// Arithmetic rate for products (TFLOP/s), if applicable.
    pub tflops: Option<f64>,
    /// Memory rate, bytes read + written per second / 1e9, if applicable.
    pub gbps: Option<f64>,
    /// What the ceiling is (`cublas`, `copy`), if one was measured.
    pub ceiling: Option<String>,
    /// This record's rate as a percentage of the ceiling's rate.
    pub pct_of_ceiling: Option<f64>,
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.6}"),
        _ => "null".into(),
    }
}

impl BenchRecord {
    /// The record as one line of JSON (no trailing newline).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"device\":{},\"kernel\":{},\"version\":{},\"dtype\":{},\"shape\":{},\"time_ms\":{},\"tflops\":{},\"gbps\":{},\"ceiling\":{},\"pct_of_ceiling\":{}}}",
            json_str(&self.device),
            json_str(&self.kernel),
            json_str(&self.version),
            json_str(&self.dtype),
            json_str(&self.shape),
            json_num(Some(self.time_ms)),
            json_num(self.tflops),
            json_num(self.gbps),
            self.ceiling
                .as_deref()
                .map(json_str)
                .unwrap_or_else(|| "null".into()),
            json_num(self.pct_of_ceiling),
        )
    }
}

/// Renders records as an aligned plain-text table.
pub fn table(records: &[BenchRecord]) -> String {
    let mut s = format!(
        "{:<16} {:<10} {:<6} {:<16} {:>10} {:>9} {:>9} {:>8}\n",
        "kernel", "version", "dtype", "shape", "ms", "TFLOP/s", "GB/s", "% ceil"
    );
    let f = |v: Option<f64>, p: usize| v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "-".into());
    for r in records {
        s.push_str(&format!(
            "{:<16} {:<10} {:<6} {:<16} {:>10.4} {:>9} {:>9} {:>8}\n",
            r.kernel,
            r.version,
            r.dtype,
            r.shape,
            r.time_ms,
            f(r.tflops, 2),
            f(r.gbps, 1),
            r.pct_of_ceiling
                .map(|p| format!("{p:.1}% {}", r.ceiling.as_deref().unwrap_or("")))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    s
}

/// Which kernels to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// SGEMM ladder and tensor-core GEMM against cuBLAS.
    Gemm,
    /// Activations forward and backward against the copy bandwidth.
    Elementwise,
    /// BCE forward and backward (and the Adam step) against the copy bandwidth.
    Loss,
    /// All of the above.
    All,
}

impl Suite {
    /// Parses `gemm`, `elementwise`, `loss` or `all`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "gemm" => Some(Suite::Gemm),
            "elementwise" => Some(Suite::Elementwise),
            "loss" => Some(Suite::Loss),
            "all" => Some(Suite::All),
            _ => None,
        }
    }
}

/// What to run and how long to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Kernel groups.
    pub suite: Suite,
    /// Square SGEMM sizes.
    pub sgemm_sizes: Vec<usize>,
    /// SGEMM ladder versions to time (the slow ones only up to `slow_max`).
    pub sgemm_versions: Vec<SgemmVersion>,
    /// Largest size for the naive and tiled versions (they take seconds beyond).
    pub slow_max: usize,
    /// Square bf16/f16 GEMM sizes.
    pub hgemm_sizes: Vec<usize>,
    /// Elements for the memory-bound kernels.
    pub elems: usize,
    /// Timed batches per kernel (the median is reported).
    pub batches: usize,
    /// Target duration of one batch, milliseconds (sets the launches per batch).
    pub batch_ms: f64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            suite: Suite::All,
            sgemm_sizes: vec![1024, 2048, 4096, 8192],
            sgemm_versions: SgemmVersion::ALL.to_vec(),
            slow_max: 4096,
            hgemm_sizes: vec![4096, 8192],
            elems: 256 << 20,
            batches: 5,
            batch_ms: 100.0,
        }
    }
}

impl BenchOptions {
    /// Small sizes and short batches: a smoke test of every kernel path of `suite` in seconds
    /// (what `cuda_bench --quick` and `ember bench --device cuda --quick` run).
    pub fn quick(suite: Suite) -> Self {
        BenchOptions {
            suite,
            sgemm_sizes: vec![512],
            hgemm_sizes: vec![1024],
            elems: 1 << 22,
            batches: 3,
            batch_ms: 10.0,
            ..BenchOptions::default()
        }
    }
}

/// Median time of one call of `f`, in ms, measured with CUDA events on the device's stream.
fn time_ms(
    dev: &CudaDevice,
    opts: &BenchOptions,
    f: &mut dyn FnMut() -> Result<(), CudaError>,
) -> Result<f64, CudaError> {
    let ctx = dev.context();
    let stream = dev.stream();
    let ev = || {
        ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| driver_err("cuEventCreate", e))
    };
    let (start, end) = (ev()?, ev()?);
    let batch =
        |iters: usize, f: &mut dyn FnMut() -> Result<(), CudaError>| -> Result<f64, CudaError> {
            start
                .record(stream)
                .map_err(|e| driver_err("cuEventRecord", e))?;
            for _ in 0..iters {
                f()?;
            }
            end.record(stream)
                .map_err(|e| driver_err("cuEventRecord", e))?;
            end.synchronize()
                .map_err(|e| driver_err("cuEventSynchronize", e))?;
            Ok(start
                .elapsed_ms(&end)
                .map_err(|e| driver_err("cuEventElapsedTime", e))? as f64)
        };
    // Warm-up (also compiles and loads the module), then size the batches.
    f()?;
    dev.synchronize()?;
    let one = batch(1, f)?.max(1e-3);
    let iters = ((opts.batch_ms / one).round() as usize).clamp(1, 1000);
    let mut times = Vec::with_capacity(opts.batches.max(1));
    for _ in 0..opts.batches.max(1) {
        times.push(batch(iters, f)? / iters as f64);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

struct Ctx<'a> {
    dev: &'a Arc<CudaDevice>,
    opts: &'a BenchOptions,
    out: Vec<BenchRecord>,
}

impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        kernel: &str,
        version: &str,
        dtype: &str,
        shape: String,
        ms: f64,
        flops: Option<f64>,
        bytes: Option<f64>,
        ceiling: Option<(&str, f64)>,
    ) -> f64 {
        let tflops = flops.map(|f| f / (ms * 1e-3) / 1e12);
        let gbps = bytes.map(|b| b / (ms * 1e-3) / 1e9);
        let rate = tflops.or(gbps).unwrap_or(0.0);
        self.out.push(BenchRecord {
            device: self.dev.name().to_string(),
            kernel: kernel.into(),
            version: version.into(),
            dtype: dtype.into(),
            shape,
            time_ms: ms,
            tflops,
            gbps,
            ceiling: ceiling.map(|c| c.0.to_string()),
            pct_of_ceiling: ceiling.filter(|c| c.1 > 0.0).map(|c| 100.0 * rate / c.1),
        });
        rate
    }
}

fn cublas(dev: &Arc<CudaDevice>) -> Result<Option<CudaBlas>, CudaError> {
    // SAFETY: only tries to dlopen libcublas.
    if !unsafe { cb::is_culib_present() } {
        return Ok(None);
    }
    let blas = CudaBlas::new(dev.stream().clone()).map_err(|e| CudaError::Cublas {
        op: "cublasCreate".into(),
        detail: format!("{e:?}"),
    })?;
    // SAFETY: a live handle; DEFAULT_MATH keeps fp32 SGEMM in true fp32 (no TF32 tensor ops).
    let st =
        unsafe { cb::cublasSetMathMode(*blas.handle(), cb::cublasMath_t::CUBLAS_DEFAULT_MATH) };
    if st != cb::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        return Err(CudaError::Cublas {
            op: "cublasSetMathMode".into(),
            detail: format!("{st:?}"),
        });
    }
    Ok(Some(blas))
}

/// Row-major C = A·B through column-major cuBLAS: C^T = B^T·A^T, i.e. swap the operands.
fn blas_cfg<T>(n: usize, alpha: T, beta: T) -> GemmConfig<T> {
    let n = n as i32;
    GemmConfig {
        transa: cb::cublasOperation_t::CUBLAS_OP_N,
        transb: cb::cublasOperation_t::CUBLAS_OP_N,
        m: n,
        n,
        k: n,
        alpha,
        lda: n,
        ldb: n,
        beta,
        ldc: n,
    }
}

fn fill<T: crate::DeviceElem>(
    dev: &Arc<CudaDevice>,
    n: usize,
    f: impl Fn(usize) -> T,
) -> Result<DeviceBuffer<T>, CudaError> {
    let host: Vec<T> = (0..n).map(f).collect();
    dev.upload(&host)
}

fn small(i: usize) -> f32 {
    // Deterministic values in [-1, 1) without a random-number dependency.
    ((i.wrapping_mul(2654435761) >> 7) % 2048) as f32 / 1024.0 - 1.0
}

/// A, B and C as cuBLAS takes them.
type BlasOperands<'b, T> = (&'b CudaSlice<T>, &'b CudaSlice<T>, &'b mut CudaSlice<T>);

/// The cudarc slices cuBLAS takes; an empty operand (a GEMM size of 0) has none to give.
fn blas_operands<'b, T: DeviceElem>(
    a: &'b DeviceBuffer<T>,
    b: &'b DeviceBuffer<T>,
    c: &'b mut DeviceBuffer<T>,
) -> Result<BlasOperands<'b, T>, CudaError> {
    match (a.cuda_slice(), b.cuda_slice(), c.cuda_slice_mut()) {
        (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
        _ => Err(CudaError::Cublas {
            op: "gemm".into(),
            detail: "an operand is empty (GEMM size 0): nothing to time".into(),
        }),
    }
}

fn bench_gemm(c: &mut Ctx<'_>, blas: Option<&CudaBlas>) -> Result<(), CudaError> {
    let dev = c.dev;
    for &n in &c.opts.sgemm_sizes.clone() {
        let a = fill(dev, n * n, small)?;
        let b = fill(dev, n * n, |i| small(i + 7))?;
        let mut cm = dev.alloc_zeros::<f32>(n * n)?;
        let flops = 2.0 * (n as f64).powi(3);
        let shape = format!("{n}x{n}x{n}");
        let mut ceiling = None;
        if let Some(blas) = blas {
            let cfg = blas_cfg(n, 1.0f32, 0.0f32);
            let ms = time_ms(dev, c.opts, &mut || {
                let (a, b, cm) = blas_operands(&a, &b, &mut cm)?;
                // SAFETY: all three buffers hold n*n f32 and the config describes n x n x n.
                unsafe { blas.gemm(cfg, b, a, cm) }.map_err(|e| CudaError::Cublas {
                    op: "sgemm".into(),
                    detail: format!("{e:?}"),
                })
            })?;
            let rate = c.push(
                "sgemm",
                "cublas",
                "f32",
                shape.clone(),
                ms,
                Some(flops),
                None,
                None,
            );
            ceiling = Some(rate);
        }
        for &v in &c.opts.sgemm_versions.clone() {
            if matches!(v, SgemmVersion::Naive | SgemmVersion::Tiled) && n > c.opts.slow_max {
                continue;
            }
            let ms = time_ms(dev, c.opts, &mut || {
                sgemm_version(
                    v,
                    n,
                    n,
                    n,
                    1.0,
                    MatRef {
                        data: a.view(),
                        rs: n,
                        cs: 1,
                    },
                    MatRef {
                        data: b.view(),
                        rs: n,
                        cs: 1,
                    },
                    0.0,
                    MatMut {
                        data: cm.view_mut(),
                        rs: n,
                        cs: 1,
                    },
                    Epilogue::default(),
                )
            })?;
            c.push(
                "sgemm",
                v.name(),
                "f32",
                shape.clone(),
                ms,
                Some(flops),
                None,
                ceiling.map(|r| ("cublas", r)),
            );
        }
    }
    for &n in &c.opts.hgemm_sizes.clone() {
        hgemm_pair::<half::bf16>(c, blas, n, "bf16")?;
        hgemm_pair::<half::f16>(c, blas, n, "f16")?;
    }
    Ok(())
}

fn hgemm_pair<H: HalfElem>(
    c: &mut Ctx<'_>,
    blas: Option<&CudaBlas>,
    n: usize,
    dtype: &str,
) -> Result<(), CudaError>
where
    CudaBlas: Gemm<H>,
{
    let dev = c.dev;
    let a = fill(dev, n * n, |i| H::from_f32(small(i)))?;
    let b = fill(dev, n * n, |i| H::from_f32(small(i + 7)))?;
    let mut cm = dev.alloc_zeros::<H>(n * n)?;
    let flops = 2.0 * (n as f64).powi(3);
    let shape = format!("{n}x{n}x{n}");
    let mut ceiling = None;
    if let Some(blas) = blas {
        let cfg = blas_cfg(n, H::from_f32(1.0), H::from_f32(0.0));
        let ms = time_ms(dev, c.opts, &mut || {
            let (a, b, cm) = blas_operands(&a, &b, &mut cm)?;
            // SAFETY: all three buffers hold n*n elements and the config describes n x n x n.
            unsafe { blas.gemm(cfg, b, a, cm) }.map_err(|e| CudaError::Cublas {
                op: "gemm_ex".into(),
                detail: format!("{e:?}"),
            })
        })?;
        ceiling = Some(c.push(
            "hgemm",
            "cublas",
            dtype,
            shape.clone(),
            ms,
            Some(flops),
            None,
            None,
        ));
    }
    for v in HgemmVersion::ALL {
        if v == HgemmVersion::Wgmma && dev.arch() != "sm_90a" {
            continue;
        }
        let ms = time_ms(dev, c.opts, &mut || {
            hgemm_version(
                v,
                n,
                n,
                n,
                1.0,
                MatRef {
                    data: a.view(),
                    rs: n,
                    cs: 1,
                },
                MatRef {
                    data: b.view(),
                    rs: n,
                    cs: 1,
                },
                0.0,
                MatMut {
                    data: cm.view_mut(),
                    rs: n,
                    cs: 1,
                },
                Epilogue::default(),
            )
        })?;
        c.push(
            "hgemm",
            v.name(),
            dtype,
            shape.clone(),
            ms,
            Some(flops),
            None,
            ceiling.map(|r| ("cublas", r)),
        );
    }
    Ok(())
}

/// Device-to-device copy rate (GB/s of bytes read + written) over `elems` f32.
fn copy_ceiling(c: &mut Ctx<'_>) -> Result<f64, CudaError> {
    let dev = c.dev;
    let n = c.opts.elems;
    let src = fill(dev, n, small)?;
    let mut dst = dev.alloc::<f32>(n)?;
    let ms = time_ms(dev, c.opts, &mut || dst.copy_from_device(&src))?;
    Ok(c.push(
        "copy",
        "dtod",
        "f32",
        n.to_string(),
        ms,
        None,
        Some(8.0 * n as f64),
        None,
    ))
}

fn bench_elementwise(c: &mut Ctx<'_>, bw: f64) -> Result<(), CudaError> {
    let dev = c.dev;
    let n = c.opts.elems;
    let x = fill(dev, n, small)?;
    let mut y = dev.alloc::<f32>(n)?;
    let dy = fill(dev, n, |i| small(i + 3))?;
    let mut dx = dev.alloc::<f32>(n)?;
    let shape = [n];
    let strides = [1usize];
    let ceiling = Some(("copy", bw));
    for (name, op) in [
        ("relu", UnaryOp::Relu),
        ("leaky_relu", UnaryOp::LeakyRelu(0.01)),
        ("sigmoid", UnaryOp::Sigmoid),
        ("tanh", UnaryOp::Tanh),
        ("gelu", UnaryOp::GeluTanh),
    ] {
        let ms = time_ms(dev, c.opts, &mut || {
            unary(
                op,
                x.view(),
                Strided::new(&shape, &strides, 0),
                y.view_mut(),
            )
        })?;
        c.push(
            name,
            "forward",
            "f32",
            n.to_string(),
            ms,
            None,
            Some(8.0 * n as f64),
            ceiling,
        );
        let ms = time_ms(dev, c.opts, &mut || {
            unary_backward(op, x.view(), y.view(), dy.view(), dx.view_mut())
        })?;
        c.push(
            name,
            "backward",
            "f32",
            n.to_string(),
            ms,
            None,
            Some(16.0 * n as f64),
            ceiling,
        );
    }
    Ok(())
}

fn bench_loss(c: &mut Ctx<'_>, bw: f64) -> Result<(), CudaError> {
    let dev = c.dev;
    let n = c.opts.elems;
    let ceiling = Some(("copy", bw));
    {
        let x = fill(dev, n, |i| 4.0 * small(i))?;
        let y = fill(dev, n, |i| (i % 3 == 0) as i32 as f32)?;
        let mut out = dev.alloc::<f32>(1)?;
        let mut g = dev.alloc::<f32>(n)?;
        let scale = 1.0 / n as f64;
        let ms = time_ms(dev, c.opts, &mut || {
            bce_logits_sum(x.view(), y.view(), scale, out.view_mut())
        })?;
        c.push(
            "bce_logits",
            "forward",
            "f32",
            n.to_string(),
            ms,
            None,
            Some(8.0 * n as f64),
            ceiling,
        );
        let ms = time_ms(dev, c.opts, &mut || {
            bce_logits_grad(x.view(), y.view(), scale, g.view_mut())
        })?;
        c.push(
            "bce_logits",
            "backward",
            "f32",
            n.to_string(),
            ms,
            None,
            Some(12.0 * n as f64),
            ceiling,
        );
    }
    {
        let mut p = fill(dev, n, small)?;
        let g = fill(dev, n, |i| small(i + 1))?;
        let mut m = dev.alloc_zeros::<f32>(n)?;
        let mut v = dev.alloc_zeros::<f32>(n)?;
        let cfg = AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            weight_decay: 0.0,
            step: 1,
        };
        let ms = time_ms(dev, c.opts, &mut || {
            adam_step(&cfg, p.view_mut(), g.view(), m.view_mut(), v.view_mut())
        })?;
        // Reads p, g, m, v; writes p, m, v.
        c.push(
            "adam_step",
            "fused",
            "f32",
            n.to_string(),
            ms,
            None,
            Some(28.0 * n as f64),
            ceiling,
        );
    }
    Ok(())
}

/// Runs the chosen suite on `dev` and returns one record per measurement.
pub fn run(dev: &Arc<CudaDevice>, opts: &BenchOptions) -> Result<Vec<BenchRecord>, CudaError> {
    let mut c = Ctx {
        dev,
        opts,
        out: Vec::new(),
    };
    if matches!(opts.suite, Suite::Gemm | Suite::All) {
        let blas = cublas(dev)?;
        bench_gemm(&mut c, blas.as_ref())?;
    }
    if matches!(opts.suite, Suite::Elementwise | Suite::Loss | Suite::All) {
        let bw = copy_ceiling(&mut c)?;
        if matches!(opts.suite, Suite::Elementwise | Suite::All) {
            bench_elementwise(&mut c, bw)?;
        }
        if matches!(opts.suite, Suite::Loss | Suite::All) {
            bench_loss(&mut c, bw)?;
        }
    }
    Ok(c.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_one_line_with_nulls() {
        let r = BenchRecord {
            device: "Dev \"x\"".into(),
            kernel: "sgemm".into(),
            version: "vec".into(),
            dtype: "f32".into(),
            shape: "8x8x8".into(),
            time_ms: 0.5,
            tflops: Some(1.25),
            gbps: None,
            ceiling: Some("cublas".into()),
            pct_of_ceiling: Some(90.0),
        };
        let j = r.to_json();
        assert!(!j.contains('\n'));
        assert!(j.contains("\"device\":\"Dev \\\"x\\\"\""), "{j}");
        assert!(
            j.contains("\"gbps\":null") && j.contains("\"tflops\":1.250000"),
            "{j}"
        );
        assert!(table(&[r]).contains("90.0% cublas"));
    }

    #[test]
    fn suite_names() {
        assert_eq!(Suite::from_name("gemm"), Some(Suite::Gemm));
        assert_eq!(Suite::from_name("all"), Some(Suite::All));
        assert_eq!(Suite::from_name("x"), None);
    }
}
