//! Packing: copying a block of A or B into the sliver layout the microkernel streams.
//!
//! Packing is where strides disappear: a transposed or sliced operand is read once here with
//! whatever strides it has, and the microkernel then only ever sees unit-stride, zero-padded
//! slivers. That is why the caller never has to make an operand contiguous. The two common
//! layouts (the packed dimension contiguous in memory) take a slice-copy fast path.
//!
//! Packing is also where half-precision operands are widened: the source element type `S` may
//! differ from the kernel's `T` (f16 or bf16 into f32, see [`Widen`]), so a product of half
//! tensors reads each input once, straight into the packed f32 slivers.

use super::{MatRef, Widen};
use crate::element::Float;
use crate::isa::Isa;

/// Packs rows `i0..i0+mb` × columns `p0..p0+kb` of A into MR-row slivers.
///
/// Sliver s occupies `dst[s*kb*mr ..][.. kb*mr]`; within it, step p holds the `mr` values
/// `A[i0 + s*mr + r, p0 + p]` for r in 0..mr, zero where the row is past `mb`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_a<S: Widen<T>, T: Float>(
    isa: Isa,
    a: &MatRef<'_, S>,
    i0: usize,
    mb: usize,
    p0: usize,
    kb: usize,
    mr: usize,
    dst: &mut [T],
) {
    for (s, sliver) in dst
        .chunks_exact_mut(kb * mr)
        .take(mb.div_ceil(mr))
        .enumerate()
    {
        let r0 = i0 + s * mr;
        let rows = mr.min(i0 + mb - r0);
        if a.rs == 1 {
            // Column-major A (e.g. a transposed row-major matrix): each step is a contiguous run.
            // Full slivers of the kernels' heights move as fixed-size arrays (a few vector
            // moves each), where a run-time length would call `memmove` per step: `perf` put
            // those calls at 9 % of an LSTM training step (dW = dGᵀ·H, K = N·T, A column-major).
            if rows == mr
                && let Some(ad) = S::as_native(a.data)
                && let Some(sl) = T::as_f32_slice_mut(sliver)
                && let Some(af) = T::as_f32_slice(ad)
            {
                let done = match mr {
                    12 => col_major_full::<12>(af, r0, p0, a.cs, sl),
                    6 => col_major_full::<6>(af, r0, p0, a.cs, sl),
                    4 => col_major_full::<4>(af, r0, p0, a.cs, sl),
                    _ => false,
                };
                if done {
                    continue;
                }
            }
            for (p, step) in sliver.chunks_exact_mut(mr).enumerate() {
                let start = r0 + (p0 + p) * a.cs;
                widen_into(&a.data[start..start + rows], &mut step[..rows]);
                step[rows..].fill(T::ZERO);
            }
        } else {
            // Row-major or general strides: walk each row along k and scatter into the steps.
            if rows < mr {
                sliver.fill(T::ZERO);
            }
            // Row-major f32 with the AVX2 kernel's 6-row slivers: 8 columns at a time through
            // an 8×8 register transpose; the scalar loop below finishes the last columns.
            let mut p_done = 0;
            #[cfg(target_arch = "x86_64")]
            if isa.has_avx2()
                && mr == 6
                && rows == 6
                && a.cs == 1
                && let Some(ad) = S::as_native(a.data).and_then(T::as_f32_slice)
                && let Some(sd) = T::as_f32_slice_mut(sliver)
            {
                let base = r0 * a.rs + p0;
                // The six rows' first kb elements are inside A (the caller's contract).
                let last = base + 5 * a.rs + kb;
                if last <= ad.len() {
                    // SAFETY: AVX2 is present; rows r0..r0+6 × columns p0..p0+kb lie inside
                    // `ad` (checked just above) and the sliver holds 6·kb floats.
                    p_done = unsafe { pack_a_6_avx2(&ad[base..], a.rs, kb, sd) };
                }
            }
            // Row-major f32 with the AVX-512 kernel's 12-row slivers: the same, through an
            // 8×8 and a 4×8 transpose (`perf` put the scalar loop at ≈ 6 % of a 1024³ product).
            #[cfg(target_arch = "x86_64")]
            if isa.has_avx2()
                && mr == 12
                && rows == 12
                && a.cs == 1
                && let Some(ad) = S::as_native(a.data).and_then(T::as_f32_slice)
                && let Some(sd) = T::as_f32_slice_mut(sliver)
            {
                let base = r0 * a.rs + p0;
                // The twelve rows' first kb elements are inside A (the caller's contract).
                let last = base + 11 * a.rs + kb;
                if last <= ad.len() {
                    // SAFETY: AVX2 is present; rows r0..r0+12 × columns p0..p0+kb lie inside
                    // `ad` (checked just above) and the sliver holds 12·kb floats.
                    p_done = unsafe { pack_a_12_avx2(&ad[base..], a.rs, kb, sd) };
                }
            }
            // Row-major f16/bf16 with the same kernel: widen 64 columns of the six rows at a
            // time into a small buffer (vectorised conversion), then transpose from there.
            #[cfg(target_arch = "x86_64")]
            if isa.has_avx2()
                && mr == 6
                && rows == 6
                && a.cs == 1
                && S::as_native(a.data).is_none()
                && let Some(sd) = T::as_f32_slice_mut(sliver)
            {
                const W: usize = 64;
                let mut buf = [T::ZERO; 6 * W];
                for q in (0..kb).step_by(W) {
                    let len = W.min(kb - q);
                    for r in 0..6 {
                        let row = &a.data[(r0 + r) * a.rs + p0 + q..][..len];
                        S::widen_slice(row, &mut buf[r * W..][..len]);
                    }
                    // T is f32 here (the sliver converted), so the buffer converts too.
                    let Some(bf) = T::as_f32_slice(&buf) else {
                        break;
                    };
                    // SAFETY: AVX2 is present; the buffer holds six rows of `len` values at
                    // stride W, and the sliver from column q on holds 6·(kb - q) ≥ 6·len floats.
                    let done = unsafe { pack_a_6_avx2(bf, W, len, &mut sd[q * 6..]) };
                    for p in done..len {
                        for r in 0..6 {
                            sd[(q + p) * 6 + r] = bf[r * W + p];
                        }
                    }
                    p_done = q + len;
                }
            }
            let _ = isa;
            for r in 0..rows {
                let row = (r0 + r) * a.rs + p0 * a.cs;
                if a.cs == 1 {
                    for (p, &v) in a.data[row..row + kb].iter().enumerate().skip(p_done) {
                        sliver[p * mr + r] = v.widen();
                    }
                } else {
                    for p in p_done..kb {
                        sliver[p * mr + r] = a.data[row + p * a.cs].widen();
                    }
                }
            }
        }
    }
}

