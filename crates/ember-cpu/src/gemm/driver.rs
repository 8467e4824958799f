//! The packed GEMM driver: the five BLIS loops around the microkernel, and their rayon split.
//!
//! ```text
//! loop 5  for jc in N step NC          one KC×NC panel of B lives in L3
//!   loop 4  for pc in K step KC        pack B[pc.., jc..] into NR-wide slivers (in parallel)
//!     loop 3  for ic in M step MC      work items: pack A[ic.., pc..] into MR-tall slivers
//!       loop 2  for jr in NC step NR   one B sliver (KC×NR) lives in L1
//!         loop 1  for ir in MC step MR microkernel on an MR×NR tile of C
//! ```
//!
//! KC slices are of equal depth (`slice_depth`). How the threads share the work:
//! - **Split N** (the usual case: at least `SPLIT_N_MIN_COLS` columns per thread): each thread
//!   runs all five loops, serially, over its own run of whole NR slivers of C, packing its part
//!   of B; A is packed once for all of them, block by block by whichever thread needs a block
//!   first (`shared_a.rs`: no thread ever waits for another). One parallel region, no barrier.
//!   Against splitting M with a
//!   shared B panel (two barriers per KC slice), this measured 2–8 % faster at 512³–2048³ on 2
//!   threads and 11 % at 256×784×512 (best samples of 12 interleaved rounds; `perf` showed
//!   the threads' time waiting at the barriers fall from ≈ 8 % to ≈ 2.5 %).
//! - **One sliver of B** (N ≤ NR, a skinny output layer): M is split, each thread packing the
//!   small B itself (again no barrier), and a row-major A is read in place by a twin of the
//!   microkernel (`in_place_a`): packing A would cost as much as the arithmetic, since each of
//!   its elements meets at most NR columns.
//! - **Split M** (other narrow products): the threads pack each B panel together, then share out work
//!   items (MC block of loop 3, group of NR slivers of loop 2). MC is shrunk (to a multiple of
//!   MR) so the blocks divide evenly among them, and when M is too short for that the slivers
//!   are split into groups as well.
//!
//! Neither split changes any element's summation order: that is fixed by K, KC and the
//! microkernel alone, and every split falls on tile boundaries, so results are bit-identical
//! for any thread count.

use super::kernel::RowsKernel;
use super::pack::{pack_a, pack_b};
use super::shared_a::SharedA;
use super::{CPtr, Epilogue, Kernel, MAX_TILE, MatRef, Widen, apply_epilogue};
use crate::element::Float;
use rayon::prelude::*;

/// With several threads, N is split between them (rather than M) when each thread gets at
/// least this many columns: every thread then walks all of A (packed once, shared), which
/// costs little against the products of a wide enough panel and saves the barrier after
/// each shared packing of B.
const SPLIT_N_MIN_COLS: usize = 256;

/// C = alpha·A·B + beta·C (+ epilogue) through packing; `parallel` allows rayon.
#[allow(clippy::too_many_arguments)]
pub(super) fn packed<S: Widen<T>, T: Float>(
    kern: &Kernel<T>,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &MatRef<'_, S>,
    b: &MatRef<'_, S>,
    beta: T,
    c: CPtr<T>,
    epi: &Epilogue<'_, T>,
    parallel: bool,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    debug_assert!(mr * nr <= MAX_TILE && kern.mc.is_multiple_of(mr) && kern.nc.is_multiple_of(nr));
    let threads = if parallel {
        rayon::current_num_threads().max(1)
    } else {
        1
    };
    let slivers = n.div_ceil(nr);
    let ops = (alpha, a, b, beta, c, epi);
    let kc = slice_depth(kern.kc, k);
    let kern = &Kernel {
        mc: block_height(kern, m, kc),
        ..*kern
    };
    if threads == 1 {
        // Wider than one NC panel: pack A once for all the panels.
        let shared = (n > kern.nc)
            .then(|| SharedA::new(m, k, kern.mc, kc, mr))
            .flatten();
        columns(kern, 0..m, 0..n, k, ops, shared.as_ref(), 0);
    } else if n >= threads * SPLIT_N_MIN_COLS && slivers >= threads {
        // Split N: each thread runs all five loops over its own run of whole slivers, packing
        // its own part of B, in one parallel region with no barrier. A is packed once for all
        // of them (`SharedA`), each thread starting its walk over M at its own block.
        let per = slivers.div_ceil(threads);
        let shared = SharedA::new(m, k, kern.mc, kc, mr);
        let shared = shared.as_ref();
        let m_blocks = m.div_ceil(kern.mc);
        (0..threads).into_par_iter().for_each(|t| {
            let (c0, c1) = ((t * per * nr).min(n), ((t + 1) * per * nr).min(n));
            if c0 < c1 {
                columns(kern, 0..m, c0..c1, k, ops, shared, t * m_blocks / threads);
            }
        });
    } else if slivers == 1 {
        // One sliver of B (N ≤ NR, a skinny output layer): split M, each thread packing the
        // small B itself, so again one parallel region and no barrier. Row ranges start on
        // sliver boundaries, so every tile is the one a single thread would compute.
        let per = m.div_ceil(threads).next_multiple_of(mr);
        (0..threads).into_par_iter().for_each(|t| {
            let (r0, r1) = ((t * per).min(m), ((t + 1) * per).min(m));
            if r0 < r1 {
                columns(kern, r0..r1, 0..n, k, ops, None, 0);
            }
        });
    } else {
        split_m(kern, threads, m, n, k, ops);
    }
}

