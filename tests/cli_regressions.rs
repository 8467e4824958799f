//! Regression tests for `ember train` crashing (a panic, exit status 101) on input that should
//! get a one-line error (exit status 1), found by the fuzz targets. Tests of open bugs are
//! `#[ignore]`d with the bug in one line; remove the `ignore` together with the fix.

use std::process::Command;

#[test]
// Fixed: `ember train --data f.csv` panicked (debug builds) on a label >= 2^64, via
// Table::class_count; found by fuzz target csv_loader.
fn train_on_csv_with_huge_label_panics() {
    let dir = std::env::temp_dir().join(format!("ember-cli-regressions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("huge_label.csv");
    std::fs::write(&csv, "x,y\n1,0\n2,1\n3,1e20\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(["train", "--epochs", "1", "--data"])
        .arg(&csv)
        .output()
        .expect("the ember binary runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "want a one-line error, got: {stderr}"
    );
    assert!(stderr.starts_with("error:"), "{stderr}");
}
