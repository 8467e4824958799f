//! Model compression on MNIST (the 10 000 / 2 000 image subsets in `data/mnist/`): magnitude
//! pruning of an MLP to 90 % sparsity, and knowledge distillation of a small MLP from the
//! MNIST CNN.
//!
//! ```text
//! cargo run --release --example compress -- prune   [dense_epochs] [prune_epochs]
//! cargo run --release --example compress -- distill [teacher_epochs] [student_epochs] [T] [alpha]
//! cargo run --release --example compress -- shrink  [epochs] [finetune_epochs]
//! ```
//!
//! `prune`: LeNet-300-100 (784-300-100-10, ReLU, Adam 1e-3, batch 64) trained dense, then
//! fine-tuned while Zhu & Gupta's cubic schedule raises the sparsity of every weight matrix from
//! 0 to 90 % over the first two thirds of the fine-tuning steps (masks every 50 steps), then
//! converted to sparse layers; prints the test accuracy of each stage and the sparsity per layer.
//!
//! `shrink`: the MNIST CNN trained `epochs`, then half of the channels of each convolution and
//! of the hidden Dense layer removed (smallest L1 norms, `ember_nn::shrink`) and fine-tuned
//! `finetune_epochs`; beside it the unpruned CNN trained `epochs + finetune_epochs`. Prints test
//! accuracies, parameter counts, and the time of one training epoch and of inference over the
//! test set (median of 5 interleaved runs; threads from RAYON_NUM_THREADS).
//!
//! `distill`: the MNIST CNN (`examples/models/mnist_cnn.toml`) as teacher; students 784-32-10
//! trained on labels alone and distilled (T = 4, α = 0.1), seeds 0, 1, 2; prints each test
//! accuracy and the mean and spread of both.

use ember_core::{Activation, Device, Tensor};
use ember_nn::data::load_mnist;
use ember_nn::module::Module;
use ember_nn::prelude::*;
use ember_nn::prune::{PolynomialDecay, PruneScope, Pruning, sparsity_report};
use ember_nn::sparse::sparsify;
use ember_nn::spec::ModelSpec;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::Path;
use std::time::Instant;

fn main() -> ember_nn::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("data/mnist");
    let (x_train, y_train) = load_mnist(
        &dir.join("train-images-idx3-ubyte.gz"),
        &dir.join("train-labels-idx1-ubyte.gz"),
    )?;
    let (x_test, y_test) = load_mnist(
        &dir.join("t10k-images-idx3-ubyte.gz"),
        &dir.join("t10k-labels-idx1-ubyte.gz"),
    )?;
    match args.first().map(String::as_str) {
        Some("prune") => prune(&x_train, &y_train, &x_test, &y_test, num(1, 10), num(2, 6)),
        Some("distill") => {
            let teacher_spec = ModelSpec::load(&root.join("examples/models/mnist_cnn.toml"))?;
            distill(
                &teacher_spec,
                (&x_train, &y_train, &x_test, &y_test),
                num(1, 4),
                num(2, 10),
                args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4.0),
                args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0.1),
            )
        }
        Some("shrink") => {
            let spec = ModelSpec::load(&root.join("examples/models/mnist_cnn.toml"))?;
            shrink(
                &spec,
                (&x_train, &y_train, &x_test, &y_test),
                num(1, 4),
                num(2, 2),
            )
        }
        _ => Err(NnError::Config(
            "usage: compress prune [dense_epochs] [prune_epochs] | distill [teacher_epochs] \
             [student_epochs] | shrink [epochs] [finetune_epochs]"
                .into(),
        )),
    }
}

fn fit_cfg(epochs: usize, seed: u64) -> FitConfig {
    FitConfig {
        epochs,
        batch_size: 64,
        seed,
        verbose: 0,
        ..FitConfig::default()
    }
}

fn accuracy(model: &Model, x: &Tensor, y: &Tensor) -> ember_nn::Result<f64> {
    model
        .evaluate(x, y, 500)?
        .get("accuracy")
        .ok_or_else(|| NnError::Config("no accuracy metric".into()))
}

