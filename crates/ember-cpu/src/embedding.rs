//! The backward of an embedding lookup: the rows of the output gradient summed into the rows of
//! the table they were read from, deterministically.
//!
//! The forward (`out[p] = table[ids[p]]`) is a plain row copy ([`crate::index::index_select`]
//! along axis 0). Its adjoint adds `grad[p]` into `dtable[ids[p]]`; when an id repeats, several
//! positions add into one row, and a parallel scatter would race or, with atomics, sum in an
//! order that depends on scheduling. Here the `(id, position)` pairs are sorted once, so every
//! table row's contributions form one run, summed by one task in position order: the result is
//! bit-identical for any thread count. Only the rows that occur are touched: the work is
//! O(n·log n) for the sort plus O(n·D) for the sums, independent of the vocabulary; what
//! remains proportional to the table is the caller's zero fill of the dense `[V, D]` gradient.
//!
//! Runs are summed into a compact `[distinct ids, D]` buffer (split across rayon tasks by run,
//! so tasks own disjoint slices), then copied into their table rows.

use rayon::prelude::*;

use crate::element::Float;
use crate::error::{OperandError, check_indices, check_len, checked_len3};

/// Row-sums below this many gradient values run on the calling thread: at a few nanoseconds
/// per add, smaller jobs finish before rayon could hand them out.
const PAR_MIN: usize = 1 << 15;

/// `dst[ids[p], :] += grad[p, :]` for every position `p` whose id is not `padding` (that row
/// gets no gradient, PyTorch's `padding_idx`). `grad` is `[ids.len(), dim]`, `dst` is
/// `[vocab, dim]`, both contiguous; `dst` is normally zeros. Each row's contributions are
/// added in increasing position order, whatever the thread count.
pub fn embedding_backward<T: Float>(
    grad: &[T],
    ids: &[usize],
    vocab: usize,
    dim: usize,
    padding: Option<usize>,
    dst: &mut [T],
) -> Result<(), OperandError> {
    const OP: &str = "embedding_backward";
    let n = ids.len();
    check_len(
        OP,
        "gradient",
        checked_len3(OP, "gradient", 1, n, dim)?,
        grad.len(),
    )?;
    check_len(
        OP,
        "table gradient",
        checked_len3(OP, "table gradient", 1, vocab, dim)?,
        dst.len(),
    )?;
    check_indices(OP, ids, vocab)?;
    if n == 0 || dim == 0 {
        return Ok(());
    }
    // (id, position) pairs are distinct, so an unstable sort gives one fixed order.
    let mut order: Vec<(usize, usize)> = ids
        .iter()
        .enumerate()
        .filter(|&(_, &id)| Some(id) != padding)
        .map(|(p, &id)| (id, p))
        .collect();
    order.sort_unstable();
    // Runs of one id: runs[r]..runs[r + 1] index `order`.
    let mut runs = Vec::new();
    for (k, pair) in order.iter().enumerate() {
        if k == 0 || order[k - 1].0 != pair.0 {
            runs.push(k);
        }
    }
    runs.push(order.len());
    let distinct = runs.len() - 1;
    let mut sums = vec![T::default(); distinct * dim];
    let sum_run = |r: usize, row: &mut [T]| {
        for &(_, p) in &order[runs[r]..runs[r + 1]] {
            let g = &grad[p * dim..(p + 1) * dim];
            for (s, &v) in row.iter_mut().zip(g) {
                *s += v;
            }
        }
    };
    if order.len() * dim >= PAR_MIN && rayon::current_num_threads() > 1 {
        sums.par_chunks_mut(dim)
            .enumerate()
            .for_each(|(r, row)| sum_run(r, row));
    } else {
        for (r, row) in sums.chunks_mut(dim).enumerate() {
            sum_run(r, row);
        }
    }
    for (r, row) in sums.chunks(dim).enumerate() {
        let id = order[runs[r]].0;
        let out = &mut dst[id * dim..(id + 1) * dim];
        for (o, &s) in out.iter_mut().zip(row) {
            *o += s;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_ids_sum_and_padding_is_skipped() {
        // 4 positions of dim 2 into a vocabulary of 3; id 1 twice, id 0 is padding.
        let grad = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let ids = [1, 0, 1, 2];
        let mut dst = [0.0; 6];
        embedding_backward(&grad, &ids, 3, 2, Some(0), &mut dst).unwrap();
        assert_eq!(dst, [0.0, 0.0, 6.0, 8.0, 7.0, 8.0]);
        let mut dst = [0.0; 6];
        embedding_backward(&grad, &ids, 3, 2, None, &mut dst).unwrap();
        assert_eq!(dst, [3.0, 4.0, 6.0, 8.0, 7.0, 8.0]);
    }

    #[test]
    fn bad_operands_are_reported() {
        let mut dst = [0.0f32; 4];
        assert!(embedding_backward(&[1.0; 4], &[0, 2], 2, 2, None, &mut dst).is_err());
        assert!(embedding_backward(&[1.0; 3], &[0, 1], 2, 2, None, &mut dst).is_err());
        assert!(embedding_backward(&[1.0; 4], &[0, 1], 3, 2, None, &mut dst).is_err());
        assert_eq!(dst, [0.0; 4]);
    }
}
