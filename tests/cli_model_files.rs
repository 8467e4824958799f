//! Model files (`ember train --model`), and a saved model applied to new data (`ember predict`,
//! `ember evaluate`): the seed model file reproduces the flags' run, the checkpoint carries the
//! model and its scaling, and mistakes are one-line errors naming the file and what is wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ember(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ember"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("the ember binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-cli-model-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Fails with status 1 and one stderr line containing every `want`.
fn fails(args: &[&str], want: &[&str]) {
    let out = ember(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: '{w}' not in: {err}");
    }
}

#[test]
fn the_seed_model_file_reproduces_the_flags_run() {
    let common = ["--epochs", "5", "--json"];
    let flags = ember(&[&["train"][..], &common].concat());
    let file = ember(
        &[
            &["train", "--model", "examples/models/seed_mlp.toml"][..],
            &common,
        ]
        .concat(),
    );
    assert!(
        flags.status.success() && file.status.success(),
        "{}",
        stderr(&file)
    );
    let strip = |o: &Output| {
        stdout(o)
            .lines()
            .map(|l| l.split(",\"seconds\"").next().unwrap_or(l).to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&flags), strip(&file));
}

#[test]
fn a_saved_model_predicts_and_evaluates() {
    let dir = temp_dir("iris");
    let ck = dir.join("iris.safetensors");
    let out = ember(&[
        "train",
        "--data",
        "data/iris.csv",
        "--epochs",
        "30",
        "--save",
        s(&ck),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // evaluate on the whole table: the report has the test keys and a 3×3 confusion matrix
    // whose counts add up to the 150 rows.
    let ev = ember(&[
        "evaluate",
        "--model",
        s(&ck),
        "--data",
        "data/iris.csv",
        "--json",
    ]);
    assert!(ev.status.success(), "{}", stderr(&ev));
    let v: serde_json::Value = serde_json::from_str(stdout(&ev).trim()).unwrap();
    let total: u64 = v["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()))
        .sum();
    assert_eq!(total, 150);
    assert!(v["test_accuracy"].as_f64().unwrap() > 0.6, "{v}");
    // predict on rows without the label column: a header and one line per row, probabilities
    // summing to 1, and the same classes as on the labelled file.
    let text = std::fs::read_to_string("data/iris.csv").unwrap();
    let unlabelled: String = text
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect();
    let csv = dir.join("x.csv");
    std::fs::write(&csv, unlabelled).unwrap();
    let p1 = ember(&["predict", "--model", s(&ck), "--data", s(&csv)]);
    let p2 = ember(&["predict", "--model", s(&ck), "--data", "data/iris.csv"]);
    assert!(p1.status.success(), "{}", stderr(&p1));
    assert_eq!(stdout(&p1), stdout(&p2));
    let lines: Vec<String> = stdout(&p1).lines().map(String::from).collect();
    assert_eq!(lines[0], "row,class,p0,p1,p2");
    assert_eq!(lines.len(), 151);
    for l in &lines[1..] {
        let f: Vec<f64> = l.split(',').skip(2).map(|x| x.parse().unwrap()).collect();
        assert!((f.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{l}");
    }
    let js = ember(&[
        "predict",
        "--model",
        s(&ck),
        "--data",
        s(&csv),
        "--format",
        "json",
    ]);
    let first: serde_json::Value =
        serde_json::from_str(stdout(&js).lines().next().unwrap()).unwrap();
    assert_eq!(first["row"], 0);
    assert_eq!(first["probabilities"].as_array().unwrap().len(), 3);
    // Mistakes.
    fails(
        &["evaluate", "--model", s(&ck), "--data", s(&csv)],
        &["no label column", "evaluate needs labels"],
    );
    fails(
        &[
            "predict",
            "--model",
            s(&ck),
            "--data",
            "data/breast_cancer.csv",
        ],
        &["input columns", "the model takes 4"],
    );
    fails(
        &[
            "predict",
            "--model",
            s(&ck),
            "--data",
            s(&csv),
            "--format",
            "xml",
        ],
        &["--format", "xml"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn checkpoints_without_a_model_and_bad_model_files_are_refused() {
    let dir = temp_dir("bad");
    // A weights-only checkpoint (as a library user's `checkpoint::save` writes) has no model.
    let ck = dir.join("plain.safetensors");
    let tensors: Vec<(&str, safetensors::tensor::TensorView)> = Vec::new();
    std::fs::write(&ck, safetensors::tensor::serialize(tensors, None).unwrap()).unwrap();
    fails(
        &["predict", "--model", s(&ck), "--data", "data/iris.csv"],
        &["no 'ember.model'", "ember train --save"],
    );
    let typo = std::fs::read_to_string("examples/models/seed_mlp.toml")
        .unwrap()
        .replace("units = 5", "unit = 5");
    let file = dir.join("typo.toml");
    std::fs::write(&file, typo).unwrap();
    fails(
        &["train", "--model", s(&file)],
        &["--model", "typo.toml", "unit"],
    );
    let wrong = std::fs::read_to_string("examples/models/seed_mlp.toml")
        .unwrap()
        .replace("input_shape = [30]", "input_shape = [4]");
    let file = dir.join("wrong.toml");
    std::fs::write(&file, wrong).unwrap();
    fails(
        &["train", "--model", s(&file)],
        &["input_shape [4]", "30 features"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}
