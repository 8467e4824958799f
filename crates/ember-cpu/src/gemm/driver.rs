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
//! Work items are (MC block of loop 3, group of NR slivers of loop 2). With several threads MC
//! is shrunk (to a multiple of MR) so the blocks divide evenly among them, and when M is too
//! short for that the slivers are split into groups as well. Neither changes any element's
//! summation order: that is fixed by KC and the microkernel alone.

use super::pack::{pack_a, pack_b_sliver};
use super::{CPtr, Epilogue, Kernel, MAX_TILE, MatRef, apply_epilogue};
use crate::element::Float;
use rayon::prelude::*;

/// C = alpha·A·B + beta·C (+ epilogue) through packing; `parallel` allows rayon.
#[allow(clippy::too_many_arguments)]
pub(super) fn packed<T: Float>(
    kern: &Kernel<T>,
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
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
    // Loop 3's block height: as configured, or smaller so the blocks share out evenly.
    let mut mc = kern.mc;
    if threads > 1 {
        let blocks = m.div_ceil(mc).div_ceil(threads) * threads;
        mc = m.div_ceil(blocks).next_multiple_of(mr).max(mr);
    }
    let m_blocks = m.div_ceil(mc);
    let kc_max = kern.kc.min(k);
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
        for pc in (0..k).step_by(kern.kc) {
            let kb = kern.kc.min(k - pc);
            let bp = &mut bpack[..slivers * kb * nr];
            let pack_one = |(s, sliver): (usize, &mut [T])| {
                let c0 = jc + s * nr;
                pack_b_sliver(b, pc, kb, c0, nr.min(jc + nb - c0), nr, sliver);
            };
            if threads > 1 {
                bp.par_chunks_mut(kb * nr).enumerate().for_each(pack_one);
            } else {
                bp.chunks_mut(kb * nr).enumerate().for_each(pack_one);
            }
            let bp = &*bp;
            // The first K slice applies the caller's beta; later ones accumulate onto C.
            let beta_k = if pc == 0 { beta } else { T::ONE };
            let last = pc + kb == k;
            let item = |apack: &mut AlignedBuf<T>, idx: usize| {
                let (blk, g) = (idx / groups, idx % groups);
                let (s0, s1) = (g * per_group, ((g + 1) * per_group).min(slivers));
                if s0 >= s1 {
                    return;
                }
                let ic = blk * mc;
                let mb = mc.min(m - ic);
                let ap = &mut apack.as_mut_slice()[..mb.div_ceil(mr) * mr * kb];
                pack_a(kern.isa, a, ic, mb, pc, kb, mr, ap);
                macro_kernel(kern, alpha, beta_k, ap, bp, kb, ic, mb, jc, nb, s0..s1, c);
                if last {
                    let cols = jc + s0 * nr..jc + (s1 * nr).min(nb);
                    apply_epilogue(kern.isa, c, ic..ic + mb, cols, epi);
                }
            };
            let items = m_blocks * groups;
            if threads > 1 {
                (0..items)
                    .into_par_iter()
                    .for_each_init(|| AlignedBuf::new(apack_len), item);
            } else {
                let mut apack = AlignedBuf::new(apack_len);
                for idx in 0..items {
                    item(&mut apack, idx);
                }
            }
        }
    }
}

/// Loops 2 and 1 over one packed block of A (rows `ic..ic+mb`) and slivers `sl` of the packed
/// B panel (whose first column is `jc`, `nb` columns wide).
#[allow(clippy::too_many_arguments)]
fn macro_kernel<T: Float>(
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
            if rows == mr && cols == nr {
                // SAFETY: the slivers hold kb*mr and kb*nr values; the full tile at (i, j) lies
                // inside C and belongs to this work item alone.
                unsafe {
                    (kern.ukr)(
                        kb,
                        alpha,
                        asl.as_ptr(),
                        bs.as_ptr(),
                        beta,
                        c.at(i, j),
                        c.rs,
                        c.cs,
                    )
                };
            } else {
                // Edge tile: compute the padded tile into scratch, then merge the valid part.
                let mut tile = [T::ZERO; MAX_TILE];
                // SAFETY: the scratch tile is MR×NR ≤ MAX_TILE values with row stride nr.
                unsafe {
                    (kern.ukr)(
                        kb,
                        alpha,
                        asl.as_ptr(),
                        bs.as_ptr(),
                        T::ZERO,
                        tile.as_mut_ptr(),
                        nr,
                        1,
                    )
                };
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

/// A packing buffer whose usable part starts on a 64-byte boundary, so every 16-float step of
/// a packed B sliver is exactly one cache line (unaligned, half the loads would split two
/// lines). Buffers are recycled through a small per-thread pool: a fresh multi-megabyte
/// allocation per call costs page faults comparable to a mid-sized product. Packing writes every
/// element it later reads, so stale contents of a recycled buffer are never seen.
struct AlignedBuf<T: Float> {
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
    fn new(len: usize) -> Self {
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

    fn as_mut_slice(&mut self) -> &mut [T] {
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
