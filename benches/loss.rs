//! Criterion benchmarks of row softmax and the fused BCE-with-logits forward + backward.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ember_cpu::loss::{bce_logits_grad, bce_logits_sum, bce_logits_sum_grad};
use ember_cpu::reduce::softmax_rows;
use std::hint::black_box;
use std::time::Duration;

fn softmax(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("softmax_f32");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500));
    for (rows, cols) in [(256usize, 1000usize), (4096, 4096)] {
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| (i % 977) as f32 * 0.01 - 5.0)
            .collect();
        let mut y = vec![0.0f32; rows * cols];
        g.throughput(Throughput::Bytes(8 * (rows * cols) as u64));
        g.bench_function(BenchmarkId::new("rows", format!("{rows}x{cols}")), |b| {
            b.iter(|| softmax_rows(black_box(&x), cols, &mut y, false))
        });
    }
    g.finish();
}

fn bce(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("bce_logits_f32");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(500));
    for n in [256usize, 1 << 20, 16 << 20] {
        let x: Vec<f32> = (0..n).map(|i| (i % 977) as f32 * 0.01 - 5.0).collect();
        let y: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        let mut dx = vec![0.0f32; n];
        // Two kernels: the forward reads x and y, the backward reads them again and writes dx.
        g.throughput(Throughput::Bytes(20 * n as u64));
        g.bench_function(BenchmarkId::new("fwd_then_bwd", n), |b| {
            b.iter(|| {
                let s = bce_logits_sum(black_box(&x), black_box(&y)).expect("equal lengths");
                bce_logits_grad(&x, &y, 1.0 / n as f64, &mut dx).expect("equal lengths");
                s
            })
        });
        // One pass (what a CPU training step runs): reads x and y once, writes dx.
        g.throughput(Throughput::Bytes(12 * n as u64));
        g.bench_function(BenchmarkId::new("fused", n), |b| {
            b.iter(|| {
                bce_logits_sum_grad(black_box(&x), black_box(&y), 1.0 / n as f64, &mut dx)
                    .expect("equal lengths")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, softmax, bce);
criterion_main!(benches);