/// One full MR-row sliver of a column-major f32 A (`a[r0 + r + (p0 + p)·cs]` for every step p
/// of the sliver) copied step by step as `[f32; MR]` arrays. Returns false, having written
/// nothing, when a step would reach past `a` (the caller then takes the general loop).
#[inline(always)]
fn col_major_full<const MR: usize>(
    a: &[f32],
    r0: usize,
    p0: usize,
    cs: usize,
    sliver: &mut [f32],
) -> bool {
    let kb = sliver.len() / MR;
    let last = kb
        .checked_sub(1)
        .and_then(|k| (p0 + k).checked_mul(cs))
        .and_then(|o| o.checked_add(r0 + MR));
    if last.is_none_or(|l| l > a.len()) {
        return kb == 0;
    }
    for (p, step) in sliver.chunks_exact_mut(MR).enumerate() {
        let start = r0 + (p0 + p) * cs;
        if let (Ok(dst), Ok(src)) = (
            <&mut [f32; MR]>::try_from(step),
            <&[f32; MR]>::try_from(&a[start..start + MR]),
        ) {
            *dst = *src;
        }
    }
    true
}

/// Packs rows `p0..p0+kb` × columns `c0..c0+cols` of B into consecutive NR-column slivers.
///
/// Sliver s occupies `dst[s*kb*nr ..][.. kb*nr]`; within it, step p holds the `nr` values
/// `B[p0 + p, c0 + s*nr + c]`, zero where the column is past `cols`. `dst` holds
/// `cols.div_ceil(nr)` slivers.
///
/// A row-major B is read row by row across all the slivers, so every read is a contiguous run
/// of one row: read sliver by sliver instead, each 64-byte piece would come from a different
/// row, usually a different page, which the hardware prefetchers do not follow (a `perf`
/// profile of a 1024³ product had 3 % of its time in those copies).
pub(crate) fn pack_b<S: Widen<T>, T: Float>(
    b: &MatRef<'_, S>,
    p0: usize,
    kb: usize,
    c0: usize,
    cols: usize,
    nr: usize,
    dst: &mut [T],
) {
    if b.cs == 1 {
        match nr {
            4 => pack_b_rows::<S, T, 4>(b, p0, kb, c0, cols, dst),
            8 => pack_b_rows::<S, T, 8>(b, p0, kb, c0, cols, dst),
            16 => pack_b_rows::<S, T, 16>(b, p0, kb, c0, cols, dst),
            32 => pack_b_rows::<S, T, 32>(b, p0, kb, c0, cols, dst),
            _ => {
                for p in 0..kb {
                    let row = &b.data[(p0 + p) * b.rs + c0..][..cols];
                    for (s, part) in row.chunks(nr).enumerate() {
                        let step = &mut dst[(s * kb + p) * nr..][..nr];
                        widen_into(part, &mut step[..part.len()]);
                        step[part.len()..].fill(T::ZERO);
                    }
                }
            }
        }
        return;
    }
    // Column-major (a transposed weight, say) or general: walk each column down k.
    for (s, sliver) in dst.chunks_exact_mut(kb * nr).enumerate() {
        let first = c0 + s * nr;
        let width = nr.min(c0 + cols - first);
        if width < nr {
            sliver.fill(T::ZERO);
        }
        for c in 0..width {
            let col = (first + c) * b.cs + p0 * b.rs;
            if b.rs == 1 {
                for (p, &v) in b.data[col..col + kb].iter().enumerate() {
                    sliver[p * nr + c] = v.widen();
                }
            } else {
                for p in 0..kb {
                    sliver[p * nr + c] = b.data[col + p * b.rs].widen();
                }
            }
        }
    }
}

