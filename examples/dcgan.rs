//! A DCGAN on the MNIST subset in `data/mnist` (Radford et al. 2016): a generator turns noise
//! into 28×28 digits, a discriminator tells them from real ones, and each learns against the
//! other.
//!
//! ```text
//! cargo run --release --example dcgan -- [--epochs 8] [--out dcgan-out] [--seed 0]
//!                                        [--judge cnn.safetensors] [--batch 64] [--smooth 1.0]
//! ```
//!
//! - Generator: Dense 100 → 128·7·7 (relu) → Reshape [128, 7, 7] → ConvTranspose2d 128→64
//!   (4×4, stride 2, padding 1: 7 → 14) → BatchNorm2d → relu → ConvTranspose2d 64→1 (14 → 28)
//!   → tanh, images in [−1, 1].
//! - Discriminator: Conv2d 1→64 (4×4, stride 2, padding 1) → LeakyReLU 0.2 → Conv2d 64→128
//!   (stride 2) → BatchNorm2d → LeakyReLU 0.2 → Flatten → Dense 1 (a logit).
//! - BCE with logits; Adam with lr 2e-4 and β₁ 0.5 for both, as the paper recommends; batch 64
//!   (`--batch`). `--smooth 0.9` trains the discriminator towards 0.9 instead of 1 on real
//!   images (one-sided label smoothing, Salimans et al. 2016).
//!   Each step trains the discriminator on a real and a generated batch (the generated one
//!   detached), then the generator to make the discriminator say "real" (the non-saturating
//!   loss).
//!
//! After every epoch a grid of 64 samples from fixed noise is written to `OUT/epoch_NN.png`.
//! With `--judge`, a classifier saved by `ember train --model examples/models/mnist_cnn.toml
//! --data mnist --save cnn.safetensors` labels 1,000 generated digits: the example prints the
//! share classified with confidence ≥ 0.9 and each class's share (mode coverage), and exits
//! with status 1 when fewer than 80 % are confident or any class gets under 4 %.

use ember_core::{Activation, DType, Device, Tensor};
use ember_nn::checkpoint;
use ember_nn::conv::{Conv2d, ConvOptions, ConvTranspose2d, Padding};
use ember_nn::data::load_mnist;
use ember_nn::image::{grid, save_png};
use ember_nn::layers::{ActivationLayer, Dense, DenseOptions, Flatten, LeakyRelu};
use ember_nn::loss::Loss;
use ember_nn::module::Module;
use ember_nn::optim::Optimizer;
use ember_nn::pooling::{BatchNorm2d, Reshape};
use ember_nn::sequential::Sequential;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

/// Length of the generator's noise vector.
const NOISE: usize = 100;

type Res<T> = Result<T, Box<dyn Error>>;

fn generator(rng: &mut StdRng) -> Res<Sequential> {
    let up = |i, o, act: bool, rng: &mut StdRng| -> Res<ConvTranspose2d> {
        let opts = ConvOptions {
            stride: (2, 2),
            padding: Padding::symmetric(1, 1),
            activation: if act {
                Activation::None
            } else {
                Activation::Tanh
            },
            ..ConvOptions::default()
        };
        Ok(ConvTranspose2d::with_options(i, o, (4, 4), opts, rng)?)
    };
    let dense = DenseOptions {
        activation: Activation::Relu,
        ..DenseOptions::default()
    };
    let mut g = Sequential::new();
    g.push(Dense::with_options(NOISE, 128 * 7 * 7, dense, rng)?);
    g.push(Reshape::new(&[128, 7, 7]));
    g.push(up(128, 64, true, rng)?);
    g.push(BatchNorm2d::new(64)?);
    g.push(ActivationLayer::new(Activation::Relu));
    g.push(up(64, 1, false, rng)?);
    Ok(g)
}

