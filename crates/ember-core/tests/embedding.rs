//! The embedding lookup: against PyTorch's `F.embedding` (forward and the table gradient of
//! `Σ y · gy`, from `tests/goldens/embedding.txt` written by `scripts/goldens/embedding.py`),
//! against a naive f64 reference on random ids with repeats, a gradient check in f64,
//! bit-identical gradients for 1 and 3 threads, and clear errors for bad ids and tables.

mod common;

use common::{Goldens, parse_goldens};
use ember_core::gradcheck::gradcheck;
use ember_core::{DType, Device, Tensor};

const GOLDENS: &str = include_str!("goldens/embedding.txt");

/// The script's table formula: element i is sin(0.37·i + 0.7)·0.8, rounded to f32.
fn table(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((0.37 * i as f64 + 0.7).sin() * 0.8) as f32)
        .collect();
    Tensor::from_vec(v, shape, Device::Cpu)
        .unwrap()
        .as_variable()
}

/// The upstream gradient gy[i] = cos(0.11·i), rounded to f32.
fn upstream(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (0.11 * i as f64).cos() as f32).collect();
    Tensor::from_vec(v, shape, Device::Cpu).unwrap()
}

fn ids(v: &[usize], shape: &[usize]) -> Tensor {
    let f: Vec<f32> = v.iter().map(|&i| i as f32).collect();
    Tensor::from_vec(f, shape, Device::Cpu).unwrap()
}

/// The golden file, parsed.
fn goldens() -> Goldens {
    parse_goldens(GOLDENS)
}

fn compare(g: &Goldens, case: &str, name: &str, t: &Tensor) {
    let (shape, want) = &g[&(case.to_string(), name.to_string())];
    assert_eq!(t.shape(), shape.as_slice(), "{case} {name}: shape");
    let got = t.to_vec::<f32>().unwrap();
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
            "{case} {name}[{i}]: ember {a}, PyTorch {b}"
        );
    }
}

/// (name, table shape, ids, ids' shape, padding_idx).
type Case = (
    &'static str,
    [usize; 2],
    Vec<usize>,
    Vec<usize>,
    Option<usize>,
);

#[test]
fn matches_pytorch_with_repeats_and_padding() {
    let g = goldens();
    let cases: [Case; 3] = [
        (
            "repeats",
            [7, 5],
            vec![3, 1, 3, 0, 6, 3, 2, 1],
            vec![2, 4],
            None,
        ),
        (
            "padding",
            [6, 4],
            vec![0, 2, 2, 5, 0, 1, 0, 2, 4, 4],
            vec![2, 5],
            Some(0),
        ),
        ("flat", [4, 3], vec![2, 2, 2, 1, 3], vec![5], Some(2)),
    ];
    for (case, ts, id, shape, pad) in cases {
        let w = table(&ts);
        let y = Tensor::embedding(&w, &ids(&id, &shape), pad).unwrap();
        let loss = y.mul(&upstream(y.shape())).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        compare(&g, case, "y", &y);
        compare(&g, case, "dw", grads.get(&w).unwrap());
    }
}

/// A small deterministic generator (xorshift) for ids and values.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

#[test]
fn matches_a_naive_f64_reference() {
    let mut r = Rng(7);
    for &(v, d, n, pad) in &[
        (1usize, 1usize, 1usize, None),
        (13, 7, 31, Some(4)),
        (5, 3, 0, None),
        (97, 11, 200, None),
    ] {
        let tv: Vec<f64> = (0..v * d).map(|_| r.unit()).collect();
        let id: Vec<usize> = (0..n).map(|_| r.below(v)).collect();
        let gy: Vec<f64> = (0..n * d).map(|_| r.unit()).collect();
        let w = Tensor::from_vec(tv.clone(), [v, d], Device::Cpu)
            .unwrap()
            .as_variable();
        let idt = Tensor::from_vec(
            id.iter().map(|&i| i as f64).collect::<Vec<_>>(),
            [n],
            Device::Cpu,
        )
        .unwrap();
        let y = Tensor::embedding(&w, &idt, pad).unwrap();
        assert_eq!(y.shape(), [n, d]);
        let gyt = Tensor::from_vec(gy.clone(), [n, d], Device::Cpu).unwrap();
        let grads = y.mul(&gyt).unwrap().sum_all().unwrap().backward().unwrap();
        // Reference: rows copied; gradient rows added in position order.
        let mut want_y = vec![0.0; n * d];
        let mut want_dw = vec![0.0; v * d];
        for (p, &i) in id.iter().enumerate() {
            want_y[p * d..(p + 1) * d].copy_from_slice(&tv[i * d..(i + 1) * d]);
            if Some(i) != pad {
                for k in 0..d {
                    want_dw[i * d + k] += gy[p * d + k];
                }
            }
        }
        assert_eq!(y.to_vec::<f64>().unwrap(), want_y);
        let dw = grads.get(&w).unwrap().to_vec::<f64>().unwrap();
        for (a, b) in dw.iter().zip(&want_dw) {
            assert!((a - b).abs() <= 1e-12, "dw {a} vs {b}");
        }
    }
}

