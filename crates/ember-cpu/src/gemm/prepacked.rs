//! A B operand packed once and multiplied many times: [`PackedB`].
//!
//! A recurrent layer multiplies the same weight by a new small A at every time step
//! (`h_{t-1}·W_hhᵀ`, 64×128 by 128×512 for issue 15's LSTM, 28 to 100 times per sequence, and
//! `dgates·W_hh` in the backward). Through [`gemm`](super::gemm) each of those calls packs all
//! of B again (K×N values, 256 KiB there, against 32 KiB of A), which a profile of the LSTM step
//! put at 4 % of its time, plus the pool lookups of the packing buffers. Here B is packed once,
//! in the driver's own layout (KC slices of NR-wide slivers, [`super::pack`]), and each product
//! only packs its A and runs loops 3, 2 and 1 of the driver around the same microkernel.
//!
//! Results are bit-identical to [`gemm`](super::gemm)'s packed path with the same kernel: the
//! same KC slices (`slice_depth`), the same microkernel over the same packed slivers, slices
//! accumulated into C in the same order, the epilogue after the last. With several threads the
//! NR-wide slivers of each block are split between them (A's block is packed once, before,
//! and shared read-only); a sliver is computed the same way on any thread, so results are the
//! same for any thread count.
//!
//! The kernel is chosen when B is packed (from [`crate::isa::active`] then) and kept: the
//! packed layout belongs to it.

use super::driver::{AlignedBuf, block_height, macro_kernel, slice_depth};
use super::pack::{pack_a, pack_b};
use super::{
    Epilogue, GemmError, Kernel, MatMut, MatRef, PARALLEL_MIN_MNK, apply_epilogue, c_ptr,
    check_extent, check_operands, packed_isa,
};
use crate::element::Float;
use rayon::prelude::*;

/// B (K×N) packed once for the microkernel of the path active when it was made.
pub struct PackedB<T: Float> {
    kern: Kernel<T>,
    k: usize,
    n: usize,
    /// Depth of the KC slices.
    kc: usize,
    /// NR-wide slivers across N (the last zero-padded).
    slivers: usize,
    /// Slice by slice: `slivers` slivers of `kb × nr` values each.
    data: Vec<T>,
}

impl<T: Float> std::fmt::Debug for PackedB<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedB({}x{}, {:?})", self.k, self.n, self.kern)
    }
}

impl<T: Float> PackedB<T> {
    /// Packs the `k`×`n` matrix `b` (any strides). `Err` when `b` does not fit its slice.
    pub fn new(k: usize, n: usize, b: MatRef<'_, T>) -> Result<Self, GemmError> {
        let isa = crate::isa::active();
        let kern = T::gemm_kernel(packed_isa(isa, n));
        let nr = kern.nr;
        // The extent of B, checked as `gemm` checks it.
        check_extent("B", k, n, (b.rs, b.cs), b.data.len())?;
        let kc = slice_depth(kern.kc, k);
        let slivers = n.div_ceil(nr);
        let mut data = vec![T::ZERO; slivers * nr * k];
        if n > 0 {
            for pc in (0..k).step_by(kc.max(1)) {
                let kb = kc.min(k - pc);
                let dst = &mut data[pc * slivers * nr..(pc + kb) * slivers * nr];
                pack_b(&b, pc, kb, 0, n, nr, dst);
            }
        }
        Ok(PackedB {
            kern,
            k,
            n,
            kc,
            slivers,
            data,
        })
    }

    /// K, the rows of B.
    pub fn k(&self) -> usize {
        self.k
    }

    /// N, the columns of B.
    pub fn n(&self) -> usize {
        self.n
    }

