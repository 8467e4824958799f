//! `ember train` on awkward data: CRLF line numbers, labels that would imply absurd class
//! counts, gapped labels, values beyond f32, one class only, a one-row file and a label column
//! that holds no class ids.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .arg("train")
        .args(args)
        .output()
        .expect("the ember binary runs")
}

/// Writes `text` to a file of this test's own directory.
fn csv(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-cli-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `rows` rows `i, i mod 5, label(i)`.
fn rows(rows: usize, label: impl Fn(usize) -> String) -> String {
    let mut text = String::from("a,b,label\n");
    for i in 0..rows {
        text += &format!("{},{},{}\n", i, i % 5, label(i));
    }
    text
}

fn run_on(path: &Path, extra: &[&str]) -> (Output, String, String) {
    let mut args = vec!["--data", path.to_str().unwrap(), "--epochs", "1"];
    args.extend_from_slice(extra);
    let out = train(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn one_line_error(path: &Path, extra: &[&str], want: &[&str]) -> String {
    let (out, _, err) = run_on(path, extra);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for w in want {
        assert!(err.contains(w), "want '{w}' in: {err}");
    }
    err
}

#[test]
fn crlf_files_report_the_right_line() {
    let path = csv("crlf.csv", "a,b,label\r\n1,2,0\r\n3,x,1\r\n");
    one_line_error(&path, &[], &["line 3, column 2 (b)", "'x'"]);
}

#[test]
fn labels_implying_absurd_class_counts_are_refused_with_their_line() {
    // The last row's label would make a million classes (and a 10^12-cell confusion matrix).
    let path = csv(
        "million.csv",
        &rows(4, |i| {
            if i == 3 {
                "1000000".into()
            } else {
                (i % 2).to_string()
            }
        }),
    );
    one_line_error(&path, &[], &["line 5", "1000000", "65536"]);
    // Fewer rows than the classes a label implies.
    let path = csv(
        "hundred.csv",
        &rows(4, |i| {
            if i == 3 {
                "100".into()
            } else {
                (i % 2).to_string()
            }
        }),
    );
    one_line_error(
        &path,
        &[],
        &["line 5", "label 100", "101 classes", "4 rows"],
    );
}

#[test]
fn gapped_labels_are_named_in_a_warning() {
    let path = csv("gaps.csv", &rows(30, |i| (2 * (i % 3)).to_string()));
    let (out, text, err) = run_on(&path, &[]);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning") && err.contains("no rows for classes 1, 3"),
        "{err}"
    );
    assert!(text.contains("5 classes"), "{text}");
}

#[test]
fn values_beyond_f32_are_refused_with_line_and_column() {
    for big in ["1e39", "1e308", "-4e38"] {
        let path = csv(
            "big.csv",
            &rows(20, |i| (i % 2).to_string()).replacen("\n7,", &format!("\n{big},"), 1),
        );
        let err = one_line_error(&path, &[], &["line 9, column 1 (a)", big, "f32"]);
        assert!(!err.contains("NaN"), "{err}");
    }
}

#[test]
fn one_class_only_says_undefined_and_warns() {
    let path = csv("zeros.csv", &rows(20, |_| "0".into()));
    let (out, text, err) = run_on(&path, &[]);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning") && err.contains("only class 0"),
        "{err}"
    );
    let test = text
        .lines()
        .find(|l| l.starts_with("Test"))
        .unwrap_or_else(|| panic!("{text}"));
    for metric in ["precision", "recall", "f1", "auc"] {
        assert!(test.contains(&format!("{metric} undefined")), "{test}");
    }
    let (out, text, _) = run_on(&path, &["--json"]);
    assert!(out.status.success());
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    for metric in ["precision", "recall", "f1", "auc"] {
        assert!(last[metric].is_null(), "{last}");
    }
}

#[test]
fn a_one_row_file_says_why_there_is_no_test_part() {
    let path = csv("one.csv", "a,b,label\n1,2,0\n");
    let (out, text, err) = run_on(&path, &[]);
    assert!(out.status.success(), "{err}");
    let line = text
        .lines()
        .find(|l| l.starts_with("No test part"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!line.contains("--test-split 0)"), "{line}");
    assert!(line.contains("1 row"), "{line}");
}

#[test]
fn a_target_column_without_class_ids_is_named() {
    let out = train(&["--target", "0", "--epochs", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("0..29"), "{err}");
    assert!(
        err.contains("line 2") && err.contains("not a whole number"),
        "{err}"
    );
}
