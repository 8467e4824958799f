//! bf16 GEMM on AVX512-BF16: `vdpbf16ps` multiplies pairs of bf16 values and adds both
//! products to an f32 accumulator, twice the multiply-adds per instruction of an f32 FMA.
//!
//! [`super::gemm_widen`] sends bf16 operands here when the CPU has AVX512-BF16 and the
//! AVX-512 path is active; elsewhere (and with `EMBER_CPU_ISA=avx2`) they are widened to f32
//! while packed and multiplied by the f32 kernels, as before.
//!
//! How it differs from the f32 packed path:
//! - **Packing by pairs of K.** The instruction pairs element 2i of one operand with element
//!   2i of the other, and 2i+1 with 2i+1, within each 32-bit lane. So both operands are packed
//!   with two consecutive k values side by side in one 32-bit word: the A sliver holds, for
//!   each pair step q, MR words `(A[i, 2q], A[i, 2q+1])`; the B sliver holds NR words
//!   `(B[2q, j], B[2q+1, j])`. An odd K is padded with a zero.
//! - **The microkernel** has the f32 AVX-512 kernel's 12×32 register plan (24 accumulators,
//!   2 loads of B, one broadcast word of A per row), each step consuming two k values.
//! - **The loops.** The five BLIS loops in a compact form: loop 5 over NC panels, loop 4
//!   over KC slices with B's panel packed by all threads together, loop 3's MC blocks shared
//!   out between the threads (each packing its own block of A). Blocks come from the same
//!   cache model as the f32 path, with 2-byte elements.
//!
//! Numerics: every product of two bf16 values is exact in f32, and each instruction adds
//! the odd then the even product of a pair to the accumulator, rounding to nearest after each
//! add, with denormal inputs and results flushed to zero (Intel's definition of VDPBF16PS). The
//! sum over k is therefore the f32 sum in a fixed order, except that denormals are flushed,
//! where the widening path keeps them. Results differ from the widening path's in the last bits
//! (another order of additions), and are bit-identical for any thread count: an element's sum
//! depends only on K and KC, and threads split the work only on tile boundaries.

use super::driver::AlignedBuf;
use super::{CPtr, Epilogue, MAX_TILE, MatRef, apply_epilogue};
use half::bf16;
use rayon::prelude::*;

/// Rows of the register tile.
const MR: usize = 12;
/// Columns of the register tile.
const NR: usize = 32;

/// True when this CPU can run the AVX512-BF16 kernel (AVX-512F and AVX512-BF16 detected).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::isa::Isa::Avx512.is_supported() && crate::isa::avx512bf16_detected()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The block sizes of the bf16 kernel on this CPU (KC even: slices hold whole pairs).
pub fn blocking() -> crate::cache::Blocking {
    let mut b = crate::cache::Blocking::model(&crate::cache::for_blocking(), MR, NR, 2);
    b.kc = b.kc.next_multiple_of(2);
    b
}