fn discriminator(rng: &mut StdRng) -> Res<Sequential> {
    let down = |i, o, rng: &mut StdRng| -> Res<Conv2d> {
        let opts = ConvOptions {
            stride: (2, 2),
            padding: Padding::symmetric(1, 1),
            ..ConvOptions::default()
        };
        Ok(Conv2d::with_options(i, o, (4, 4), opts, rng)?)
    };
    let mut d = Sequential::new();
    d.push(down(1, 64, rng)?);
    d.push(LeakyRelu::new(0.2));
    d.push(down(64, 128, rng)?);
    d.push(BatchNorm2d::new(128)?);
    d.push(LeakyRelu::new(0.2));
    d.push(Flatten::new());
    d.push(Dense::new(128 * 7 * 7, 1, Activation::None, rng)?);
    Ok(d)
}

/// Adam with the DCGAN settings.
fn adam() -> Res<Optimizer> {
    Ok(Optimizer::adam().with_lr(2e-4).with_beta1(0.5)?)
}

fn noise(n: usize, rng: &mut StdRng) -> Res<Tensor> {
    Ok(Tensor::randn(
        0.0,
        1.0,
        (n, NOISE),
        DType::F32,
        Device::Cpu,
        rng,
    )?)
}

struct Args {
    epochs: usize,
    out: PathBuf,
    seed: u64,
    judge: Option<PathBuf>,
    data: PathBuf,
    batch: usize,
    smooth: f64,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        epochs: 8,
        out: PathBuf::from("dcgan-out"),
        seed: 0,
        judge: None,
        data: PathBuf::from("data/mnist"),
        batch: 64,
        smooth: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--epochs" => a.epochs = value()?.parse()?,
            "--out" => a.out = PathBuf::from(value()?),
            "--seed" => a.seed = value()?.parse()?,
            "--judge" => a.judge = Some(PathBuf::from(value()?)),
            "--data" => a.data = PathBuf::from(value()?),
            "--batch" => a.batch = value()?.parse()?,
            "--smooth" => a.smooth = value()?.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.out)?;
    let (x, _) = load_mnist(
        &args.data.join("train-images-idx3-ubyte.gz"),
        &args.data.join("train-labels-idx1-ubyte.gz"),
    )?;
    let n = x.shape()[0];
    // Pixels [0, 1] → [−1, 1], the generator's tanh range.
    let real = x
        .mul_scalar(2.0)?
        .add_scalar(-1.0)?
        .reshape(vec![n, 1, 28, 28])?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let (g, d) = (generator(&mut rng)?, discriminator(&mut rng)?);
    let (mut opt_g, mut opt_d) = (adam()?, adam()?);
    let bce = Loss::BinaryCrossEntropyWithLogits;
    let batch = args.batch;
    if batch == 0 || !(args.smooth > 0.5 && args.smooth <= 1.0) {
        return Err("--batch must be ≥ 1 and --smooth in (0.5, 1]".into());
    }
    let ones = Tensor::ones(vec![batch, 1], DType::F32, Device::Cpu)?;
    let real_target = Tensor::full(args.smooth, vec![batch, 1], DType::F32, Device::Cpu)?;
    let zeros = Tensor::zeros(vec![batch, 1], DType::F32, Device::Cpu)?;
    let fixed = noise(64, &mut StdRng::seed_from_u64(args.seed ^ 0xF1_7ED))?;
    println!(
        "DCGAN on {n} MNIST images: generator {} parameters, discriminator {}, batch {batch}",
        g.parameter_count(),
        d.parameter_count()
    );
    let started = Instant::now();
    for epoch in 0..args.epochs {
        let t0 = Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let (mut sum_d, mut sum_g, mut steps) = (0.0, 0.0, 0usize);
        for ids in order.chunks_exact(batch) {
            let idx: Vec<f32> = ids.iter().map(|&i| i as f32).collect();
            let idx = Tensor::from_vec(idx, vec![batch], Device::Cpu)?;
            let xb = real.index_select(&idx, 0)?;
            // Discriminator: real → 1, generated (detached) → 0.
            let fake = g.forward(&noise(batch, &mut rng)?, true)?.detach();
            let loss_d = bce
                .compute(&d.forward(&xb, true)?, &real_target)?
                .add(&bce.compute(&d.forward(&fake, true)?, &zeros)?)?;
            let grads = loss_d.backward()?;
            opt_d.step(d.parameters_ref(), &grads)?;
            // Generator: make the discriminator say 1.
            let fake = g.forward(&noise(batch, &mut rng)?, true)?;
            let loss_g = bce.compute(&d.forward(&fake, true)?, &ones)?;
            let grads = loss_g.backward()?;
            opt_g.step(g.parameters_ref(), &grads)?;
            sum_d += loss_d.to_scalar::<f64>()?;
            sum_g += loss_g.to_scalar::<f64>()?;
            steps += 1;
        }
        let samples = g.forward(&fixed, false)?.to_vec::<f32>()?;
        let (w, h, px) = grid(&samples, 64, 28, 28, 8, (-1.0, 1.0))?;
        let png = args.out.join(format!("epoch_{:02}.png", epoch + 1));
        save_png(&png, w, h, &px)?;
        println!(
            "epoch {}/{}: loss D {:.4}, G {:.4}, {:.1} s; wrote {}",
            epoch + 1,
            args.epochs,
            sum_d / steps.max(1) as f64,
            sum_g / steps.max(1) as f64,
            t0.elapsed().as_secs_f64(),
            png.display()
        );
    }
    println!("trained in {:.1} s", started.elapsed().as_secs_f64());
    checkpoint::save(&args.out.join("generator.safetensors"), &g, None)?;
    if let Some(judge) = &args.judge {
        judge_samples(&g, judge, args.seed)?;
    }
    Ok(())
}

