//! One packed copy of A for a whole product, shared by its threads and its column panels.
//!
//! In the split over columns (see `driver.rs`) every thread walks all of M, so without this
//! each thread packs every block of A for itself: at 512³ on 2 threads that was ≈ 5 % of a
//! thread's time, and the two threads' packing reads competed for the same memory. Likewise
//! a product wider than one NC panel packed A again for every panel.
//!
//! Here A is packed once, block by block, into a buffer laid out as loop 3 reads it: K slice
//! `pc` occupies `m_pad·kb` values from offset `pc·m_pad`, and its block starting at row `ic`
//! the `mb_pad·kb` values from `pc·m_pad + ic·kb` (`m_pad`, `mb_pad` rounded up to MR).
//! Each block has a state, `EMPTY → BUSY → READY`:
//! - a thread that finds a block `READY` uses it as it is;
//! - one that finds it `EMPTY` claims it (compare-and-swap to `BUSY`), packs it, and
//!   publishes it (`READY`, with release ordering so its writes are seen with it);
//! - one that finds it `BUSY` (another thread is packing it at this moment) packs a private
//!   copy instead. **No thread ever waits for another**, so this cannot deadlock in rayon's
//!   work-stealing pool, which does not promise that the threads of one region run at once.
//!
//! The threads start their walk over M's blocks at evenly spaced blocks and wrap around
//! (`first_block`), so at the start each claims a different part of A and later finds the rest
//! ready. Which thread packs a block never changes its values, so results stay bit-identical.
//! The cost is memory: a buffer the size of A (as the kernel's element type), recycled through
//! the packing-buffer pool; above [`SHARED_A_MAX`] elements each thread packs privately as before.

use super::driver::AlignedBuf;
use crate::element::Float;
use std::sync::atomic::{AtomicU8, Ordering};

/// The largest packed A (in elements: 128 MiB of f32) shared this way.
pub(super) const SHARED_A_MAX: usize = 1 << 25;

const EMPTY: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;

/// All of A, packed block by block on first use (see the module comment).
pub(super) struct SharedA<T: Float> {
    /// Owns the storage that `base` points into.
    _buf: AlignedBuf<T>,
    base: *mut T,
    /// One state per (K slice, M block), slice-major.
    state: Vec<AtomicU8>,
    m_pad: usize,
    mc: usize,
    kc: usize,
    mr: usize,
    m_blocks: usize,
}

// SAFETY: the buffer behind `base` is only written by the one thread that won a block's
// EMPTY → BUSY exchange, and only read after its READY was observed with acquire ordering;
// distinct blocks are disjoint ranges of the buffer.
unsafe impl<T: Float> Sync for SharedA<T> {}
// SAFETY: as above; the buffer is owned by `_buf` and moves with it.
unsafe impl<T: Float> Send for SharedA<T> {}

impl<T: Float> SharedA<T> {
    /// A store for an m×k product with loop 3 blocks of `mc` rows, K slices `kc` deep (the
    /// driver's equal slice depth) and `mr`-row slivers; `None` when A is larger than
    /// [`SHARED_A_MAX`] elements.
    pub(super) fn new(m: usize, k: usize, mc: usize, kc: usize, mr: usize) -> Option<Self> {
        let m_pad = m.next_multiple_of(mr);
        let len = m_pad.checked_mul(k).filter(|&l| l <= SHARED_A_MAX)?;
        let mut buf = AlignedBuf::new(len);
        let base = buf.as_mut_slice().as_mut_ptr();
        let m_blocks = m.div_ceil(mc);
        let slices = k.div_ceil(kc);
        let state = (0..m_blocks * slices)
            .map(|_| AtomicU8::new(EMPTY))
            .collect();
        Some(SharedA {
            _buf: buf,
            base,
            state,
            m_pad,
            mc,
            kc,
            mr,
            m_blocks,
        })
    }

    /// How many loop 3 blocks M has.
    pub(super) fn m_blocks(&self) -> usize {
        self.m_blocks
    }

    /// The packed block of rows `ic..ic+mb` in the K slice starting at `pc` (`kb` deep):
    /// ready-made, or packed now by `pack` when no thread has claimed it yet. `None` while
    /// another thread is packing it: the caller then packs a private copy.
    pub(super) fn block(
        &self,
        ic: usize,
        mb: usize,
        pc: usize,
        kb: usize,
        pack: impl FnOnce(&mut [T]),
    ) -> Option<&[T]> {
        debug_assert!(ic.is_multiple_of(self.mc) && pc.is_multiple_of(self.kc));
        let state = &self.state[(pc / self.kc) * self.m_blocks + ic / self.mc];
        let offset = pc * self.m_pad + ic * kb;
        let len = mb.div_ceil(self.mr) * self.mr * kb;
        debug_assert!(offset + len <= self.m_pad * (pc + kb));
        if state.load(Ordering::Acquire) != READY {
            if state
                .compare_exchange(EMPTY, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                // BUSY: another thread is packing it now (READY cannot come back to EMPTY,
                // so a failed exchange that reads READY is handled by the check below).
                if state.load(Ordering::Acquire) != READY {
                    return None;
                }
            } else {
                // SAFETY: this thread won the block's only EMPTY → BUSY exchange, so no other
                // thread reads or writes these `len` values (inside the buffer, asserted
                // above) until READY is published.
                pack(unsafe { std::slice::from_raw_parts_mut(self.base.add(offset), len) });
                state.store(READY, Ordering::Release);
            }
        }
        // SAFETY: READY was observed with acquire ordering (or set by this thread): the
        // block is fully written and is never written again.
        Some(unsafe { std::slice::from_raw_parts(self.base.add(offset), len) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_packed_once_and_busy_blocks_are_left_to_their_packer() {
        // 20 rows in blocks of 12 (slivers of 6), K = 10 in slices of 4, 4, 2.
        let store = SharedA::<f32>::new(20, 10, 12, 4, 6).expect("small enough");
        assert_eq!(store.m_blocks(), 2);
        let mut packs = 0;
        // First use packs; while it packs, the same block is BUSY and a nested request gets
        // None (this thread would then pack privately), never a wait.
        let first = store.block(12, 8, 4, 4, |dst| {
            packs += 1;
            assert_eq!(
                dst.len(),
                12 * 4,
                "8 rows padded to two slivers of 6, 4 deep"
            );
            assert!(store.block(12, 8, 4, 4, |_| unreachable!()).is_none());
            // Another block is independent: it can be claimed and packed meanwhile.
            assert!(store.block(0, 12, 4, 4, |d| d.fill(7.0)).is_some());
            dst.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
        });
        assert_eq!(first.map(|b| b[5]), Some(5.0));
        // Later uses see the published values and do not pack again.
        let again = store.block(12, 8, 4, 4, |_| packs += 100).expect("ready");
        assert_eq!(again[47], 47.0);
        assert_eq!(
            store.block(0, 12, 4, 4, |_| unreachable!()).unwrap()[0],
            7.0
        );
        assert_eq!(packs, 1);
        // The last, shallower slice sits after the two full ones.
        let last = store.block(12, 8, 8, 2, |d| d.fill(1.0)).expect("claimed");
        assert_eq!(last.len(), 12 * 2);
    }

    #[test]
    fn too_large_an_a_is_not_shared() {
        assert!(SharedA::<f32>::new(1 << 13, 1 << 13, 144, 384, 6).is_none());
        assert!(SharedA::<f32>::new(usize::MAX / 2, 3, 144, 384, 6).is_none());
    }
}