/// The parallel loops for a product too narrow to split by columns: the threads pack each
/// KC×NC panel of B together, then share out loop 3's blocks of M (and, when M has fewer
/// blocks than there are threads, groups of loop 2's slivers as well).
fn split_m<S: Widen<T>, T: Float>(
    kern: &Kernel<T>,
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    (alpha, a, b, beta, c, epi): Operands<'_, '_, S, T>,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    // Loop 3's block height: smaller than configured so the blocks share out evenly.
    let blocks = m.div_ceil(kern.mc).div_ceil(threads) * threads;
    let mc = m.div_ceil(blocks).next_multiple_of(mr).max(mr);
    let m_blocks = m.div_ceil(mc);
    let kc_max = slice_depth(kern.kc, k);
    let nc_max = kern.nc.min(n.next_multiple_of(nr));
    let mut bpack_buf = AlignedBuf::new(kc_max * nc_max);
    let bpack = bpack_buf.as_mut_slice();
    let apack_len = mc * kc_max;

    // Loop 5: panels of NC columns.
    for jc in (0..n).step_by(kern.nc) {
        let nb = kern.nc.min(n - jc);
        let slivers = nb.div_ceil(nr);
        let groups = if m_blocks >= threads {
            1
        } else {
            threads.div_ceil(m_blocks).min(slivers)
        };
        let per_group = slivers.div_ceil(groups);
        // Loop 4: slices of KC along K.
        for pc in (0..k).step_by(kc_max) {
            let kb = kc_max.min(k - pc);
            let bp = &mut bpack[..slivers * kb * nr];
            // Each thread packs a run of whole slivers, reading B a row segment at a time.
            let per_thread = slivers.div_ceil(threads);
            bp.par_chunks_mut(per_thread * kb * nr)
                .enumerate()
                .for_each(|(t, run)| {
                    let c0 = jc + t * per_thread * nr;
                    pack_b(b, pc, kb, c0, (per_thread * nr).min(jc + nb - c0), nr, run);
                });
            let bp = &*bp;
            // The first K slice applies the caller's beta; later ones accumulate onto C.
            let beta_k = if pc == 0 { beta } else { T::ONE };
            let last = pc + kb == k;
            let rows_kernel = in_place_a(kern, slivers, a);
            let item = |apack: &mut AlignedBuf<T>, idx: usize| {
                let (blk, g) = (idx / groups, idx % groups);
                let (s0, s1) = (g * per_group, ((g + 1) * per_group).min(slivers));
                if s0 >= s1 {
                    return;
                }
                let ic = blk * mc;
                let mb = mc.min(m - ic);
                let ap = &mut apack.as_mut_slice()[..mb.div_ceil(mr) * mr * kb];
                let a_rows = prepare_a(kern, a, ic, mb, pc, kb, rows_kernel, ap);
                macro_kernel(
                    kern,
                    alpha,
                    beta_k,
                    ap,
                    bp,
                    kb,
                    ic,
                    mb,
                    jc,
                    nb,
                    s0..s1,
                    c,
                    a_rows,
                );
                if last {
                    let cols = jc + s0 * nr..jc + (s1 * nr).min(nb);
                    apply_epilogue(kern.isa, c, ic..ic + mb, cols, epi);
                }
            };
            (0..m_blocks * groups)
                .into_par_iter()
                .for_each_init(|| AlignedBuf::new(apack_len), item);
        }
    }
}