/// [`pack_b`] for a row-major B and a compile-time NR: full NR-wide pieces are fixed-size
/// copies (a few vector moves, where a run-time length would call `memmove` per piece).
fn pack_b_rows<S: Widen<T>, T: Float, const NR: usize>(
    b: &MatRef<'_, S>,
    p0: usize,
    kb: usize,
    c0: usize,
    cols: usize,
    dst: &mut [T],
) {
    let full = cols / NR;
    let tail = cols % NR;
    for p in 0..kb {
        let row = &b.data[(p0 + p) * b.rs + c0..][..cols];
        let (pieces, rest) = row.as_chunks::<NR>();
        for (s, piece) in pieces.iter().enumerate() {
            let (step, _) = dst[(s * kb + p) * NR..].as_chunks_mut::<NR>();
            widen_into(piece, &mut step[0]);
        }
        if tail > 0 {
            let step = &mut dst[(full * kb + p) * NR..][..NR];
            widen_into(rest, &mut step[..tail]);
            step[tail..].fill(T::ZERO);
        }
    }
}

/// `dst[i] = src[i]` widened to `T` (a plain copy when the types are the same).
#[inline]
fn widen_into<S: Widen<T>, T: Float>(src: &[S], dst: &mut [T]) {
    match S::as_native(src) {
        Some(same) => dst.copy_from_slice(same),
        None => S::widen_slice(src, dst),
    }
}

