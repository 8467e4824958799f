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
//! - AVX-512F (chosen where the CPU has it, see `isa`): 12×32 for f32 (24 zmm accumulators, 2 loads of B, 12
//!   broadcasts of A per step: 27 of the 32 zmm registers); f64 keeps the AVX2 6×8 kernel.
//!   Its body is one macro instantiated twice: with the real 512-bit intrinsics, and (in tests)
//!   with an emulation of a 16-lane vector by two AVX2 registers, so the tile logic, the edges
//!   and the stores are tested on a machine without AVX-512; the real instance's machine code
//!   runs on an emulated AVX-512 CPU (`scripts/avx512-emulate.py`). It asks for the C tile's
//!   rows (prefetch) before its k loop, so their misses overlap the arithmetic.
//!
//! Block sizes (MC, KC, NC) of every kernel come from the caches detected at run time through
//! the model in [`crate::cache`] (for a 1 MiB L2: KC 512, MC 252 for the 12×32 tile).
//! - portable: a 4×8 (f32) / 4×4 (f64) tile in `wide` vectors (8 accumulators of 128 bits), which
//!   compile to SSE2 on x86-64 and NEON on aarch64; multiply and add are separate instructions.
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

/// A microkernel that reads A in place instead of from a packed sliver: row r of the tile's A
/// starts at `a + r * rs_a` and runs along k contiguously (a row-major A); otherwise as
/// [`MicroKernel`]. The driver uses it when B is a single NR-wide sliver, where packing A
/// would cost about as much as the arithmetic (each element of A meets at most NR columns).
pub type RowsKernel<T> = unsafe fn(
    kc: usize,
    alpha: T,
    a: *const T,
    rs_a: usize,
    b: *const T,
    beta: T,
    c: *mut T,
    rs_c: usize,
    cs_c: usize,
);

/// The f32 in-place-A microkernel matching a kernel of `isa` with an `mr`×`nr` tile: the AVX2
/// 6×16 one (the same loop as the packed kernel, A read through six row pointers).
pub fn rows_kernel_f32(isa: Isa, mr: usize, nr: usize) -> Option<RowsKernel<f32>> {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && mr == 6 && nr == 16 && isa.is_supported() {
        return Some(avx2::ukr_f32_6x16_rows);
    }
    let _ = (isa, mr, nr);
    None
}

/// A kernel around microkernel `ukr` with an `mr`×`nr` tile, blocked for this CPU's caches
/// ([`crate::cache::Blocking::model`]).
fn blocked<T>(isa: Isa, mr: usize, nr: usize, ukr: MicroKernel<T>) -> Kernel<T> {
    let b = crate::cache::Blocking::model(
        &crate::cache::for_blocking(),
        mr,
        nr,
        std::mem::size_of::<T>(),
    );
    Kernel {
        isa,
        mr,
        nr,
        mc: b.mc,
        kc: b.kc,
        nc: b.nc,
        ukr,
    }
}

/// The f32 kernel for `isa`.
pub fn kernel_f32(isa: Isa) -> Kernel<f32> {
    #[cfg(test)]
    if let Some(k) = test_override::get() {
        return k;
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_supported() => blocked(Isa::Avx512, 12, 32, avx512::ukr_f32_12x32),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_supported() => blocked(Isa::Avx2, 6, 16, avx2::ukr_f32_6x16),
        _ => blocked(Isa::Portable, 4, 8, portable_f32_4x8),
    }
}

/// The f64 kernel for `isa` (the AVX-512 path keeps the AVX2 one).
pub fn kernel_f64(isa: Isa) -> Kernel<f64> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 if isa.is_supported() => {
            blocked(Isa::Avx2, 6, 8, avx2::ukr_f64_6x8)
        }
        _ => blocked(Isa::Portable, 4, 4, portable_f64_4x4),
    }
}

