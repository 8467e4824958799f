//! Unpacked paths: tiny products and matrix-vector products.
//!
//! - [`small`]: for m·n·k up to `SMALL_MAX_MNK` (32³ for f32 on AVX2: `SMALL_MAX_MNK_F32_AVX2`;
//!   the seed model's 10×10 and 10×5 layers at
//!   batch 10). Packing and threads would cost more than the arithmetic, so each row of C is
//!   accumulated in a 16-wide register strip straight from the operands.
//! - [`gemv`]: N = 1 (and M = 1, by transposition), e.g. a 512→1 output layer. A packed 6×16
//!   tile would waste 15 of its 16 columns; instead each output is a dot product over a
//!   contiguous row (16 independent lanes, combined in a fixed tree) or, when A is column-major,
//!   a sequence of axpy updates over a contiguous column.
//!
//! The generic bodies are plain Rust written so the compiler vectorises them; their AVX2
//! variants are the same bodies compiled inside `#[target_feature(enable = "avx2,fma")]`
//! functions. The f32 small product on AVX2 (the seed model's every layer) has its own
//! intrinsics kernel, [`small_f32_avx2`]: masked loads pack B's strip, four rows of C are
//! accumulated together, and the stores avoid masked stores (microcoded on AMD cores).

use super::{Activation, CPtr, Epilogue, MatRef};
use crate::element::Float;
use crate::isa::Isa;
use rayon::prelude::*;

const STRIP: usize = 16;

/// C = alpha·A·B + beta·C for small matrices, no packing, no threads. Returns the part of
/// `epi` still to be applied: the f32 AVX2 kernel adds the bias and applies ReLU while it
/// writes C (a tiny Dense layer is then one pass), the other paths leave all of it.
#[allow(clippy::too_many_arguments)]
pub(super) fn small<'e, T: Float>(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    beta: T,
    c: CPtr<T>,
    epi: Epilogue<'e, T>,
) -> Epilogue<'e, T> {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        if let (Some(ad), Some(bd)) = (T::as_f32_slice(a.data), T::as_f32_slice(b.data))
            && k <= KMAX
        {
            let (a32, b32) = (a.with_data(ad), b.with_data(bd));
            // T is f32 here (its slices converted), so C's pointer is an f32 pointer.
            let c32 = CPtr {
                ptr: c.ptr.cast::<f32>(),
                rs: c.rs,
                cs: c.cs,
            };
            let (al, be) = (alpha.to_f64() as f32, beta.to_f64() as f32);
            let bias = epi.bias.and_then(|v| T::as_f32_slice(v));
            let relu = epi.act == Activation::Relu;
            // SAFETY: AVX2 and FMA are present (checked just above); C's bounds and the bias's
            // length (n) were checked in `gemm`, and k <= KMAX.
            unsafe { small_f32_avx2(m, n, k, al, &a32, &b32, be, c32, bias, relu) };
            return Epilogue {
                bias: if bias.is_some() { None } else { epi.bias },
                act: if relu { Activation::None } else { epi.act },
            };
        }
        // SAFETY: AVX2 and FMA are present (checked just above).
        unsafe { small_avx2(m, n, k, alpha, a, b, beta, c) };
        return epi;
    }
    let _ = isa;
    small_body(m, n, k, alpha, a, b, beta, c);
    epi
}

/// True when [`small`] runs the f32 intrinsics kernel for this element type, path and depth.
pub(super) fn has_f32_kernel<T: Float>(isa: Isa, k: usize) -> bool {
    cfg!(target_arch = "x86_64") && isa.has_avx2() && k <= KMAX && T::as_f32_slice(&[]).is_some()
}

/// Deepest K whose B strip is packed into the stack buffer (deeper products read B in place).
const KMAX: usize = 32;

