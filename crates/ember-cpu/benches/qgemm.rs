//! Criterion benchmarks of ember's int8 GEMM beside its f32 GEMM, in the same run, at the
//! 784-512-512-10 MLP's shapes (batch M = 256: K 784 → N 512, 512 → 512, 512 → 10) and 1024³,
//! on 1 and 2 threads.
//!
//! Both sides compute a Dense forward `x · Wᵀ + b` with the weight in its `[out, in]` layout:
//! - `f32`: [`gemm`] with B read through transposed strides and the bias epilogue;
//! - `int8`: [`qgemm`] on already-quantized u8 activations and a [`PackedB`] (packed once, as a
//!   quantized layer keeps it), dequantizing to f32 with the bias in its epilogue;
//! - `int8+quant`: the same plus the dynamic quantization of the f32 input
//!   ([`quant::quantize_acts`]), i.e. the whole cost of a dynamically quantized Dense.
//!
//! Throughput is in multiply-adds·2 (FLOP-equivalents), so the ratio of the lines is the
//! speed-up. The path is the run-time choice ([`QPath::active`]; `EMBER_CPU_ISA=avx2` selects
//! the AVX2 kernels of both sides).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ember_cpu::gemm::{Epilogue, MatMut, MatRef, gemm};
use ember_cpu::qgemm::{Dequant, PackedB, QActs, QOut, QPath, qgemm, quant};
use ember_ops::Activation;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// One shape's operands for both sides.
struct Case {
    m: usize,
    k: usize,
    n: usize,
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
    xq: Vec<u8>,
    xp: quant::QParams,
    wq: quant::QuantWeights,
    packed: PackedB,
}

impl Case {
    fn new(m: usize, k: usize, n: usize) -> Case {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5) % 11) as f32 * 0.02 - 0.1)
            .collect();
        let bias = (0..n).map(|j| j as f32 * 0.01).collect();
        let mut xq = vec![0u8; m * k];
        let xp = quant::quantize_acts(&x, &mut xq).expect("finite inputs");
        let wq = quant::quantize_weights(&w, n, k).expect("finite weights");
        let packed = PackedB::from_transposed(k, n, &wq.codes, k).expect("shapes fit");
        Case {
            m,
            k,
            n,
            x,
            w,
            bias,
            xq,
            xp,
            wq,
            packed,
        }
    }

    fn f32(&self, c: &mut [f32]) {
        let (m, k, n) = (self.m, self.k, self.n);
        gemm(
            m,
            n,
            k,
            1.0,
            MatRef {
                data: &self.x,
                rs: k,
                cs: 1,
            },
            MatRef {
                data: &self.w,
                rs: 1,
                cs: k,
            },
            0.0,
            MatMut {
                data: c,
                rs: n,
                cs: 1,
            },
            Epilogue {
                bias: Some(&self.bias),
                act: Activation::None,
            },
        )
        .expect("the bench's operands fit their shapes");
    }

    fn int8(&self, xq: &[u8], xp: quant::QParams, c: &mut [f32]) {
        let dq = Dequant {
            a_scale: xp.scale,
            b_scales: &self.wq.scales,
            bias: Some(&self.bias),
            act: Activation::None,
        };
        let acts = QActs {
            data: xq,
            m: self.m,
            lda: self.k,
            zero_point: xp.zero_point,
        };
        qgemm(acts, &self.packed, QOut::F32 { c, ldc: self.n, dq })
            .expect("the bench's operands fit their shapes");
    }
}

fn shapes(cr: &mut Criterion) {
    let path = QPath::active();
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a rayon pool");
        let mut g = cr.benchmark_group(format!("qgemm_{path}_t{threads}"));
        g.sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        for (m, k, n) in [
            (256, 784, 512),
            (256, 512, 512),
            (256, 512, 10),
            (1024, 1024, 1024),
        ] {
            let case = Case::new(m, k, n);
            let mut c = vec![0f32; m * n];
            let mut xq = vec![0u8; m * k];
            let id = format!("{m}x{k}x{n}");
            g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
            // Each sample runs its iterations inside the pool (criterion's group is not Send).
            let timed = |iters: u64, f: &mut (dyn FnMut() + Send)| {
                pool.install(|| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        f();
                    }
                    t.elapsed()
                })
            };
            g.bench_function(BenchmarkId::new("f32", &id), |b| {
                b.iter_custom(|iters| timed(iters, &mut || case.f32(black_box(&mut c))))
            });
            g.bench_function(BenchmarkId::new("int8", &id), |b| {
                b.iter_custom(|iters| {
                    timed(iters, &mut || {
                        case.int8(black_box(&case.xq), case.xp, &mut c)
                    })
                })
            });
            g.bench_function(BenchmarkId::new("int8+quant", &id), |b| {
                b.iter_custom(|iters| {
                    timed(iters, &mut || {
                        let p = quant::quantize_acts(black_box(&case.x), &mut xq)
                            .expect("finite inputs");
                        case.int8(&xq, p, &mut c)
                    })
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, shapes);
criterion_main!(benches);
