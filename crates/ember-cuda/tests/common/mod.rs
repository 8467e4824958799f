//! Helpers shared by the ember-cuda integration tests: honest skipping, random data, and
//! comparison with f64 references.
#![allow(dead_code)]

use std::io::Write;
use std::sync::Arc;

/// Prints a `SKIPPED:` line straight to stderr, past the test harness's output capture, so
/// every skipped test is visible in a plain `cargo test` run.
pub fn skipped(line: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {line}");
}

use ember_cuda::CudaDevice;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// The GPU, or `None` after printing one `SKIPPED: <reason>` line. With `EMBER_REQUIRE_GPU=1`
/// a missing GPU fails the test instead.
pub fn gpu_or_skip(test: &str) -> Option<Arc<CudaDevice>> {
    match CudaDevice::get(0) {
        Ok(d) => Some(d),
        Err(e) => {
            if required("EMBER_REQUIRE_GPU") {
                panic!("{test}: EMBER_REQUIRE_GPU=1 but no usable GPU: {e}");
            }
            skipped(&format!("{test}: no usable CUDA device ({e})"));
            None
        }
    }
}

/// True when NVRTC can be used; otherwise prints one `SKIPPED:` line, or fails under
/// `EMBER_REQUIRE_NVRTC=1`.
pub fn nvrtc_or_skip(test: &str) -> bool {
    if ember_cuda::compile::nvrtc_available() {
        return true;
    }
    if required("EMBER_REQUIRE_NVRTC") {
        panic!(
            "{test}: EMBER_REQUIRE_NVRTC=1 but libnvrtc.so.13 cannot be loaded \
             (source scripts/cuda-wheels.sh)"
        );
    }
    skipped(&format!(
        "{test}: NVRTC library not found (source scripts/cuda-wheels.sh)"
    ));
    false
}

/// A fresh random generator; the seed is printed so a failure can be replayed with
/// `EMBER_TEST_SEED=<seed>`.
pub fn rng(test: &str) -> StdRng {
    let seed = std::env::var("EMBER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    println!("{test}: seed {seed}");
    StdRng::seed_from_u64(seed)
}

/// `n` uniform values in [lo, hi).
pub fn uniform(r: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

/// The sizes every elementwise-style test walks: 1, small primes-ish, a non-multiple of the
/// vector width, and one past a power of two.
pub const SIZES: [usize; 5] = [1, 7, 67, 1000, 4097];

/// Asserts |got - want| <= rel * scale + abs for every element, naming the first failure.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], scale: &[f64], rel: f64, abs: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for i in 0..got.len() {
        let (g, w) = (got[i], want[i]);
        if w.is_nan() {
            assert!(g.is_nan(), "{what}[{i}]: got {g}, want NaN");
            continue;
        }
        let tol = rel * scale[i] + abs;
        assert!(
            (g - w).abs() <= tol || g == w,
            "{what}[{i}]: got {g}, want {w} (|diff| {} > tol {tol})",
            (g - w).abs()
        );
    }
}

/// Row-major offsets of a strided view, for references.
pub fn offsets(shape: &[usize], strides: &[usize], offset: usize) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    for mut i in 0..n {
        let mut off = offset;
        for d in (0..shape.len()).rev() {
            off += (i % shape[d]) * strides[d];
            i /= shape[d];
        }
        out.push(off);
    }
    out
}
