//! Random command lines for `ember train`, run through the real binary: whatever the flags and
//! values, the answer is exit status 0, 1 (one-line error) or 2 (clap's message), never a
//! panic, a signal or a hang.
//!
//! The `cli_args` fuzz target (fuzz/) cannot reach the binary's own parse-to-config code
//! (`TrainArgs`, `check_args`, `parse_hidden`, `build_model`): the root package has no library
//! target. This test covers that code from outside, without coverage guidance: a seeded
//! generator picks flags from the train command's vocabulary and values from a list of
//! troublesome ones (empty, negative, zero, NaN, infinities, huge, non-ASCII), so each run is
//! the same set of command lines. Epoch counts are kept at most 2 and layer widths small so a
//! command line that is accepted trains in well under a second.

use std::process::Command;
use std::time::{Duration, Instant};

/// xorshift64: a fixed, dependency-free sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

const NUMBERS: &[&str] = &[
    "",
    "0",
    "1",
    "2",
    "-1",
    "-0",
    "0.5",
    "1e308",
    "-1e308",
    "NaN",
    "inf",
    "-inf",
    "1e-320",
    "18446744073709551616",
    "99999999999",
    "0x10",
    "١",
    "1,2",
    " 3",
    "3 ",
];
/// Values every numeric flag parses (some out of the flag's range), picked two times in three so
/// that most command lines get past clap to the CLI's own checks and to training.
const PLAIN_NUMBERS: &[&str] = &["0", "1", "2", "3", "7", "0.1", "0.5", "0.999", "1e-9", "64"];
const WORDS: &[&str] = &[
    "",
    "relu",
    "tanh",
    "sigmoid",
    "softmax",
    "adam",
    "sgd",
    "rmsprop",
    "adagrad",
    "nonesuch",
    "label",
    "diagnosis",
    "0",
    "-1",
    "31",
    "cpu",
    "cuda",
    "cuda:7",
    "gpu",
    "é",
];
const HIDDEN: &[&str] = &[
    "",
    "0",
    "4",
    "8,4",
    "4,,4",
    ",",
    "-4",
    "4,-1",
    "1e3",
    "64,x",
    "3,3,3,3,3,3",
    "NaN",
];

/// One command line: up to six flags with values, then `--epochs` at most 2 unless the
/// generator gave a bad value for it.
fn command_line(rng: &mut Rng) -> Vec<String> {
    let mut argv = vec!["train".to_string()];
    let numeric = [
        "--lr",
        "--batch-size",
        "--validation-split",
        "--test-split",
        "--l1",
        "--l2",
        "--dropout",
        "--seed",
        "--positive-class",
        "--threads",
        "--initial-epoch",
    ];
    let worded = ["--activation", "--optimizer", "--target", "--device"];
    for _ in 0..rng.next() % 7 {
        match rng.next() % 4 {
            0 | 1 => {
                argv.push(rng.pick(&numeric).to_string());
                let from = if rng.next().is_multiple_of(3) {
                    NUMBERS
                } else {
                    PLAIN_NUMBERS
                };
                argv.push(rng.pick(from).to_string());
            }
            2 => {
                argv.push(rng.pick(&worded).to_string());
                argv.push(rng.pick(WORDS).to_string());
            }
            _ => {
                argv.push("--hidden".into());
                argv.push(rng.pick(HIDDEN).to_string());
            }
        }
    }
    argv.push("--epochs".into());
    argv.push(
        rng.pick(&["1", "2", "1", "2", "1", "0", "-1", "x"])
            .to_string(),
    );
    argv
}

#[test]
fn random_train_command_lines_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // How many command lines ended with status 0, 1 and 2: the generator must reach training
    // and the CLI's own checks, not only clap's parser.
    let mut outcomes = [0usize; 3];
    for case in 0..160 {
        let argv = command_line(&mut rng);
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(&argv)
            .env("RAYON_NUM_THREADS", "1")
            .output()
            .expect("the ember binary runs");
        let err = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        assert!(
            matches!(code, Some(0..=2)),
            "case {case} {argv:?}: status {:?}\n{err}",
            out.status
        );
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "case {case} {argv:?}: {err}"
        );
        if let Some(c @ 0..=2) = code {
            outcomes[c as usize] += 1;
        }
        if code == Some(1) {
            let errors = err.lines().filter(|l| l.starts_with("error:")).count();
            assert_eq!(errors, 1, "case {case} {argv:?}: {err}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "case {case} {argv:?} took {:?}",
            started.elapsed()
        );
    }
    println!("status 0, 1, 2: {outcomes:?}");
    assert!(
        outcomes.iter().all(|&n| n >= 5),
        "too few of some outcome: {outcomes:?}"
    );
}
