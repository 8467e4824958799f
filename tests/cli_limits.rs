//! Sizes that cannot fit in memory are refused before anything is allocated, in one line
//! naming the flag and the bytes (instead of an OOM kill or an allocation abort).

use std::process::{Command, Output};
use std::time::Instant;

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .output()
        .expect("the ember binary runs")
}

fn refused(args: &[&str], flag: &str) {
    let started = Instant::now();
    let out = ember(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(flag) && err.contains("bytes"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        started.elapsed().as_secs() < 30,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn train_refuses_a_model_larger_than_memory() {
    // 10^16 weights in the second layer: 40 PB in f32, more than any machine has.
    refused(
        &["train", "--hidden", "100000000,100000000", "--epochs", "1"],
        "--hidden",
    );
}

#[test]
fn bench_refuses_operands_larger_than_memory() {
    refused(
        &["bench", "gemm", "--sizes", "1000000", "--min-time", "0"],
        "--sizes",
    );
    refused(
        &[
            "bench",
            "elementwise",
            "--sizes",
            "1000000000000",
            "--min-time",
            "0",
        ],
        "--sizes",
    );
}
