//! Criterion benchmarks of ember's f32 GEMM: square sizes 64..2048, the 784-512-512-1 MLP
//! shapes at batch 256 (forward, and the two backward products through strides), and the seed
//! model's shapes at batch 10. Throughput is reported in FLOP (2·m·n·k per call).
//!
//! Measurement times are short so a full run takes minutes; `ember bench gemm` prints the same
//! cases as GFLOP/s beside the measured FMA peak.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ember_cpu::gemm::{Epilogue, MatMut, MatRef, gemm};
use std::hint::black_box;
use std::time::Duration;

/// C[m×n] = A[m×k]·B[k×n]; `bt` reads B through a transposed (column-major) layout.
fn run(m: usize, k: usize, n: usize, bt: bool, a: &[f32], b: &[f32], c: &mut [f32]) {
    let bref = if bt {
        MatRef {
            data: b,
            rs: 1,
            cs: k,
        }
    } else {
        MatRef {
            data: b,
            rs: n,
            cs: 1,
        }
    };
    gemm(
        m,
        n,
        k,
        1.0,
        MatRef {
            data: a,
            rs: k,
            cs: 1,
        },
        bref,
        0.0,
        MatMut {
            data: c,
            rs: n,
            cs: 1,
        },
        Epilogue::default(),
    )
    .expect("the bench's operands are built to fit their shapes");
}

fn case(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    m: usize,
    k: usize,
    n: usize,
    bt: bool,
) {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 11) as f32 * 0.1 - 0.5).collect();
    let mut c = vec![0.0f32; m * n];
    g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
    g.bench_function(BenchmarkId::new(name, format!("{m}x{k}x{n}")), |bench| {
        bench.iter(|| run(m, k, n, bt, black_box(&a), black_box(&b), &mut c))
    });
}

fn square(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("sgemm_square");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    for s in [64, 128, 256, 512, 1024, 2048] {
        case(&mut g, "square", s, s, s, false);
    }
    g.finish();
}

fn mlp_shapes(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("sgemm_mlp");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500));
    // Forward of 784-512-512-1 at batch 256 (x·Wᵀ: W read transposed through strides).
    for (m, k, n) in [(256, 784, 512), (256, 512, 512), (256, 512, 1)] {
        case(&mut g, "forward_wT", m, k, n, true);
        case(&mut g, "row_major", m, k, n, false);
    }
    // The seed model 10-10-5-1 at batch 10.
    for (m, k, n) in [(10, 10, 10), (10, 10, 5), (10, 5, 1)] {
        case(&mut g, "seed", m, k, n, true);
    }
    g.finish();
}

criterion_group!(benches, square, mlp_shapes);
criterion_main!(benches);
