//! `ember train --checkpoint` and `--resume` in one process: a run cut short after a
//! checkpoint and resumed from it saves exactly the bytes of an uninterrupted run; the
//! checkpoint written mid-way is a model `ember evaluate` reads; flags that contradict the
//! checkpoint are refused with the reason. The same under `mpirun`, with a rank killed, is in
//! tests/cli_mpi.rs (feature `mpi`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ember(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ember"));
    for v in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"] {
        c.env_remove(v);
    }
    c.args(args).output().expect("run ember")
}

fn ok(args: &[&str]) -> String {
    let out = ember(args);
    assert!(
        out.status.success(),
        "ember {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(args: &[&str]) -> String {
    let out = ember(args);
    assert!(!out.status.success(), "ember {args:?} should have failed");
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!e.contains("panicked"), "{e}");
    e
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("resume-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn resumed_run_saves_the_bytes_of_an_uninterrupted_one() {
    let dir = scratch("bytes");
    let (whole, ck, resumed) = (
        dir.join("whole.safetensors"),
        dir.join("ck.safetensors"),
        dir.join("resumed.safetensors"),
    );
    let common = ["train", "--json", "--seed", "4", "--threads", "1"];
    let mut a = common.to_vec();
    a.extend(["--epochs", "7", "--save", s(&whole)]);
    ok(&a);
    // Three epochs with a checkpoint every 2: written after epochs 2 and 3 (the last).
    let mut a = common.to_vec();
    a.extend([
        "--epochs",
        "3",
        "--checkpoint",
        s(&ck),
        "--checkpoint-every",
        "2",
    ]);
    ok(&a);
    // The mid-way checkpoint is a model `ember evaluate` reads.
    let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/data/breast_cancer.csv");
    let eval = ok(&["evaluate", "--model", s(&ck), "--data", csv, "--json"]);
    assert!(eval.contains("accuracy"), "{eval}");
    // Resumed to 7 epochs: the same bytes as the uninterrupted run (weights, optimizer state,
    // metadata).
    let mut a = common.to_vec();
    a.extend(["--epochs", "7", "--resume", s(&ck), "--save", s(&resumed)]);
    ok(&a);
    assert!(
        std::fs::read(&resumed).expect("resumed save") == std::fs::read(&whole).expect("save"),
        "the resumed run's checkpoint differs from the uninterrupted run's"
    );
    // The text output names where it resumed.
    let mut a = vec!["train", "--seed", "4", "--threads", "1"];
    a.extend(["--epochs", "4", "--resume", s(&ck)]);
    let out = ok(&a);
    assert!(
        out.contains("Resumed from") && out.contains("after epoch 3"),
        "{out}"
    );
}

#[test]
fn contradictions_with_the_checkpoint_are_refused() {
    let dir = scratch("refuse");
    let ck = dir.join("ck.safetensors");
    ok(&[
        "train",
        "--json",
        "--seed",
        "1",
        "--epochs",
        "2",
        "--checkpoint",
        s(&ck),
    ]);
    let base = ["train", "--seed", "1", "--resume", s(&ck)];
    let cases: [(&[&str], &str); 5] = [
        (
            &["--epochs", "5", "--initial-epoch", "1"],
            "--initial-epoch 1",
        ),
        (&["--epochs", "2"], "already trained 2"),
        (&["--epochs", "5", "--batch-size", "20"], "--batch-size 10"),
        (&["--epochs", "5", "--optimizer", "sgd"], "sgd"),
        (&["--epochs", "5", "--load", s(&ck)], "--load"),
    ];
    for (extra, want) in cases {
        let mut a = base.to_vec();
        a.extend(extra);
        let e = err(&a);
        assert!(e.contains(want), "{extra:?}: {e}");
    }
    let e = err(&["train", "--seed", "2", "--epochs", "5", "--resume", s(&ck)]);
    assert!(e.contains("--seed 1"), "{e}");
    // A file without a resume point.
    let e = err(&[
        "train",
        "--epochs",
        "5",
        "--resume",
        "/nonexistent/x.safetensors",
    ]);
    assert!(e.contains("--resume"), "{e}");
    let e = err(&["train", "--checkpoint-every", "0", "--checkpoint", s(&ck)]);
    assert!(e.contains("--checkpoint-every"), "{e}");
}
