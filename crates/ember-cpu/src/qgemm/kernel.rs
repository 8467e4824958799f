//! int8 microkernels: one MR×32 tile of `C_i32 = A_u8 · B_i8`, accumulated in i32.
//!
//! Every kernel reads the same operands:
//! - A in place, row-major: `rows[r]` points at row r of the tile (rows past M repeat the last
//!   row; their results are dropped), and `kq_full` whole quads of four bytes are read from it
//!   with unaligned 32-bit loads. When K is not a multiple of 4, the last, partial quad of each
//!   row is passed zero-padded in `tail`.
//! - B from a [`PackedB`](super::PackedB) sliver: for each quad q, 32 columns × 4 bytes, the 4
//!   bytes of a column being its values at k = 4q..4q+4 (zero beyond K). One 512-bit register
//!   holds 16 columns of one quad, which is exactly the operand `vpdpbusd` wants.
//!
//! and write the MR×32 tile of raw sums `Σ_k A[i,k]·B[k,j]` to `out` (row-major, 32 wide).
//! Every sum is taken modulo 2³² (wrapping), which is what the SIMD instructions do; integer
//! addition modulo 2³² is associative, so every path, every quad order and every thread count
//! gives the same bits. (The public API limits K so that no sum actually wraps.)
//!
//! Paths (chosen by [`QPath`](super::QPath)):
//! - AVX-512 VNNI, 8×32: per quad, 2 loads of B, 8 broadcasts of A, 16 `vpdpbusd` into 16 zmm
//!   accumulators (64 multiply-adds each).
//! - AVX-VNNI, 2×32: the same with the VEX-encoded 256-bit `vpdpbusd` (8 ymm accumulators).
//! - AVX2, 2×32: `vpmaddubsw` (u8×i8 pairs summed into i16, **saturating**), then `vpmaddwd`
//!   against ones (pairs of i16 summed into i32), then `vpaddd`. The i16 pair sum
//!   `a0·b0 + a1·b1` is exact only when it lies in [-32768, 32767]; with A ≤ 127 it is at most
//!   2·127·128 = 32512 in magnitude, so the kernel is exact for every B when A's bytes are all
//!   below 128. The driver checks that before it takes this path and otherwise runs the
//!   portable kernel (see [`super`]'s docs for why activations are quantized to 7 bits).
//! - Narrow slivers (at most 16 live columns: a 10-class output layer, the last sliver of an
//!   odd N): AVX-512 VNNI 16×16 (16 zmm accumulators on the first half of each quad's bytes)
//!   and AVX2 4×16, which skip the padding columns a 32-wide kernel would multiply. They
//!   write columns 0..16 of each output row; the driver reads no further.
//! - portable, 4×32: plain Rust, wrapping i32 arithmetic, the reference every other path
//!   is tested against bit for bit.

/// Columns of every tile and of every packed B sliver.
pub const NR: usize = 32;

/// The largest MR of any path (sizes the tile buffers).
pub const MAX_MR: usize = 16;

/// The signature every int8 microkernel shares (see the module docs).
///
/// # Safety
/// `rows[0..mr]` must each point at `4·kq_full` readable bytes; `b` at
/// `(kq_full + has_tail) · 128` readable bytes; the CPU must support the kernel's features.
pub type QKernel = unsafe fn(
    kq_full: usize,
    rows: &[*const u8; MAX_MR],
    tail: Option<&[i32; MAX_MR]>,
    b: *const i8,
    out: &mut [i32; MAX_MR * NR],
);

/// Reads the quad at byte offset `off` of a row as the i32 a broadcast wants.
///
/// # Safety
/// `row + off .. row + off + 4` must be readable.
#[inline(always)]
unsafe fn quad(row: *const u8, off: usize) -> i32 {
    // SAFETY: forwarded to the caller.
    unsafe { std::ptr::read_unaligned(row.add(off) as *const i32) }
}

