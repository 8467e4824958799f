//! A global count of the bytes held by live tensor storages.
//!
//! Training must keep memory flat: each step's graph is dropped once `backward` has used it.
//! Tests check that by reading [`live_bytes`] before and after thousands of steps.

use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Bytes currently held by all live storages in this process.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

pub(crate) fn add(n: usize) {
    LIVE.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn sub(n: usize) {
    LIVE.fetch_sub(n, Ordering::Relaxed);
}
