//! `ember bench lstm`: one training step of issue 15's sequential-MNIST model — LSTM(128) over
//! 28 steps of 28 pixels, its final state into Dense 10 (logits), softmax cross-entropy, Adam
//! 1e-3, batch 64 — through ember-nn (`Model::train_step`, what `fit` runs per batch), in
//! samples per second. The peer is `../shared/peers/seq_cnn_peers.py --framework torch --task
//! lstm --threads T`, whose per-epoch `samples_per_s` is the same quantity (its epoch also
//! gathers each batch from the shuffled set, as `fit` does; this case reuses one batch).

use super::{Out, cpu_per_call, round, time_it};
use ember_core::{DType, Device, Tensor};
use ember_nn::prelude::{
    Activation, Dense, Loss, Metric, Optimizer, Recurrent, RecurrentOptions, Sequential,
};
use rand::SeedableRng;
use serde_json::json;

const BATCH: usize = 64;

/// Times the training step on `threads` threads (the caller's pool) and prints it.
pub(super) fn run(threads: usize, min_time: f64, out: &Out) -> Result<(), String> {
    let err = |e: ember_nn::NnError| format!("bench lstm: {e}");
    let cerr = |e: ember_core::Error| format!("bench lstm: {e}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut model = Sequential::new()
        .add(Recurrent::lstm(28, 128, RecurrentOptions::default(), &mut rng).map_err(err)?)
        .add(Dense::new(128, 10, Activation::None, &mut rng).map_err(err)?)
        .compile(Optimizer::adam(), Loss::CrossEntropy, &[Metric::Accuracy]);
    // Pixels in [0, 1] as MNIST's; labels 0..9.
    let x =
        Tensor::rand(0.0, 1.0, (BATCH, 28, 28), DType::F32, Device::Cpu, &mut rng).map_err(cerr)?;
    let labels: Vec<f32> = (0..BATCH).map(|i| (i % 10) as f32).collect();
    let y = Tensor::from_vec(labels, BATCH, Device::Cpu).map_err(cerr)?;
    let mut failure = None;
    let t = time_it(min_time, || {
        if let Err(e) = model.train_step(&x, &y) {
            failure.get_or_insert(e);
        }
    });
    if let Some(e) = failure {
        return Err(err(e));
    }
    // On one thread, also the step's CPU time (what the core spent on it, whatever else the
    // machine ran meanwhile).
    let cpu = cpu_per_call(threads, || {
        if let Err(e) = model.train_step(&x, &y) {
            failure.get_or_insert(e);
        }
    });
    if let Some(e) = failure {
        return Err(err(e));
    }
    let sps = BATCH as f64 / t;
    let cpu_note = cpu.map_or(String::new(), |c| {
        format!(
            "  (CPU {:.1} us/step, {:.0} samples/CPU-s)",
            c * 1e6,
            BATCH as f64 / c
        )
    });
    out.emit(
        json!({"bench":"lstm","model":"seq-mnist-lstm128","batch":BATCH,"threads":threads,
               "optimizer":"adam","step_us":round(t * 1e6),"samples_per_s":round(sps),
               "cpu_step_us":cpu.map(|c| round(c * 1e6)),
               "samples_per_cpu_s":cpu.map(|c| round(BATCH as f64 / c))}),
        format!(
            "lstm  seq-mnist LSTM(128)+Dense10 batch {BATCH}  adam  {:>10.1} us/step  {sps:>10.0} samples/s{cpu_note}",
            t * 1e6
        ),
    );
    Ok(())
}