fn prune(
    x: &Tensor,
    y: &Tensor,
    xt: &Tensor,
    yt: &Tensor,
    dense_epochs: usize,
    prune_epochs: usize,
) -> ember_nn::Result<()> {
    let lenet = || -> ember_nn::Result<Model> {
        let mut rng = StdRng::seed_from_u64(0);
        Ok(Sequential::new()
            .add(Dense::new(784, 300, Activation::Relu, &mut rng)?)
            .add(Dense::new(300, 100, Activation::Relu, &mut rng)?)
            .add(Dense::new(100, 10, Activation::None, &mut rng)?)
            .compile(Optimizer::adam(), Loss::CrossEntropy, &[Metric::Accuracy]))
    };
    // The fair reference: the same network trained dense for as many epochs in all.
    let mut reference = lenet()?;
    reference.fit(x, y, fit_cfg(dense_epochs + prune_epochs, 0))?;
    let reference_acc = accuracy(&reference, xt, yt)?;
    println!(
        "{{\"stage\":\"dense_reference\",\"epochs\":{},\"test_accuracy\":{reference_acc:.4}}}",
        dense_epochs + prune_epochs
    );
    let mut model = lenet()?;
    let t = Instant::now();
    model.fit(x, y, fit_cfg(dense_epochs, 0))?;
    let dense_acc = accuracy(&model, xt, yt)?;
    println!(
        "{{\"stage\":\"dense\",\"epochs\":{dense_epochs},\"test_accuracy\":{dense_acc:.4},\"seconds\":{:.1}}}",
        t.elapsed().as_secs_f64()
    );
    let steps_per_epoch = x.shape()[0].div_ceil(64) as u64;
    let begin = model.optimizer.iterations();
    let end = begin + steps_per_epoch * (prune_epochs as u64 * 2 / 3).max(1);
    let schedule = PolynomialDecay::new(0.0, 0.9, begin, end, 50)?;
    let mut cfg = fit_cfg(dense_epochs + prune_epochs, 0);
    cfg.initial_epoch = dense_epochs;
    cfg.pruning = Some(Pruning::new(schedule).with_scope(PruneScope::PerLayer));
    model.fit(x, y, cfg)?;
    let pruned_acc = accuracy(&model, xt, yt)?;
    let (per, overall) = sparsity_report(model.network.parameters_ref())?;
    let per: Vec<String> = per.iter().map(|(n, s)| format!("\"{n}\":{s:.4}")).collect();
    println!(
        "{{\"stage\":\"pruned\",\"epochs\":{prune_epochs},\"test_accuracy\":{pruned_acc:.4},\
         \"sparsity\":{overall:.4},\"per_layer\":{{{}}},\"drop_vs_reference_points\":{:.2}}}",
        per.join(","),
        100.0 * (reference_acc - pruned_acc)
    );
    let Model {
        network,
        optimizer,
        loss,
        metrics,
        ..
    } = model;
    let (sparse, converted) = sparsify(network, 0.5)?;
    let sparse = sparse.compile(optimizer, loss, &metrics);
    let sparse_acc = accuracy(&sparse, xt, yt)?;
    println!(
        "{{\"stage\":\"sparse\",\"layers_converted\":{converted},\"test_accuracy\":{sparse_acc:.4}}}"
    );
    Ok(())
}

fn distill(
    teacher_spec: &ModelSpec,
    (x, y, xt, yt): (&Tensor, &Tensor, &Tensor, &Tensor),
    teacher_epochs: usize,
    student_epochs: usize,
    temperature: f64,
    alpha: f64,
) -> ember_nn::Result<()> {
    let images =
        |t: &Tensor| -> ember_nn::Result<Tensor> { Ok(t.reshape(vec![t.shape()[0], 1, 28, 28])?) };
    let (xi, xti) = (images(x)?, images(xt)?);
    let t0 = Instant::now();
    let mut teacher = teacher_spec.build(0, Device::Cpu)?.compile(
        Optimizer::adam(),
        Loss::CrossEntropy,
        &[Metric::Accuracy],
    );
    teacher.fit(&xi, y, fit_cfg(teacher_epochs, 0))?;
    let teacher_acc = accuracy(&teacher, &xti, yt)?;
    println!(
        "{{\"model\":\"teacher_cnn\",\"epochs\":{teacher_epochs},\"test_accuracy\":{teacher_acc:.4},\"seconds\":{:.1}}}",
        t0.elapsed().as_secs_f64()
    );
    // The teacher sees images, the student flat pixels: a Reshape in front of the teacher.
    let mut teacher_net = Sequential::new().add(ember_nn::pooling::Reshape::new(&[1, 28, 28]));
    for layer in teacher.network.into_layers() {
        teacher_net.push_boxed(layer);
    }
    // The wrapped teacher must score what the trained one did, on flat pixels.
    let check = teacher_net
        .forward(xt, false)?
        .argmax(1, false)?
        .to_vec::<f64>()?;
    let labels = yt.to_vec::<f64>()?;
    let hits = check.iter().zip(&labels).filter(|(a, b)| a == b).count();
    println!(
        "{{\"model\":\"teacher_wrapped\",\"test_accuracy\":{:.4}}}",
        hits as f64 / labels.len() as f64
    );
    let student = |seed: u64| -> ember_nn::Result<Model> {
        let mut rng = StdRng::seed_from_u64(seed);
        Ok(Sequential::new()
            .add(Dense::new(784, 32, Activation::Relu, &mut rng)?)
            .add(Dense::new(32, 10, Activation::None, &mut rng)?)
            .compile(Optimizer::adam(), Loss::CrossEntropy, &[Metric::Accuracy]))
    };
    let (mut plain, mut distilled) = (Vec::new(), Vec::new());
    let mut teacher_slot = Some(teacher_net);
    for seed in 0..3u64 {
        let mut s = student(seed)?;
        s.fit(x, y, fit_cfg(student_epochs, seed))?;
        let a = accuracy(&s, xt, yt)?;
        plain.push(a);
        let mut d = student(seed)?;
        let net = teacher_slot
            .take()
            .ok_or_else(|| NnError::Config("teacher lost".into()))?;
        d.distill_from(net, temperature, alpha)?;
        d.fit(x, y, fit_cfg(student_epochs, seed))?;
        let b = accuracy(&d, xt, yt)?;
        distilled.push(b);
        teacher_slot = d.clear_teacher().map(|t| t.network);
        println!("{{\"seed\":{seed},\"student_labels_only\":{a:.4},\"student_distilled\":{b:.4}}}");
    }
    let stats = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
        (m, sd)
    };
    let ((pm, ps), (dm, ds)) = (stats(&plain), stats(&distilled));
    println!(
        "{{\"summary\":true,\"student_epochs\":{student_epochs},\"labels_only_mean\":{pm:.4},\"labels_only_sd\":{ps:.4},\
         \"distilled_mean\":{dm:.4},\"distilled_sd\":{ds:.4},\"teacher\":{teacher_acc:.4},\
         \"temperature\":{temperature},\"alpha\":{alpha}}}"
    );
    Ok(())
}

