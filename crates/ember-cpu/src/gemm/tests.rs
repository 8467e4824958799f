//! GEMM tests: every path against a naive f64 product, over layouts, sizes, scalars and
//! epilogues, on every ISA this machine runs; microkernel identity products; determinism
//! across thread counts.

use super::*;
use crate::isa::{self, Isa};

/// Small deterministic generator (xorshift64*), values in [-1, 1).
pub(crate) struct Rng(u64);
impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// How a matrix lies in memory.
#[derive(Debug, Clone, Copy)]
enum Lay {
    /// rs = cols, cs = 1
    Row,
    /// rs = 1, cs = rows (a transposed row-major matrix)
    Col,
    /// row-major rows of cols + 3 with every second element used (a slice of a bigger tensor)
    Strided,
}

/// A matrix stored with a layout, plus an offset so (0, 0) is not at the buffer start.
struct Mat<T> {
    buf: Vec<T>,
    off: usize,
    rs: usize,
    cs: usize,
    rows: usize,
    cols: usize,
}

impl<T: Float> Mat<T> {
    fn new(rows: usize, cols: usize, lay: Lay, rng: &mut Rng, fill: f64) -> Self {
        let (rs, cs) = match lay {
            Lay::Row => (cols, 1),
            Lay::Col => (1, rows),
            Lay::Strided => (2 * cols + 3, 2),
        };
        let off = 5;
        let len = off + rows.saturating_sub(1) * rs + cols.saturating_sub(1) * cs + 1 + 4;
        let mut buf = vec![T::from_f64(fill); len];
        for i in 0..rows {
            for j in 0..cols {
                buf[off + i * rs + j * cs] = T::from_f64(rng.uniform());
            }
        }
        Mat {
            buf,
            off,
            rs,
            cs,
            rows,
            cols,
        }
    }
    fn get(&self, i: usize, j: usize) -> f64 {
        self.buf[self.off + i * self.rs + j * self.cs].to_f64()
    }
    fn r(&self) -> MatRef<'_, T> {
        MatRef {
            data: &self.buf[self.off..],
            rs: self.rs,
            cs: self.cs,
        }
    }
    fn w(&mut self) -> MatMut<'_, T> {
        MatMut {
            data: &mut self.buf[self.off..],
            rs: self.rs,
            cs: self.cs,
        }
    }
    fn values(&self) -> Vec<T> {
        let mut v = Vec::with_capacity(self.rows * self.cols);
        for i in 0..self.rows {
            for j in 0..self.cols {
                v.push(self.buf[self.off + i * self.rs + j * self.cs]);
            }
        }
        v
    }
}

fn act_f64(act: Activation, x: f64) -> f64 {
    match act.as_unary() {
        Some(op) => crate::unary::apply(op, x),
        None => x,
    }
}

/// Runs one GEMM case on the active ISA and checks it against f64.
#[allow(clippy::too_many_arguments)]
fn check<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    lays: (Lay, Lay, Lay),
    alpha: f64,
    beta: f64,
    bias: bool,
    act: Activation,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let a = Mat::<T>::new(m, k, lays.0, &mut rng, f64::NAN);
    let b = Mat::<T>::new(k, n, lays.1, &mut rng, f64::NAN);
    let mut c = Mat::<T>::new(m, n, lays.2, &mut rng, f64::NAN);
    if beta == 0.0 {
        // C must be write-only: NaN there must not leak into the result.
        for i in 0..m {
            for j in 0..n {
                let o = c.off + i * c.rs + j * c.cs;
                c.buf[o] = T::from_f64(f64::NAN);
            }
        }
    }
    let c0: Vec<f64> = c.values().iter().map(|v| v.to_f64()).collect();
    let bias_v: Vec<T> = (0..n).map(|_| T::from_f64(rng.uniform())).collect();
    let epi = Epilogue {
        bias: bias.then_some(&bias_v[..]),
        act,
    };
    let untouched_before = c.buf[c.off - 1];
    gemm(
        m,
        n,
        k,
        T::from_f64(alpha),
        a.r(),
        b.r(),
        T::from_f64(beta),
        c.w(),
        epi,
    )
    .unwrap();
    let eps = if std::mem::size_of::<T>() == 4 {
        2e-6
    } else {
        1e-14
    };
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0;
            let mut mag = 0.0;
            for p in 0..k {
                acc += a.get(i, p) * b.get(p, j);
                mag += (a.get(i, p) * b.get(p, j)).abs();
            }
            let mut want = alpha * acc;
            if beta != 0.0 {
                want += beta * c0[i * n + j];
                mag += (beta * c0[i * n + j]).abs();
            }
            if bias {
                want += bias_v[j].to_f64();
                mag += bias_v[j].to_f64().abs();
            }
            let want = act_f64(act, want);
            let got = c.get(i, j);
            let tol = eps * (mag * alpha.abs().max(1.0) + 1.0) * 4.0;
            assert!(
                (got - want).abs() <= tol,
                "{}: m={m} n={n} k={k} {lays:?} alpha={alpha} beta={beta} bias={bias} {act:?}: \
                 C[{i},{j}] = {got}, want {want}",
                isa::active()
            );
        }
    }
    // Nothing outside C's elements was written (before it, or in the slack after its end).
    assert!(c.buf[c.off - 1].to_f64().is_nan() && untouched_before.to_f64().is_nan());
    assert!(
        c.buf[c.buf.len() - 4..].iter().all(|v| v.to_f64().is_nan()),
        "m={m} n={n} k={k} {lays:?}: the slack after C's last element was written"
    );
    if lays.2.is_strided() {
        for i in 0..m {
            for j in 0..n {
                let o = c.off + i * c.rs + j * c.cs + 1;
                assert!(
                    c.buf[o].to_f64().is_nan(),
                    "gap after C[{i},{j}] was written"
                );
            }
        }
    }
}

impl Lay {
    fn is_strided(self) -> bool {
        matches!(self, Lay::Strided)
    }
}

const LAYS: [Lay; 3] = [Lay::Row, Lay::Col, Lay::Strided];

