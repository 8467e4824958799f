//! Shared helpers for ember-nn's integration tests: the parser of the PyTorch golden files.
#![allow(dead_code)]

/// (case, tensor name) → (shape, values) of a golden file written by `scripts/goldens/*.py`.
pub type Goldens = std::collections::HashMap<(String, String), (Vec<usize>, Vec<f32>)>;

/// Parses a golden file: one tensor per line, `case name d0,d1,... v0 v1 ...`; lines that
/// are empty or start with `#` are skipped. A malformed line fails the test that reads it.
pub fn parse_goldens(text: &str) -> Goldens {
    let mut m = Goldens::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut it = line.split_whitespace();
        let case = it.next().expect("a case name").to_string();
        let name = it.next().expect("a tensor name").to_string();
        let shape = it
            .next()
            .expect("a shape")
            .split(',')
            .map(|d| d.parse().expect("a whole-number extent"))
            .collect();
        let vals = it.map(|v| v.parse().expect("a number")).collect();
        m.insert((case, name), (shape, vals));
    }
    m
}
