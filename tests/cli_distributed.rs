//! `ember train --distributed` where it cannot run: in a build without the `mpi` feature, or
//! outside an MPI launcher, it says how to build and launch (exit 1, nothing trained, no
//! panic). The runs under `mpirun` are in tests/cli_mpi.rs (feature `mpi`).

use std::process::Command;

fn ember() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ember"));
    // As if started by hand, even when the test itself runs under a launcher.
    for v in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"] {
        c.env_remove(v);
    }
    c
}

#[test]
fn distributed_without_mpi_says_how_to_launch() {
    let out = ember()
        .args(["train", "--distributed", "--epochs", "1"])
        .output()
        .expect("run ember");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let why = if cfg!(feature = "mpi") {
        "not started by an MPI launcher"
    } else {
        "built without MPI"
    };
    assert!(err.contains(why), "{err}");
    assert!(
        err.contains("mpirun -np") && err.contains("--features mpi"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "nothing trained");
}

#[test]
fn distributed_flags_need_distributed() {
    let out = ember()
        .args(["train", "--allreduce", "plain", "--epochs", "1"])
        .output()
        .expect("run ember");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--distributed"), "{err}");
}

#[test]
fn info_names_the_communicator() {
    let out = ember().arg("info").output().expect("run ember");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("communicator: single process"), "{text}");
}