/// The height of loop 3's blocks for an `m`-row product sliced `kc` deep: the block of A gets
/// the L2 budget the blocking model gave it (`mc·kc` of the kernel's sizes), so a shallower
/// slice makes taller blocks (K = 784 runs as 2 × 392 with one 256-row block, not 252 + 4);
/// then the blocks are made equal (in whole MR slivers), so none is a sliver or two whose B
/// panel is fetched again for almost no work. It depends only on m, k and the kernel, never
/// on the thread count (and the block height never changes any element's summation order).
pub(super) fn block_height<T>(kern: &Kernel<T>, m: usize, kc: usize) -> usize {
    let mr = kern.mr;
    let budget = kern.mc.saturating_mul(kern.kc);
    let mc = (budget / kc.max(1)).clamp(mr, 4096.max(mr));
    let blocks = m.div_ceil(mc).max(1);
    m.div_ceil(blocks).next_multiple_of(mr).max(mr)
}

/// The depth of loop 4's K slices: as few slices as KC allows, of equal depth, so K = 784
/// runs as 3 × 262 rather than 2 × 384 + 16 (a 16-deep slice spends as long loading and
/// storing C tiles as multiplying). It depends only on K and KC, never on the thread count,
/// so every element of C still sums its products in one fixed order.
pub(super) fn slice_depth(kc: usize, k: usize) -> usize {
    k.div_ceil(k.div_ceil(kc).max(1)).max(1)
}

/// The operands every loop passes down: alpha, A, B (stored as `S`), beta, C and the epilogue.
type Operands<'x, 'a, S, T> = (
    T,
    &'x MatRef<'a, S>,
    &'x MatRef<'a, S>,
    T,
    CPtr<T>,
    &'x Epilogue<'a, T>,
);

/// All five loops, serially, over rows `rows` × columns `cols` of C (which start on sliver
/// boundaries of the whole product, so every tile is the one a single thread would compute).
/// With `shared` (only when `rows` is all of M), A's blocks come from that store, and loop 3
/// starts at block `first_block` and wraps around; either way each tile's value is the same.
fn columns<S: Widen<T>, T: Float>(
    kern: &Kernel<T>,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    k: usize,
    (alpha, a, b, beta, c, epi): Operands<'_, '_, S, T>,
    shared: Option<&SharedA<T>>,
    first_block: usize,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    let kc_max = slice_depth(kern.kc, k);
    let nc_max = kern.nc.min(cols.len().next_multiple_of(nr));
    let mut bpack_buf = AlignedBuf::new(kc_max * nc_max);
    let mut apack_buf = AlignedBuf::new(kern.mc * kc_max);
    // Loop 5: panels of NC columns.
    for jc in cols.clone().step_by(kern.nc) {
        let nb = kern.nc.min(cols.end - jc);
        let slivers = nb.div_ceil(nr);
        // Loop 4: slices of KC along K.
        for pc in (0..k).step_by(kc_max) {
            let kb = kc_max.min(k - pc);
            let bp = &mut bpack_buf.as_mut_slice()[..slivers * kb * nr];
            pack_b(b, pc, kb, jc, nb, nr, bp);
            let bp = &*bp;
            let beta_k = if pc == 0 { beta } else { T::ONE };
            let rows_kernel = in_place_a(kern, slivers, a);
            // Loop 3: blocks of MC rows.
            let m_blocks = rows.len().div_ceil(kern.mc);
            for idx in 0..m_blocks {
                let ic = rows.start + (first_block + idx) % m_blocks * kern.mc;
                let mb = kern.mc.min(rows.end - ic);
                // The block from the shared store (packed by whichever thread came first), or
                // else prepared here: packed privately, or read in place.
                let from_store = shared.filter(|_| rows_kernel.is_none()).and_then(|sh| {
                    debug_assert!(rows.start == 0 && sh.m_blocks() == m_blocks);
                    sh.block(ic, mb, pc, kb, |dst| {
                        pack_a(kern.isa, a, ic, mb, pc, kb, mr, dst)
                    })
                });
                let (ap, a_rows) = match from_store {
                    Some(ap) => (ap, None),
                    None => {
                        let ap = &mut apack_buf.as_mut_slice()[..mb.div_ceil(mr) * mr * kb];
                        let a_rows = prepare_a(kern, a, ic, mb, pc, kb, rows_kernel, ap);
                        (&*ap, a_rows)
                    }
                };
                macro_kernel(
                    kern,
                    alpha,
                    beta_k,
                    ap,
                    bp,
                    kb,
                    ic,
                    mb,
                    jc,
                    nb,
                    0..slivers,
                    c,
                    a_rows,
                );
                if pc + kb == k {
                    apply_epilogue(kern.isa, c, ic..ic + mb, jc..jc + nb, epi);
                }
            }
        }
    }
}

