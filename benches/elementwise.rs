//! Criterion benchmarks of ember's f32 activations (forward) at 1M and 16M elements, reported
//! in bytes moved (4 read + 4 written per element) so they compare with copy bandwidth
//! (`ember bench peak`).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ember_cpu::Strided;
use ember_cpu::unary::{UnaryOp, unary};
use std::hint::black_box;
use std::time::Duration;

fn activations(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("activations_f32");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(700));
    let ops = [
        ("relu", UnaryOp::Relu),
        ("leaky_relu", UnaryOp::LeakyRelu(0.01)),
        ("sigmoid", UnaryOp::Sigmoid),
        ("tanh", UnaryOp::Tanh),
        ("gelu", UnaryOp::GeluTanh),
        ("softplus", UnaryOp::Softplus),
        ("exp", UnaryOp::Exp),
        ("log", UnaryOp::Log),
    ];
    for n in [1usize << 20, 16 << 20] {
        let x: Vec<f32> = (0..n)
            .map(|i| (i % 1000) as f32 * 0.01 - 4.0 + 1e-3)
            .collect();
        let xpos: Vec<f32> = x.iter().map(|v| v.abs() + 0.01).collect();
        let mut y = vec![0.0f32; n];
        let shape = [n];
        let strides = [1];
        g.throughput(Throughput::Bytes(8 * n as u64));
        for (name, op) in ops {
            let input = if op == UnaryOp::Log { &xpos } else { &x };
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    unary(
                        op,
                        black_box(input),
                        Strided::new(&shape, &strides, 0),
                        &mut y,
                    )
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, activations);
criterion_main!(benches);
