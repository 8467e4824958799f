//! `ember bench quant`: inference of the MNIST CNN's layers (examples/models/mnist_cnn.toml) in
//! int8 against f32, batch 256 — each layer alone (Conv2d 1→32 3×3 on 28×28, Conv2d 32→64 3×3
//! on 13×13, Dense 1600→128, Dense 128→10, all with their activations) and the whole network
//! (with its max pools and Flatten), quantized dynamically (`ember_nn::quantize`). The f32 side is
//! the same layers' forward without autograd. Wall time per call, and on one thread the
//! thread's CPU time; the ratio f32/int8 is the speed-up.

use super::{Out, cpu_per_call, round, time_it};
use ember_core::{DType, Device, Tensor};
use ember_nn::conv::{Conv2d, ConvOptions};
use ember_nn::module::Module;
use ember_nn::pooling::MaxPool2d;
use ember_nn::prelude::{Activation, Dense, Flatten, Sequential};
use ember_nn::quantize::quantize_dynamic;
use rand::SeedableRng;
use serde_json::json;

const BATCH: usize = 256;

/// The MNIST CNN (random weights: speed does not depend on their values).
fn mnist_cnn(rng: &mut rand::rngs::StdRng) -> ember_nn::Result<Sequential> {
    let relu = ConvOptions {
        activation: Activation::Relu,
        ..Default::default()
    };
    Ok(Sequential::new()
        .add(Conv2d::with_options(1, 32, (3, 3), relu, rng)?)
        .add(MaxPool2d::new(2))
        .add(Conv2d::with_options(32, 64, (3, 3), relu, rng)?)
        .add(MaxPool2d::new(2))
        .add(Flatten::new())
        .add(Dense::new(1600, 128, Activation::Relu, rng)?)
        .add(Dense::new(128, 10, Activation::None, rng)?))
}

/// Times f32 and int8 forward passes of each layer and of the network on `threads` threads.
pub(super) fn run(threads: usize, min_time: f64, out: &Out) -> Result<(), String> {
    let err = |e: ember_nn::NnError| format!("bench quant: {e}");
    let cerr = |e: ember_core::Error| format!("bench quant: {e}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let net = mnist_cnn(&mut rng).map_err(err)?;
    let q = quantize_dynamic(&net).map_err(err)?;
    let x = Tensor::rand(
        0.0,
        1.0,
        (BATCH, 1, 28, 28),
        DType::F32,
        Device::Cpu,
        &mut rng,
    )
    .map_err(cerr)?;
    // Each layer's input: the f32 network's activations (layer i sees what layer i − 1 gives).
    let mut inputs = vec![x.clone()];
    let mut h = x.clone();
    for layer in net.layers() {
        h = ember_core::no_grad(|| layer.forward(&h, false)).map_err(err)?;
        inputs.push(h.clone());
    }
    let mut cases: Vec<(String, &dyn Module, &dyn Module, &Tensor)> = Vec::new();
    for (i, (f, qi)) in net.layers().iter().zip(q.network().layers()).enumerate() {
        if matches!(f.kind(), "Conv2d" | "Dense") {
            cases.push((format!("{} {}", i, f.describe()), &**f, &**qi, &inputs[i]));
        }
    }
    cases.push(("network".into(), &net, q.network(), &x));
    for (name, f32_layer, q_layer, input) in cases {
        let mut failure = None;
        let mut f32_call = || {
            if let Err(e) = ember_core::no_grad(|| f32_layer.forward(input, false)) {
                failure.get_or_insert(e);
            }
        };
        let t_f32 = time_it(min_time, &mut f32_call);
        let c_f32 = cpu_per_call(threads, &mut f32_call);
        let mut q_call = || {
            if let Err(e) = q_layer.forward(input, false) {
                failure.get_or_insert(e);
            }
        };
        let t_q = time_it(min_time, &mut q_call);
        let c_q = cpu_per_call(threads, &mut q_call);
        if let Some(e) = failure {
            return Err(err(e));
        }
        let cpu_ratio = c_f32.zip(c_q).map(|(a, b)| a / b);
        out.emit(
            json!({"bench":"quant","case":name,"batch":BATCH,"threads":threads,
                   "f32_ms":round(t_f32*1e3),"int8_ms":round(t_q*1e3),
                   "speedup":round(t_f32/t_q),
                   "cpu_f32_ms":c_f32.map(|t| round(t*1e3)),
                   "cpu_int8_ms":c_q.map(|t| round(t*1e3)),
                   "cpu_speedup":cpu_ratio.map(round)}),
            format!(
                "quant {name:<34} batch {BATCH}  {threads} thr  f32 {:8.3} ms  int8 {:8.3} ms  \
                 f32/int8 {:5.2}×{}",
                t_f32 * 1e3,
                t_q * 1e3,
                t_f32 / t_q,
                cpu_ratio.map_or(String::new(), |r| format!("  [cpu time: {r:.2}×]"))
            ),
        );
    }
    Ok(())
}
