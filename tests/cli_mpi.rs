//! `ember train --distributed` under real MPI processes (`mpirun`, Open MPI over loopback;
//! oversubscribed on a 2-core machine). Built only with `--features mpi`; `.ci/run` installs
//! Open MPI and runs `cargo test --features mpi --test cli_mpi`.
//!
//! - 2 and 3 ranks give checkpoints byte-identical to 1 rank (weights, optimizer state and
//!   metadata), for the seed model and a 784-512-512-1 MLP;
//! - a rank killed mid-epoch makes the job end within a bound, with an error;
//! - a run resumed from a checkpoint on another rank count matches an uninterrupted one, also
//!   after a rank of a `--checkpoint` run was killed (`--resume`, on 3 and on 1 rank);
//! - gradient buckets (`--bucket-mb 0`) leave the checkpoint byte-identical;
//! - two ranks in two network namespaces joined by a veth pair (MPI's TCP transport across a
//!   real interface), or a SKIPPED line saying why the namespaces cannot be made here.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ember() -> &'static str {
    env!("CARGO_BIN_EXE_ember")
}

/// A fresh scratch directory under the target directory.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("mpi-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `mpirun` with the flags every test needs: root in CI containers, more ranks than cores,
/// TCP/shared memory only (no InfiniBand probing).
fn mpirun(np: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "--mca",
        "btl",
        "self,vader,tcp",
    ])
    .args(["-np", &np.to_string()]);
    c
}

