//! Runs the `ember train` binary: JSON fields, determinism, the default accuracy, and one-line
//! errors for bad flags and bad CSV files.

use serde_json::Value;
use std::process::{Command, Output};

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .arg("train")
        .args(args)
        .output()
        .expect("the ember binary runs")
}

fn json_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn json_epochs_3_has_the_documented_fields() {
    let lines = json_lines(&ember(&["--json", "--epochs", "3"]));
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (i, epoch) in lines[..3].iter().enumerate() {
        let mut k = keys(epoch);
        k.sort();
        assert_eq!(
            k,
            [
                "accuracy",
                "epoch",
                "loss",
                "seconds",
                "val_accuracy",
                "val_loss"
            ]
        );
        assert_eq!(epoch["epoch"], i + 1);
        for f in ["loss", "val_loss", "seconds"] {
            assert!(epoch[f].as_f64().unwrap() >= 0.0, "{epoch}");
        }
        for f in ["accuracy", "val_accuracy"] {
            assert!((0.0..=1.0).contains(&epoch[f].as_f64().unwrap()), "{epoch}");
        }
    }
    let last = &lines[3];
    let mut k = keys(last);
    k.sort();
    assert_eq!(
        k,
        [
            "auc",
            "confusion",
            "f1",
            "precision",
            "recall",
            "test_accuracy",
            "test_loss"
        ]
    );
    let confusion = last["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 2);
    // Stratified 20%: round(212 · 0.2) + round(357 · 0.2) = 42 + 71 = 113 test rows.
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(total, 113);
    // Keys come in the documented order.
    let text = String::from_utf8(ember(&["--json", "--epochs", "1"]).stdout).unwrap();
    assert!(text.starts_with("{\"epoch\":1,\"loss\":"), "{text}");
    assert!(text.contains("{\"test_loss\":"), "{text}");
}

/// The output with the `seconds` values removed.
fn without_times(out: &Output) -> Vec<Value> {
    json_lines(out)
        .into_iter()
        .map(|mut v| {
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

#[test]
fn same_seed_same_output_and_default_config_is_accurate() {
    let a = without_times(&ember(&["--json", "--seed", "3"]));
    let b = without_times(&ember(&["--json", "--seed", "3"]));
    assert_eq!(a, b);
    let c = without_times(&ember(&["--json", "--seed", "4"]));
    assert_ne!(a, c);
    // The default configuration (100 epochs) on the held-out test part.
    let default = json_lines(&ember(&["--json"]));
    let acc = default.last().unwrap()["test_accuracy"].as_f64().unwrap();
    assert!(acc >= 0.95, "test accuracy {acc}");
}

#[test]
fn text_mode_prints_summary_epochs_and_test_report() {
    let out = ember(&[
        "--epochs",
        "2",
        "--validation-split",
        "0",
        "--test-split",
        "0.3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "Total params: 371",
        "Epoch 1/2 - loss:",
        "Epoch 2/2",
        "Confusion matrix",
        "Positive class: 1 (benign)",
    ] {
        assert!(text.contains(want), "missing '{want}' in:\n{text}");
    }
    assert!(!text.contains("val_loss"), "{text}");
}

#[test]
fn save_load_plot_and_options() {
    let dir = std::env::temp_dir().join(format!("ember-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = dir.join("m.safetensors");
    let svg = dir.join("curves.svg");
    let ck_s = ck.to_str().unwrap();
    let out = ember(&[
        "--epochs",
        "2",
        "--save",
        ck_s,
        "--plot",
        svg.to_str().unwrap(),
        "--optimizer",
        "rmsprop",
        "--l2",
        "0.001",
        "--dropout",
        "0.1",
        "--threads",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    let out = ember(&[
        "--epochs",
        "1",
        "--load",
        ck_s,
        "--optimizer",
        "rmsprop",
        "--dropout",
        "0.1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("optimizer state after"));
    // With another optimizer the weights alone are loaded.
    let out = ember(&["--epochs", "1", "--load", ck_s, "--optimizer", "sgd"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("weights only: its optimizer state is for rmsprop")
    );
    // Another architecture cannot load it: one line naming the tensor.
    let out = ember(&["--epochs", "1", "--load", ck_s, "--hidden", "7"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("layers.0.weight"), "{err}");
    let lines = json_lines(&ember(&[
        "--json",
        "--epochs",
        "2",
        "--data",
        "synthetic",
        "--optimizer",
        "sgd",
    ]));
    assert_eq!(lines.len(), 3);
}

fn one_line_error(args: &[&str], want: &str) {
    let out = ember(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_values_and_bad_csv_give_one_line_errors() {
    one_line_error(
        &["--validation-split", "1.5"],
        "--validation-split must be in [0, 1)",
    );
    one_line_error(&["--hidden", "10,x"], "--hidden");
    one_line_error(&["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'");
    one_line_error(&["--activation", "swish"], "unknown activation 'swish'");
    one_line_error(&["--device", "tpu"], "unknown device 'tpu'");
    one_line_error(&["--epochs", "0"], "--epochs");
    one_line_error(&["--data", "/no/such.csv"], "/no/such.csv");
    let dir = std::env::temp_dir().join(format!("ember-cli-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "a,b,label\n1,2,0\n3,oops,1\n").unwrap();
    one_line_error(
        &["--data", bad.to_str().unwrap()],
        "line 3, column 2 (b): 'oops' is not a number",
    );
    one_line_error(
        &["--data", bad.to_str().unwrap(), "--target", "y"],
        "no column named 'y'",
    );
}
