//! Inference speed of the 784-512-512-10 ReLU MLP at batch 256: the f32 network against its
//! dynamically int8-quantized twin ([`quantize_dynamic`]), interleaved in one process. The
//! peer is `scripts/peers/mlp_quant_infer.py` (PyTorch's `quantize_dynamic`, same shapes).
//!
//! ```text
//! cargo run --release -p ember-nn --example quant_mlp_infer -- [threads] [windows]
//! ```
//!
//! Prints one JSON line per model: the median over `windows` timed windows (each 20 forward
//! passes, after 2 warm-up windows) of the milliseconds per batch, plus the best window.

use ember_core::{Activation, DType, Device, Tensor};
use ember_nn::module::Module;
use ember_nn::prelude::*;
use ember_nn::quantize::quantize_dynamic;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::Instant;

fn main() -> ember_nn::Result<()> {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let windows: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(7);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| NnError::Config(format!("rayon pool: {e}")))?;
    // Built inside the pool: a network is not Sync (its layers are trait objects).
    let times = pool.install(|| -> ember_nn::Result<[Vec<f64>; 2]> {
        let mut rng = StdRng::seed_from_u64(0);
        let net = Sequential::new()
            .add(Dense::new(784, 512, Activation::Relu, &mut rng)?)
            .add(Dense::new(512, 512, Activation::Relu, &mut rng)?)
            .add(Dense::new(512, 10, Activation::None, &mut rng)?);
        let q = quantize_dynamic(&net)?;
        let x = Tensor::rand(0.0, 1.0, (256, 784), DType::F32, Device::Cpu, &mut rng)?;
        let steps = 20;
        let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for w in 0..windows + 2 {
            // Interleaved: an f32 window, then an int8 window.
            for (which, times) in times.iter_mut().enumerate() {
                let t = Instant::now();
                for _ in 0..steps {
                    let y = if which == 0 {
                        net.forward(&x, false)?
                    } else {
                        q.forward(&x)?
                    };
                    std::hint::black_box(y);
                }
                if w >= 2 {
                    times.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
                }
            }
        }
        Ok(times)
    })?;
    for (name, mut t) in ["f32", "int8-dynamic"].into_iter().zip(times) {
        t.sort_by(f64::total_cmp);
        println!(
            "{{\"impl\": \"ember\", \"model\": \"{name}\", \"threads\": {threads}, \"batch\": 256, \"ms_per_batch\": {:.4}, \"ms_best\": {:.4}, \"isa\": \"{}\"}}",
            t[t.len() / 2],
            t[0],
            ember_core::qgemm::QPath::active()
        );
    }
    Ok(())
}