/// The f32 small product with explicit AVX2 intrinsics: per 16-column strip of B (packed,
/// zero-padded, into a stack buffer), each row of C is two 8-lane FMA accumulators fed by a
/// broadcast of A's element; the strip is then scaled and written, with full-vector stores
/// when C's row is contiguous and wide enough. Each C element sums its k products in order,
/// as the generic loop does (with one rounding per step, being fused). With `bias` and
/// `relu`, each stored value is then `relu(v + bias[j])`, rounded exactly as the separate
/// epilogue pass would round it.
///
/// # Safety
/// AVX2 and FMA are present; every addressed element of A, B and C lies inside its slice
/// (checked by `gemm`), and `bias`, if any, holds at least n values; `k <= KMAX`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn small_f32_avx2(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &MatRef<'_, f32>,
    b: &MatRef<'_, f32>,
    beta: f32,
    c: CPtr<f32>,
    bias: Option<&[f32]>,
    relu: bool,
) {
    use std::arch::x86_64::*;
    // Every lane of rows 0..k is written below before it is read (masked loads and the
    // strided copy both fill the lanes past w with zeros), so the strip starts uninitialised:
    // zeroing all 2 KiB would cost a `memset` per call, more than a 10×10 product.
    let mut bpad = [const { std::mem::MaybeUninit::<f32>::uninit() }; STRIP * KMAX];
    let valpha = _mm256_set1_ps(alpha);
    // Lane masks for a strip `w` columns wide: lane l of the pair is on when l < w.
    let masks = |w: usize| {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let w = w as i32;
        (
            _mm256_cmpgt_epi32(_mm256_set1_epi32(w), lane),
            _mm256_cmpgt_epi32(_mm256_set1_epi32(w - 8), lane),
        )
    };
    let (ap, bsrc) = (a.data.as_ptr(), b.data.as_ptr());
    let bp = bpad.as_mut_ptr().cast::<f32>();
    for j0 in (0..n).step_by(STRIP) {
        let w = STRIP.min(n - j0);
        let (m0, m1) = masks(w);
        // The strip's bias (zeros past w), added to every row before ReLU.
        // SAFETY: bias[j0..j0 + w] lies inside the bias (n values); masked-off lanes are not
        // read (wrapping_add: the second half may start past the end when w <= 8).
        let vbias = bias.map(|v| unsafe {
            let p = v.as_ptr().add(j0);
            (
                _mm256_maskload_ps(p, m0),
                _mm256_maskload_ps(p.wrapping_add(8), m1),
            )
        });
        if b.cs == 1 {
            for p in 0..k {
                // SAFETY: p < k <= KMAX keeps the stores inside `bpad`; the B elements read
                // are (p, j0..j0 + w), inside B (checked by `gemm`); masked-off lanes are not
                // read (hence wrapping_add for the second half, which may start past B when
                // w <= 8).
                unsafe {
                    let dst = bp.add(p * STRIP);
                    let src = bsrc.add(p * b.rs + j0);
                    _mm256_storeu_ps(dst, _mm256_maskload_ps(src, m0));
                    _mm256_storeu_ps(dst.add(8), _mm256_maskload_ps(src.wrapping_add(8), m1));
                }
            }
        } else {
            // A strided B (a Dense forward's Wᵀ: each column of B is a row of W): zero the
            // strip's rows, then copy column by column, each a run of k elements apart by rs.
            for p in 0..k {
                // SAFETY: p < k <= KMAX keeps both stores inside `bpad`.
                unsafe {
                    _mm256_storeu_ps(bp.add(p * STRIP), _mm256_setzero_ps());
                    _mm256_storeu_ps(bp.add(p * STRIP + 8), _mm256_setzero_ps());
                }
            }
            for q in 0..w {
                let col = bsrc.wrapping_add((j0 + q) * b.cs);
                for p in 0..k {
                    // SAFETY: (p, j0 + q) lies inside B (checked by `gemm`); p * STRIP + q
                    // lies inside `bpad` (p < k <= KMAX, q < STRIP).
                    unsafe { *bp.add(p * STRIP + q) = *col.add(p * b.rs) };
                }
            }
        }
        // Four rows at a time: each B vector loaded once feeds eight independent FMA chains,
        // enough to cover the FMA latency that a single row's two chains would wait on. The
        // rows past m in the last block repeat row m-1 (in bounds) and are not stored.
        for i0 in (0..m).step_by(ROWS) {
            let rows = ROWS.min(m - i0);
            let arow: [*const f32; ROWS] =
                std::array::from_fn(|t| ap.wrapping_add((i0 + t.min(rows - 1)) * a.rs));
            let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
            for p in 0..k {
                // SAFETY: p < k <= KMAX keeps both 8-lane loads inside `bpad`; each
                // (row, p) read lies inside A (rows clamped to m-1; checked by `gemm`).
                unsafe {
                    let b0 = _mm256_loadu_ps(bp.add(p * STRIP));
                    let b1 = _mm256_loadu_ps(bp.add(p * STRIP + 8));
                    for (t, acc) in acc.iter_mut().enumerate() {
                        let av = _mm256_broadcast_ss(&*arow[t].add(p * a.cs));
                        acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                        acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
                    }
                }
            }
            for (t, acc) in acc.iter().enumerate().take(rows) {
                let acc0 = _mm256_mul_ps(acc[0], valpha);
                let acc1 = _mm256_mul_ps(acc[1], valpha);
                let epi = (vbias, relu);
                // SAFETY: (i0 + t, j0..j0 + w) lies inside C (checked in `gemm`); see
                // `store_strip`.
                unsafe { store_strip(c, i0 + t, j0, w, (m0, m1), acc0, acc1, beta, epi) };
            }
        }
    }
}

