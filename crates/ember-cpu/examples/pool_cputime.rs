//! Thread CPU time per call of max pooling 2×2/2 (forward with argmax, and backward) on each
//! kernel path, at 1 thread: the measurement behind the figures in `pool/window.rs`. CPU time
//! (from `/proc/thread-self/schedstat`, Linux) stays meaningful on a loaded machine, where wall
//! time does not; compare it with the `median_cpu_us` of `scripts/peers/pool.py` at 1 thread.
//!
//! `cargo run --release -p ember-cpu --example pool_cputime -- [batch]` (default 64: N×32×26×26)

use ember_cpu::isa;
use ember_cpu::pool::{max_pool2d, max_pool2d_backward};
use ember_ops::{Axis, Pool2dSpec, PoolKind};

/// This thread's CPU time in nanoseconds (None off Linux).
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let (c, h, w) = (32, 26, 26);
    let ax = |i| Axis {
        input: i,
        kernel: 2,
        stride: 2,
        dilation: 1,
        pad_begin: 0,
        pad_end: 0,
    };
    let spec = Pool2dSpec {
        batch: n,
        channels: c,
        kind: PoolKind::Max,
        ceil_mode: false,
        h: ax(h),
        w: ax(w),
    };
    let x: Vec<f32> = (0..n * c * h * w)
        .map(|i| ((i * 7919) % 10007) as f32 * 1e-3 - 5.0)
        .collect();
    let m = n * c * spec.out_h() * spec.out_w();
    let (mut y, mut arg, mut dx) = (vec![0.0f32; m], vec![0u32; m], vec![0.0f32; x.len()]);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a rayon pool");
    // About 2·10⁹ input elements per measurement: long enough for the scheduler's accounting.
    let iters = (2_000_000_000 / x.len().max(1)).max(20);
    let Some(_) = cpu_ns() else {
        println!("SKIPPED: /proc/thread-self/schedstat is not readable here");
        return;
    };
    for round in 0..3 {
        for path in isa::supported() {
            pool.install(|| {
                isa::with(path, || {
                    let t0 = cpu_ns().unwrap_or(0);
                    for _ in 0..iters {
                        max_pool2d(std::hint::black_box(&x), &spec, &mut y, Some(&mut arg))
                            .expect("valid operands");
                    }
                    let f = (cpu_ns().unwrap_or(0) - t0) as f64 / iters as f64 / 1e3;
                    let t0 = cpu_ns().unwrap_or(0);
                    for _ in 0..iters {
                        max_pool2d_backward(std::hint::black_box(&y), &arg, &spec, &mut dx)
                            .expect("valid operands");
                    }
                    let b = (cpu_ns().unwrap_or(0) - t0) as f64 / iters as f64 / 1e3;
                    println!(
                        "round {round} N{n} {path}: forward {f:.1} us, backward {b:.1} us (thread CPU time per call)"
                    );
                })
                .expect("a supported path")
            });
        }
    }
}