/// Writes an MR×NR accumulator tile: C = alpha·acc + beta·C (C not read when beta is 0).
///
/// # Safety
/// Every tile element of `c` is writable.
#[inline(always)]
unsafe fn store_tile<T: Float, const MR: usize, const NR: usize>(
    acc: &[[T; NR]; MR],
    alpha: T,
    beta: T,
    c: *mut T,
    rs_c: usize,
    cs_c: usize,
) {
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

/// Portable 4×8 f32 microkernel: 8 `f32x4` accumulators, 2 loads of B and 4 splats of A per
/// step.
///
/// # Safety
/// See [`MicroKernel`].
#[allow(clippy::too_many_arguments)]
unsafe fn portable_f32_4x8(
    kc: usize,
    alpha: f32,
    a: *const f32,
    b: *const f32,
    beta: f32,
    c: *mut f32,
    rs_c: usize,
    cs_c: usize,
) {
    use wide::f32x4;
    // SAFETY: the caller guarantees the packed slivers hold kc*4 and kc*8 values.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * 4),
            std::slice::from_raw_parts(b, kc * 8),
        )
    };
    let mut acc = [[f32x4::ZERO; 2]; 4];
    for (ap, bp) in a.chunks_exact(4).zip(b.chunks_exact(8)) {
        let b0 = f32x4::new([bp[0], bp[1], bp[2], bp[3]]);
        let b1 = f32x4::new([bp[4], bp[5], bp[6], bp[7]]);
        for (row, &ai) in acc.iter_mut().zip(ap) {
            let av = f32x4::splat(ai);
            row[0] += av * b0;
            row[1] += av * b1;
        }
    }
    let mut tile = [[0.0f32; 8]; 4];
    for (t, row) in tile.iter_mut().zip(&acc) {
        t[..4].copy_from_slice(&row[0].to_array());
        t[4..].copy_from_slice(&row[1].to_array());
    }
    // SAFETY: forwarded from the caller.
    unsafe { store_tile(&tile, alpha, beta, c, rs_c, cs_c) }
}

/// Portable 4×4 f64 microkernel: 8 `f64x2` accumulators.
///
/// # Safety
/// See [`MicroKernel`].
#[allow(clippy::too_many_arguments)]
unsafe fn portable_f64_4x4(
    kc: usize,
    alpha: f64,
    a: *const f64,
    b: *const f64,
    beta: f64,
    c: *mut f64,
    rs_c: usize,
    cs_c: usize,
) {
    use wide::f64x2;
    // SAFETY: the caller guarantees the packed slivers hold kc*4 and kc*4 values.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * 4),
            std::slice::from_raw_parts(b, kc * 4),
        )
    };
    let mut acc = [[f64x2::ZERO; 2]; 4];
    for (ap, bp) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        let b0 = f64x2::new([bp[0], bp[1]]);
        let b1 = f64x2::new([bp[2], bp[3]]);
        for (row, &ai) in acc.iter_mut().zip(ap) {
            let av = f64x2::splat(ai);
            row[0] += av * b0;
            row[1] += av * b1;
        }
    }
    let mut tile = [[0.0f64; 4]; 4];
    for (t, row) in tile.iter_mut().zip(&acc) {
        t[..2].copy_from_slice(&row[0].to_array());
        t[2..].copy_from_slice(&row[1].to_array());
    }
    // SAFETY: forwarded from the caller.
    unsafe { store_tile(&tile, alpha, beta, c, rs_c, cs_c) }
}

