//! Criterion benchmark of max pooling 2×2/2 on the MNIST CNN's first pooling shape
//! (N 64, C 32, 26×26, f32; 5.5 MB of input, beyond L2) and on a batch of 4 of it (346 KB,
//! inside a 1 MB L2): forward with argmax and backward, on each kernel path this CPU runs (the
//! path's `EMBER_CPU_ISA` name in the id) and at 1 and 2 rayon threads.
//! PyTorch's figures for the same op come from `scripts/peers/pool.py`.
//!
//! `cargo bench -p ember-cpu --bench pool`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ember_cpu::isa;
use ember_cpu::pool::{max_pool2d, max_pool2d_backward};
use ember_ops::{Axis, Pool2dSpec, PoolKind};
use std::hint::black_box;
use std::time::Duration;

fn max_pool(cr: &mut Criterion) {
    for n in [64, 4] {
        shape(cr, n);
    }
}

fn shape(cr: &mut Criterion, n: usize) {
    let (c, h, w) = (32, 26, 26);
    let ax = |i| Axis {
        input: i,
        kernel: 2,
        stride: 2,
        dilation: 1,
        pad_begin: 0,
        pad_end: 0,
    };
    let spec = Pool2dSpec {
        batch: n,
        channels: c,
        kind: PoolKind::Max,
        ceil_mode: false,
        h: ax(h),
        w: ax(w),
    };
    let x: Vec<f32> = (0..n * c * h * w)
        .map(|i| ((i * 7919) % 10007) as f32 * 1e-3 - 5.0)
        .collect();
    let m = n * c * spec.out_h() * spec.out_w();
    let (mut y, mut arg, mut dx) = (vec![0.0f32; m], vec![0u32; m], vec![0.0f32; x.len()]);
    let mut g = cr.benchmark_group(format!("max_pool2d_2x2_n{n}c32_26x26"));
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    // Bytes moved by the forward: x read, y and argmax written.
    g.throughput(Throughput::Bytes((4 * x.len() + 8 * m) as u64));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a rayon pool");
        for path in isa::supported() {
            let id = format!("{path}/{threads}t");
            g.bench_function(BenchmarkId::new("forward", &id), |b| {
                b.iter(|| {
                    pool.install(|| {
                        isa::with(path, || {
                            max_pool2d(black_box(&x), &spec, &mut y, Some(&mut arg)).unwrap()
                        })
                        .unwrap()
                    })
                })
            });
            g.bench_function(BenchmarkId::new("backward", &id), |b| {
                b.iter(|| {
                    pool.install(|| {
                        isa::with(path, || {
                            max_pool2d_backward(black_box(&y), &arg, &spec, &mut dx).unwrap()
                        })
                        .unwrap()
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, max_pool);
criterion_main!(benches);
