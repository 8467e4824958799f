//! Fixed-size chunking for the elementwise, reduction and optimizer kernels.
//!
//! Large buffers are cut into chunks of [`CHUNK`] elements, a constant, and rayon runs the
//! chunks in parallel once a buffer reaches [`PAR_MIN`] elements. Because the chunk boundaries
//! never depend on the thread count, neither does any result: maps are independent per element
//! anyway, and reductions compute one partial per chunk and combine the partials in a fixed
//! order (see `reduce.rs`).

/// Elements per parallel task.
pub const CHUNK: usize = 1 << 15;

/// Buffers of at least this many elements are processed in parallel. Below two chunks there is
/// nothing to split. In the measurements of the development session (`ember bench elementwise
/// --sizes 8K,..,256K` at 1 and 2 threads with this threshold forced down to 4K, BENCHMARKS.md)
/// a second thread brought no measurable gain at any of these sizes because the machine's
/// other core was saturated by other work; 64K keeps each task at ≥ 30 µs of exp-class work,
/// several times rayon's fork-join cost, so the split cannot lose much where it does not help.
pub const PAR_MIN: usize = 1 << 16;

/// True when a buffer of `n` elements should be split across threads.
#[inline]
pub(crate) fn parallel(n: usize) -> bool {
    n >= PAR_MIN && rayon::current_num_threads() > 1
}