/// Calls `f(t, l, (m, n, k), lays, alpha, beta)` for every size `t` of `sizes` and every one of
/// the 27 layout triples `l` of A, B and C, cycling alpha/beta through (1, 0), (1, 1) and
/// (-0.75, 0.5).
fn every_layout(
    sizes: &[(usize, usize, usize)],
    mut f: impl FnMut(usize, usize, (usize, usize, usize), (Lay, Lay, Lay), f64, f64),
) {
    for (t, &dims) in sizes.iter().enumerate() {
        let triples = LAYS.iter().flat_map(|&a| {
            LAYS.iter()
                .flat_map(move |&b| LAYS.iter().map(move |&c| (a, b, c)))
        });
        for (l, lays) in triples.enumerate() {
            let (alpha, beta) = [(1.0, 0.0), (1.0, 1.0), (-0.75, 0.5)][(t + l) % 3];
            f(t, l, dims, lays, alpha, beta);
        }
    }
}

/// Runs `f` on every ISA this CPU supports, with the blocking of a small core
/// (`cache::test_override::SMALL`: KC 256, MC 120–126, NC 512 for f32) so that the sizes of
/// the tests cross every block boundary whatever caches the machine running them has.
fn on_every_isa(f: impl Fn()) {
    crate::cache::test_override::with(crate::cache::test_override::SMALL, || {
        for isa in isa::supported() {
            isa::with(isa, &f).expect("supported ISA");
        }
    })
}

#[test]
fn sampled_sizes_all_layouts_f32() {
    // Sizes 0..=67 in each dimension, sampled (the full cube is 300k cases), always including
    // the edges 0, 1 and sizes around the tile shapes.
    let mut rng = Rng::new(7);
    let mut sizes = vec![
        (0, 5, 5),
        (5, 0, 5),
        (5, 5, 0),
        (1, 1, 1),
        (1, 67, 67),
        (67, 1, 67),
    ];
    sizes.extend([
        (67, 67, 1),
        (6, 16, 1),
        (7, 17, 3),
        (12, 32, 64),
        (67, 67, 67),
        (2, 3, 4),
    ]);
    for _ in 0..22 {
        sizes.push((rng.below(68), rng.below(68), rng.below(68)));
    }
    on_every_isa(|| {
        every_layout(&sizes, |t, l, (m, n, k), lays, alpha, beta| {
            let seed = (t * 31 + l) as u64;
            check::<f32>(m, n, k, lays, alpha, beta, false, Activation::None, seed);
        });
    });
}

#[test]
fn small_path_every_width_and_depth() {
    // The unpacked small-matrix path (m·n·k <= SMALL_MAX_MNK): strips narrower than, equal to
    // and wider than 16 columns, depths on both sides of the packed-strip limit (32), every
    // layout, alpha/beta combinations and the Dense epilogue, f32 and f64, on every ISA.
    let cases = [
        (10, 10, 10),
        (10, 5, 10),
        (10, 10, 5),
        (5, 10, 10),
        (2, 16, 16),
        (3, 17, 8),
        (2, 8, 33),
        (4, 9, 31),
        (16, 16, 16),
        (1, 2, 3),
        (2, 1, 3),
        (7, 24, 20),
        // Every tail length of a partial 8-lane half (1..=7 columns past 0 or 8): the stores
        // split it into 4-, 2- and 1-lane pieces.
        (3, 3, 4),
        (2, 4, 6),
        (4, 7, 5),
        (5, 6, 3),
        (3, 11, 2),
        (2, 12, 3),
        (2, 14, 9),
        (3, 15, 4),
    ];
    // f32 on AVX2 keeps the small path up to 32³ (k ≤ 32): several strips, many rows.
    let f32_avx2_cases = [
        (20, 20, 20),
        (32, 32, 32),
        (40, 25, 32),
        (64, 17, 30),
        (5, 200, 32),
    ];
    on_every_isa(|| {
        let isa = isa::active();
        every_layout(&cases, |t, l, (m, n, k), lays, alpha, beta| {
            assert!(super::takes_small_path::<f64>(isa, m * n * k, k));
            let act = [Activation::None, Activation::Relu, Activation::Sigmoid][l % 3];
            let seed = (t * 97 + l) as u64;
            check::<f32>(m, n, k, lays, alpha, beta, l % 2 == 0, act, seed);
            check::<f64>(m, n, k, lays, alpha, beta, l % 2 == 1, act, seed);
        });
        if isa.has_avx2() {
            every_layout(&f32_avx2_cases, |t, l, (m, n, k), lays, alpha, beta| {
                assert!(m * n * k > super::SMALL_MAX_MNK);
                assert!(super::takes_small_path::<f32>(isa, m * n * k, k));
                let act = [Activation::None, Activation::Relu, Activation::Sigmoid][l % 3];
                let seed = (t * 53 + l) as u64;
                check::<f32>(m, n, k, lays, alpha, beta, l % 2 == 0, act, seed);
            });
        }
    });
}

#[test]
fn sampled_sizes_f64() {
    on_every_isa(|| {
        let mut rng = Rng::new(11);
        for t in 0..24 {
            let (m, n, k) = (rng.below(68), rng.below(68), rng.below(68));
            let lays = (LAYS[t % 3], LAYS[(t / 3) % 3], LAYS[(t / 9) % 3]);
            check::<f64>(
                m,
                n,
                k,
                lays,
                1.5,
                if t % 2 == 0 { 0.0 } else { -2.0 },
                false,
                Activation::None,
                t as u64,
            );
        }
    });
}

