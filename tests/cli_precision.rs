//! `ember train --precision`: the policy named in the header, the loss-scaling line under f16,
//! and a one-line error for an unknown precision.

use std::process::{Command, Output};

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .arg("train")
        .args(args)
        .output()
        .expect("the ember binary runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn precision_is_reported_and_f16_scales_its_loss() {
    for p in ["f32", "bf16", "f16"] {
        let text = stdout(&ember(&["--epochs", "3", "--precision", p]));
        assert!(
            text.contains(&format!("seed 0, precision {p}")),
            "{p}: no header: {text}"
        );
        assert!(text.contains("Test ("), "{p}: no test line: {text}");
        assert_eq!(
            text.contains("Loss scaling: final scale"),
            p == "f16",
            "{p}: {text}"
        );
    }
}

#[test]
fn unknown_precision_is_a_one_line_error() {
    let out = ember(&["--precision", "f8"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--precision") && err.contains("f8"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