fn run(mut c: Command) -> Output {
    let out = c
        .output()
        .expect("mpirun could not be started (is Open MPI installed?)");
    if !out.status.success() {
        panic!(
            "{c:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Trains with `np` ranks and `args`, saving to `dir/np{np}.safetensors`; returns the
/// checkpoint's bytes and stdout.
fn train(np: usize, dir: &Path, args: &[&str]) -> (Vec<u8>, String) {
    let save = dir.join(format!("np{np}.safetensors"));
    let mut c = mpirun(np);
    c.arg(ember())
        .args([
            "train",
            "--distributed",
            "--threads",
            "1",
            "--json",
            "--save",
        ])
        .arg(&save)
        .args(args);
    let out = run(c);
    let bytes = std::fs::read(&save).expect("rank 0 wrote the checkpoint");
    (bytes, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A CSV of `rows` rows with `features` columns and a 0/1 label, deterministic.
fn wide_csv(path: &Path, rows: usize, features: usize) {
    let mut s = (0..features).map(|j| format!("f{j},")).collect::<String>();
    s.push_str("label\n");
    let mut state = 12345u64;
    for _ in 0..rows {
        let mut sum = 0.0;
        for _ in 0..features {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (state >> 40) as f64 / (1u64 << 24) as f64;
            sum += v;
            s.push_str(&format!("{v:.4},"));
        }
        s.push_str(if sum > features as f64 / 2.0 {
            "1\n"
        } else {
            "0\n"
        });
    }
    std::fs::write(path, s).expect("write csv");
}

#[test]
fn seed_model_is_bit_identical_on_1_2_and_3_ranks() {
    let dir = scratch("seed");
    let args = ["--epochs", "3", "--seed", "5"];
    let (one, out1) = train(1, &dir, &args);
    // Rank 0 alone prints: one JSON line per epoch, then the test line.
    assert_eq!(
        out1.lines().filter(|l| l.contains("\"epoch\"")).count(),
        3,
        "{out1}"
    );
    for np in [2, 3] {
        let (bytes, out) = train(np, &dir, &args);
        assert!(
            bytes == one,
            "{np} ranks: the checkpoint differs from 1 rank"
        );
        // The same epoch lines as one process, apart from the timings.
        let strip = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| l.contains("\"epoch\""))
                .map(|l| l.split("\"seconds\"").next().unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(
            strip(&out),
            strip(&out1),
            "{np} ranks print what 1 rank prints"
        );
    }
}

#[test]
fn mlp_784_512_512_1_is_bit_identical_on_1_2_and_3_ranks() {
    let dir = scratch("mlp");
    let csv = dir.join("wide.csv");
    wide_csv(&csv, 80, 784);
    let csv = csv.to_string_lossy().into_owned();
    let args = [
        "--data",
        &csv,
        "--hidden",
        "512,512",
        "--epochs",
        "1",
        "--batch-size",
        "16",
    ];
    let (one, _) = train(1, &dir, &args);
    for np in [2, 3] {
        let (bytes, _) = train(np, &dir, &args);
        assert!(
            bytes == one,
            "{np} ranks: the MLP checkpoint differs from 1 rank"
        );
    }
}

#[test]
fn resuming_on_another_rank_count_continues_exactly() {
    let dir = scratch("resume");
    // Uninterrupted: 4 epochs on 1 rank.
    let (whole, _) = train(1, &dir, &["--epochs", "4", "--seed", "2"]);
    // 2 epochs on 2 ranks, then epochs 3 and 4 on 3 ranks from that checkpoint.
    let (_, _) = train(2, &dir, &["--epochs", "2", "--seed", "2"]);
    let ckpt = dir.join("np2.safetensors");
    let ckpt = ckpt.to_string_lossy().into_owned();
    let (resumed, _) = train(
        3,
        &dir,
        &[
            "--epochs",
            "4",
            "--seed",
            "2",
            "--load",
            &ckpt,
            "--initial-epoch",
            "2",
        ],
    );
    assert!(
        resumed == whole,
        "resumed run differs from the uninterrupted one"
    );
}

/// The pids of `parent`'s direct children (from /proc).
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 4 (after the parenthesised command name) is the parent pid.
        let after = stat.rsplit(')').next().unwrap_or("");
        let ppid = after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn a_killed_rank_ends_the_job_within_a_bound() {
    let dir = scratch("kill");
    let csv = dir.join("wide.csv");
    wide_csv(&csv, 400, 784);
    let mut c = mpirun(3);
    c.arg(ember())
        .args([
            "train",
            "--distributed",
            "--threads",
            "1",
            "--json",
            "--data",
        ])
        .arg(&csv)
        .args([
            "--hidden",
            "512,512",
            "--epochs",
            "1000",
            "--batch-size",
            "16",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("mpirun");
    // Wait until the three ranks are up and training (the first epoch line), at most 120 s.
    let start = Instant::now();
    let mut ranks = Vec::new();
    while start.elapsed() < Duration::from_secs(120) {
        ranks = children(child.id())
            .into_iter()
            .filter(|&p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "ember")
            })
            .collect();
        if ranks.len() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ranks.len(), 3, "three ember ranks under mpirun");
    std::thread::sleep(Duration::from_secs(3));
    let victim = ranks[1];
    let killed = Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    let t = Instant::now();
    let bound = Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(!status.success(), "mpirun must fail when a rank dies");
            break;
        }
        if t.elapsed() > bound {
            let _ = child.kill();
            panic!("the job did not end within {bound:?} after a rank was killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("signal 9") || err.contains("Killed") || err.contains("exited on signal"),
        "mpirun names the killed rank: {err}"
    );
    eprintln!("job ended {:?} after the kill", t.elapsed());
}

/// Runs `ip` with `args`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("`ip` (iproute2) could not run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two network namespaces joined by a veth pair (10.231.0.1 ↔ 10.231.0.2), removed on drop.
struct Veth {
    a: String,
    b: String,
}

impl Veth {
    fn new() -> Result<Veth, String> {
        let id = std::process::id() % 100_000;
        let v = Veth {
            a: format!("emb{id}a"),
            b: format!("emb{id}b"),
        };
        ip(&["netns", "add", &v.a])?;
        ip(&["netns", "add", &v.b])?;
        let (va, vb) = (format!("ev{id}a"), format!("ev{id}b"));
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", &v.a])?;
        ip(&["link", "set", &vb, "netns", &v.b])?;
        ip(&["-n", &v.a, "addr", "add", "10.231.0.1/24", "dev", &va])?;
        ip(&["-n", &v.b, "addr", "add", "10.231.0.2/24", "dev", &vb])?;
        for (ns, dev) in [(&v.a, &va), (&v.b, &vb)] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(v)
    }

    /// Bytes received on namespace b's end of the pair.
    fn rx_bytes_b(&self) -> u64 {
        let id = std::process::id() % 100_000;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.b, "cat"])
            .arg(format!("/sys/class/net/ev{id}b/statistics/rx_bytes"))
            .output();
        out.ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting a namespace removes the veth end inside it, and with it the pair.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}

#[test]
fn two_ranks_across_a_veth_pair_match_one_rank() {
    let veth = match Veth::new() {
        Ok(v) => v,
        Err(why) => {
            eprintln!("SKIPPED: cannot make two network namespaces joined by a veth pair: {why}");
            return;
        }
    };
    let dir = scratch("veth");
    let args = ["--epochs", "2", "--seed", "9"];
    let (one, _) = train(1, &dir, &args);
    let save = dir.join("veth.safetensors");
    let before = veth.rx_bytes_b();
    // mpirun and rank 0 in namespace a, rank 1 in namespace b: PMIx (the launcher's channel)
    // must accept connections from outside its loopback, and MPI's TCP transport is confined
    // to the veth subnet.
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &veth.a, "env"])
        .arg("PMIX_MCA_ptl_tcp_remote_connections=1")
        .arg("PMIX_MCA_ptl_tcp_if_include=10.231.0.0/24")
        .args(["mpirun", "--allow-run-as-root", "--oversubscribe"])
        .args([
            "--mca",
            "btl",
            "self,tcp",
            "--mca",
            "btl_tcp_if_include",
            "10.231.0.0/24",
        ]);
    let train_args = |c: &mut Command| {
        c.arg(ember())
            .args([
                "train",
                "--distributed",
                "--threads",
                "1",
                "--json",
                "--save",
            ])
            .arg(&save)
            .args(args);
    };
    c.args(["-np", "1"]);
    train_args(&mut c);
    c.args([":", "-np", "1", "ip", "netns", "exec", &veth.b]);
    train_args(&mut c);
    run(c);
    let bytes = std::fs::read(&save).expect("rank 0 wrote the checkpoint");
    assert!(
        bytes == one,
        "2 ranks across the veth: checkpoint differs from 1 rank"
    );
    let crossed = veth.rx_bytes_b().saturating_sub(before);
    // Every step sends gradient subtrees of the 30-10-5-1 model (~400 floats) both ways.
    assert!(crossed > 10_000, "only {crossed} bytes crossed the veth");
    eprintln!("{crossed} bytes crossed the veth into namespace b");
}

/// The epoch recorded in a checkpoint's header (`ember.epoch`), if the file is there and
/// reads as one.
fn checkpoint_epoch(path: &Path) -> Option<usize> {
    ember_nn::model_checkpoint::ResumePoint::read(path)
        .ok()
        .map(|p| p.epoch)
}

#[test]
fn killed_run_resumes_from_its_checkpoint_on_3_and_1_ranks_bit_identically() {
    let dir = scratch("kill-resume");
    let ck = dir.join("ck.safetensors");
    let seed = ["--seed", "8"];
    // 2 ranks, a checkpoint after every epoch, far more epochs than it will live.
    let mut c = mpirun(2);
    c.arg(ember())
        .args(["train", "--distributed", "--threads", "1", "--json"])
        .args(seed)
        .args(["--epochs", "100000", "--checkpoint"])
        .arg(&ck)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("mpirun");
    // Wait for the checkpoint of epoch 2, at most 120 s, then kill a rank (mid-epoch 3 or a
    // little later).
    let start = Instant::now();
    while checkpoint_epoch(&ck).is_none_or(|e| e < 2) {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("no checkpoint of epoch 2 within 120 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let ranks: Vec<u32> = children(child.id())
        .into_iter()
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "ember")
        })
        .collect();
    assert_eq!(ranks.len(), 2, "two ember ranks under mpirun");
    let killed = Command::new("kill")
        .args(["-9", &ranks[1].to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    let t = Instant::now();
    let bound = Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(!status.success(), "mpirun must fail when a rank dies");
            break;
        }
        if t.elapsed() > bound {
            let _ = child.kill();
            panic!("the job did not end within {bound:?} after a rank was killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let err =
        String::from_utf8_lossy(&child.wait_with_output().expect("output").stderr).into_owned();
    assert!(
        err.contains("signal 9") || err.contains("Killed") || err.contains("exited on signal"),
        "mpirun names the killed rank: {err}"
    );
    // The checkpoint is intact: it loads, and says how far the run got.
    let k = checkpoint_epoch(&ck).expect("the checkpoint survived the kill");
    assert!(k >= 2);
    eprintln!(
        "job ended {:?} after the kill; the checkpoint holds epoch {k}",
        t.elapsed()
    );
    let total = (k + 2).to_string();
    // Uninterrupted, one rank.
    let (whole, _) = train(1, &dir, &[seed[0], seed[1], "--epochs", &total]);
    let ck_s = ck.to_string_lossy().into_owned();
    for np in [3, 1] {
        let (resumed, _) = train(
            np,
            &dir,
            &[seed[0], seed[1], "--epochs", &total, "--resume", &ck_s],
        );
        assert!(
            resumed == whole,
            "resumed on {np} ranks after epoch {k}: the checkpoint differs from the \
             uninterrupted run's"
        );
    }
    // A mid-way checkpoint is a model `ember evaluate` reads.
    let csv = concat!(env!("CARGO_MANIFEST_DIR"), "/data/breast_cancer.csv");
    let out = Command::new(ember())
        .args(["evaluate", "--json", "--data", csv, "--model", &ck_s])
        .output()
        .expect("ember evaluate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gradient_buckets_keep_checkpoints_bit_identical() {
    let dir = scratch("buckets");
    let args = ["--epochs", "2", "--seed", "3"];
    let (one, _) = train(1, &dir, &args);
    // One bucket per parameter tensor (six), exchanged from the gradient-ready hook.
    for np in [2, 3] {
        let mut a = args.to_vec();
        a.extend(["--bucket-mb", "0"]);
        let (bytes, _) = train(np, &dir, &a);
        assert!(
            bytes == one,
            "{np} ranks with 6 buckets: the checkpoint differs from 1 rank with one"
        );
    }
}