#[test]
fn large_sizes_cross_every_block_boundary() {
    // k > KC (two K slices, beta handling between them), m > MC, n > NC (f32 NC = 512 with
    // the small blocking `on_every_isa` sets).
    on_every_isa(|| {
        check::<f32>(
            301,
            70,
            530,
            (Lay::Row, Lay::Row, Lay::Row),
            1.0,
            0.5,
            true,
            Activation::None,
            1,
        );
        check::<f32>(
            150,
            40,
            300,
            (Lay::Col, Lay::Strided, Lay::Col),
            -1.0,
            0.0,
            false,
            Activation::None,
            2,
        );
        check::<f32>(
            7,
            4100,
            3,
            (Lay::Row, Lay::Col, Lay::Row),
            1.0,
            1.0,
            false,
            Activation::None,
            3,
        );
        check::<f64>(
            130,
            37,
            270,
            (Lay::Row, Lay::Col, Lay::Row),
            1.0,
            0.5,
            true,
            Activation::Tanh,
            4,
        );
    });
}

#[test]
fn scalars_alpha_beta() {
    on_every_isa(|| {
        for &(m, n, k) in &[(3, 4, 5), (40, 50, 60), (50, 1, 30), (1, 50, 30)] {
            for &alpha in &[0.0, 1.0, 2.5] {
                for &beta in &[0.0, 1.0, -0.3] {
                    check::<f32>(
                        m,
                        n,
                        k,
                        (Lay::Row, Lay::Row, Lay::Row),
                        alpha,
                        beta,
                        false,
                        Activation::None,
                        9,
                    );
                }
            }
        }
    });
}

#[test]
fn every_epilogue() {
    let acts = [
        Activation::None,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Gelu,
    ];
    on_every_isa(|| {
        for act in acts {
            // small path, packed path, gemv path, m = 1 path; C row-major and strided
            for &(m, n, k) in &[(10, 10, 10), (70, 45, 33), (64, 1, 40), (1, 33, 20)] {
                for &lc in &[Lay::Row, Lay::Strided] {
                    check::<f32>(m, n, k, (Lay::Row, Lay::Col, lc), 1.0, 0.0, true, act, 5);
                    check::<f32>(m, n, k, (Lay::Row, Lay::Row, lc), 0.5, 1.0, false, act, 6);
                }
            }
        }
    });
}

#[test]
fn gemv_layouts() {
    on_every_isa(|| {
        for lays in [
            (Lay::Row, Lay::Row, Lay::Row),
            (Lay::Col, Lay::Col, Lay::Col),
            (Lay::Strided, Lay::Strided, Lay::Strided),
        ] {
            check::<f32>(300, 1, 257, lays, 1.0, 0.0, true, Activation::Sigmoid, 12);
            check::<f32>(1, 300, 257, lays, 1.0, 1.0, true, Activation::None, 13);
            check::<f64>(130, 1, 70, lays, -1.0, 0.5, false, Activation::None, 14);
        }
    });
}

