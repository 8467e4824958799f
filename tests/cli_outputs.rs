//! `ember train`'s outputs: paths checked before the first epoch, `--plot` formats, and the
//! progress bar (batches done of the epoch's total, shown only on a terminal).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .arg("train")
        .args(args)
        .output()
        .expect("the ember binary runs")
}

/// A fresh directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-cli-out-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small two-class CSV of `rows` rows.
fn tiny_csv(dir: &Path, rows: usize) -> PathBuf {
    let mut text = String::from("a,b,label\n");
    for i in 0..rows {
        text += &format!("{},{},{}\n", i as f64 * 0.1, (i % 7) as f64, i % 2);
    }
    let path = dir.join("tiny.csv");
    std::fs::write(&path, text).unwrap();
    path
}

/// Fails before the first epoch with one line on stderr containing every `want`.
fn fails_before_training(args: &[&str], want: &[&str]) {
    let out = train(args);
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: want '{w}' in: {err}");
    }
    assert!(!text.contains("Epoch"), "{args:?} trained first:\n{text}");
}

#[test]
fn output_paths_are_checked_before_the_first_epoch() {
    let dir = temp_dir("paths");
    let data = tiny_csv(&dir, 20);
    let data = data.to_str().unwrap();
    let model = dir.join("m.safetensors");
    let model_s = model.to_str().unwrap();
    fails_before_training(
        &["--data", data, "--save", "/nonexistent/x.safetensors"],
        &["--save", "/nonexistent"],
    );
    fails_before_training(
        &[
            "--data",
            data,
            "--plot",
            "/nonexistent/x.svg",
            "--save",
            model_s,
        ],
        &["--plot", "/nonexistent"],
    );
    assert!(!model.exists());
    // An extension with no writer is refused up front, naming what is supported.
    fails_before_training(
        &[
            "--data",
            data,
            "--plot",
            dir.join("x.png").to_str().unwrap(),
        ],
        &["--plot", ".png", "svg"],
    );
    // A directory is not a file to write.
    fails_before_training(
        &["--data", data, "--save", dir.to_str().unwrap()],
        &["--save", "directory"],
    );
    // Good paths: both written.
    let svg = dir.join("c.svg");
    let out = train(&[
        "--data",
        data,
        "--epochs",
        "1",
        "--save",
        model_s,
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(model.exists() && svg.exists());
}

#[test]
fn progress_bar_counts_batches_of_the_epoch_on_a_terminal_only() {
    let dir = temp_dir("bar");
    let data = tiny_csv(&dir, 40);
    let data = data.to_str().unwrap();
    // Not a terminal: no bar at all.
    let out = train(&["--data", data, "--epochs", "1"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("batches"));
    let has_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        println!("SKIPPED: no `script` command to give ember a terminal");
        return;
    }
    // 40 rows, 20% test (8), no validation: 32 training rows in batches of 1.
    let cmd = format!(
        "{} train --data {data} --epochs 1 --batch-size 1 --validation-split 0",
        env!("CARGO_BIN_EXE_ember")
    );
    let out = Command::new("script")
        .args(["-qc", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("/32 batches"), "no x/32 count in:\n{text}");
    assert!(text.contains("ETA"), "{text}");
    // --json prints no bar even on a terminal.
    let out = Command::new("script")
        .args(["-qc", &format!("{cmd} --json"), "/dev/null"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("batches"));
}
