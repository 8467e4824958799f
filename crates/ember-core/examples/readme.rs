//! The README's autograd example: logistic regression trained with BCE and fused SGD steps.
//! Kept here so `cargo test` builds it and the README cannot drift from working code.

use ember_core::{Activation, DType, Device, Reduction, Tensor, loss, optim};
use rand::SeedableRng;

fn main() -> ember_core::Result<()> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let dev = Device::Cpu;
    // Data: is the first feature positive?
    let x = Tensor::randn(0.0, 1.0, (64, 4), DType::F32, dev, &mut rng)?;
    let y = x.narrow(1, 0, 1)?.gt_scalar(0.0)?;
    // Parameters are variables: leaves that record gradients.
    let w = Tensor::randn(0.0, 0.5, (1, 4), DType::F32, dev, &mut rng)?.as_variable();
    let b = Tensor::zeros(1, DType::F32, dev)?.as_variable();
    let sgd = optim::SgdConfig {
        lr: 0.5,
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    };
    for step in 0..100 {
        let p = x.linear(&w, Some(&b), Activation::Sigmoid)?; // one fused GEMM + epilogue
        let l = loss::binary_cross_entropy(&p, &y, Reduction::Mean)?;
        let grads = l.backward()?; // reverse mode over the recorded graph
        for v in [&w, &b] {
            optim::sgd_step(v, grads.get(v).unwrap(), None, &sgd)?; // fused, in place
        }
        if step % 25 == 0 {
            println!("step {step}: loss {:.4}", l.to_scalar::<f32>()?);
        }
    }
    Ok(())
}