/// A·I = A exactly, for each microkernel, with unit-stride and strided tile stores.
#[test]
fn microkernel_identity_product() {
    fn run<T: Float>(kern: Kernel<T>) {
        let (mr, nr) = (kern.mr, kern.nr);
        let kc = nr;
        let mut rng = Rng::new(3);
        let a: Vec<T> = (0..mr * kc).map(|_| T::from_f64(rng.uniform())).collect(); // packed: step p holds column p
        let mut eye = vec![T::ZERO; kc * nr];
        for p in 0..kc {
            eye[p * nr + p] = T::ONE;
        }
        for &(rs, cs) in &[(nr, 1), (1, mr)] {
            let mut c = vec![T::from_f64(f64::NAN); mr * nr];
            // SAFETY: a and eye hold kc*mr and kc*nr values; c holds the whole tile either way.
            unsafe {
                (kern.ukr)(
                    kc,
                    T::ONE,
                    a.as_ptr(),
                    eye.as_ptr(),
                    T::ZERO,
                    c.as_mut_ptr(),
                    rs,
                    cs,
                )
            };
            for i in 0..mr {
                for j in 0..nr {
                    assert_eq!(c[i * rs + j * cs], a[j * mr + i], "{kern:?} tile ({i},{j})");
                }
            }
            // beta = 1 adds the same product again: exactly 2A.
            // SAFETY: as above.
            unsafe {
                (kern.ukr)(
                    kc,
                    T::ONE,
                    a.as_ptr(),
                    eye.as_ptr(),
                    T::ONE,
                    c.as_mut_ptr(),
                    rs,
                    cs,
                )
            };
            for i in 0..mr {
                for j in 0..nr {
                    assert_eq!(c[i * rs + j * cs], a[j * mr + i] + a[j * mr + i]);
                }
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx2.is_supported() {
        run(kernel::emulated512::kernel());
    }
    for isa in isa::supported() {
        run(kernel::kernel_f32(isa));
        run(kernel::kernel_f64(isa));
        assert_eq!(kernel::kernel_f32(isa).isa, isa);
    }
}

/// A dense row-major matrix of `cols` columns over `data`.
fn row_major<T>(data: &[T], cols: usize) -> MatRef<'_, T> {
    MatRef {
        data,
        rs: cols,
        cs: 1,
    }
}

fn run_in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

#[test]
fn bit_identical_for_any_thread_count() {
    let mut rng = Rng::new(21);
    for &(m, n, k) in &[
        (200, 300, 150),
        (97, 500, 260),
        (3000, 1, 400),
        (1, 3000, 400),
        (20, 700, 100),
        // Wide enough for the split over N at 2 and 3 threads; K = 530 runs as 2 × 265.
        (150, 1100, 530),
        // One sliver of B: rows split between threads, A read in place.
        (300, 10, 300),
        // A shared between threads and NC panels: 3 M blocks, 3 K slices, 2-3 panels a thread.
        (301, 2100, 800),
    ] {
        let a: Vec<f32> = (0..m * k).map(|_| rng.uniform() as f32).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.uniform() as f32).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
        for isa in isa::supported() {
            let go = |threads: usize| {
                run_in_pool(threads, || {
                    isa::with(isa, || {
                        let mut c = vec![0.0f32; m * n];
                        gemm(
                            m,
                            n,
                            k,
                            1.0,
                            row_major(&a, k),
                            MatRef {
                                data: &b,
                                rs: 1,
                                cs: k,
                            },
                            0.0,
                            MatMut {
                                data: &mut c,
                                rs: n,
                                cs: 1,
                            },
                            Epilogue {
                                bias: Some(&bias),
                                act: Activation::Gelu,
                            },
                        )
                        .unwrap();
                        c
                    })
                    .expect("supported")
                })
            };
            let one = go(1);
            for threads in [2, 3, 4] {
                let many = go(threads);
                assert!(
                    one.iter()
                        .zip(&many)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{isa}: {m}x{n}x{k} differs between 1 and {threads} threads"
                );
            }
        }
    }
}

#[test]
fn both_thread_splits_against_f64() {
    // Wide products split N between threads, narrow ones split M; both with K past KC (equal
    // slices), beta != 0, a bias and an activation, on 2 and 3 threads, f32 and f64.
    for threads in [2, 3] {
        run_in_pool(threads, || {
            on_every_isa(|| {
                let lays = (Lay::Row, Lay::Row, Lay::Row);
                check::<f32>(90, 1100, 530, lays, 1.0, 0.5, true, Activation::Relu, 11);
                check::<f32>(301, 200, 600, lays, 0.5, 1.0, true, Activation::Tanh, 12);
                let lays = (Lay::Col, Lay::Strided, Lay::Row);
                check::<f64>(70, 900, 300, lays, -1.0, 0.0, false, Activation::None, 13);
            })
        });
    }
}

#[test]
fn shared_packing_of_a_across_threads_and_panels() {
    // A is packed once per product and shared (gemm/shared_a.rs): at 1 thread when N spans
    // several NC panels, and between the threads of the split over N, each starting at its own
    // block of M. Here M has 3 blocks, K 3 slices, and N = 2100 gives 1 thread 3 panels and
    // 2 threads 2 each. Against f64 on 1 and 2 threads; `bit_identical_for_any_thread_count`
    // runs the same shape on 1 to 4 threads.
    for threads in [1, 2] {
        run_in_pool(threads, || {
            on_every_isa(|| {
                let lays = (Lay::Row, Lay::Col, Lay::Row);
                check::<f32>(300, 2100, 800, lays, 1.0, 0.5, true, Activation::Relu, 31);
            })
        });
    }
}

#[test]
fn single_sliver_products_read_a_in_place() {
    // N at most one B sliver (16 on AVX2) with a row-major A takes the path that reads A's rows
    // in place: full row slivers, a partial last one (packed), N < 16 (scratch tile), K past
    // KC, beta and an epilogue; on 1 and 2 threads. Column-major A takes the packed path.
    for threads in [1, 2] {
        run_in_pool(threads, || {
            on_every_isa(|| {
                let rows = (Lay::Row, Lay::Row, Lay::Row);
                check::<f32>(301, 10, 530, rows, 1.0, 0.5, true, Activation::Sigmoid, 21);
                check::<f32>(300, 16, 200, rows, -0.5, 0.0, false, Activation::None, 22);
                check::<f32>(
                    257,
                    3,
                    100,
                    (Lay::Row, Lay::Col, Lay::Col),
                    2.0,
                    1.0,
                    true,
                    Activation::Relu,
                    23,
                );
                check::<f32>(
                    100,
                    12,
                    90,
                    (Lay::Strided, Lay::Row, Lay::Row),
                    1.0,
                    0.0,
                    false,
                    Activation::Tanh,
                    24,
                );
                check::<f64>(150, 7, 400, rows, 1.0, 0.5, true, Activation::None, 25);
            })
        });
    }
}

#[test]
fn isa_paths_really_differ_in_kernel() {
    // Guards against a dispatch bug that silently runs one path for both.
    if Isa::Avx2.is_supported() {
        assert_eq!(kernel::kernel_f32(Isa::Avx2).nr, 16);
    }
    assert_eq!(kernel::kernel_f32(Isa::Portable).nr, 8);
}

#[test]
fn identity_product() {
    let a: Vec<f32> = (0..12).map(|v| v as f32).collect(); // 3x4
    let mut eye = vec![0.0f32; 16];
    for i in 0..4 {
        eye[i * 5] = 1.0;
    }
    let mut c = vec![f32::NAN; 12];
    gemm(
        3,
        4,
        4,
        1.0,
        row_major(&a, 4),
        row_major(&eye, 4),
        0.0,
        MatMut {
            data: &mut c,
            rs: 4,
            cs: 1,
        },
        Epilogue::default(),
    )
    .unwrap();
    assert_eq!(c, a);
}

/// The AVX-512 f32 kernel's 12×32 logic, run through its AVX2 emulation (this machine may have
/// no AVX-512; where it has, `on_every_isa` runs the real kernel through every other test):
/// tiles cut at every edge (rows past 12, columns past 32), K past KC (256), M past MC (120),
/// N past NC (512) with the small blocking (`cache::test_override::SMALL`), every layout, alpha/beta, the epilogue, and the parallel driver with
/// bit-identical results for 1 and 2 threads.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_kernel_logic_through_emulation() {
    if !Isa::Avx2.is_supported() {
        eprintln!("SKIPPED: avx512_kernel_logic_through_emulation: the emulation needs AVX2+FMA");
        return;
    }
    let kern = crate::cache::test_override::with(
        crate::cache::test_override::SMALL,
        kernel::emulated512::kernel,
    );
    let run = |f: &dyn Fn()| {
        isa::with(Isa::Avx2, || kernel::test_override::with(kern, f)).expect("AVX2 present")
    };
    // Every size takes the packed driver (the small path would bypass the kernel): m·n·k past
    // 32³, or k past the small kernel's depth.
    let sizes = [
        (12, 32, 100),
        (13, 33, 100),
        (11, 31, 40),
        (25, 65, 193),
        (24, 64, 384),
        (481, 40, 8),
        (13, 3100, 5),
        (67, 67, 67),
    ];
    run(&|| {
        every_layout(&sizes, |t, l, (m, n, k), lays, alpha, beta| {
            assert!(
                !super::takes_small_path::<f32>(Isa::Avx2, m * n * k, k),
                "{m}x{n}x{k} must take the packed path"
            );
            let act = [Activation::None, Activation::Relu, Activation::Tanh][l % 3];
            let seed = (t * 29 + l) as u64;
            check::<f32>(m, n, k, lays, alpha, beta, l % 2 == 0, act, seed);
        });
    });
    // The parallel driver with 12-row tiles: same bits for 1 and 2 threads.
    let (m, n, k) = (200, 300, 250);
    let mut rng = Rng::new(11);
    let a: Vec<f32> = (0..m * k).map(|_| rng.uniform() as f32).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.uniform() as f32).collect();
    let product = |threads: usize| {
        run_in_pool(threads, || {
            let mut c = vec![0.0f32; m * n];
            isa::with(Isa::Avx2, || {
                kernel::test_override::with(kern, || {
                    gemm(
                        m,
                        n,
                        k,
                        1.0,
                        row_major(&a, k),
                        row_major(&b, n),
                        0.0,
                        MatMut {
                            data: &mut c,
                            rs: n,
                            cs: 1,
                        },
                        Epilogue::default(),
                    )
                    .unwrap()
                })
            })
            .expect("AVX2 present");
            c
        })
    };
    let (one, two) = (product(1), product(2));
    assert!(
        one.iter()
            .zip(&two)
            .all(|(x, y)| x.to_bits() == y.to_bits())
    );
    // And the values: row 7 against an f64 reference.
    for j in 0..n {
        let want: f64 = (0..k)
            .map(|p| a[7 * k + p] as f64 * b[p * n + j] as f64)
            .sum();
        assert!((one[7 * n + j] as f64 - want).abs() < 1e-3, "C[7,{j}]");
    }
}