/// Rows of C computed together by [`small_f32_avx2`].
#[cfg(target_arch = "x86_64")]
const ROWS: usize = 4;

/// Writes one strip (C[i, j0..j0 + w] = acc + beta·C, then + bias and ReLU when `epi` asks)
/// from two 8-lane registers: masked vector loads and stores when the row is contiguous,
/// element by element otherwise.
///
/// # Safety
/// AVX2 is present; C[i, j0..j0 + w] lies inside C; `masks` enable exactly the first w lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn store_strip(
    c: CPtr<f32>,
    i: usize,
    j0: usize,
    w: usize,
    (m0, m1): (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i),
    mut acc0: std::arch::x86_64::__m256,
    mut acc1: std::arch::x86_64::__m256,
    beta: f32,
    (bias, relu): (
        Option<(std::arch::x86_64::__m256, std::arch::x86_64::__m256)>,
        bool,
    ),
) {
    use std::arch::x86_64::*;
    // SAFETY: (i, j0) lies inside C (the caller's contract).
    let row = unsafe { c.at(i, j0) };
    // The Dense epilogue on the finished values, rounded as the separate pass rounds them:
    // one add of the bias, then ReLU (x where x > 0 or NaN, else +0.0, as `unary::apply`).
    let finish = |v: __m256, bv: __m256| {
        let v = if bias.is_some() {
            _mm256_add_ps(v, bv)
        } else {
            v
        };
        if relu {
            _mm256_and_ps(v, _mm256_cmp_ps::<_CMP_NLE_UQ>(v, _mm256_setzero_ps()))
        } else {
            v
        }
    };
    let (b0, b1) = bias.unwrap_or((_mm256_setzero_ps(), _mm256_setzero_ps()));
    if c.cs == 1 {
        // Whole 8-lane halves are stored with plain vector stores and a partial half in 4-,
        // 2- and 1-lane pieces: AMD cores microcode masked *stores* (vmaskmovps to memory
        // costs more than the whole row's arithmetic), while masked *loads* are cheap.
        // SAFETY: (i, j0..j0 + w) are contiguous and inside C; masked-off lanes are neither
        // read nor written (the second half's pointer is formed with wrapping_add because it
        // may lie past C when w <= 8 and its mask is all off).
        unsafe {
            if beta != 0.0 {
                let vbeta = _mm256_set1_ps(beta);
                acc0 = _mm256_fmadd_ps(vbeta, _mm256_maskload_ps(row, m0), acc0);
                acc1 = _mm256_fmadd_ps(vbeta, _mm256_maskload_ps(row.wrapping_add(8), m1), acc1);
            }
            (acc0, acc1) = (finish(acc0, b0), finish(acc1, b1));
            let (tail, tail_at) = if w >= 8 {
                _mm256_storeu_ps(row, acc0);
                if w == STRIP {
                    _mm256_storeu_ps(row.add(8), acc1);
                    return;
                }
                (acc1, 8)
            } else {
                (acc0, 0)
            };
            // The last 1..7 lanes: a 4-lane, a 2-lane and a 1-lane store as needed (a
            // variable-length copy would be a `memcpy` call per row).
            let (mut at, mut left) = (tail_at, w - tail_at);
            let mut part = _mm256_castps256_ps128(tail);
            if left >= 4 {
                _mm_storeu_ps(row.add(at), part);
                part = _mm256_extractf128_ps::<1>(tail);
                (at, left) = (at + 4, left - 4);
            }
            if left >= 2 {
                _mm_storel_epi64(row.add(at).cast::<__m128i>(), _mm_castps_si128(part));
                part = _mm_movehl_ps(part, part);
                (at, left) = (at + 2, left - 2);
            }
            if left == 1 {
                _mm_store_ss(row.add(at), part);
            }
        }
    } else {
        let (mut lanes, mut blanes) = ([0.0f32; STRIP], [0.0f32; STRIP]);
        // SAFETY: both arrays hold 16 floats.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), acc0);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), acc1);
            _mm256_storeu_ps(blanes.as_mut_ptr(), b0);
            _mm256_storeu_ps(blanes.as_mut_ptr().add(8), b1);
        }
        for (q, (&v, &bq)) in lanes[..w].iter().zip(&blanes).enumerate() {
            // SAFETY: (i, j0 + q) lies inside C (the caller's contract).
            let cij = unsafe { &mut *row.add(q * c.cs) };
            let mut v = if beta == 0.0 {
                v
            } else {
                beta.mul_add(*cij, v)
            };
            if bias.is_some() {
                v += bq;
            }
            if relu && !(v > 0.0 || v.is_nan()) {
                v = 0.0;
            }
            *cij = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn small_avx2<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    beta: T,
    c: CPtr<T>,
) {
    small_body(m, n, k, alpha, a, b, beta, c);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn small_body<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    beta: T,
    c: CPtr<T>,
) {
    // Strip j0..j0+16 of B, zero-padded into a stack buffer so every row's inner loop is a full
    // 16-lane multiply-add (two AVX2 vectors) however narrow the matrix is.
    let mut bpad = [T::ZERO; STRIP * KMAX];
    for j0 in (0..n).step_by(STRIP) {
        let w = STRIP.min(n - j0);
        let padded = k <= KMAX;
        if padded {
            for p in 0..k {
                let dst = &mut bpad[p * STRIP..(p + 1) * STRIP];
                if b.cs == 1 {
                    let start = p * b.rs + j0;
                    dst[..w].copy_from_slice(&b.data[start..start + w]);
                } else {
                    for (q, d) in dst[..w].iter_mut().enumerate() {
                        *d = b.data[p * b.rs + (j0 + q) * b.cs];
                    }
                }
                dst[w..].fill(T::ZERO);
            }
        }
        for i in 0..m {
            let mut acc = [T::ZERO; STRIP];
            if padded {
                for (p, bp) in bpad[..k * STRIP].chunks_exact(STRIP).enumerate() {
                    let aip = a.data[i * a.rs + p * a.cs];
                    for q in 0..STRIP {
                        acc[q] += aip * bp[q];
                    }
                }
            } else {
                for p in 0..k {
                    let aip = a.data[i * a.rs + p * a.cs];
                    for (q, x) in acc[..w].iter_mut().enumerate() {
                        *x += aip * b.data[p * b.rs + (j0 + q) * b.cs];
                    }
                }
            }
            for (q, &v) in acc[..w].iter().enumerate() {
                // SAFETY: (i, j0 + q) lies inside C (checked in `gemm`); this call owns C.
                let cij = unsafe { &mut *c.at(i, j0 + q) };
                *cij = if beta == T::ZERO {
                    alpha * v
                } else {
                    alpha * v + beta * *cij
                };
            }
        }
    }
}

/// y = alpha·A·x + beta·y, where A is m×k, x has k values at stride `xs`, and y is the column
/// of C at stride `ys` starting at `c`'s element (0, 0).
#[allow(clippy::too_many_arguments)]
pub(super) fn gemv<T: Float>(
    isa: Isa,
    m: usize,
    k: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    x: &[T],
    xs: usize,
    beta: T,
    c: CPtr<T>,
    ys: usize,
    parallel: bool,
) {
    // A contiguous x makes every dot product unit-stride: borrowed when it already is, else
    // copied once.
    let xv: std::borrow::Cow<'_, [T]> = if xs == 1 || k <= 1 {
        std::borrow::Cow::Borrowed(&x[..k])
    } else {
        std::borrow::Cow::Owned((0..k).map(|p| x[p * xs]).collect())
    };
    let y = CPtr {
        ptr: c.ptr,
        rs: ys,
        cs: 0,
    };
    // Rows per work item: fixed, so the split never depends on the thread count.
    const ROWS: usize = 64;
    let run = |r0: usize| {
        let rows = ROWS.min(m - r0);
        #[cfg(target_arch = "x86_64")]
        if isa.has_avx2() {
            // SAFETY: AVX2 and FMA are present (checked just above).
            unsafe { gemv_avx2(r0, rows, k, alpha, a, &xv, beta, y) };
            return;
        }
        gemv_body(false, r0, rows, k, alpha, a, &xv, beta, y);
    };
    if parallel {
        (0..m).into_par_iter().step_by(ROWS).for_each(run);
    } else {
        (0..m).step_by(ROWS).for_each(run);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn gemv_avx2<T: Float>(
    r0: usize,
    rows: usize,
    k: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    x: &[T],
    beta: T,
    y: CPtr<T>,
) {
    gemv_body(true, r0, rows, k, alpha, a, x, beta, y);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemv_body<T: Float>(
    avx2: bool,
    r0: usize,
    rows: usize,
    k: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    x: &[T],
    beta: T,
    y: CPtr<T>,
) {
    let _ = avx2; // only read on x86-64
    let mut out = [T::ZERO; 64];
    let out = &mut out[..rows];
    if a.cs == 1 {
        // Row-major A: one dot product per row.
        let row = |r: usize| &a.data[(r0 + r) * a.rs..(r0 + r) * a.rs + k];
        let mut done = false;
        #[cfg(target_arch = "x86_64")]
        if avx2 && let (Some(ad), Some(xf)) = (T::as_f32_slice(a.data), T::as_f32_slice(x)) {
            let row = |r: usize| &ad[(r0 + r) * a.rs..(r0 + r) * a.rs + k];
            // Four rows at a time share each load of x: 15 loads per 12 FMAs instead of 2
            // per FMA, which is what bounds a dot product whose rows stream from L2.
            let mut r = 0;
            while r + 4 <= rows {
                // SAFETY: `avx2` is only true when AVX2 and FMA were detected (see `gemv`).
                let d = unsafe { dots_f32_avx2([row(r), row(r + 1), row(r + 2), row(r + 3)], xf) };
                for (o, v) in out[r..r + 4].iter_mut().zip(d) {
                    *o = T::from_f64(v as f64);
                }
                r += 4;
            }
            for (o, q) in out[r..].iter_mut().zip(r..) {
                // SAFETY: as above.
                *o = T::from_f64(unsafe { dots_f32_avx2([row(q)], xf) }[0] as f64);
            }
            done = true;
        }
        if !done {
            for (r, o) in out.iter_mut().enumerate() {
                *o = dot(row(r), x);
            }
        }
    } else if a.rs == 1 {
        // Column-major A: y[r0..] += A[r0.., p] * x[p] for each p, in order.
        for (p, &xp) in x.iter().enumerate() {
            let start = r0 + p * a.cs;
            for (o, &av) in out.iter_mut().zip(&a.data[start..start + rows]) {
                *o += av * xp;
            }
        }
    } else {
        for (r, o) in out.iter_mut().enumerate() {
            for (p, &xp) in x.iter().enumerate() {
                *o += a.data[(r0 + r) * a.rs + p * a.cs] * xp;
            }
        }
    }
    for (r, &v) in out.iter().enumerate() {
        // SAFETY: row r0 + r of the output column lies inside C (checked in `gemm`), and each
        // work item owns its rows.
        let yi = unsafe { &mut *y.at(r0 + r, 0) };
        *yi = if beta == T::ZERO {
            alpha * v
        } else {
            alpha * v + beta * *yi
        };
    }
}

/// Accumulators per row in [`dots_f32_avx2`]: chunks of `8 * DOT_ACCS` elements, combined as
/// (0 + 1) + 2.
pub(super) const DOT_ACCS: usize = 3;

/// R f32 dot products against the same `x`, each with [`DOT_ACCS`] 8-lane FMA accumulators
/// (hiding the FMA latency) combined in a fixed order. Each row's arithmetic is the same
/// whatever R is, so grouping rows never changes a result; the grouping only lets one load of
/// x feed R rows. Per row, in this order:
/// 1. chunks of `8 * DOT_ACCS` elements into the accumulators, combined as (0 + 1) + 2;
/// 2. the tail, element t + l into lane l % 8: whole groups of 8 as vector FMAs, then the last
///    few through a masked load, fused into their lanes (the other lanes are left as they are);
/// 3. the 8 lanes summed as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)), which horizontal
///    adds compute for four rows at once (`hsum4`) or for one (`hsum1`).
///
/// Why it is written this way, measured at 256×512 in L2 on one Zen 3 core: a closure
/// borrowing the accumulators (an `array::from_fn`) is compiled as a function of its own, so
/// they had to live in memory and the main loop stored all twelve on every step: 11.4 µs per
/// product, 8.6 with plain loops. Four rows of three accumulators (13 registers with x) beat
/// three rows of four by 10 %. With K = 512 a group of rows spends only 21 steps in the main
/// loop, so its epilogue counts: the per-row scalar tail and tree (≈ 75 instructions a row)
/// were replaced by the masked load and the shared horizontal adds.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dots_f32_avx2<const R: usize>(rows: [&[f32]; R], x: &[f32]) -> [f32; R] {
    use std::arch::x86_64::*;
    let n = rows.iter().fold(x.len(), |n, r| n.min(r.len()));
    let mut acc = [[_mm256_setzero_ps(); DOT_ACCS]; R];
    let mut i = 0;
    while i + 8 * DOT_ACCS <= n {
        for j in 0..DOT_ACCS {
            // SAFETY: i + 8j + 8 <= n, inside x and every row.
            unsafe {
                let vx = _mm256_loadu_ps(x.as_ptr().add(i + 8 * j));
                for (row, s) in rows.iter().zip(acc.iter_mut()) {
                    let va = _mm256_loadu_ps(row.as_ptr().add(i + 8 * j));
                    s[j] = _mm256_fmadd_ps(va, vx, s[j]);
                }
            }
        }
        i += 8 * DOT_ACCS;
    }
    // Lanes l < rem of the masked load, for the last n - t < 8 elements.
    let whole = i + (n - i) / 8 * 8;
    let rem = (n - whole) as i32;
    let mask = _mm256_cmpgt_epi32(
        _mm256_set1_epi32(rem),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    let xm = if rem > 0 {
        // SAFETY: only lanes l < rem are read: x[whole + l] with whole + l < n.
        unsafe { _mm256_maskload_ps(x.as_ptr().add(whole), mask) }
    } else {
        _mm256_setzero_ps()
    };
    let mut sums = [_mm256_setzero_ps(); R];
    for r in 0..R {
        let a = &acc[r];
        let mut s = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), a[2]);
        let mut t = i;
        while t < whole {
            // SAFETY: t + 8 <= whole <= n, inside x and the row.
            unsafe {
                let va = _mm256_loadu_ps(rows[r].as_ptr().add(t));
                s = _mm256_fmadd_ps(va, _mm256_loadu_ps(x.as_ptr().add(t)), s);
            }
            t += 8;
        }
        if rem > 0 {
            // SAFETY: as for `xm`, within row r.
            let va = unsafe { _mm256_maskload_ps(rows[r].as_ptr().add(whole), mask) };
            s = _mm256_blendv_ps(s, _mm256_fmadd_ps(va, xm, s), _mm256_castsi256_ps(mask));
        }
        sums[r] = s;
    }
    let mut out = [0.0f32; R];
    let mut r = 0;
    while r + 4 <= R {
        let h = hsum4(sums[r], sums[r + 1], sums[r + 2], sums[r + 3]);
        // SAFETY: `out[r..r + 4]` holds 4 floats.
        unsafe { _mm_storeu_ps(out.as_mut_ptr().add(r), h) };
        r += 4;
    }
    while r < R {
        out[r] = hsum1(sums[r]);
        r += 1;
    }
    out
}

/// The lane sums ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) of four vectors at once.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn hsum4(
    s0: std::arch::x86_64::__m256,
    s1: std::arch::x86_64::__m256,
    s2: std::arch::x86_64::__m256,
    s3: std::arch::x86_64::__m256,
) -> std::arch::x86_64::__m128 {
    use std::arch::x86_64::*;
    // [s0 01, s0 23, s1 01, s1 23 | s0 45, s0 67, s1 45, s1 67], and likewise for s2, s3.
    let h01 = _mm256_hadd_ps(s0, s1);
    let h23 = _mm256_hadd_ps(s2, s3);
    // [s0 0123, s1 0123, s2 0123, s3 0123 | s0 4567, ..., s3 4567]
    let h = _mm256_hadd_ps(h01, h23);
    _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1))
}

/// [`hsum4`] for one vector, the same additions in the same order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn hsum1(s: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let h = _mm256_hadd_ps(s, s);
    let h = _mm256_hadd_ps(h, h);
    _mm_cvtss_f32(_mm_add_ps(
        _mm256_castps256_ps128(h),
        _mm256_extractf128_ps(h, 1),
    ))
}

/// Dot product in 32 independent lanes (four AVX2 vectors of f32, enough to hide the add
/// latency) combined by a fixed pairwise tree, so it vectorises and its rounding is the same on
/// every run.
#[inline(always)]
pub(crate) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; 32];
    let mut ca = a.chunks_exact(32);
    let mut cb = b.chunks_exact(32);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..32 {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (&x, &y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] += x * y;
    }
    tree(acc)
}

/// Sums N (a power of two) values pairwise: (0+N/2, 1+N/2+1, ..), then halves again.
#[inline(always)]
pub(crate) fn tree<T: Float, const N: usize>(mut v: [T; N]) -> T {
    let mut w = N / 2;
    while w > 0 {
        for l in 0..w {
            v[l] += v[l + w];
        }
        w /= 2;
    }
    v[0]
}
