//! Shared helpers for ember-core's integration tests: seeded random tensors, the same values
//! laid out as different views (contiguous, transposed, narrowed), and a naive f64 reference
//! array with NumPy-style broadcasting to compare against, and the parser of the PyTorch golden
//! files.
#![allow(dead_code)]

use ember_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Random values in [lo, hi).
pub fn values(n: usize, lo: f64, hi: f64, rng: &mut StdRng) -> Vec<f64> {
    (0..n)
        .map(|_| lo + (hi - lo) * rng.random::<f64>())
        .collect()
}

/// A naive n-d array in f64: the reference every op is compared with.
#[derive(Clone, Debug)]
pub struct Arr {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Arr {
    pub fn new(shape: &[usize], data: Vec<f64>) -> Self {
        assert_eq!(shape.iter().product::<usize>(), data.len());
        Arr {
            shape: shape.to_vec(),
            data,
        }
    }

    pub fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.shape.len()];
        for d in (0..self.shape.len().saturating_sub(1)).rev() {
            s[d] = s[d + 1] * self.shape[d + 1];
        }
        s
    }

    pub fn unravel(&self, mut i: usize) -> Vec<usize> {
        let mut idx = vec![0; self.shape.len()];
        for d in (0..self.shape.len()).rev() {
            idx[d] = i % self.shape[d];
            i /= self.shape[d];
        }
        idx
    }

    /// Element at a (possibly longer, broadcast) index aligned from the right.
    pub fn at_broadcast(&self, idx: &[usize]) -> f64 {
        let lead = idx.len() - self.shape.len();
        let st = self.strides();
        let mut off = 0;
        for d in 0..self.shape.len() {
            let i = if self.shape[d] == 1 { 0 } else { idx[lead + d] };
            off += i * st[d];
        }
        self.data[off]
    }

    pub fn map(&self, f: impl Fn(f64) -> f64) -> Arr {
        Arr::new(&self.shape, self.data.iter().map(|&v| f(v)).collect())
    }

    pub fn zip(&self, other: &Arr, f: impl Fn(f64, f64) -> f64) -> Arr {
        let rank = self.shape.len().max(other.shape.len());
        let pad = |s: &[usize]| [vec![1; rank - s.len()], s.to_vec()].concat();
        let (a, b) = (pad(&self.shape), pad(&other.shape));
        let shape: Vec<usize> = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| if x == 1 { y } else { x })
            .collect();
        let out = Arr::new(&shape, vec![0.0; shape.iter().product()]);
        let data = (0..out.data.len())
            .map(|i| {
                let idx = out.unravel(i);
                f(self.at_broadcast(&idx), other.at_broadcast(&idx))
            })
            .collect();
        Arr::new(&shape, data)
    }

    /// Reduces over `axes` with `f` on each group (keepdim shape).
    pub fn reduce(&self, axes: &[usize], f: impl Fn(&[f64]) -> f64) -> Arr {
        let shape: Vec<usize> = self
            .shape
            .iter()
            .enumerate()
            .map(|(d, &e)| if axes.contains(&d) { 1 } else { e })
            .collect();
        let mut groups: Vec<Vec<f64>> = vec![vec![]; shape.iter().product()];
        let out = Arr::new(&shape, vec![0.0; groups.len()]);
        let ost = out.strides();
        for i in 0..self.data.len() {
            let idx = self.unravel(i);
            let o: usize = idx
                .iter()
                .enumerate()
                .map(|(d, &x)| if axes.contains(&d) { 0 } else { x * ost[d] })
                .sum();
            groups[o].push(self.data[i]);
        }
        Arr::new(&shape, groups.iter().map(|g| f(g)).collect())
    }

    pub fn tensor(&self) -> Tensor {
        Tensor::from_vec(self.data.clone(), self.shape.clone(), Device::Cpu).unwrap()
    }
}

pub fn rand_arr(shape: &[usize], lo: f64, hi: f64, rng: &mut StdRng) -> Arr {
    Arr::new(shape, values(shape.iter().product(), lo, hi, rng))
}

/// The values of `a` as several tensors with different layouts: contiguous, a transposed view
/// (rank ≥ 2) and a narrowed view of a larger tensor (rank ≥ 1).
pub fn layouts(a: &Arr) -> Vec<(&'static str, Tensor)> {
    let mut out = vec![("contiguous", a.tensor())];
    let r = a.shape.len();
    if r >= 2 {
        // Store the transpose, then view it transposed back.
        let mut tshape = a.shape.clone();
        tshape.swap(r - 2, r - 1);
        let t = Arr::new(&tshape, vec![0.0; a.data.len()]);
        let mut data = vec![0.0; a.data.len()];
        for (i, slot) in data.iter_mut().enumerate() {
            let mut idx = t.unravel(i);
            idx.swap(r - 2, r - 1);
            let off: usize = idx.iter().zip(a.strides()).map(|(x, s)| x * s).sum();
            *slot = a.data[off];
        }
        let stored = Tensor::from_vec(data, tshape, Device::Cpu).unwrap();
        out.push(("transposed", stored.transpose(r - 2, r - 1).unwrap()));
    }
    if r >= 1 {
        // Embed along dim 0 with one row of padding on each side, then narrow it out.
        let mut bshape = a.shape.clone();
        bshape[0] += 2;
        let inner: usize = a.shape[1..].iter().product();
        let mut data = vec![f64::NAN; bshape.iter().product()];
        data[inner..inner + a.data.len()].copy_from_slice(&a.data);
        let big = Tensor::from_vec(data, bshape, Device::Cpu).unwrap();
        out.push(("narrowed", big.narrow(0, 1, a.shape[0]).unwrap()));
    }
    out
}

/// Asserts `t` holds `want` (shape and values, NaN equal to NaN) within `tol` relative error.
pub fn assert_close(t: &Tensor, want: &Arr, tol: f64, what: &str) {
    assert_eq!(t.shape(), want.shape.as_slice(), "{what}: shape");
    let got = t.to_vec::<f64>().unwrap();
    for (i, (&g, &w)) in got.iter().zip(&want.data).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * (1.0 + w.abs());
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}

/// Shapes that exercise sizes 0, 1 and primes.
pub fn shapes() -> Vec<Vec<usize>> {
    vec![
        vec![],
        vec![1],
        vec![7],
        vec![0, 3],
        vec![3, 1],
        vec![2, 7],
        vec![67, 3],
        vec![2, 3, 5],
        vec![1, 1, 1],
    ]
}

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
