//! Criterion benchmarks of ember's tiled scaled dot-product attention (f32, forward and
//! forward + backward, N 32, H 4, Dh 32, T 128 and 512) and of one pre-norm Transformer encoder
//! block (d 128, 4 heads, ff 512, N 32, T 128, forward + backward). `ember bench attention`
//! prints the same; `scripts/peers/attention_py.py` times PyTorch on the same shapes.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ember_core::ember_ops::AttentionSpec;
use ember_core::{DType, Device, Tensor};
use ember_cpu::attention as ka;
use ember_nn::attention::TransformerEncoderBlock;
use ember_nn::module::Module;
use rand::SeedableRng;
use std::hint::black_box;
use std::time::Duration;

fn sdpa(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("sdpa_f32");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let (n, h, dh) = (32, 4, 32);
    for t in [128usize, 512] {
        let spec = AttentionSpec {
            batch: n,
            heads: h,
            tq: t,
            tk: t,
            dh,
            dv: dh,
            causal: false,
            scale: 1.0 / (dh as f64).sqrt(),
        };
        let len = n * h * t * dh;
        let fill = |f: f32| (0..len).map(|i| (i as f32 * f).sin()).collect::<Vec<f32>>();
        let (q, k, v, dout) = (fill(0.37), fill(0.71), fill(0.13), fill(0.29));
        let mut o = vec![0f32; len];
        let mut lse = vec![0f32; n * h * t];
        let (mut dq, mut dk, mut dv) = (vec![0f32; len], vec![0f32; len], vec![0f32; len]);
        g.bench_function(BenchmarkId::new("forward", t), |b| {
            b.iter(|| {
                ka::attention_forward(&spec, &q, &k, &v, None, &mut o, &mut lse).unwrap();
                black_box(&o);
            })
        });
        g.bench_function(BenchmarkId::new("forward_backward", t), |b| {
            b.iter(|| {
                ka::attention_forward(&spec, &q, &k, &v, None, &mut o, &mut lse).unwrap();
                ka::attention_backward(
                    &spec, &q, &k, &v, None, &o, &lse, &dout, &mut dq, &mut dk, &mut dv,
                )
                .unwrap();
                black_box(&dq);
            })
        });
    }
    g.finish();
}

fn encoder_block(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("encoder_block_f32");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let block = TransformerEncoderBlock::new(128, 4, 512, 0.0, false, 1, &mut rng).unwrap();
    let x = Tensor::randn(
        0.0,
        1.0,
        &[32, 128, 128][..],
        DType::F32,
        Device::Cpu,
        &mut rng,
    )
    .unwrap()
    .as_variable();
    g.bench_function("forward_backward_n32_t128_d128", |b| {
        b.iter(|| {
            let y = block.forward(&x, true).unwrap();
            black_box(y.sum_all().unwrap().backward().unwrap());
        })
    });
    g.finish();
}

criterion_group!(benches, sdpa, encoder_block);
criterion_main!(benches);
