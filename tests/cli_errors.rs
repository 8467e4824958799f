//! The `ember` binary's messages for bad flags and broken output: clap's whole message (usage
//! and "a similar ... exists" tip), negative numbers reaching the range checks, the same
//! `--threads` rule in every subcommand, a full stdout reported (not a panic), `ember info`'s
//! GPU line and unknown `bench mlp` sizes.

use std::process::{Command, Output, Stdio};

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .output()
        .expect("the ember binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails with one line on stderr containing `want`, status 1, and no panic.
fn one_line_error(args: &[&str], want: &str) {
    let out = ember(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: want '{want}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn clap_messages_keep_usage_and_tips() {
    let bare = ember(&[]);
    let err = stderr(&bare);
    assert_eq!(bare.status.code(), Some(2), "{err}");
    for want in ["Usage:", "train", "bench", "info"] {
        assert!(err.contains(want), "bare ember: want '{want}' in: {err}");
    }
    let typo = ember(&["trian"]);
    let err = stderr(&typo);
    assert_eq!(typo.status.code(), Some(2), "{err}");
    assert!(err.contains("'trian'"), "{err}");
    assert!(err.contains("similar subcommand exists: 'train'"), "{err}");
    assert!(err.contains("Usage:"), "{err}");
    let flag = ember(&["train", "--epoch", "5"]);
    let err = stderr(&flag);
    assert_eq!(flag.status.code(), Some(2), "{err}");
    assert!(err.contains("similar argument exists: '--epochs'"), "{err}");
}

#[test]
fn negative_numbers_reach_the_range_checks() {
    one_line_error(
        &["train", "--lr", "-0.1"],
        "--lr must be a positive number, got -0.1",
    );
    one_line_error(
        &["train", "--validation-split", "-0.5"],
        "--validation-split must be in [0, 1), got -0.5",
    );
    one_line_error(&["train", "--l2", "-1"], "--l2 must be a non-negative");
    one_line_error(
        &["train", "--hidden", "-5"],
        "--hidden: '-5' is not a positive layer size",
    );
    // Whole-number flags: clap's message names the flag and says the value is negative.
    let out = ember(&["train", "--epochs", "-1"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--epochs") && err.contains("negative"),
        "{err}"
    );
    assert!(!err.contains("unexpected argument"), "{err}");
}

#[test]
fn threads_zero_is_refused_by_every_subcommand() {
    one_line_error(&["train", "--threads", "0"], "--threads must be at least 1");
    one_line_error(
        &[
            "bench",
            "gemm",
            "--threads",
            "0",
            "--sizes",
            "8",
            "--min-time",
            "0",
        ],
        "--threads must be at least 1",
    );
}

#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        println!("SKIPPED: no /dev/full on this system");
        return;
    };
    for args in [&["info"][..], &["train", "--epochs", "1"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(args)
            .stdout(Stdio::from(full.try_clone().unwrap()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("cannot write to stdout"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn info_prints_a_gpu_line() {
    let out = ember(&["info"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let gpu = text.lines().find(|l| l.starts_with("gpu:"));
    let gpu = gpu.unwrap_or_else(|| panic!("no gpu: line in:\n{text}"));
    assert!(gpu.len() > "gpu:".len() + 4, "{gpu}");
}

#[test]
fn bench_refuses_unknown_sizes() {
    // Before anything is measured: nothing on stdout.
    let out = ember(&["bench", "mlp", "--sizes", "seed,foo", "--min-time", "0"]);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    one_line_error(
        &[
            "bench",
            "mlp",
            "--sizes",
            "foo",
            "--threads",
            "1",
            "--min-time",
            "0",
        ],
        "'foo'",
    );
}