/// C = alpha·A·B + beta·C, then the epilogue, with bf16 operands and the AVX512-BF16 kernel.
///
/// # Safety
/// [`supported`] is true; the operands have been checked (`check_operands`), m, n, k > 0, and
/// `c` addresses the m×n destination, owned by this call.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_bf16<S: ToBf16>(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &MatRef<'_, S>,
    b: &MatRef<'_, S>,
    beta: f32,
    c: CPtr<f32>,
    epi: &Epilogue<'_, f32>,
    parallel: bool,
) {
    let blk = blocking();
    let threads = if parallel {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    // K slices of equal depth (as the f32 driver's `slice_depth`), rounded up to whole pairs.
    let kc = k
        .div_ceil(k.div_ceil(blk.kc).max(1))
        .next_multiple_of(2)
        .max(2);
    // Loop 3's blocks: the L2 budget of the model's MC×KC block at this slice depth (as the
    // f32 driver's `block_height`), then shrunk so they share out evenly between the threads.
    let mc0 = (blk.mc * blk.kc / kc).clamp(MR, 4096);
    let blocks = m.div_ceil(mc0).div_ceil(threads) * threads;
    let mc = m.div_ceil(blocks).next_multiple_of(MR).max(MR);
    let m_blocks = m.div_ceil(mc);
    let nc_max = blk.nc.min(n.next_multiple_of(NR));
    // Packed words: B panel kc/2 × nc, A block mc × kc/2.
    let mut bbuf = AlignedBuf::<f32>::new(kc / 2 * nc_max);
    let a_words = mc * kc / 2;

    for jc in (0..n).step_by(blk.nc) {
        let nb = blk.nc.min(n - jc);
        let slivers = nb.div_ceil(NR);
        for pc in (0..k).step_by(kc) {
            let kb = kc.min(k - pc);
            let pairs = kb.div_ceil(2);
            let bp = as_words(&mut bbuf.as_mut_slice()[..slivers * pairs * NR]);
            let per_thread = slivers.div_ceil(threads);
            let pack = |(t, run): (usize, &mut [u32])| {
                let c0 = jc + t * per_thread * NR;
                pack_b(b, pc, kb, c0, (per_thread * NR).min(jc + nb - c0), run);
            };
            if threads > 1 {
                bp.par_chunks_mut(per_thread * pairs * NR)
                    .enumerate()
                    .for_each(pack);
            } else {
                bp.chunks_mut(per_thread * pairs * NR)
                    .enumerate()
                    .for_each(pack);
            }
            let bp = &*bp;
            let beta_k = if pc == 0 { beta } else { 1.0 };
            let last = pc + kb == k;
            let item = |abuf: &mut AlignedBuf<f32>, blk_i: usize| {
                let ic = blk_i * mc;
                let mb = mc.min(m - ic);
                let ap = as_words(&mut abuf.as_mut_slice()[..mb.div_ceil(MR) * MR * pairs]);
                pack_a(a, ic, mb, pc, kb, ap);
                // SAFETY: the caller guarantees the CPU and C; the slivers are sized above.
                unsafe { macro_kernel(alpha, beta_k, ap, bp, pairs, ic, mb, jc, nb, c) };
                if last {
                    apply_epilogue(crate::isa::Isa::Avx512, c, ic..ic + mb, jc..jc + nb, epi);
                }
            };
            if threads > 1 {
                (0..m_blocks)
                    .into_par_iter()
                    .for_each_init(|| AlignedBuf::new(a_words), item);
            } else {
                let mut abuf = AlignedBuf::new(a_words);
                (0..m_blocks).for_each(|i| item(&mut abuf, i));
            }
        }
    }
}

/// An element the kernel's packing can turn into bf16: bf16 itself (as it is), or f32
/// rounded to nearest-even while it is packed (the mixed-precision GEMM, `mixed.rs`, so no
/// rounded copy of either operand is ever made).
pub(super) trait ToBf16: Copy + Send + Sync {
    /// The value as bf16.
    fn to_bf16(self) -> bf16;
    /// `dst[i] = src[i].to_bf16()` over a run that is contiguous in memory (equal lengths).
    fn run_to_bf16(src: &[Self], dst: &mut [bf16]) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v.to_bf16();
        }
    }
}

impl ToBf16 for bf16 {
    #[inline(always)]
    fn to_bf16(self) -> bf16 {
        self
    }
    fn run_to_bf16(src: &[bf16], dst: &mut [bf16]) {
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
    }
}

impl ToBf16 for f32 {
    #[inline(always)]
    fn to_bf16(self) -> bf16 {
        bf16::from_f32(self)
    }
    /// 16 at a time with `vcvtneps2bf16` (the packing only runs where the kernel can, so the
    /// instruction is there), the tail with a masked load. The instruction treats denormal
    /// inputs as zero where the scalar rounding keeps them; the kernel flushes denormal bf16
    /// inputs anyway, so the product is the same.
    fn run_to_bf16(src: &[f32], dst: &mut [bf16]) {
        #[cfg(target_arch = "x86_64")]
        if supported() {
            // SAFETY: AVX-512F and AVX512-BF16 are present (just checked).
            unsafe { round_run_avx512(src, dst) };
            return;
        }
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = bf16::from_f32(v);
        }
    }
}