/// One f16/bf16 product through `gemm_widen` against an f64 product of the widened inputs:
/// A row-major and B column-major when `a_rows` (the packing's scalar-widen and per-column
/// paths), else A column-major and B row-major (its run-widen and row-piece paths). C starts
/// as NaN with beta = 0 (it must be ignored); a bias and ReLU run in the epilogue.
fn half_case<S: Widen<f32>>(m: usize, n: usize, k: usize, a_rows: bool, mk: fn(f32) -> S) {
    let mut rng = Rng::new((m * 31 + n * 7 + k) as u64);
    let av: Vec<S> = (0..m * k).map(|_| mk(rng.uniform() as f32)).collect();
    let bv: Vec<S> = (0..k * n).map(|_| mk(rng.uniform() as f32)).collect();
    let bias: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
    // Element (i, p) of A and (p, j) of B in each layout.
    let (ars, acs) = if a_rows { (k, 1) } else { (1, m) };
    let (brs, bcs) = if a_rows { (1, k) } else { (n, 1) };
    let mut c = vec![f32::NAN; m * n];
    gemm_widen(
        m,
        n,
        k,
        0.5,
        MatRef {
            data: &av,
            rs: ars,
            cs: acs,
        },
        MatRef {
            data: &bv,
            rs: brs,
            cs: bcs,
        },
        0.0,
        MatMut {
            data: &mut c,
            rs: n,
            cs: 1,
        },
        Epilogue {
            bias: Some(&bias),
            act: Activation::Relu,
        },
    )
    .unwrap();
    for i in 0..m {
        for j in 0..n {
            let (mut want, mut scale) = (0.0f64, 0.0f64);
            for p in 0..k {
                let prod =
                    av[i * ars + p * acs].widen() as f64 * bv[p * brs + j * bcs].widen() as f64;
                want += prod;
                scale += prod.abs();
            }
            let want = (0.5 * want + bias[j] as f64).max(0.0);
            let got = c[i * n + j] as f64;
            let tol = 1e-6 * (1.0 + scale) * (k as f64).sqrt().max(1.0);
            assert!(
                (got - want).abs() <= tol,
                "{m}x{n}x{k} (A rows {a_rows}) at ({i}, {j}): {got} vs {want}"
            );
        }
    }
}

#[test]
fn half_inputs_widened_while_packing() {
    // Small path, both matrix-vector shapes, the packed path with edges and K past KC, and a
    // product wide enough to split N between threads; on 1 and 2 threads, every ISA.
    let shapes = [
        (10, 10, 10),
        (1, 40, 30),
        (40, 1, 30),
        (70, 45, 400),
        (90, 700, 130),
        // At most 16 columns: bf16 keeps the widening path on AVX-512 too.
        (70, 10, 400),
    ];
    for threads in [1, 2] {
        run_in_pool(threads, || {
            on_every_isa(|| {
                for &(m, n, k) in &shapes {
                    for a_rows in [true, false] {
                        half_case(m, n, k, a_rows, half::f16::from_f32);
                        half_case(m, n, k, a_rows, half::bf16::from_f32);
                    }
                }
            })
        });
    }
}

#[test]
fn fused_small_epilogue_equals_separate_pass_bit_for_bit() {
    // The small f32 kernel adds the bias and applies ReLU as it stores; the result must be the
    // one the separate epilogue pass gives, bit for bit, including ReLU's edge cases: a sum of
    // -0.0 (alpha = -1 times an exact +0 sum, plus a -0.0 bias) must come out +0.0, and a NaN
    // must pass through.
    let (m, n, k) = (5, 11, 3);
    let mut rng = Rng::new(11);
    let mut a: Vec<f32> = (0..m * k).map(|_| rng.uniform() as f32).collect();
    a[..k].fill(0.0); // row 0: every product is ±0
    a[k + 1] = f32::NAN; // row 1: NaN all along
    let b: Vec<f32> = (0..k * n)
        .map(|_| -rng.uniform().abs() as f32 - 0.1)
        .collect();
    let mut bias: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
    bias[0] = -0.0;
    bias[3] = -10.0;
    on_every_isa(|| {
        for (rs, cs) in [(n, 1), (1, m), (2 * n + 1, 2)] {
            let len = (m - 1) * rs + (n - 1) * cs + 1;
            let run = |epi: Epilogue<'_, f32>| {
                let mut c = vec![7.0f32; len];
                let (ar, br) = (row_major(&a, k), row_major(&b, n));
                let cm = MatMut {
                    data: &mut c,
                    rs,
                    cs,
                };
                gemm(m, n, k, -1.0, ar, br, 0.0, cm, epi).unwrap();
                c
            };
            let fused = run(Epilogue {
                bias: Some(&bias),
                act: Activation::Relu,
            });
            let mut separate = run(Epilogue::default());
            assert_eq!(
                separate[0].to_bits(),
                (-0.0f32).to_bits(),
                "the sum is -0.0"
            );
            for i in 0..m {
                for j in 0..n {
                    let v = &mut separate[i * rs + j * cs];
                    *v = crate::unary::apply(crate::unary::UnaryOp::Relu, *v + bias[j]);
                }
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fused), bits(&separate), "C strides ({rs}, {cs})");
            assert_eq!(
                fused[0].to_bits(),
                0.0f32.to_bits(),
                "-0.0 must become +0.0"
            );
            assert!(fused[rs].is_nan(), "NaN passes through ReLU");
        }
    });
}

