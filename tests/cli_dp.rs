//! `ember train` with DP-SGD: ε reported after every epoch (growing), and flag combinations
//! whose guarantee would be false refused in one line before training.

use std::process::{Command, Output};

fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("train")
        .args(args)
        .output()
        .expect("the ember binary runs")
}

#[test]
fn epsilon_is_reported_and_grows() {
    let out = train(&[
        "--dp-noise",
        "1.5",
        "--dp-clip",
        "1.0",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let eps: Vec<f64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("epsilon").and_then(|e| e.as_f64()))
        .collect();
    assert_eq!(eps.len(), 3, "{text}");
    assert!(
        eps[0] > 0.0 && eps[0] < eps[1] && eps[1] < eps[2],
        "{eps:?}"
    );
}

#[test]
fn false_guarantees_are_refused() {
    for (args, want) in [
        (&["--dp-noise", "1.0"][..], "needs --dp-clip"),
        (&["--dp-clip", "1.0"][..], "needs --dp-noise"),
        (
            &["--dp-noise", "0", "--dp-clip", "1"][..],
            "noise multiplier 0",
        ),
        (
            &["--dp-noise", "1", "--dp-clip", "-2"][..],
            "clipping norm -2",
        ),
        (
            &["--dp-noise", "1", "--dp-clip", "1", "--dp-delta", "1"][..],
            "delta 1",
        ),
        (
            &["--dp-noise", "1", "--dp-clip", "1", "--l2", "0.01"][..],
            "--l1/--l2",
        ),
    ] {
        let out = train(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: '{want}' not in {err}");
    }
}