/// `dst[i] = bf16(src[i])` (nearest-even) with `vcvtneps2bf16`, 16 lanes at a time.
///
/// # Safety
/// The CPU has AVX-512F and AVX512-BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_run_avx512(src: &[f32], dst: &mut [bf16]) {
    use std::arch::x86_64::{__m256bh, __m256i, _mm256_storeu_si256, _mm512_cvtneps_pbh};
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: src[i..i + 16] and dst[i..i + 16] lie inside the slices (i + 16 <= n).
        unsafe {
            let v = std::arch::x86_64::_mm512_loadu_ps(src.as_ptr().add(i));
            let h: __m256bh = _mm512_cvtneps_pbh(v);
            _mm256_storeu_si256(
                dst.as_mut_ptr().add(i).cast::<__m256i>(),
                std::mem::transmute::<__m256bh, __m256i>(h),
            );
        }
        i += 16;
    }
    if i < n {
        // The tail (short runs, such as the 12 rows of a transposed A's sliver, are all
        // tail): a masked load of the remaining lanes, converted, then copied out.
        let rest = n - i;
        let mask: u16 = ((1u32 << rest) - 1) as u16;
        let mut lanes = [bf16::ZERO; 16];
        // SAFETY: the masked load reads only src[i..n]; the store fills the 16-lane buffer.
        unsafe {
            let v = std::arch::x86_64::_mm512_maskz_loadu_ps(mask, src.as_ptr().add(i));
            let h: __m256bh = _mm512_cvtneps_pbh(v);
            _mm256_storeu_si256(
                lanes.as_mut_ptr().cast::<__m256i>(),
                std::mem::transmute::<__m256bh, __m256i>(h),
            );
        }
        dst[i..n].copy_from_slice(&lanes[..rest]);
    }
}

/// A packing buffer's floats seen as the 32-bit words (pairs of bf16) the kernel reads.
fn as_words(s: &mut [f32]) -> &mut [u32] {
    // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is a valid
    // u32; the returned slice borrows `s` exclusively for its lifetime.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u32>(), s.len()) }
}

/// Two bf16 values in one word: `lo` in bits 0..16 (the even k), `hi` in bits 16..32.
#[inline(always)]
fn pair(lo: bf16, hi: bf16) -> u32 {
    u32::from(lo.to_bits()) | (u32::from(hi.to_bits()) << 16)
}

/// Packs rows `i0..i0+mb` × columns `p0..p0+kb` of A into MR-row slivers of pairs: sliver s,
/// pair step q holds the MR words `(A[r, p0+2q], A[r, p0+2q+1])`, zero past `mb` rows and
/// past `kb` columns. Runs that are contiguous in memory (a row of a row-major A, a column of
/// a transposed one) are converted to bf16 in one call each ([`ToBf16::run_to_bf16`]).
fn pack_a<S: ToBf16>(
    a: &MatRef<'_, S>,
    i0: usize,
    mb: usize,
    p0: usize,
    kb: usize,
    dst: &mut [u32],
) {
    let pairs = kb.div_ceil(2);
    let zero = bf16::ZERO;
    // One row's K run (cs == 1), or two columns' M runs (rs == 1).
    let mut run = vec![zero; (2 * pairs).max(2 * MR)];
    for (s, sliver) in dst.chunks_exact_mut(pairs * MR).enumerate() {
        let r0 = i0 + s * MR;
        let rows = MR.min(i0 + mb - r0);
        if rows < MR {
            sliver.fill(0);
        }
        if a.cs == 1 && kb > 0 {
            for r in 0..rows {
                let start = (r0 + r) * a.rs + p0;
                S::run_to_bf16(&a.data[start..start + kb], &mut run[..kb]);
                run[kb..2 * pairs].fill(zero);
                for q in 0..pairs {
                    sliver[q * MR + r] = pair(run[2 * q], run[2 * q + 1]);
                }
            }
        } else if a.rs == 1 {
            let (lo, hi) = run.split_at_mut(MR);
            for q in 0..pairs {
                let p = p0 + 2 * q;
                let at = r0 + p * a.cs;
                S::run_to_bf16(&a.data[at..at + rows], &mut lo[..rows]);
                if 2 * q + 1 < kb {
                    let at = at + a.cs;
                    S::run_to_bf16(&a.data[at..at + rows], &mut hi[..rows]);
                } else {
                    hi[..rows].fill(zero);
                }
                for r in 0..rows {
                    sliver[q * MR + r] = pair(lo[r], hi[r]);
                }
            }
        } else {
            for r in 0..rows {
                let row = (r0 + r) * a.rs + p0 * a.cs;
                let at = |p: usize| {
                    if p < kb {
                        a.data[row + p * a.cs].to_bf16()
                    } else {
                        zero
                    }
                };
                for q in 0..pairs {
                    sliver[q * MR + r] = pair(at(2 * q), at(2 * q + 1));
                }
            }
        }
    }
}