/// A and its in-place microkernel when A's packing can be skipped: B is a single NR-wide
/// sliver (each element of A then meets at most NR columns, so packing A would cost about as
/// much as the arithmetic), A is row-major and stored as `T`, and the kernel has an in-place
/// twin ([`RowsKernel`]). Measured: 256×512×10 went from 37 to 42–50 GFLOP/s on 1 thread.
fn in_place_a<'a, S: Widen<T>, T: Float>(
    kern: &Kernel<T>,
    slivers: usize,
    a: &MatRef<'a, S>,
) -> Option<(RowsKernel<T>, &'a [T])> {
    match (slivers, a.cs, S::as_native(a.data)) {
        (1, 1, Some(ad)) => T::gemm_rows_kernel(kern.isa, kern.mr, kern.nr).map(|k| (k, ad)),
        _ => None,
    }
}

/// Gets rows `ic..ic+mb` × columns `pc..pc+kb` of A ready for loop 1: packed into `ap`, or,
/// with `rows_kernel`, left in place (only a last, partial row sliver is packed, so the
/// in-place kernel never reads past A's rows); returns what `macro_kernel` then reads in place.
#[allow(clippy::too_many_arguments)]
fn prepare_a<'a, S: Widen<T>, T: Float>(
    kern: &Kernel<T>,
    a: &MatRef<'_, S>,
    ic: usize,
    mb: usize,
    pc: usize,
    kb: usize,
    rows_kernel: Option<(RowsKernel<T>, &'a [T])>,
    ap: &mut [T],
) -> Option<(RowsKernel<T>, &'a [T], usize)> {
    let mr = kern.mr;
    match rows_kernel {
        Some((k, ad)) => {
            let full = mb / mr * mr;
            if full < mb {
                pack_a(
                    kern.isa,
                    a,
                    ic + full,
                    mb - full,
                    pc,
                    kb,
                    mr,
                    &mut ap[full * kb..],
                );
            }
            Some((k, &ad[ic * a.rs + pc..], a.rs))
        }
        None => {
            pack_a(kern.isa, a, ic, mb, pc, kb, mr, ap);
            None
        }
    }
}

/// Loops 2 and 1 over one packed block of A (rows `ic..ic+mb`) and slivers `sl` of the packed
/// B panel (whose first column is `jc`, `nb` columns wide).
#[allow(clippy::too_many_arguments)]
pub(super) fn macro_kernel<T: Float>(
    kern: &Kernel<T>,
    alpha: T,
    beta: T,
    apack: &[T],
    bpack: &[T],
    kb: usize,
    ic: usize,
    mb: usize,
    jc: usize,
    nb: usize,
    sl: std::ops::Range<usize>,
    c: CPtr<T>,
    a_rows: Option<(RowsKernel<T>, &[T], usize)>,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    // Loop 2: NR-wide slivers of B.
    for s in sl {
        let j = jc + s * nr;
        let cols = nr.min(jc + nb - j);
        let bs = &bpack[s * kb * nr..(s + 1) * kb * nr];
        // Loop 1: MR-tall slivers of A.
        for (t, asl) in apack.chunks_exact(kb * mr).enumerate() {
            let i = ic + t * mr;
            let rows = mr.min(ic + mb - i);
            // The microkernel call on this tile: A from its packed sliver, or (full row
            // slivers with `a_rows`) read in place from its rows.
            let run = |beta: T, dst: *mut T, rs_c: usize, cs_c: usize| match a_rows {
                // SAFETY: rows i..i+mr of A hold kb values from column pc (`rows` == mr, and
                // `ad` starts at row ic, column pc); B's sliver and C's tile as below.
                Some((k, ad, rs)) if rows == mr => unsafe {
                    k(
                        kb,
                        alpha,
                        ad[(i - ic) * rs..].as_ptr(),
                        rs,
                        bs.as_ptr(),
                        beta,
                        dst,
                        rs_c,
                        cs_c,
                    )
                },
                // SAFETY: the slivers hold kb*mr and kb*nr values; the caller passes a tile
                // that lies inside C (or the scratch tile) and belongs to this work item.
                _ => unsafe {
                    (kern.ukr)(kb, alpha, asl.as_ptr(), bs.as_ptr(), beta, dst, rs_c, cs_c)
                },
            };
            if rows == mr && cols == nr {
                // SAFETY: the full tile at (i, j) lies inside C and belongs to this work item.
                run(beta, unsafe { c.at(i, j) }, c.rs, c.cs);
            } else if short_rows_512(kern, rows, cols, kb, alpha, asl, bs, beta, c, i, j) {
                // The valid rows of a 12×32 tile straight into C (edge512.rs).
            } else {
                // Edge tile: compute the padded tile into scratch, then merge the valid part.
                let mut tile = [T::ZERO; MAX_TILE];
                run(T::ZERO, tile.as_mut_ptr(), nr, 1);
                for r in 0..rows {
                    for q in 0..cols {
                        // SAFETY: (i + r, j + q) lies inside C and belongs to this work item.
                        let cij = unsafe { &mut *c.at(i + r, j + q) };
                        let v = tile[r * nr + q];
                        *cij = if beta == T::ZERO { v } else { v + beta * *cij };
                    }
                }
            }
        }
    }
}