/// Classifies 1,000 generated digits with a trained MNIST classifier and checks the issue's
/// criteria: ≥ 80 % classified with confidence ≥ 0.9, every class ≥ 4 % of them.
fn judge_samples(g: &Sequential, judge: &std::path::Path, seed: u64) -> Res<()> {
    let (model, spec, _) = ember_nn::spec::load_trained(judge)?;
    if spec.input_shape != [1, 28, 28] {
        return Err(format!(
            "--judge {}: its input_shape is {:?}, not [1, 28, 28]",
            judge.display(),
            spec.input_shape
        )
        .into());
    }
    let count = 1000;
    let z = noise(count, &mut StdRng::seed_from_u64(seed ^ 0x1D6E))?;
    // The classifier was trained on pixels in [0, 1].
    let images = g.forward(&z, false)?.add_scalar(1.0)?.mul_scalar(0.5)?;
    let out = model.predict(&images, 250)?;
    let cols = out.elem_count() / count;
    let probs = model.probabilities(&out.to_vec::<f64>()?, cols);
    let mut per_class = vec![0usize; cols];
    let mut confident = 0;
    for row in probs.chunks(cols) {
        let (c, p) = row
            .iter()
            .enumerate()
            .fold((0, f64::MIN), |b, (c, &p)| if p > b.1 { (c, p) } else { b });
        per_class[c] += 1;
        if p >= 0.9 {
            confident += 1;
        }
    }
    let share = |k: usize| 100.0 * k as f64 / count as f64;
    let shares: Vec<String> = per_class
        .iter()
        .enumerate()
        .map(|(c, &k)| format!("{c}: {:.1} %", share(k)))
        .collect();
    println!(
        "judge: {:.1} % of {count} generated digits classified with confidence ≥ 0.9; classes {}",
        share(confident),
        shares.join(", ")
    );
    let ok = share(confident) >= 80.0 && per_class.iter().all(|&k| share(k) >= 4.0);
    println!(
        "criteria (≥ 80 % confident, every class ≥ 4 %): {}",
        if ok { "met" } else { "NOT met" }
    );
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
