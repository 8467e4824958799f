//! Criterion benchmark of one full training step (forward, BCE, backward, Adam) through
//! ember-nn: the seed model 10-10-5-1 at batch 10 (sigmoid output, BCE on probabilities, as the
//! original Keras program) and a 784-512-512-1 MLP at batch 256 (logits, BCE-with-logits).
//! Reported per step and as samples (throughput elements = batch rows).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ember_core::{Activation, DType, Device, Tensor};
use ember_nn::prelude::{Dense, Loss, Optimizer, Sequential};
use rand::SeedableRng;
use std::time::Duration;

fn step(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("train_step_adam");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for (name, dims, batch, logits) in [
        ("seed", vec![10usize, 10, 5, 1], 10usize, false),
        ("784-512-512-1", vec![784, 512, 512, 1], 256, true),
    ] {
        let mut net = Sequential::new();
        let last = dims.len() - 2;
        for (i, w) in dims.windows(2).enumerate() {
            let act = match (i == last, logits) {
                (false, _) => Activation::Relu,
                (true, true) => Activation::None,
                (true, false) => Activation::Sigmoid,
            };
            net.push(Dense::new(w[0], w[1], act, &mut rng).expect("dense layer"));
        }
        let loss = if logits {
            Loss::BinaryCrossEntropyWithLogits
        } else {
            Loss::BinaryCrossEntropy
        };
        let mut model = net.compile(Optimizer::adam(), loss, &[]);
        let x = Tensor::rand(
            -1.0,
            1.0,
            (batch, dims[0]),
            DType::F32,
            Device::Cpu,
            &mut rng,
        )
        .expect("x");
        let y = Tensor::from_vec(
            (0..batch).map(|i| (i % 2) as f32).collect::<Vec<_>>(),
            (batch, 1),
            Device::Cpu,
        )
        .expect("y");
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(BenchmarkId::new(name, batch), |b| {
            b.iter(|| model.train_step(&x, &y).expect("train step"))
        });
    }
    g.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
