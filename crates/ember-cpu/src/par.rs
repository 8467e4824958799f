//! Fixed-size chunking for the elementwise, reduction and optimizer kernels.
//!
//! Large buffers are cut into chunks of [`CHUNK`] elements, a constant, and rayon runs the
//! chunks in parallel once a buffer reaches [`PAR_MIN`] elements. Because the chunk boundaries
//! never depend on the thread count, neither does any result: maps are independent per element
//! anyway, and reductions compute one partial per chunk and combine the partials in a fixed
//! order (see `reduce.rs`).

/// Elements per parallel task.
pub const CHUNK: usize = 1 << 15;

/// Buffers of at least this many elements are processed in parallel: two chunks, each ≥ 30 µs
/// of exp-class work, several times rayon's fork-join cost, so a split cannot lose much.
pub const PAR_MIN: usize = 1 << 16;

/// True when a buffer of `n` elements should be split across threads.
#[inline]
pub(crate) fn parallel(n: usize) -> bool {
    n >= PAR_MIN && rayon::current_num_threads() > 1
}
