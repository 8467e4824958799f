//! Runs `ember bench lstm` briefly: one JSON line for the sequential-MNIST LSTM training step,
//! with a positive throughput and, on one thread, its CPU-time figures.

use serde_json::Value;
use std::process::Command;

#[test]
fn lstm_bench_reports_a_training_step() {
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args([
            "bench",
            "lstm",
            "--threads",
            "1",
            "--min-time",
            "0",
            "--json",
        ])
        .output()
        .expect("the ember binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v["bench"] == "lstm")
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["batch"], 64);
    assert_eq!(lines[0]["threads"], 1);
    assert!(lines[0]["samples_per_s"].as_f64().unwrap() > 0.0);
    if cfg!(all(target_os = "linux", target_pointer_width = "64")) {
        assert!(lines[0]["samples_per_cpu_s"].as_f64().unwrap() > 0.0);
    }
}
