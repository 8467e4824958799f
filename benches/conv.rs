//! Criterion benchmarks of ember's f32 conv2d kernels (forward, backward-data, backward-weight)
//! at the MNIST CNN's two layers and a ResNet 3×3 layer, in FLOPs (2 per multiply-add, each
//! pass doing the forward's multiply-adds). `ember bench conv` prints the same with the
//! fraction of the FMA peak; `scripts/peers/conv_py.py` times PyTorch on the same shapes.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ember_core::ember_ops::{Axis, Conv2dSpec};
use ember_cpu::conv;
use std::hint::black_box;
use std::time::Duration;

fn convs(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("conv2d_f32");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    // (name, batch, in, out, extent, kernel, padding)
    let shapes = [
        ("mnist_conv1", 64, 1, 32, 28, 3, 0),
        ("mnist_conv2", 64, 32, 64, 13, 3, 0),
        ("resnet_3x3", 32, 64, 64, 56, 3, 1),
    ];
    for (name, n, c, o, hw, k, p) in shapes {
        let axis = Axis {
            pad_begin: p,
            pad_end: p,
            ..Axis::new(hw, k)
        };
        let spec = Conv2dSpec {
            batch: n,
            in_channels: c,
            out_channels: o,
            groups: 1,
            h: axis,
            w: axis,
        };
        let len = |s: [usize; 4]| s.iter().product::<usize>();
        let fill = |m: usize| {
            (0..m)
                .map(|i| (i as f32 * 0.37).sin())
                .collect::<Vec<f32>>()
        };
        let (x, w, b) = (
            fill(len(spec.input_shape())),
            fill(len(spec.weight_shape())),
            fill(o),
        );
        let dy = fill(len(spec.output_shape()));
        let (mut y, mut dx, mut dw, mut db) = (
            vec![0.0; dy.len()],
            vec![0.0; x.len()],
            vec![0.0; w.len()],
            vec![0.0; o],
        );
        g.throughput(Throughput::Elements(2 * spec.macs()));
        g.bench_function(BenchmarkId::new("forward", name), |bch| {
            bch.iter(|| conv::conv2d_forward(&spec, black_box(&x), &w, Some(&b), &mut y))
        });
        g.bench_function(BenchmarkId::new("backward_data", name), |bch| {
            bch.iter(|| conv::conv2d_backward_data(&spec, black_box(&dy), &w, None, &mut dx))
        });
        g.bench_function(BenchmarkId::new("backward_weight", name), |bch| {
            bch.iter(|| {
                conv::conv2d_backward_weight(&spec, black_box(&x), &dy, &mut dw, Some(&mut db))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, convs);
criterion_main!(benches);