/// Packs rows `p0..p0+kb` × columns `c0..c0+cols` of B into NR-column slivers of pairs:
/// sliver s, pair step q holds the NR words `(B[p0+2q, j], B[p0+2q+1, j])`, zero past `cols`
/// columns and past `kb` rows. Contiguous runs (a row of a row-major B, a column of a
/// transposed one such as a Dense weight `wᵀ`) are converted to bf16 in one call each.
fn pack_b<S: ToBf16>(
    b: &MatRef<'_, S>,
    p0: usize,
    kb: usize,
    c0: usize,
    cols: usize,
    dst: &mut [u32],
) {
    let pairs = kb.div_ceil(2);
    let zero = bf16::ZERO;
    // Two rows' column runs (cs == 1), or one column's K run (rs == 1).
    let mut run = vec![zero; (2 * pairs).max(2 * NR)];
    for (s, sliver) in dst.chunks_exact_mut(pairs * NR).enumerate() {
        let first = c0 + s * NR;
        let width = NR.min(c0 + cols - first);
        if width < NR {
            sliver.fill(0);
        }
        if b.cs == 1 {
            let (lo, hi) = run.split_at_mut(NR);
            for q in 0..pairs {
                let (p, odd) = (p0 + 2 * q, 2 * q + 1 < kb);
                let step = &mut sliver[q * NR..q * NR + width];
                S::run_to_bf16(&b.data[p * b.rs + first..][..width], &mut lo[..width]);
                if odd {
                    S::run_to_bf16(&b.data[(p + 1) * b.rs + first..][..width], &mut hi[..width]);
                } else {
                    hi[..width].fill(zero);
                }
                for ((w, &l), &h) in step.iter_mut().zip(lo.iter()).zip(hi.iter()) {
                    *w = pair(l, h);
                }
            }
        } else if b.rs == 1 && kb > 0 {
            for j in 0..width {
                let start = (first + j) * b.cs + p0;
                S::run_to_bf16(&b.data[start..start + kb], &mut run[..kb]);
                run[kb..2 * pairs].fill(zero);
                for q in 0..pairs {
                    sliver[q * NR + j] = pair(run[2 * q], run[2 * q + 1]);
                }
            }
        } else {
            for q in 0..pairs {
                let (p, odd) = (p0 + 2 * q, 2 * q + 1 < kb);
                for (j, w) in sliver[q * NR..q * NR + width].iter_mut().enumerate() {
                    let col = (first + j) * b.cs;
                    let l = b.data[col + p * b.rs].to_bf16();
                    let h = if odd {
                        b.data[col + (p + 1) * b.rs].to_bf16()
                    } else {
                        zero
                    };
                    *w = pair(l, h);
                }
            }
        }
    }
}