/// The short-row AVX-512 kernels (`edge512.rs`) on a tile of `rows` < 12 full-width rows of
/// the f32 12×32 kernel, row-major C; false (nothing done) where they do not apply.
#[allow(clippy::too_many_arguments)]
#[inline]
fn short_rows_512<T: Float>(
    kern: &Kernel<T>,
    rows: usize,
    cols: usize,
    kb: usize,
    alpha: T,
    asl: &[T],
    bs: &[T],
    beta: T,
    c: CPtr<T>,
    i: usize,
    j: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if kern.isa == crate::isa::Isa::Avx512
        && crate::isa::Isa::Avx512.is_supported()
        && (kern.mr, kern.nr) == (12, 32)
        && rows < 12
        && cols == 32
        && c.cs == 1
        && let (Some(af), Some(bf)) = (T::as_f32_slice(asl), T::as_f32_slice(bs))
        && af.len() >= kb * 12
        && bf.len() >= kb * 32
    {
        // SAFETY: AVX-512F is present (checked); the slivers hold kb·12 and kb·32 floats
        // (checked); T is f32 (the slices converted), and rows i..i+rows × columns j..j+32
        // lie inside C, row-major, and belong to this work item (the caller's tile).
        return unsafe {
            super::edge512::short_rows(
                rows,
                kb,
                alpha.to_f64() as f32,
                af.as_ptr(),
                bf.as_ptr(),
                beta.to_f64() as f32,
                c.at(i, j) as *mut f32,
                c.rs,
            )
        };
    }
    let _ = (kern, rows, cols, kb, alpha, asl, bs, beta, c, i, j);
    false
}

/// A packing buffer whose usable part starts on a 64-byte boundary, so every 16-float step of
/// a packed B sliver is exactly one cache line (unaligned, half the loads would split two
/// lines). Buffers are recycled through a small per-thread pool: a fresh multi-megabyte
/// allocation per call costs page faults comparable to a mid-sized product. Packing writes every
/// element it later reads, so stale contents of a recycled buffer are never seen.
pub(super) struct AlignedBuf<T: Float> {
    buf: Vec<T>,
    start: usize,
    len: usize,
}

thread_local! {
    /// Spare packing buffers of this thread, any element type (at most `POOL_MAX`).
    static POOL: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}
const POOL_MAX: usize = 4;

impl<T: Float> AlignedBuf<T> {
    pub(super) fn new(len: usize) -> Self {
        let pad = 64 / std::mem::size_of::<T>();
        let need = len + pad;
        let recycled = POOL.with(|p| {
            let mut p = p.try_borrow_mut().ok()?;
            let i = p
                .iter()
                .position(|b| b.downcast_ref::<Vec<T>>().is_some_and(|v| v.len() >= need))?;
            p.swap_remove(i).downcast::<Vec<T>>().ok().map(|b| *b)
        });
        let buf = recycled.unwrap_or_else(|| vec![T::ZERO; need]);
        let start = buf.as_ptr().align_offset(64).min(pad);
        AlignedBuf { buf, start, len }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl<T: Float> Drop for AlignedBuf<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        POOL.with(|p| {
            // A full pool (or a busy one) just lets this buffer be freed.
            if let Ok(mut p) = p.try_borrow_mut()
                && p.len() < POOL_MAX
            {
                p.push(Box::new(buf));
            }
        });
    }
}