/// The portable kernel, 4×32 (MR = 4): the scalar reference of the exact sums.
///
/// # Safety
/// See [`QKernel`].
pub unsafe fn ukr_portable(
    kq_full: usize,
    rows: &[*const u8; MAX_MR],
    tail: Option<&[i32; MAX_MR]>,
    b: *const i8,
    out: &mut [i32; MAX_MR * NR],
) {
    const MR: usize = 4;
    let mut acc = [[0i32; NR]; MR];
    let quads = kq_full + usize::from(tail.is_some());
    for q in 0..quads {
        // SAFETY: quad q of the sliver is inside B (caller's contract).
        let bq = unsafe { std::slice::from_raw_parts(b.add(q * NR * 4), NR * 4) };
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let aq = match tail {
                Some(t) if q == kq_full => t[r],
                // SAFETY: q < kq_full, so the quad is inside the row.
                _ => unsafe { quad(rows[r], 4 * q) },
            };
            let a = aq.to_le_bytes();
            for (j, acc_rj) in acc_r.iter_mut().enumerate() {
                let bj = &bq[4 * j..4 * j + 4];
                let mut s = 0i32;
                for t in 0..4 {
                    s = s.wrapping_add(i32::from(a[t]) * i32::from(bj[t]));
                }
                *acc_rj = acc_rj.wrapping_add(s);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        out[r * NR..(r + 1) * NR].copy_from_slice(acc_r);
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{ukr_avx_vnni, ukr_avx2, ukr_avx2_narrow, ukr_avx512_vnni, ukr_avx512_vnni_narrow};

// The register tiles are indexed by row and vector in the kernels' loops: clearer than
// iterator chains there, and fully unrolled either way.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod x86 {
    use super::{MAX_MR, NR, quad};
    use std::arch::x86_64::*;

    /// AVX-512 VNNI, 8×32 (MR = 8): 16 zmm accumulators, `vpdpbusd` with A broadcast.
    ///
    /// # Safety
    /// See [`super::QKernel`]; the CPU must have AVX-512F/BW and AVX-512 VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn ukr_avx512_vnni(
        kq_full: usize,
        rows: &[*const u8; MAX_MR],
        tail: Option<&[i32; MAX_MR]>,
        b: *const i8,
        out: &mut [i32; MAX_MR * NR],
    ) {
        const MR: usize = 8;
        let mut c0 = [_mm512_setzero_si512(); MR];
        let mut c1 = [_mm512_setzero_si512(); MR];
        let step = |c0: &mut [__m512i; MR], c1: &mut [__m512i; MR], q: usize, a: [i32; MR]| {
            // SAFETY: quad q of the sliver (128 bytes) is inside B (caller's contract).
            let (b0, b1) = unsafe {
                (
                    _mm512_loadu_si512(b.add(q * 128) as *const __m512i),
                    _mm512_loadu_si512(b.add(q * 128 + 64) as *const __m512i),
                )
            };
            for r in 0..MR {
                let av = _mm512_set1_epi32(a[r]);
                c0[r] = _mm512_dpbusd_epi32(c0[r], av, b0);
                c1[r] = _mm512_dpbusd_epi32(c1[r], av, b1);
            }
        };
        for q in 0..kq_full {
            // SAFETY: q < kq_full: the quad lies inside each row.
            let a = std::array::from_fn(|r| unsafe { quad(rows[r], 4 * q) });
            step(&mut c0, &mut c1, q, a);
        }
        if let Some(t) = tail {
            step(&mut c0, &mut c1, kq_full, std::array::from_fn(|r| t[r]));
        }
        for r in 0..MR {
            // SAFETY: out holds MAX_MR·NR = 8·32 values; row r's 32 are at r·32.
            unsafe {
                _mm512_storeu_si512(out.as_mut_ptr().add(r * NR) as *mut __m512i, c0[r]);
                _mm512_storeu_si512(out.as_mut_ptr().add(r * NR + 16) as *mut __m512i, c1[r]);
            }
        }
    }

    /// AVX-512 VNNI on a narrow sliver, 16×16 (MR = 16): only the first 16 columns (the
    /// first 64 bytes of each quad) are multiplied and written.
    ///
    /// # Safety
    /// See [`super::QKernel`]; the CPU must have AVX-512F/BW and AVX-512 VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn ukr_avx512_vnni_narrow(
        kq_full: usize,
        rows: &[*const u8; MAX_MR],
        tail: Option<&[i32; MAX_MR]>,
        b: *const i8,
        out: &mut [i32; MAX_MR * NR],
    ) {
        const MR: usize = 16;
        let mut c = [_mm512_setzero_si512(); MR];
        let step = |c: &mut [__m512i; MR], q: usize, a: [i32; MR]| {
            // SAFETY: quad q of the sliver (128 bytes) is inside B (caller's contract).
            let b0 = unsafe { _mm512_loadu_si512(b.add(q * 128) as *const __m512i) };
            for r in 0..MR {
                c[r] = _mm512_dpbusd_epi32(c[r], _mm512_set1_epi32(a[r]), b0);
            }
        };
        for q in 0..kq_full {
            // SAFETY: q < kq_full: the quad lies inside each row.
            let a = std::array::from_fn(|r| unsafe { quad(rows[r], 4 * q) });
            step(&mut c, q, a);
        }
        if let Some(t) = tail {
            step(&mut c, kq_full, *t);
        }
        for r in 0..MR {
            // SAFETY: out holds MAX_MR·NR values; row r's first 16 are at r·32.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(r * NR) as *mut __m512i, c[r]) };
        }
    }

    /// AVX2 on a narrow sliver, 4×16 (MR = 4): the first 16 columns only. Exact for A ≤ 127,
    /// as [`ukr_avx2`].
    ///
    /// # Safety
    /// See [`ukr_avx2`].
    #[target_feature(enable = "avx2")]
    pub unsafe fn ukr_avx2_narrow(
        kq_full: usize,
        rows: &[*const u8; MAX_MR],
        tail: Option<&[i32; MAX_MR]>,
        b: *const i8,
        out: &mut [i32; MAX_MR * NR],
    ) {
        const MR: usize = 4;
        let ones = _mm256_set1_epi16(1);
        let mut c = [[_mm256_setzero_si256(); 2]; MR];
        let step = |c: &mut [[__m256i; 2]; MR], q: usize, a: [i32; MR]| {
            // SAFETY: quad q of the sliver (128 bytes) is inside B.
            let bv = unsafe {
                [
                    _mm256_loadu_si256(b.add(q * 128) as *const __m256i),
                    _mm256_loadu_si256(b.add(q * 128 + 32) as *const __m256i),
                ]
            };
            for r in 0..MR {
                let av = _mm256_set1_epi32(a[r]);
                for v in 0..2 {
                    let pairs = _mm256_maddubs_epi16(av, bv[v]);
                    c[r][v] = _mm256_add_epi32(c[r][v], _mm256_madd_epi16(pairs, ones));
                }
            }
        };
        for q in 0..kq_full {
            // SAFETY: q < kq_full: the quad lies inside each row.
            let a = std::array::from_fn(|r| unsafe { quad(rows[r], 4 * q) });
            step(&mut c, q, a);
        }
        if let Some(t) = tail {
            step(&mut c, kq_full, [t[0], t[1], t[2], t[3]]);
        }
        for r in 0..MR {
            for v in 0..2 {
                // SAFETY: inside out's first MR rows, columns 0..16.
                unsafe {
                    _mm256_storeu_si256(
                        out.as_mut_ptr().add(r * NR + v * 8) as *mut __m256i,
                        c[r][v],
                    )
                };
            }
        }
    }

    /// AVX-VNNI (VEX-encoded `vpdpbusd` on 256-bit registers), 2×32 (MR = 2).
    ///
    /// Compiled everywhere, chosen only where the CPU reports AVX-VNNI; the development
    /// machine (Zen 4) has AVX-512 VNNI but not AVX-VNNI, so this kernel has not run there.
    ///
    /// # Safety
    /// See [`super::QKernel`]; the CPU must have AVX2 and AVX-VNNI.
    #[target_feature(enable = "avx2,avxvnni")]
    pub unsafe fn ukr_avx_vnni(
        kq_full: usize,
        rows: &[*const u8; MAX_MR],
        tail: Option<&[i32; MAX_MR]>,
        b: *const i8,
        out: &mut [i32; MAX_MR * NR],
    ) {
        const MR: usize = 2;
        let mut c = [[_mm256_setzero_si256(); 4]; MR];
        let step = |c: &mut [[__m256i; 4]; MR], q: usize, a: [i32; MR]| {
            let av = [_mm256_set1_epi32(a[0]), _mm256_set1_epi32(a[1])];
            for v in 0..4 {
                // SAFETY: quad q of the sliver (128 bytes) is inside B.
                let bv = unsafe { _mm256_loadu_si256(b.add(q * 128 + v * 32) as *const __m256i) };
                for r in 0..MR {
                    c[r][v] = _mm256_dpbusd_avx_epi32(c[r][v], av[r], bv);
                }
            }
        };
        for q in 0..kq_full {
            // SAFETY: q < kq_full: the quad lies inside each row.
            let a = std::array::from_fn(|r| unsafe { quad(rows[r], 4 * q) });
            step(&mut c, q, a);
        }
        if let Some(t) = tail {
            step(&mut c, kq_full, [t[0], t[1]]);
        }
        for r in 0..MR {
            for v in 0..4 {
                // SAFETY: inside out's first MR rows.
                unsafe {
                    _mm256_storeu_si256(
                        out.as_mut_ptr().add(r * NR + v * 8) as *mut __m256i,
                        c[r][v],
                    )
                };
            }
        }
    }

    /// AVX2, 2×32 (MR = 2): `vpmaddubsw` + `vpmaddwd` + `vpaddd`. Exact only when every A
    /// byte is below 128 (see the module docs); the driver guarantees that.
    ///
    /// # Safety
    /// See [`super::QKernel`]; the CPU must have AVX2; every A byte read must be ≤ 127 for the
    /// result to be exact (a larger one is not unsafe, only saturated).
    #[target_feature(enable = "avx2")]
    pub unsafe fn ukr_avx2(
        kq_full: usize,
        rows: &[*const u8; MAX_MR],
        tail: Option<&[i32; MAX_MR]>,
        b: *const i8,
        out: &mut [i32; MAX_MR * NR],
    ) {
        const MR: usize = 2;
        let ones = _mm256_set1_epi16(1);
        let mut c = [[_mm256_setzero_si256(); 4]; MR];
        let step = |c: &mut [[__m256i; 4]; MR], q: usize, a: [i32; MR]| {
            let av = [_mm256_set1_epi32(a[0]), _mm256_set1_epi32(a[1])];
            for v in 0..4 {
                // SAFETY: quad q of the sliver (128 bytes) is inside B.
                let bv = unsafe { _mm256_loadu_si256(b.add(q * 128 + v * 32) as *const __m256i) };
                for r in 0..MR {
                    let pairs = _mm256_maddubs_epi16(av[r], bv);
                    let quads = _mm256_madd_epi16(pairs, ones);
                    c[r][v] = _mm256_add_epi32(c[r][v], quads);
                }
            }
        };
        for q in 0..kq_full {
            // SAFETY: q < kq_full: the quad lies inside each row.
            let a = std::array::from_fn(|r| unsafe { quad(rows[r], 4 * q) });
            step(&mut c, q, a);
        }
        if let Some(t) = tail {
            step(&mut c, kq_full, [t[0], t[1]]);
        }
        for r in 0..MR {
            for v in 0..4 {
                // SAFETY: inside out's first MR rows.
                unsafe {
                    _mm256_storeu_si256(
                        out.as_mut_ptr().add(r * NR + v * 8) as *mut __m256i,
                        c[r][v],
                    )
                };
            }
        }
    }
}