    /// C[m×n] = alpha·A[m×k]·B + beta·C, then the epilogue, as [`gemm`](super::gemm) with this
    /// B. Operands that do not fit their slices, a C whose strides overlap, or a bias shorter
    /// than n are a [`GemmError`], found before anything is written.
    pub fn gemm(
        &self,
        m: usize,
        alpha: T,
        a: MatRef<'_, T>,
        beta: T,
        mut c: MatMut<'_, T>,
        epi: Epilogue<'_, T>,
    ) -> Result<(), GemmError> {
        let (k, n) = (self.k, self.n);
        // B as the checks see it: its packed values, a row-major stand-in of the same extent.
        let b = MatRef {
            data: &self.data,
            rs: self.slivers * self.kern.nr,
            cs: 1,
        };
        check_operands(m, n, k, &a, &b, &c, &epi)?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        if k == 0 || alpha == T::ZERO {
            // Nothing to multiply: the plain path scales C and applies the epilogue.
            return super::gemm(m, n, k, alpha, a, b, beta, c, epi);
        }
        let kern = &self.kern;
        let (mr, nr) = (kern.mr, kern.nr);
        let cp = c_ptr(&mut c);
        let mc = block_height(kern, m, self.kc);
        let parallel = m.saturating_mul(n.next_multiple_of(nr)).saturating_mul(k)
            >= PARALLEL_MIN_MNK
            && rayon::current_num_threads() > 1;
        let mut apack = AlignedBuf::<T>::new(mc.div_ceil(mr) * mr * self.kc);
        for pc in (0..k).step_by(self.kc) {
            let kb = self.kc.min(k - pc);
            let bslice = &self.data[pc * self.slivers * nr..(pc + kb) * self.slivers * nr];
            let beta_k = if pc == 0 { beta } else { T::ONE };
            let last = pc + kb == k;
            for ic in (0..m).step_by(mc) {
                let mb = mc.min(m - ic);
                let ap = &mut apack.as_mut_slice()[..mb.div_ceil(mr) * mr * kb];
                pack_a(kern.isa, &a, ic, mb, pc, kb, mr, ap);
                let ap = &*ap;
                // Slivers s0..s1 of this block, then their epilogue.
                let run = |s0: usize, s1: usize| {
                    macro_kernel(
                        kern,
                        alpha,
                        beta_k,
                        ap,
                        bslice,
                        kb,
                        ic,
                        mb,
                        0,
                        n,
                        s0..s1,
                        cp,
                        None,
                    );
                    if last {
                        let cols = s0 * nr..(s1 * nr).min(n);
                        apply_epilogue(kern.isa, cp, ic..ic + mb, cols, &epi);
                    }
                };
                if parallel {
                    let threads = rayon::current_num_threads().min(self.slivers);
                    let per = self.slivers.div_ceil(threads);
                    (0..threads).into_par_iter().for_each(|t| {
                        let (s0, s1) = (
                            (t * per).min(self.slivers),
                            ((t + 1) * per).min(self.slivers),
                        );
                        if s0 < s1 {
                            run(s0, s1);
                        }
                    });
                } else {
                    run(0, self.slivers);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa;

    fn vals(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                x as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// The same bits as `gemm` (same kernel, same slices) for shapes with edges in every
    /// direction, beta 0 and 1, a bias, a transposed B, and on 1 and 2 threads.
    #[test]
    fn matches_gemm_bit_for_bit() {
        for isa in isa::supported() {
            for &(m, n, k) in &[
                (64, 512, 128),
                (64, 128, 512),
                (13, 37, 700),
                (1, 5, 3),
                (30, 16, 9),
            ] {
                let a = vals(m * k, 1);
                let b = vals(k * n, 2);
                let bias = vals(n, 3);
                let c0 = vals(m * n, 4);
                for (beta, transposed) in [(0.0f32, false), (1.0, true)] {
                    // B given row-major, or as the transpose of an n×k matrix.
                    let (bt, brs, bcs) = if transposed {
                        let mut t = vec![0f32; k * n];
                        for p in 0..k {
                            for j in 0..n {
                                t[j * k + p] = b[p * n + j];
                            }
                        }
                        (t, 1, k)
                    } else {
                        (b.clone(), n, 1)
                    };
                    let bref = MatRef {
                        data: &bt,
                        rs: brs,
                        cs: bcs,
                    };
                    let aref = MatRef {
                        data: &a,
                        rs: k,
                        cs: 1,
                    };
                    let epi = Epilogue {
                        bias: Some(&bias),
                        act: Default::default(),
                    };
                    let want = isa::with(isa, || {
                        let mut c = c0.clone();
                        super::super::gemm(
                            m,
                            n,
                            k,
                            1.0,
                            aref,
                            bref,
                            beta,
                            MatMut {
                                data: &mut c,
                                rs: n,
                                cs: 1,
                            },
                            epi,
                        )
                        .unwrap();
                        c
                    })
                    .unwrap();
                    let packed = isa::with(isa, || PackedB::new(k, n, bref))
                        .unwrap()
                        .unwrap();
                    for threads in [1, 2] {
                        let got = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap()
                            .install(|| {
                                let mut c = c0.clone();
                                packed
                                    .gemm(
                                        m,
                                        1.0,
                                        aref,
                                        beta,
                                        MatMut {
                                            data: &mut c,
                                            rs: n,
                                            cs: 1,
                                        },
                                        epi,
                                    )
                                    .unwrap();
                                c
                            });
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        // The plain path takes its small kernel for tiny products: there only
                        // closeness is promised.
                        let close = got
                            .iter()
                            .zip(&want)
                            .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs()));
                        let small = super::super::takes_small_path::<f32>(isa, m * n * k, k)
                            || n == 1
                            || m == 1;
                        assert!(
                            if small { close } else { same },
                            "{isa:?} {m}x{n}x{k} beta {beta} transposed {transposed} threads {threads}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bad_operands_are_errors() {
        let b = vals(12, 1);
        assert!(
            PackedB::new(
                4,
                4,
                MatRef {
                    data: &b,
                    rs: 4,
                    cs: 1
                }
            )
            .is_err()
        );
        let p = PackedB::new(
            3,
            4,
            MatRef {
                data: &b,
                rs: 4,
                cs: 1,
            },
        )
        .unwrap();
        let a = vals(6, 2);
        let mut c = vec![0f32; 8];
        // A is 2×3 in 6 values: fine; 3×3 is not.
        assert!(
            p.gemm(
                2,
                1.0,
                MatRef {
                    data: &a,
                    rs: 3,
                    cs: 1
                },
                0.0,
                MatMut {
                    data: &mut c,
                    rs: 4,
                    cs: 1
                },
                Epilogue::default()
            )
            .is_ok()
        );
        assert!(
            p.gemm(
                3,
                1.0,
                MatRef {
                    data: &a,
                    rs: 3,
                    cs: 1
                },
                0.0,
                MatMut {
                    data: &mut c,
                    rs: 4,
                    cs: 1
                },
                Epilogue::default()
            )
            .is_err()
        );
        let short = [0f32; 2];
        let epi = Epilogue {
            bias: Some(&short[..]),
            act: Default::default(),
        };
        assert!(
            p.gemm(
                2,
                1.0,
                MatRef {
                    data: &a,
                    rs: 3,
                    cs: 1
                },
                0.0,
                MatMut {
                    data: &mut c,
                    rs: 4,
                    cs: 1
                },
                epi
            )
            .is_err()
        );
    }
}
