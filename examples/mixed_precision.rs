//! Training speed under the mixed-precision policies (`ember_nn::mixed`): samples per second
//! of `Model::train_step` for the 784-512-512-1 MLP (batch 256, Adam, BCE on logits) and the
//! MNIST CNN (`examples/models/mnist_cnn.toml`, batch 64), in f32 and bf16 (and f16 with
//! `--f16`), interleaved in one process: each round times every policy in turn, and the
//! medians over the rounds are printed with the bf16/f32 ratio.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release --example mixed_precision -- [rounds] [seconds] [--f16] [--only-bf16] [--mlp|--cnn]
//! ```
//!
//! Time is the process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`, all threads), so other load on
//! the machine inflates it far less than wall time; wall time is printed beside it. The data are
//! random (speed does not depend on the values), so no files are read.

use ember_core::{Activation, DType, Device, Tensor};
use ember_nn::mixed::Precision;
use ember_nn::prelude::*;
use ember_nn::spec::ModelSpec;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::Path;
use std::time::Instant;

/// The process's CPU time in seconds (Linux).
fn cpu_seconds() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid Timespec (two i64 fields, as `struct timespec` on 64-bit
    // Linux) and the clock id is a constant of the Linux ABI.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

struct Case {
    name: &'static str,
    model: Model,
    x: Tensor,
    y: Tensor,
}

fn mlp(rng: &mut StdRng) -> ember_nn::Result<Case> {
    let net = Sequential::new()
        .add(Dense::new(784, 512, Activation::Relu, rng)?)
        .add(Dense::new(512, 512, Activation::Relu, rng)?)
        .add(Dense::new(512, 1, Activation::None, rng)?);
    let model = net.compile(Optimizer::adam(), Loss::BinaryCrossEntropyWithLogits, &[]);
    let x = Tensor::rand(-1.0, 1.0, (256, 784), DType::F32, Device::Cpu, rng)?;
    let y = Tensor::from_vec(
        (0..256).map(|i| (i % 2) as f32).collect::<Vec<_>>(),
        (256, 1),
        Device::Cpu,
    )?;
    Ok(Case {
        name: "mlp 784-512-512-1 b256",
        model,
        x,
        y,
    })
}

fn cnn(rng: &mut StdRng) -> ember_nn::Result<Case> {
    let spec = ModelSpec::load(Path::new("examples/models/mnist_cnn.toml"))?;
    let net = spec.build(0, Device::Cpu)?;
    let model = net.compile(spec.optimizer()?, Loss::CrossEntropy, &[]);
    let x = Tensor::rand(0.0, 1.0, (64, 1, 28, 28), DType::F32, Device::Cpu, rng)?;
    let y = Tensor::from_vec(
        (0..64).map(|i| (i % 10) as f32).collect::<Vec<_>>(),
        (64,),
        Device::Cpu,
    )?;
    Ok(Case {
        name: "mnist cnn b64",
        model,
        x,
        y,
    })
}

/// (CPU seconds, wall seconds) per step over at least `seconds` of CPU time.
fn time_steps(c: &mut Case, p: Precision, seconds: f64) -> ember_nn::Result<(f64, f64)> {
    c.model.precision = p;
    c.model.train_step(&c.x, &c.y)?; // warm-up (packing buffers, optimizer state)
    let (c0, w0) = (cpu_seconds(), Instant::now());
    let mut steps = 0;
    while steps < 3 || cpu_seconds() - c0 < seconds {
        c.model.train_step(&c.x, &c.y)?;
        steps += 1;
    }
    Ok((
        (cpu_seconds() - c0) / steps as f64,
        w0.elapsed().as_secs_f64() / steps as f64,
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ember_nn::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let f16 = args.iter().any(|a| a == "--f16");
    let nums: Vec<f64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let rounds = nums.first().map_or(3, |&r| r as usize).max(1);
    let seconds = nums.get(1).copied().unwrap_or(2.0);
    let mut policies = vec![Precision::F32, Precision::BF16];
    if f16 {
        policies.push(Precision::F16);
    }
    // For profiles: one policy only (the ratio column is then against itself).
    if args.iter().any(|a| a == "--only-bf16") {
        policies = vec![Precision::BF16];
    }
    let mut rng = StdRng::seed_from_u64(7);
    let mut cases = Vec::new();
    if !args.iter().any(|a| a == "--cnn") {
        cases.push(mlp(&mut rng)?);
    }
    if !args.iter().any(|a| a == "--mlp") {
        cases.push(cnn(&mut rng)?);
    }
    println!(
        "threads {} (rayon), {rounds} rounds x {seconds} s CPU time per policy",
        rayon::current_num_threads()
    );
    for c in cases.iter_mut() {
        let batch = c.x.shape()[0] as f64;
        let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); policies.len()];
        let mut wall: Vec<Vec<f64>> = vec![Vec::new(); policies.len()];
        for r in 0..rounds {
            for (i, &p) in policies.iter().enumerate() {
                let (tc, tw) = time_steps(c, p, seconds)?;
                println!(
                    "  {} round {r} {:>4}: {:>8.0} samples/s (CPU time), {:>8.0} (wall)",
                    c.name,
                    p.name(),
                    batch / tc,
                    batch / tw
                );
                cpu[i].push(batch / tc);
                wall[i].push(batch / tw);
            }
        }
        let base = median(cpu[0].clone());
        for (i, p) in policies.iter().enumerate() {
            let m = median(cpu[i].clone());
            println!(
                "{}: {:>4} median {:>8.0} samples/s CPU time ({:.2}x f32), {:>8.0} wall",
                c.name,
                p.name(),
                m,
                m / base,
                median(wall[i].clone())
            );
        }
    }
    Ok(())
}