#[test]
#[cfg(target_arch = "x86_64")]
fn grouped_dot_products_equal_single_ones_bit_for_bit() {
    // The matrix-vector path computes four rows per pass over x; each row's result must be
    // exactly the one a pass of its own gives (same accumulators, same combine order).
    if !Isa::Avx2.is_supported() {
        eprintln!("SKIPPED: grouped_dot_products_equal_single_ones_bit_for_bit (no AVX2 here)");
        return;
    }
    let mut rng = Rng::new(5);
    for k in [
        0, 1, 7, 8, 9, 16, 23, 24, 25, 31, 32, 33, 47, 48, 64, 95, 200, 517, 784,
    ] {
        let rows: Vec<Vec<f32>> = (0..4)
            .map(|_| (0..k).map(|_| rng.uniform() as f32).collect())
            .collect();
        let x: Vec<f32> = (0..k).map(|_| rng.uniform() as f32).collect();
        // SAFETY: AVX2 and FMA are present (checked above).
        let (four, one) = unsafe {
            let r = |i: usize| &rows[i][..];
            (
                small::dots_f32_avx2([r(0), r(1), r(2), r(3)], &x),
                [0, 1, 2, 3].map(|i| small::dots_f32_avx2([r(i)], &x)[0]),
            )
        };
        assert_eq!(four.map(f32::to_bits), one.map(f32::to_bits), "k = {k}");
        // The documented order, in scalar f32: three 8-lane accumulators over 24-element
        // chunks, combined (0+1)+2, the tail's element t into lane t % 8 (fused), then the
        // lanes summed ((0+1)+(2+3))+((4+5)+(6+7)).
        assert_eq!(small::DOT_ACCS, 3);
        let scalar = |row: &[f32]| {
            let mut acc = [[0.0f32; 8]; 3];
            let full = k / 24 * 24;
            for c in (0..full).step_by(24) {
                for (j, a) in acc.iter_mut().enumerate() {
                    for (l, v) in a.iter_mut().enumerate() {
                        *v = row[c + 8 * j + l].mul_add(x[c + 8 * j + l], *v);
                    }
                }
            }
            let mut lanes: [f32; 8] = std::array::from_fn(|l| (acc[0][l] + acc[1][l]) + acc[2][l]);
            for p in full..k {
                lanes[(p - full) % 8] = row[p].mul_add(x[p], lanes[(p - full) % 8]);
            }
            let l = lanes;
            ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
        };
        assert_eq!(four[1].to_bits(), scalar(&rows[1]).to_bits(), "k = {k}");
        let want: f64 = (0..k).map(|p| rows[0][p] as f64 * x[p] as f64).sum();
        assert!(
            (four[0] as f64 - want).abs() <= 1e-5 * (1.0 + k as f64),
            "k = {k}"
        );
    }
}