/// The 12×32 f32 microkernel body over a 16-lane vector type, given as the paths of its
/// operations: `$zero` (an expression), `$splat(f32)`, `$load(ptr)`, `$store(ptr, v)`,
/// `$fma(a, b, c)` = a·b + c, `$mul(a, b)`. Each C element sums its kc products in order with
/// one accumulator, as the AVX2 kernel does.
#[cfg(target_arch = "x86_64")]
macro_rules! ukr_f32_12x32 {
    ($(#[$meta:meta])* $name:ident, $feature:literal,
     $zero:expr, $splat:path, $load:path, $store:path, $fma:path, $mul:path) => {
        $(#[$meta])*
        #[target_feature(enable = $feature)]
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $name(
            kc: usize,
            alpha: f32,
            mut a: *const f32,
            mut b: *const f32,
            beta: f32,
            c: *mut f32,
            rs_c: usize,
            cs_c: usize,
        ) {
            if cs_c == 1 {
                for i in 0..12 {
                    // A prefetch is only a hint: it never faults, whatever the address.
                    let row = c.wrapping_add(i * rs_c) as *const i8;
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(row);
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        row.wrapping_add(127),
                    );
                }
            }
            let mut acc = [[$zero; 2]; 12];
            for _ in 0..kc {
                // SAFETY: a and b advance by 12 and 32 per step over kc steps, inside the
                // packed slivers (the MicroKernel contract).
                unsafe {
                    let b0 = $load(b);
                    let b1 = $load(b.add(16));
                    for (i, row) in acc.iter_mut().enumerate() {
                        let ai = $splat(*a.add(i));
                        row[0] = $fma(ai, b0, row[0]);
                        row[1] = $fma(ai, b1, row[1]);
                    }
                    a = a.add(12);
                    b = b.add(32);
                }
            }
            let va = $splat(alpha);
            let vb = $splat(beta);
            if cs_c == 1 {
                for (i, row) in acc.iter().enumerate() {
                    for (h, &v) in row.iter().enumerate() {
                        // SAFETY: row i of the tile holds 32 contiguous writable floats.
                        unsafe {
                            let p = c.add(i * rs_c + 16 * h);
                            let r = if beta == 0.0 {
                                $mul(va, v)
                            } else {
                                $fma(vb, $load(p), $mul(va, v))
                            };
                            $store(p, r);
                        }
                    }
                }
            } else {
                let mut tile = [0.0f32; 12 * 32];
                for (i, row) in acc.iter().enumerate() {
                    for (h, &v) in row.iter().enumerate() {
                        // SAFETY: 16 floats fit at offset 32i + 16h < 384.
                        unsafe { $store(tile.as_mut_ptr().add(32 * i + 16 * h), v) };
                    }
                }
                for i in 0..12 {
                    for j in 0..32 {
                        // SAFETY: (i, j) lies inside the writable tile.
                        let cij = unsafe { &mut *c.add(i * rs_c + j * cs_c) };
                        let v = alpha * tile[32 * i + j];
                        *cij = if beta == 0.0 {
                            v
                        } else {
                            beta.mul_add(*cij, v)
                        };
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    ukr_f32_12x32!(
        /// AVX-512F 12×32 f32 microkernel (see the module docs for the register plan).
        ///
        /// # Safety
        /// The CPU supports AVX-512F (checked by `kernel_f32`), and the
        /// [`super::MicroKernel`] contract holds.
        ukr_f32_12x32,
        "avx512f",
        _mm512_setzero_ps(),
        _mm512_set1_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_fmadd_ps,
        _mm512_mul_ps
    );
}

/// A 16-lane f32 vector emulated by two AVX2 registers, so the 12×32 kernel's logic runs (and
/// is tested) on CPUs without AVX-512. Test-only: it is slower than the 6×16 AVX2 kernel.
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) mod emulated512 {
    use std::arch::x86_64::*;

    /// Lanes 0..8 and 8..16.
    #[derive(Clone, Copy)]
    pub(crate) struct V16(__m256, __m256);

    #[target_feature(enable = "avx2,fma")]
    fn zero() -> V16 {
        V16(_mm256_setzero_ps(), _mm256_setzero_ps())
    }
    #[target_feature(enable = "avx2,fma")]
    fn splat(x: f32) -> V16 {
        V16(_mm256_set1_ps(x), _mm256_set1_ps(x))
    }
    /// # Safety
    /// 16 floats are readable at `p`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load(p: *const f32) -> V16 {
        // SAFETY: forwarded to the caller.
        unsafe { V16(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) }
    }
    /// # Safety
    /// 16 floats are writable at `p`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store(p: *mut f32, v: V16) {
        // SAFETY: forwarded to the caller.
        unsafe {
            _mm256_storeu_ps(p, v.0);
            _mm256_storeu_ps(p.add(8), v.1);
        }
    }
    #[target_feature(enable = "avx2,fma")]
    fn fma(a: V16, b: V16, c: V16) -> V16 {
        V16(
            _mm256_fmadd_ps(a.0, b.0, c.0),
            _mm256_fmadd_ps(a.1, b.1, c.1),
        )
    }
    #[target_feature(enable = "avx2,fma")]
    fn mul(a: V16, b: V16) -> V16 {
        V16(_mm256_mul_ps(a.0, b.0), _mm256_mul_ps(a.1, b.1))
    }

    ukr_f32_12x32!(
        /// The AVX-512 kernel's body on emulated 16-lane vectors (AVX2+FMA).
        ///
        /// # Safety
        /// The CPU supports AVX2 and FMA, and the [`super::MicroKernel`] contract holds.
        ukr_f32_12x32, "avx2,fma", zero(), splat, load, store, fma, mul
    );

    /// The AVX-512 f32 kernel's shape and block sizes with the emulated microkernel.
    pub(crate) fn kernel() -> super::Kernel<f32> {
        super::blocked(crate::isa::Isa::Avx2, 12, 32, ukr_f32_12x32)
    }
}

/// A per-thread replacement for [`kernel_f32`]'s choice, for tests that run the packed driver
/// with a kernel this CPU would not pick (the emulated AVX-512 one).
#[cfg(test)]
pub(crate) mod test_override {
    use std::cell::Cell;

    thread_local! {
        static KERNEL: Cell<Option<super::Kernel<f32>>> = const { Cell::new(None) };
    }

    /// The override in force on this thread, if any.
    pub(crate) fn get() -> Option<super::Kernel<f32>> {
        KERNEL.with(Cell::get)
    }

    /// Runs `f` with `kernel_f32` returning `k` on this thread.
    pub(crate) fn with<R>(k: super::Kernel<f32>, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<super::Kernel<f32>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                KERNEL.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(KERNEL.with(|c| c.replace(Some(k))));
        f()
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
        unsafe { f32_6x16_impl::<false>(kc, alpha, a, 1, b, beta, c, rs_c, cs_c) }
    }

    /// The same kernel reading A's six rows in place (see [`super::RowsKernel`]).
    ///
    /// # Safety
    /// As [`ukr_f32_6x16`], with row r of A holding `kc` readable floats from `a + r * rs_a`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn ukr_f32_6x16_rows(
        kc: usize,
        alpha: f32,
        a: *const f32,
        rs_a: usize,
        b: *const f32,
        beta: f32,
        c: *mut f32,
        rs_c: usize,
        cs_c: usize,
    ) {
        // SAFETY: forwarded contract; AVX2+FMA presence was checked when the kernel was chosen.
        unsafe { f32_6x16_impl::<true>(kc, alpha, a, rs_a, b, beta, c, rs_c, cs_c) }
    }

    /// The 6×16 loop; `ROWS` reads A's rows in place (stride `rs_a`), else a packed sliver.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn f32_6x16_impl<const ROWS: bool>(
        kc: usize,
        alpha: f32,
        mut a: *const f32,
        rs_a: usize,
        mut b: *const f32,
        beta: f32,
        c: *mut f32,
        rs_c: usize,
        cs_c: usize,
    ) {
        // Packed: the six values of step p are adjacent. In place: one value per row.
        let (ars, astep) = if ROWS { (rs_a, 1) } else { (1, 6) };
        prefetch_tile(c as *const i8, rs_c * 4, cs_c * 4, 16 * 4);
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        // One k step: two B vectors, six broadcasts of A, twelve FMAs.
        macro_rules! step {
            () => {
                // SAFETY: a and b advance by one step of A (6 packed values, or 1 along each
                // row) and 16 per step over kc steps, inside A's rows and B's sliver.
                unsafe {
                    let b0 = _mm256_loadu_ps(b);
                    let b1 = _mm256_loadu_ps(b.add(8));
                    for (i, row) in acc.iter_mut().enumerate() {
                        let ai = _mm256_broadcast_ss(&*a.add(i * ars));
                        row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                        row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
                    }
                    a = a.add(astep);
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
        // One k step: two B vectors, six broadcasts of A, twelve FMAs.
        macro_rules! step {
            () => {
                // SAFETY: a and b advance by 6 and 8 per step over kc steps, inside the
                // slivers.
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
            };
        }
        // Unrolled by 4 like the f32 kernel; the order of the steps is unchanged.
        for _ in 0..kc / 4 {
            step!();
            step!();
            step!();
            step!();
        }
        for _ in 0..kc % 4 {
            step!();
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