/// Loops 2 and 1 over one packed block of A (rows `ic..ic+mb`) and the packed B panel (first
/// column `jc`, `nb` columns wide), `pairs` pair steps deep.
///
/// # Safety
/// AVX512-BF16 is present; the slivers hold what `pack_a` and `pack_b` wrote for these sizes;
/// C's rows `ic..ic+mb` × columns `jc..jc+nb` are inside C and owned by this work item.
#[allow(clippy::too_many_arguments)]
unsafe fn macro_kernel(
    alpha: f32,
    beta: f32,
    ap: &[u32],
    bp: &[u32],
    pairs: usize,
    ic: usize,
    mb: usize,
    jc: usize,
    nb: usize,
    c: CPtr<f32>,
) {
    for s in 0..nb.div_ceil(NR) {
        let j = jc + s * NR;
        let cols = NR.min(jc + nb - j);
        let bs = &bp[s * pairs * NR..(s + 1) * pairs * NR];
        for t in 0..mb.div_ceil(MR) {
            let i = ic + t * MR;
            let rows = MR.min(ic + mb - i);
            let as_ = &ap[t * pairs * MR..(t + 1) * pairs * MR];
            if rows == MR && cols == NR {
                // SAFETY: the full tile at (i, j) lies inside C and belongs to this work item;
                // the slivers hold `pairs` steps (the caller's contract).
                unsafe {
                    ukr(
                        pairs,
                        alpha,
                        as_.as_ptr(),
                        bs.as_ptr(),
                        beta,
                        c.at(i, j),
                        c.rs,
                        c.cs,
                    )
                };
            } else {
                // Edge tile: the padded tile into scratch, then the valid part merged.
                let mut tile = [0.0f32; MAX_TILE];
                // SAFETY: the scratch tile holds MR×NR floats with row stride NR.
                unsafe {
                    ukr(
                        pairs,
                        1.0,
                        as_.as_ptr(),
                        bs.as_ptr(),
                        0.0,
                        tile.as_mut_ptr(),
                        NR,
                        1,
                    )
                };
                for r in 0..rows {
                    for q in 0..cols {
                        // SAFETY: (i + r, j + q) lies inside C and belongs to this work item.
                        let cij = unsafe { &mut *c.at(i + r, j + q) };
                        let v = alpha * tile[r * NR + q];
                        *cij = if beta == 0.0 { v } else { v + beta * *cij };
                    }
                }
            }
        }
    }
}

/// The 12×32 microkernel: `pairs` steps of two k values each, then C = alpha·acc + beta·C
/// (C not read when beta is 0).
///
/// # Safety
/// AVX-512F and AVX512-BF16 are present; `a` holds `pairs·12` words, `b` `pairs·32`; every
/// element of the 12×32 tile at `c` (element (i, j) at `c[i·rs_c + j·cs_c]`) is writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn ukr(
    pairs: usize,
    alpha: f32,
    mut a: *const u32,
    mut b: *const u32,
    beta: f32,
    c: *mut f32,
    rs_c: usize,
    cs_c: usize,
) {
    use std::arch::x86_64::*;
    if cs_c == 1 {
        for i in 0..12 {
            // A prefetch is only a hint: it never faults, whatever the address.
            let row = c.wrapping_add(i * rs_c) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(row);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(127));
        }
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; 12];
    for _ in 0..pairs {
        // SAFETY: a and b advance by 12 and 32 words per step over `pairs` steps, inside the
        // packed slivers.
        unsafe {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(16).cast()));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(i) as i32));
                row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
                row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
            }
            a = a.add(12);
            b = b.add(32);
        }
    }
    let va = _mm512_set1_ps(alpha);
    let vb = _mm512_set1_ps(beta);
    if cs_c == 1 {
        for (i, row) in acc.iter().enumerate() {
            for (h, &v) in row.iter().enumerate() {
                // SAFETY: row i of the tile holds 32 contiguous writable floats.
                unsafe {
                    let p = c.add(i * rs_c + 16 * h);
                    let r = if beta == 0.0 {
                        _mm512_mul_ps(va, v)
                    } else {
                        _mm512_fmadd_ps(vb, _mm512_loadu_ps(p), _mm512_mul_ps(va, v))
                    };
                    _mm512_storeu_ps(p, r);
                }
            }
        }
    } else {
        let mut tile = [0.0f32; 12 * 32];
        for (i, row) in acc.iter().enumerate() {
            for (h, &v) in row.iter().enumerate() {
                // SAFETY: 16 floats fit at offset 32i + 16h < 384.
                unsafe { _mm512_storeu_ps(tile.as_mut_ptr().add(32 * i + 16 * h), v) };
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

/// Never called: [`supported`] is false off x86-64.
#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn ukr(
    _: usize,
    _: f32,
    _: *const u32,
    _: *const u32,
    _: f32,
    _: *mut f32,
    _: usize,
    _: usize,
) {
    unreachable!("the AVX512-BF16 kernel runs only where `supported()` is true")
}