#[test]
fn bad_operands_are_errors_before_anything_is_written() {
    // Each mistake a caller can make with slices and strides is refused with an error that
    // names the operand, and C is left untouched (the kernels' unsafe loads and stores never
    // see such operands).
    let (m, n, k) = (4, 5, 3);
    let a = vec![1.0f32; m * k];
    let b = vec![1.0f32; k * n];
    let bias = vec![0.5f32; n - 1];
    let run = |a: MatRef<'_, f32>, b: MatRef<'_, f32>, (rs, cs): (usize, usize), epi| {
        let mut c = vec![9.0f32; m * n];
        let r = gemm(
            m,
            n,
            k,
            1.0,
            a,
            b,
            0.0,
            MatMut {
                data: &mut c,
                rs,
                cs,
            },
            epi,
        );
        if r.is_err() {
            assert!(c.iter().all(|&v| v == 9.0), "C was written despite {r:?}");
        }
        r
    };
    let ar = row_major(&a, k);
    let br = row_major(&b, n);
    let short_a = MatRef {
        data: &a[..m * k - 1],
        rs: k,
        cs: 1,
    };
    let e = run(short_a, br, (n, 1), Epilogue::default()).unwrap_err();
    assert!(
        matches!(
            e,
            GemmError::TooShort {
                operand: "A",
                len: 11,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("needs 12 elements"), "{e}");
    let wide_b = MatRef {
        data: &b,
        rs: n + 1,
        cs: 1,
    };
    let e = run(ar, wide_b, (n, 1), Epilogue::default()).unwrap_err();
    assert!(
        matches!(e, GemmError::TooShort { operand: "B", .. }),
        "{e:?}"
    );
    let e = run(ar, br, (n + 1, 1), Epilogue::default()).unwrap_err();
    assert!(
        matches!(e, GemmError::TooShort { operand: "C", .. }),
        "{e:?}"
    );
    let huge = MatRef {
        data: &a,
        rs: usize::MAX / 2,
        cs: 1,
    };
    let e = run(huge, br, (n, 1), Epilogue::default()).unwrap_err();
    assert_eq!(e, GemmError::Overflow { operand: "A" });
    // Rows that overlap (rs < n), and a zero column stride: both would race between threads.
    for strides in [(n - 1, 1), (n, 0), (0, 0), (1, 1)] {
        let e = run(ar, br, strides, Epilogue::default()).unwrap_err();
        assert!(
            matches!(e, GemmError::OverlappingOutput { .. }),
            "{strides:?}: {e:?}"
        );
    }
    let epi = Epilogue {
        bias: Some(&bias),
        act: Activation::None,
    };
    let e = run(ar, br, (n, 1), epi).unwrap_err();
    assert_eq!(
        e,
        GemmError::BiasTooShort {
            need: n,
            len: n - 1
        }
    );
    // The same checks guard the half-precision entry point.
    let ah = vec![half::f16::ONE; m * k - 1];
    let bh = vec![half::f16::ONE; k * n];
    let mut c = vec![0.0f32; m * n];
    let e = gemm_widen(
        m,
        n,
        k,
        1.0,
        row_major(&ah, k),
        row_major(&bh, n),
        0.0,
        MatMut {
            data: &mut c,
            rs: n,
            cs: 1,
        },
        Epilogue::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, GemmError::TooShort { operand: "A", .. }),
        "{e:?}"
    );
    // Column-major C, a transposed view of C, and K = 0 with empty A and B are all fine.
    assert!(run(ar, br, (1, m), Epilogue::default()).is_ok());
    let mut c = vec![9.0f32; m * n];
    let empty = MatRef {
        data: &a[..0],
        rs: 0,
        cs: 0,
    };
    let cm = MatMut {
        data: &mut c,
        rs: n,
        cs: 1,
    };
    gemm(m, n, 0, 1.0, empty, empty, 0.0, cm, Epilogue::default()).unwrap();
    assert!(c.iter().all(|&v| v == 0.0));
}

#[test]
fn skinny_products_keep_the_avx2_kernel_on_avx512() {
    use crate::isa::Isa;
    // N ≤ 16 has no use for the 12×32 tile and loses the in-place A path (see `packed_isa`).
    assert_eq!(super::packed_isa(Isa::Avx512, 1), Isa::Avx2);
    assert_eq!(super::packed_isa(Isa::Avx512, 10), Isa::Avx2);
    assert_eq!(super::packed_isa(Isa::Avx512, 16), Isa::Avx2);
    assert_eq!(super::packed_isa(Isa::Avx512, 17), Isa::Avx512);
    assert_eq!(super::packed_isa(Isa::Avx512, 1024), Isa::Avx512);
    for n in [1, 10, 16, 17, 1024] {
        assert_eq!(super::packed_isa(Isa::Avx2, n), Isa::Avx2);
        assert_eq!(super::packed_isa(Isa::Portable, n), Isa::Portable);
    }
}

/// A bf16 matrix of `rows`×`cols` values in layout `lay` (with an offset and, for
/// `Lay::Strided`, gaps), from values uniform in [-1, 1) rounded to bf16; the buffer and the
/// strides.
fn bf16_matrix(
    rows: usize,
    cols: usize,
    lay: Lay,
    rng: &mut Rng,
) -> (Vec<half::bf16>, usize, usize) {
    let (rs, cs, len) = match lay {
        Lay::Row => (cols, 1, rows * cols),
        Lay::Col => (1, rows, rows * cols),
        Lay::Strided => (2 * (cols + 3), 2, 2 * (cols + 3) * rows),
    };
    let mut buf = vec![half::bf16::from_f32(f32::NAN); len.max(1)];
    for i in 0..rows {
        for j in 0..cols {
            buf[i * rs + j * cs] = half::bf16::from_f64(rng.uniform());
        }
    }
    (buf, rs, cs)
}

/// One product through the AVX512-BF16 kernel, called directly (so even sizes that `gemm_widen`
/// sends to the small or matrix-vector paths run it), against an f64 product of the same
/// bf16 values, with the worst-case bound of a sequential f32 sum: each of the k + 3 roundings
/// (k - 1 adds, alpha, beta·C, the bias) is off by at most 2⁻²⁴ of the magnitudes involved.
#[allow(clippy::too_many_arguments)]
fn bf16_kernel_case(
    m: usize,
    n: usize,
    k: usize,
    lays: (Lay, Lay),
    alpha: f32,
    beta: f32,
    bias: bool,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let (av, ars, acs) = bf16_matrix(m, k, lays.0, &mut rng);
    let (bv, brs, bcs) = bf16_matrix(k, n, lays.1, &mut rng);
    let bias_v: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
    let c0: Vec<f32> = (0..m * n).map(|_| rng.uniform() as f32).collect();
    let mut c = c0.clone();
    let a = MatRef {
        data: &av[..],
        rs: ars,
        cs: acs,
    };
    let b = MatRef {
        data: &bv[..],
        rs: brs,
        cs: bcs,
    };
    let epi = Epilogue {
        bias: bias.then_some(&bias_v[..]),
        act: Activation::None,
    };
    let mut cm = MatMut {
        data: &mut c,
        rs: n,
        cs: 1,
    };
    super::check_operands(m, n, k, &a, &b, &cm, &epi).unwrap();
    let cp = super::c_ptr(&mut cm);
    let parallel = super::packed_parallel(m, n, k, 32);
    // SAFETY: the test's caller checked `bf16::supported()`; the operands passed the checks.
    unsafe { super::bf16::gemm_bf16(m, n, k, alpha, &a, &b, beta, cp, &epi, parallel) };
    for i in 0..m {
        for j in 0..n {
            let (mut dot, mut scale) = (0.0f64, 0.0f64);
            for p in 0..k {
                let prod = av[i * ars + p * acs].to_f64() * bv[p * brs + j * bcs].to_f64();
                dot += prod;
                scale += prod.abs();
            }
            let (old, add) = (
                c0[i * n + j] as f64,
                if bias { bias_v[j] as f64 } else { 0.0 },
            );
            let want = alpha as f64 * dot + beta as f64 * old + add;
            let mag = (alpha as f64).abs() * scale + (beta as f64 * old).abs() + add.abs();
            let tol = (k + 3) as f64 * f64::powi(2.0, -24) * 2.0 * mag;
            let got = c[i * n + j] as f64;
            assert!(
                (got - want).abs() <= tol,
                "{m}x{n}x{k} {lays:?} alpha {alpha} beta {beta} at ({i}, {j}): {got} vs {want} \
                 (tolerance {tol:e})"
            );
        }
    }
}

#[test]
fn bf16_kernel_against_f64_of_rounded_inputs() {
    if !super::bf16::supported() {
        eprintln!("SKIPPED: bf16_kernel_against_f64_of_rounded_inputs: no AVX512-BF16 here");
        return;
    }
    // Tiles cut at every edge (rows past 12, columns past 32), odd K (a padded pair), K past
    // KC and M past MC and N past NC with the small blocking (bf16: KC 360, MC 180, NC 704),
    // every layout of A and B, alpha/beta/bias; 1 and 2 threads.
    let sizes = [
        (12, 32, 2),
        (13, 33, 3),
        (11, 31, 1),
        (1, 1, 1),
        (25, 65, 361),
        (181, 40, 7),
        (13, 750, 5),
        (67, 67, 67),
        (200, 97, 721),
    ];
    let lays = [Lay::Row, Lay::Col, Lay::Strided];
    for threads in [1, 2] {
        run_in_pool(threads, || {
            crate::cache::test_override::with(crate::cache::test_override::SMALL, || {
                for (t, &(m, n, k)) in sizes.iter().enumerate() {
                    for (l, &la) in lays.iter().enumerate() {
                        for (r, &lb) in lays.iter().enumerate() {
                            let case = t * 9 + l * 3 + r;
                            let (alpha, beta) = [(1.0, 0.0), (1.0, 1.0), (-0.75, 0.5)][case % 3];
                            bf16_kernel_case(
                                m,
                                n,
                                k,
                                (la, lb),
                                alpha,
                                beta,
                                case % 2 == 0,
                                case as u64,
                            );
                        }
                    }
                }
            })
        });
    }
}

#[test]
fn bf16_through_gemm_widen_bit_identical_for_any_thread_count() {
    // `gemm_widen` with bf16 operands on the AVX-512 path runs the AVX512-BF16 kernel where the
    // CPU has it (the widening path elsewhere, which `half_inputs_widened_while_packing` and
    // this test then check as well): same bits for 1 to 4 threads, with this machine's own
    // blocking and with the small one, and close to the f64 product.
    let isa = if Isa::Avx512.is_supported() {
        Isa::Avx512
    } else {
        isa::detected()
    };
    let mut rng = Rng::new(5);
    for &(m, n, k) in &[
        (200, 300, 150),
        (97, 500, 261),
        (301, 2100, 801),
        (300, 10, 300),
    ] {
        let av: Vec<half::bf16> = (0..m * k)
            .map(|_| half::bf16::from_f64(rng.uniform()))
            .collect();
        let bv: Vec<half::bf16> = (0..k * n)
            .map(|_| half::bf16::from_f64(rng.uniform()))
            .collect();
        for small in [false, true] {
            let go = |threads: usize| {
                run_in_pool(threads, || {
                    let product = || {
                        isa::with(isa, || {
                            let mut c = vec![0.0f32; m * n];
                            gemm_widen(
                                m,
                                n,
                                k,
                                1.0,
                                row_major(&av, k),
                                row_major(&bv, n),
                                0.0,
                                MatMut {
                                    data: &mut c,
                                    rs: n,
                                    cs: 1,
                                },
                                Epilogue::default(),
                            )
                            .unwrap();
                            c
                        })
                        .expect("supported")
                    };
                    if small {
                        crate::cache::test_override::with(
                            crate::cache::test_override::SMALL,
                            product,
                        )
                    } else {
                        product()
                    }
                })
            };
            let one = go(1);
            for threads in [2, 3, 4] {
                let many = go(threads);
                assert!(
                    one.iter()
                        .zip(&many)
                        .all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{isa}: bf16 {m}x{n}x{k} (small blocking {small}) differs between 1 and \
                     {threads} threads"
                );
            }
            for (i, j) in [(0, 0), (m - 1, n - 1), (m / 2, n / 3)] {
                let want: f64 = (0..k)
                    .map(|p| av[i * k + p].to_f64() * bv[p * n + j].to_f64())
                    .sum();
                let scale: f64 = (0..k)
                    .map(|p| (av[i * k + p].to_f64() * bv[p * n + j].to_f64()).abs())
                    .sum();
                let got = one[i * n + j] as f64;
                assert!(
                    (got - want).abs() <= (k as f64) * f64::powi(2.0, -23) * scale,
                    "{m}x{n}x{k} at ({i}, {j}): {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn block_height_spends_the_l2_budget_in_equal_blocks() {
    // A kernel blocked MC 252 × KC 512 (a 1 MiB L2, 12×32 tile).
    let kern = Kernel {
        mc: 252,
        kc: 512,
        ..kernel::kernel_f32(Isa::Portable)
    };
    let kern = Kernel {
        mr: 12,
        nr: 32,
        ..kern
    };
    let height = |m: usize, k: usize| {
        super::driver::block_height(&kern, m, super::driver::slice_depth(512, k))
    };
    // K = 784 runs as 2 × 392: the budget allows 329 rows, so M = 256 is one block.
    assert_eq!(height(256, 784), 264);
    // K = 512: 252-row blocks, made equal: 1024 rows as 5 blocks of 216 (the last 160).
    assert_eq!(height(1024, 512), 216);
    for (m, k) in [(1, 1), (13, 5000), (1000, 64), (4096, 4096), (300, 100_000)] {
        let h = height(m, k);
        let blocks = m.div_ceil(h);
        assert!(
            h.is_multiple_of(12) && (12..=4096).contains(&h),
            "{m}x{k}: {h}"
        );
        // Equal blocks: the last is short by less than one block's worth of slivers per block.
        assert!(m + blocks * 12 > blocks * h, "{m}x{k}: {h} x {blocks}");
    }
}