fn shrink(
    spec: &ModelSpec,
    (x, y, xt, yt): (&Tensor, &Tensor, &Tensor, &Tensor),
    epochs: usize,
    finetune: usize,
) -> ember_nn::Result<()> {
    use ember_nn::shrink::prune_channels;
    let images =
        |t: &Tensor| -> ember_nn::Result<Tensor> { Ok(t.reshape(vec![t.shape()[0], 1, 28, 28])?) };
    let (xi, xti) = (images(x)?, images(xt)?);
    let compile =
        |net: Sequential| net.compile(Optimizer::adam(), Loss::CrossEntropy, &[Metric::Accuracy]);
    let mut reference = compile(spec.build(0, Device::Cpu)?);
    let t = Instant::now();
    reference.fit(&xi, y, fit_cfg(epochs + finetune, 0))?;
    let ref_epoch_s = t.elapsed().as_secs_f64() / (epochs + finetune) as f64;
    let ref_acc = accuracy(&reference, &xti, yt)?;
    let mut base = compile(spec.build(0, Device::Cpu)?);
    base.fit(&xi, y, fit_cfg(epochs, 0))?;
    let base_acc = accuracy(&base, &xti, yt)?;
    let (small, report) = prune_channels(base.network, &[1, 28, 28], 0.5)?;
    let mut small = compile(small);
    let pruned_acc = accuracy(&small, &xti, yt)?;
    let t = Instant::now();
    let mut cfg = fit_cfg(epochs + finetune, 0);
    cfg.initial_epoch = epochs;
    small.fit(&xi, y, cfg)?;
    let small_epoch_s = t.elapsed().as_secs_f64() / finetune.max(1) as f64;
    let small_acc = accuracy(&small, &xti, yt)?;
    // Inference over the test set, interleaved (the process's threads: RAYON_NUM_THREADS).
    let (mut t_ref, mut t_small) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        for (net, times) in [
            (&reference.network, &mut t_ref),
            (&small.network, &mut t_small),
        ] {
            let t = Instant::now();
            for s in (0..xti.shape()[0]).step_by(500) {
                let n = 500.min(xti.shape()[0] - s);
                std::hint::black_box(net.forward(&xti.narrow(0, s, n)?, false)?);
            }
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mr, ms) = (median(&mut t_ref), median(&mut t_small));
    println!(
        "{{\"reference_epochs\":{},\"reference_accuracy\":{ref_acc:.4},\"base_epochs\":{epochs},\
         \"base_accuracy\":{base_acc:.4},\"pruned_before_finetune\":{pruned_acc:.4},\
         \"pruned_finetuned_accuracy\":{small_acc:.4},\"accuracy_cost_points\":{:.2},\
         \"layers\":\"{:?}\",\"parameters\":[{},{}],\"train_epoch_s\":[{ref_epoch_s:.2},{small_epoch_s:.2}],\
         \"infer_test_ms\":[{mr:.1},{ms:.1}],\"infer_speedup\":{:.2}}}",
        epochs + finetune,
        100.0 * (ref_acc - small_acc),
        report.layers,
        report.parameters.0,
        report.parameters.1,
        mr / ms
    );
    Ok(())
}