/// Packs six row-major rows of A (row `r` starts at `a[r * rs]`) into a 6-row sliver, 8
/// columns at a time: six 8-wide loads, an 8×8 transpose (rows 6 and 7 zero) and eight
/// overlapping 8-wide stores, each of which writes one column's six values plus two lanes the
/// next store overwrites. Stops while a whole block still fits before the sliver's end and
/// returns how many columns it packed; the caller packs the rest.
///
/// # Safety
/// AVX2 is present; `a` holds `5 * rs + kb` elements; `dst` holds `6 * kb`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_a_6_avx2(a: &[f32], rs: usize, kb: usize, dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= 5 * rs + kb && dst.len() >= 6 * kb);
    let (src, out) = (a.as_ptr(), dst.as_mut_ptr());
    let mut p = 0;
    // The block at p stores up to 6(p + 7) + 8 = 6p + 50 < 6(p + 9) <= 6·kb.
    while p + 9 <= kb {
        // SAFETY: rows 0..6, columns p..p+8 lie inside `a` (p + 8 <= kb); the stores end
        // before 6·kb (above).
        unsafe {
            // Start fetching the same columns of the next six rows (the next sliver): each
            // row contributes only kb values, too short a run for the hardware prefetcher
            // to pick up before it ends.
            if p % 16 == 0 {
                for r in 6..12 {
                    _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(r * rs + p) as *const i8);
                }
            }
            let z = _mm256_setzero_ps();
            let r = [
                _mm256_loadu_ps(src.add(p)),
                _mm256_loadu_ps(src.add(rs + p)),
                _mm256_loadu_ps(src.add(2 * rs + p)),
                _mm256_loadu_ps(src.add(3 * rs + p)),
                _mm256_loadu_ps(src.add(4 * rs + p)),
                _mm256_loadu_ps(src.add(5 * rs + p)),
            ];
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            // Rows 4 and 5 with two zero rows: lanes (r4, r5, 0, 0) per column.
            let s4 = _mm256_shuffle_ps::<0x44>(t4, z);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, z);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, z);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, z);
            let cols = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (j, &c) in cols.iter().enumerate() {
                _mm256_storeu_ps(out.add(6 * (p + j)), c);
            }
        }
        p += 8;
    }
    p
}

/// Packs twelve row-major rows of A (row `r` starts at `a[r * rs]`) into a 12-row sliver, 8
/// columns at a time: rows 0..8 through an 8×8 transpose, rows 8..12 through a 4×8 one, then
/// per column one 8-wide and one 4-wide store (no overlap). Returns how many columns it packed
/// (a multiple of 8); the caller packs the rest.
///
/// # Safety
/// AVX2 is present; `a` holds `11 * rs + kb` elements; `dst` holds `12 * kb`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_a_12_avx2(a: &[f32], rs: usize, kb: usize, dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= 11 * rs + kb && dst.len() >= 12 * kb);
    let (src, out) = (a.as_ptr(), dst.as_mut_ptr());
    let mut p = 0;
    while p + 8 <= kb {
        // SAFETY: rows 0..12, columns p..p+8 lie inside `a` (p + 8 <= kb); the stores write
        // floats 12p .. 12(p + 8) <= 12·kb of `dst`.
        unsafe {
            if p % 16 == 0 {
                // The same columns of the next twelve rows (the next sliver): see pack_a_6_avx2.
                for r in 12..24 {
                    _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(r * rs + p) as *const i8);
                }
            }
            let r: [__m256; 12] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * rs + p)));
            // Rows 0..8: (column j, rows 0..8) in `cols[j]`.
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let cols = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            // Rows 8..12: (columns j and j + 4, rows 8..12) in the two halves of `tail[j]`.
            let u0 = _mm256_unpacklo_ps(r[8], r[9]);
            let u1 = _mm256_unpackhi_ps(r[8], r[9]);
            let u2 = _mm256_unpacklo_ps(r[10], r[11]);
            let u3 = _mm256_unpackhi_ps(r[10], r[11]);
            let tail = [
                _mm256_shuffle_ps::<0x44>(u0, u2),
                _mm256_shuffle_ps::<0xEE>(u0, u2),
                _mm256_shuffle_ps::<0x44>(u1, u3),
                _mm256_shuffle_ps::<0xEE>(u1, u3),
            ];
            for (j, &c) in cols.iter().enumerate() {
                let step = out.add(12 * (p + j));
                _mm256_storeu_ps(step, c);
                let rest = if j < 4 {
                    _mm256_castps256_ps128(tail[j])
                } else {
                    _mm256_extractf128_ps::<1>(tail[j - 4])
                };
                _mm_storeu_ps(step.add(8), rest);
            }
        }
        p += 8;
    }
    p
}
