//! GEMM microkernels: the innermost BLIS loop, a register-blocked MR×NR tile of C.
//!
//! A microkernel multiplies one packed MR-row sliver of A by one packed NR-column sliver of B
//! over `kc` steps, keeping the whole MR×NR tile of C in registers, and then writes
//! `C = alpha·acc + beta·C` (with `beta == 0`, C is not read, so NaN there is ignored).
//!
//! Packed layouts (built by `pack.rs`): the A sliver holds, for each step p, the MR values of
//! column p; the B sliver holds, for each p, the NR values of row p. Both are read strictly
//! sequentially, which is what makes the kernel stream from L1.
//!
//! Paths:
//! - AVX2+FMA: 6×16 for f32 (12 ymm accumulators, 2 loads of B, 6 broadcasts of A per step)
//!   and 6×8 for f64 (the same shape in doubles). 12 accumulators + 2 B registers + 1
//!   broadcast register = 15 of the 16 ymm registers.
//! - portable: a plain-Rust 4×8 (f32) / 4×4 (f64) tile the compiler keeps in SSE2 registers.
//!
//! Each C element's sum runs over p in order 0..kc with one accumulator, so its value depends
//! only on the kernel path and KC, never on the thread count.

use super::Kernel;
use crate::element::Float;
use crate::isa::Isa;

/// The signature every microkernel shares.
///
/// `a` points at `kc * mr` packed values, `b` at `kc * nr`; `c` at the tile's element (0, 0),
/// whose element (i, j) is `c[i * rs_c + j * cs_c]`. All tile elements must be writable.
pub type MicroKernel<T> = unsafe fn(
    kc: usize,
    alpha: T,
    a: *const T,
    b: *const T,
    beta: T,
    c: *mut T,
    rs_c: usize,
    cs_c: usize,
);

/// Block sizes for f32, chosen for a 32 KiB L1d / 512 KiB L2 core (Zen 3): a 256-deep B sliver
/// (16 KiB for NR = 16) stays in L1, an MC×KC block of A (144 KiB) in L2, a KC×NC panel of B
/// in L3.
const KC_F32: usize = 256;
const MC_F32: usize = 144;
const NC_F32: usize = 4080;
/// f64 halves the depth of L1-resident B per byte, so MC is smaller for the same L2 share.
const KC_F64: usize = 256;
const MC_F64: usize = 96;
const NC_F64: usize = 2040;

/// The f32 kernel for `isa`.
pub fn kernel_f32(isa: Isa) -> Kernel<f32> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_supported() => Kernel {
            isa: Isa::Avx2,
            mr: 6,
            nr: 16,
            mc: MC_F32,
            kc: KC_F32,
            nc: NC_F32,
            ukr: avx2::ukr_f32_6x16,
        },
        _ => Kernel {
            isa: Isa::Portable,
            mr: 4,
            nr: 8,
            mc: 128,
            kc: KC_F32,
            nc: 4096,
            ukr: portable_ukr::<f32, 4, 8>,
        },
    }
}

/// The f64 kernel for `isa`.
pub fn kernel_f64(isa: Isa) -> Kernel<f64> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_supported() => Kernel {
            isa: Isa::Avx2,
            mr: 6,
            nr: 8,
            mc: MC_F64,
            kc: KC_F64,
            nc: NC_F64,
            ukr: avx2::ukr_f64_6x8,
        },
        _ => Kernel {
            isa: Isa::Portable,
            mr: 4,
            nr: 4,
            mc: 64,
            kc: KC_F64,
            nc: 2048,
            ukr: portable_ukr::<f64, 4, 4>,
        },
    }
}

