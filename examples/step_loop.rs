//! Runs a fixed number of training steps (forward, BCE loss, backward, Adam) on the core API,
//! for counting instructions per step with callgrind: the difference between two step counts
//! removes start-up costs. `scripts/step-instructions.sh` drives it.
//!
//! ```text
//! cargo run --release --example step_loop -- seed 1000
//! cargo run --release --example step_loop -- 784-512-512-1 20
//! ```

use ember_core::optim::{self, AdamConfig};
use ember_core::{Activation, DType, Device, Reduction, Tensor, loss};
use rand::SeedableRng;

fn main() -> ember_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (name, steps) = match (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok())) {
        (Some(n), Some(s)) => (n.as_str(), s),
        _ => {
            eprintln!("usage: step_loop seed|784-512-512-1 STEPS");
            std::process::exit(2);
        }
    };
    let (dims, batch, logits): (&[usize], usize, bool) = match name {
        "seed" => (&[10, 10, 5, 1], 10, false),
        "784-512-512-1" => (&[784, 512, 512, 1], 256, true),
        other => {
            eprintln!("step_loop: unknown model {other:?} (seed or 784-512-512-1)");
            std::process::exit(2);
        }
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let dev = Device::Cpu;
    let mut params = Vec::new();
    for w in dims.windows(2) {
        let std = (2.0 / w[0] as f64).sqrt();
        let wt = Tensor::randn(0.0, std, (w[1], w[0]), DType::F32, dev, &mut rng)?.as_variable();
        let b = Tensor::zeros(w[1], DType::F32, dev)?.as_variable();
        for p in [wt, b] {
            let (m, v) = (p.zeros_like()?, p.zeros_like()?);
            params.push((p, m, v));
        }
    }
    let x = Tensor::rand(-1.0, 1.0, (batch, dims[0]), DType::F32, dev, &mut rng)?;
    let yv: Vec<f32> = (0..batch).map(|i| (i % 2) as f32).collect();
    let y = Tensor::from_vec(yv, (batch, 1), dev)?;
    let layers = params.len() / 2;
    let mut last = 0.0;
    for step in 1..=steps {
        let mut h = x.clone();
        for l in 0..layers {
            let act = match (l + 1 == layers, logits) {
                (false, _) => Activation::Relu,
                (true, true) => Activation::None,
                (true, false) => Activation::Sigmoid,
            };
            h = h.linear(&params[2 * l].0, Some(&params[2 * l + 1].0), act)?;
        }
        let l = if logits {
            loss::binary_cross_entropy_with_logits(&h, &y, Reduction::Mean)?
        } else {
            loss::binary_cross_entropy(&h, &y, Reduction::Mean)?
        };
        let grads = l.backward()?;
        let cfg = AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            weight_decay: 0.0,
            step,
        };
        for (p, m, v) in &params {
            let g = grads
                .get(p)
                .expect("every parameter is on the loss's graph");
            optim::adam_step(p, g, m, v, &cfg)?;
        }
        last = l.to_scalar::<f32>()?;
    }
    println!("{name}: {steps} steps, last loss {last}");
    Ok(())
}
