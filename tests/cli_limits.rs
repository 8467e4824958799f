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

/// Under an address-space limit (`ulimit -v`, 1 GiB here) a model whose parameters and
/// optimizer state need more is refused in one line before training, where it used to abort
/// with "memory allocation of N bytes failed" (SIGABRT) once the limit was hit. The same model
/// trains without the limit only on a machine with the memory, so nothing else is checked.
#[test]
fn train_under_an_address_space_limit_is_refused_cleanly() {
    let Ok(sh) = which_sh() else {
        println!("SKIPPED: no /bin/sh to set ulimit -v");
        return;
    };
    let cmd = format!(
        "ulimit -v 1048576 && exec '{}' train --hidden 8192,8192 --epochs 1",
        env!("CARGO_BIN_EXE_ember")
    );
    let out = Command::new(sh)
        .args(["-c", &cmd])
        .output()
        .expect("sh runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("--hidden") && err.contains("ulimit -v"),
        "{err}"
    );
}

fn which_sh() -> Result<&'static str, ()> {
    if std::path::Path::new("/bin/sh").exists() {
        Ok("/bin/sh")
    } else {
        Err(())
    }
}