#[test]
fn gradcheck_f64() {
    // Without padding_idx (with it the padding row's gradient is zero by design, not the
    // finite difference; the reference test above covers that row).
    for id in [ids(&[2, 0, 2, 3, 1, 2], &[2, 3]), ids(&[3, 3, 3], &[3, 1])] {
        let w = table(&[4, 3]).to_dtype(DType::F64).unwrap();
        let rep = gradcheck(
            |t| Tensor::embedding(&t[0], &id, None)?.tanh(),
            &[w],
            1e-6,
            1e-6,
        )
        .unwrap();
        assert!(rep.passed, "{rep:?}");
    }
}

#[test]
fn bit_identical_for_any_thread_count() {
    // 4096 positions of dimension 24 over a vocabulary of 50: many repeats, above the
    // kernel's parallel threshold.
    let mut r = Rng(3);
    let (v, d, n) = (50usize, 24usize, 4096usize);
    let w = Tensor::from_vec(
        (0..v * d).map(|_| r.unit() as f32).collect::<Vec<_>>(),
        [v, d],
        Device::Cpu,
    )
    .unwrap()
    .as_variable();
    let idt = Tensor::from_vec(
        (0..n).map(|_| r.below(v) as f32).collect::<Vec<_>>(),
        [64, 64],
        Device::Cpu,
    )
    .unwrap();
    let gy = Tensor::from_vec(
        (0..n * d).map(|_| r.unit() as f32).collect::<Vec<_>>(),
        [64, 64, d],
        Device::Cpu,
    )
    .unwrap();
    let run = |threads: usize| -> Vec<u32> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let y = Tensor::embedding(&w, &idt, Some(7)).unwrap();
            let g = y.mul(&gy).unwrap().sum_all().unwrap().backward().unwrap();
            g.get(&w)
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        })
    };
    let one = run(1);
    assert_eq!(one, run(3));
    // The padding row got nothing; the others did.
    assert!(one[7 * d..8 * d].iter().all(|&b| b == 0));
    assert!(one[..d].iter().any(|&b| b != 0));
}

#[test]
fn bad_inputs_are_clear_errors() {
    let w = table(&[5, 2]);
    let e = Tensor::embedding(&w, &ids(&[1, 5, 2], &[3]), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("embedding") && e.contains("id 5") && e.contains("position 1"),
        "{e}"
    );
    assert!(e.contains("0..5"), "{e}");
    let frac = Tensor::from_vec(vec![1.5f32], [1], Device::Cpu).unwrap();
    let e = Tensor::embedding(&w, &frac, None).unwrap_err().to_string();
    assert!(e.contains("id 1.5"), "{e}");
    let neg = Tensor::from_vec(vec![-1f32], [1], Device::Cpu).unwrap();
    assert!(Tensor::embedding(&w, &neg, None).is_err());
    let e = Tensor::embedding(&table(&[10]), &ids(&[1], &[1]), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[vocabulary, dim]"), "{e}");
    let e = Tensor::embedding(&w, &ids(&[1], &[1]), Some(5))
        .unwrap_err()
        .to_string();
    assert!(e.contains("padding_idx 5"), "{e}");
}