/// Portable microkernel: an MR×NR accumulator array the optimiser keeps in registers.
///
/// # Safety
/// See [`MicroKernel`]: `a` and `b` hold `kc * MR` and `kc * NR` values and every tile element
/// of `c` is writable.
#[allow(clippy::too_many_arguments)]
unsafe fn portable_ukr<T: Float, const MR: usize, const NR: usize>(
    kc: usize,
    alpha: T,
    a: *const T,
    b: *const T,
    beta: T,
    c: *mut T,
    rs_c: usize,
    cs_c: usize,
) {
    // SAFETY: the caller guarantees the packed slivers hold kc*MR and kc*NR values.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * MR),
            std::slice::from_raw_parts(b, kc * NR),
        )
    };
    let mut acc = [[T::ZERO; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for i in 0..MR {
            let ai = ap[i];
            for j in 0..NR {
                acc[i][j] += ai * bp[j];
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            // SAFETY: (i, j) lies inside the tile, which the caller guarantees is writable.
            let cij = unsafe { &mut *c.add(i * rs_c + j * cs_c) };
            *cij = if beta == T::ZERO {
                alpha * v
            } else {
                alpha * v + beta * *cij
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Asks the cache for the six rows of the C tile before the k loop starts, so their misses
    /// (C rows of a large matrix are far apart and not in cache) overlap with the arithmetic
    /// instead of stalling the stores at the end. Strides and the row width are in bytes.
    #[inline(always)]
    fn prefetch_tile(c: *const i8, rs: usize, cs: usize, row_bytes: usize) {
        if cs > 8 {
            return; // a column-major tile: rows are not runs, skip the hint
        }
        for i in 0..6 {
            let row = c.wrapping_add(i * rs);
            // SAFETY: prefetching is only a hint; it never faults, whatever the address.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(row);
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(row_bytes - 1));
            }
        }
    }

    /// AVX2+FMA 6×16 f32 microkernel (see the module docs for the register plan).
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA (checked by `kernel_f32`), and the [`super::MicroKernel`]
    /// contract holds.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn ukr_f32_6x16(
        kc: usize,
        alpha: f32,
        a: *const f32,
        b: *const f32,
        beta: f32,
        c: *mut f32,
        rs_c: usize,
        cs_c: usize,
    ) {
        // SAFETY: forwarded contract; AVX2+FMA presence was checked when the kernel was chosen.
        unsafe { f32_6x16_impl(kc, alpha, a, b, beta, c, rs_c, cs_c) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn f32_6x16_impl(
        kc: usize,
        alpha: f32,
        mut a: *const f32,
        mut b: *const f32,
        beta: f32,
        c: *mut f32,
        rs_c: usize,
        cs_c: usize,
    ) {
        prefetch_tile(c as *const i8, rs_c * 4, cs_c * 4, 16 * 4);
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        // One k step: two B vectors, six broadcasts of A, twelve FMAs.
        macro_rules! step {
            () => {
                // SAFETY: a and b advance by 6 and 16 per step over kc steps, inside the slivers.
                unsafe {
                    let b0 = _mm256_loadu_ps(b);
                    let b1 = _mm256_loadu_ps(b.add(8));
                    for (i, row) in acc.iter_mut().enumerate() {
                        let ai = _mm256_broadcast_ss(&*a.add(i));
                        row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                        row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
                    }
                    a = a.add(6);
                    b = b.add(16);
                }
            };
        }
        // Unrolled by 4 to cut loop overhead; the order of the steps is unchanged.
        for _ in 0..kc / 4 {
            step!();
            step!();
            step!();
            step!();
        }
        for _ in 0..kc % 4 {
            step!();
        }
        let va = _mm256_set1_ps(alpha);
        let vb = _mm256_set1_ps(beta);
        if cs_c == 1 {
            for (i, row) in acc.iter().enumerate() {
                // SAFETY: row i of the tile holds 16 contiguous writable floats (cs_c == 1).
                unsafe {
                    let p = c.add(i * rs_c);
                    for (h, &v) in row.iter().enumerate() {
                        let ph = p.add(8 * h);
                        let r = if beta == 0.0 {
                            _mm256_mul_ps(va, v)
                        } else {
                            _mm256_fmadd_ps(vb, _mm256_loadu_ps(ph), _mm256_mul_ps(va, v))
                        };
                        _mm256_storeu_ps(ph, r);
                    }
                }
            }
        } else {
            let mut tile = [0.0f32; 96];
            for (i, row) in acc.iter().enumerate() {
                for (h, &v) in row.iter().enumerate() {
                    // SAFETY: 8 floats fit at offset 16i + 8h < 96.
                    unsafe { _mm256_storeu_ps(tile.as_mut_ptr().add(16 * i + 8 * h), v) };
                }
            }
            for i in 0..6 {
                for j in 0..16 {
                    // SAFETY: (i, j) lies inside the writable tile.
                    let cij = unsafe { &mut *c.add(i * rs_c + j * cs_c) };
                    let v = alpha * tile[16 * i + j];
                    *cij = if beta == 0.0 {
                        v
                    } else {
                        beta.mul_add(*cij, v)
                    };
                }
            }
        }
    }

    /// AVX2+FMA 6×8 f64 microkernel.
    ///
    /// # Safety
    /// As for [`ukr_f32_6x16`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn ukr_f64_6x8(
        kc: usize,
        alpha: f64,
        a: *const f64,
        b: *const f64,
        beta: f64,
        c: *mut f64,
        rs_c: usize,
        cs_c: usize,
    ) {
        // SAFETY: forwarded contract; AVX2+FMA presence was checked when the kernel was chosen.
        unsafe { f64_6x8_impl(kc, alpha, a, b, beta, c, rs_c, cs_c) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn f64_6x8_impl(
        kc: usize,
        alpha: f64,
        mut a: *const f64,
        mut b: *const f64,
        beta: f64,
        c: *mut f64,
        rs_c: usize,
        cs_c: usize,
    ) {
        prefetch_tile(c as *const i8, rs_c * 8, cs_c * 8, 8 * 8);
        let mut acc = [[_mm256_setzero_pd(); 2]; 6];
        for _ in 0..kc {
            // SAFETY: a and b advance by 6 and 8 per step over kc steps, inside the slivers.
            unsafe {
                let b0 = _mm256_loadu_pd(b);
                let b1 = _mm256_loadu_pd(b.add(4));
                for (i, row) in acc.iter_mut().enumerate() {
                    let ai = _mm256_broadcast_sd(&*a.add(i));
                    row[0] = _mm256_fmadd_pd(ai, b0, row[0]);
                    row[1] = _mm256_fmadd_pd(ai, b1, row[1]);
                }
                a = a.add(6);
                b = b.add(8);
            }
        }
        let va = _mm256_set1_pd(alpha);
        let vb = _mm256_set1_pd(beta);
        if cs_c == 1 {
            for (i, row) in acc.iter().enumerate() {
                // SAFETY: row i of the tile holds 8 contiguous writable doubles (cs_c == 1).
                unsafe {
                    let p = c.add(i * rs_c);
                    for (h, &v) in row.iter().enumerate() {
                        let ph = p.add(4 * h);
                        let r = if beta == 0.0 {
                            _mm256_mul_pd(va, v)
                        } else {
                            _mm256_fmadd_pd(vb, _mm256_loadu_pd(ph), _mm256_mul_pd(va, v))
                        };
                        _mm256_storeu_pd(ph, r);
                    }
                }
            }
        } else {
            let mut tile = [0.0f64; 48];
            for (i, row) in acc.iter().enumerate() {
                for (h, &v) in row.iter().enumerate() {
                    // SAFETY: 4 doubles fit at offset 8i + 4h < 48.
                    unsafe { _mm256_storeu_pd(tile.as_mut_ptr().add(8 * i + 4 * h), v) };
                }
            }
            for i in 0..6 {
                for j in 0..8 {
                    // SAFETY: (i, j) lies inside the writable tile.
                    let cij = unsafe { &mut *c.add(i * rs_c + j * cs_c) };
                    let v = alpha * tile[8 * i + j];
                    *cij = if beta == 0.0 {
                        v
                    } else {
                        beta.mul_add(*cij, v)
                    };
                }
            }
        }
    }
}
