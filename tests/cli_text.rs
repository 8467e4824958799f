//! Text in the CLI: a tiny character language model trained from a model file for one epoch,
//! `ember generate` deterministic for a seed (and different for another), a verse classifier
//! with `ember predict` on its CSV, and bad inputs (an unknown character in the prompt, an
//! empty corpus, a window longer than the text, a missing column) as one-line errors with
//! status 1 and no panic.

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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ember-cli-text-{}-{name}", std::process::id()));
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
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    for w in want {
        assert!(err.contains(w), "{args:?}: '{w}' not in: {err}");
    }
}

/// A few thousand characters of verse-like text.
fn corpus() -> String {
    let lines = [
        "In the beginning God created the heaven and the earth.",
        "And the earth was without form, and void; and darkness was upon the deep.",
        "And God said, Let there be light: and there was light.",
        "And God saw the light, that it was good.",
    ];
    let mut t = String::new();
    for i in 0..40 {
        t.push_str(lines[i % lines.len()]);
        t.push('\n');
    }
    t
}

#[test]
fn a_tiny_language_model_trains_saves_and_generates() {
    let dir = temp_dir("lm");
    let data = dir.join("tiny.txt");
    std::fs::write(&data, corpus()).unwrap();
    let ckpt = dir.join("lm.safetensors");
    let out = ember(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "examples/models/char_bigram.toml",
        "--seq-len",
        "20",
        "--train-chars",
        "2000",
        "--val-chars",
        "400",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--save",
        s(&ckpt),
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}{}", text, stderr(&out));
    assert!(text.contains("bpc:") && text.contains("val_bpc:"), "{text}");
    let gen_args = |seed: &str| {
        vec![
            "generate".to_string(),
            "--model".into(),
            s(&ckpt).into(),
            "--prompt".into(),
            "And God".into(),
            "--length".into(),
            "60".into(),
            "--temperature".into(),
            "0.8".into(),
            "--seed".into(),
            seed.into(),
        ]
    };
    let run = |seed: &str| {
        let a = gen_args(seed);
        let o = ember(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let (a, b, c) = (run("1"), run("1"), run("2"));
    assert!(a.starts_with("And God"), "{a}");
    // The prompt, 60 sampled characters (never padding or unknown) and println's newline.
    assert_eq!(a.chars().count(), "And God".len() + 60 + 1, "{a:?}");
    assert_eq!(a, b, "the same seed gives the same text");
    assert_ne!(a, c, "another seed gives other text");
    // Temperature 0 is the argmax: no randomness at all.
    let greedy = |seed: &str| {
        let mut g = gen_args(seed);
        g[8] = "0".into();
        let o = ember(&g.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(greedy("1"), greedy("2"));

    // Bad prompts.
    fails(
        &[
            "generate",
            "--model",
            s(&ckpt),
            "--prompt",
            "And Zod",
            "--length",
            "5",
        ],
        &["--prompt", "'Z'", "position 4"],
    );
    fails(
        &["generate", "--model", s(&ckpt), "--prompt", ""],
        &["--prompt is empty"],
    );
    fails(
        &[
            "generate",
            "--model",
            s(&ckpt),
            "--prompt",
            "And",
            "--temperature",
            "-1",
        ],
        &["--temperature"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_text_data_gives_clear_errors() {
    let dir = temp_dir("bad");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let short = dir.join("short.txt");
    std::fs::write(&short, "In the beginning").unwrap();
    let model = "examples/models/char_bigram.toml";
    fails(
        &[
            "train",
            "--data",
            s(&empty),
            "--model",
            model,
            "--epochs",
            "1",
        ],
        &["empty"],
    );
    fails(
        &[
            "train",
            "--data",
            s(&short),
            "--model",
            model,
            "--epochs",
            "1",
            "--seq-len",
            "100",
        ],
        &["window of 101 characters", "longer than the text of 16"],
    );
    fails(
        &[
            "train",
            "--data",
            s(&short),
            "--task",
            "lm",
            "--epochs",
            "1",
        ],
        &["needs a model file"],
    );
    let csv = dir.join("v.csv");
    std::fs::write(
        &csv,
        "book,testament,text\nGe,0,In the beginning\nMt,1,Jesus wept\n",
    )
    .unwrap();
    fails(
        &[
            "train",
            "--data",
            s(&csv),
            "--text-column",
            "verse",
            "--target",
            "testament",
            "--model",
            "examples/models/verse_classifier.toml",
        ],
        &["no column 'verse'", "book, testament, text"],
    );
    fails(
        &[
            "train",
            "--data",
            s(&csv),
            "--text-column",
            "text",
            "--target",
            "chapter",
            "--model",
            "examples/models/verse_classifier.toml",
        ],
        &["no column 'chapter'"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_verse_classifier_trains_and_predicts_from_a_csv() {
    let dir = temp_dir("clf");
    let csv = dir.join("verses.csv");
    let mut t = String::from("book,testament,text\n");
    for i in 0..60 {
        if i % 2 == 0 {
            t.push_str(&format!("Ge,0,\"And God said, let there be light {i}\"\n"));
        } else {
            t.push_str(&format!("Mt,1,Jesus answered and said unto them {i}\n"));
        }
    }
    std::fs::write(&csv, t).unwrap();
    let ckpt = dir.join("clf.safetensors");
    let out = ember(&[
        "train",
        "--data",
        s(&csv),
        "--text-column",
        "text",
        "--target",
        "testament",
        "--model",
        "examples/models/verse_classifier.toml",
        "--epochs",
        "2",
        "--save",
        s(&ckpt),
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}{}", text, stderr(&out));
    assert!(text.contains("Test (12 rows)"), "{text}");
    let p = ember(&["predict", "--model", s(&ckpt), "--data", s(&csv)]);
    assert!(p.status.success(), "{}", stderr(&p));
    let lines: Vec<String> = stdout(&p).lines().map(str::to_string).collect();
    assert_eq!(lines[0], "row,class,name,probability");
    assert_eq!(lines.len(), 61);
    for l in &lines[1..] {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 4, "{l}");
        assert!(f[1] == "0" || f[1] == "1", "{l}");
        assert_eq!(f[1], f[2], "class names are the testament values: {l}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
