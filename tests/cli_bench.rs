//! Runs `ember bench gemm` briefly: the JSON line names the operands' dtype (f32, f64, f16,
//! bf16), half types run through the widening GEMM, and an unknown dtype is a one-line error (no
//! panic).

use serde_json::Value;
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["bench", "gemm", "--threads", "1", "--min-time", "0.01"])
        .args(args)
        .output()
        .expect("the ember binary runs")
}

#[test]
fn gemm_json_names_the_dtype() {
    for dtype in ["f32", "f64", "f16", "bf16"] {
        let out = bench(&["--sizes", "64,10x10x10", "--dtype", dtype, "--json"]);
        assert!(
            out.status.success(),
            "{dtype}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .filter(|v: &Value| v["bench"] == "gemm")
            .collect();
        assert_eq!(lines.len(), 2, "{dtype}: {lines:?}");
        for v in &lines {
            assert_eq!(v["dtype"], dtype);
            assert!(v["gflops"].as_f64().unwrap() > 0.0, "{v}");
        }
    }
}

#[test]
fn unknown_dtype_is_a_clear_error() {
    let out = bench(&["--sizes", "64", "--dtype", "f8"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown --dtype 'f8'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `ember bench conv`: one JSON line per named shape with its timings, and an unknown shape is
/// a one-line error naming the known ones.
#[test]
fn conv_bench_runs_named_shapes() {
    let run = |sizes: &str| {
        Command::new(env!("CARGO_BIN_EXE_ember"))
            .args([
                "bench",
                "conv",
                "--threads",
                "1",
                "--min-time",
                "0.01",
                "--json",
            ])
            .args(["--sizes", sizes])
            .output()
            .expect("the ember binary runs")
    };
    let out = run("mnist_conv1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v["bench"] == "conv")
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["shape"], "mnist_conv1");
    assert!(lines[0]["fwd_bwd_gflops"].as_f64().unwrap() > 0.0);
    let out = run("lenet");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown shape 'lenet'") && err.contains("resnet_3x3"),
        "{err}"
    );
}

/// `ember bench attention --sizes T`: one JSON line per length with forward and forward +
/// backward timings; a length that is not a number is a one-line error.
#[test]
fn attention_bench_runs_given_lengths() {
    let run = |sizes: &str| {
        Command::new(env!("CARGO_BIN_EXE_ember"))
            .args([
                "bench",
                "attention",
                "--threads",
                "1",
                "--min-time",
                "0.01",
                "--json",
            ])
            .args(["--sizes", sizes])
            .output()
            .expect("the ember binary runs")
    };
    let out = run("16");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v["bench"] == "attention")
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["t"], 16);
    assert!(lines[0]["fwd_bwd_ms"].as_f64().unwrap() > 0.0);
    let out = run("long");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'long' is not a length"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
