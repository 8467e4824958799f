//! Packing: copying a block of A or B into the sliver layout the microkernel streams.
//!
//! Packing is where strides disappear: a transposed or sliced operand is read once here with
//! whatever strides it has, and the microkernel then only ever sees unit-stride, zero-padded
//! slivers. That is why the caller never has to make an operand contiguous. The two common
//! layouts (the packed dimension contiguous in memory) take a slice-copy fast path.

use super::MatRef;
use crate::element::Float;

/// Packs rows `i0..i0+mb` × columns `p0..p0+kb` of A into MR-row slivers.
///
/// Sliver s occupies `dst[s*kb*mr ..][.. kb*mr]`; within it, step p holds the `mr` values
/// `A[i0 + s*mr + r, p0 + p]` for r in 0..mr, zero where the row is past `mb`.
pub(crate) fn pack_a<T: Float>(
    a: &MatRef<'_, T>,
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
            for (p, step) in sliver.chunks_exact_mut(mr).enumerate() {
                let start = r0 + (p0 + p) * a.cs;
                step[..rows].copy_from_slice(&a.data[start..start + rows]);
                step[rows..].fill(T::ZERO);
            }
        } else {
            // Row-major or general strides: walk each row along k and scatter into the steps.
            if rows < mr {
                sliver.fill(T::ZERO);
            }
            for r in 0..rows {
                let row = (r0 + r) * a.rs + p0 * a.cs;
                if a.cs == 1 {
                    for (p, &v) in a.data[row..row + kb].iter().enumerate() {
                        sliver[p * mr + r] = v;
                    }
                } else {
                    for p in 0..kb {
                        sliver[p * mr + r] = a.data[row + p * a.cs];
                    }
                }
            }
        }
    }
}

/// Packs rows `p0..p0+kb` × columns `j0..j0+nb` of B into NR-column slivers.
///
/// Sliver s occupies `dst[s*kb*nr ..][.. kb*nr]`; within it, step p holds the `nr` values
/// `B[p0 + p, j0 + s*nr + c]`, zero where the column is past `nb`.
pub(crate) fn pack_b_sliver<T: Float>(
    b: &MatRef<'_, T>,
    p0: usize,
    kb: usize,
    c0: usize,
    cols: usize,
    nr: usize,
    sliver: &mut [T],
) {
    if b.cs == 1 {
        // Row-major B: each step is a contiguous run of the row.
        for (p, step) in sliver.chunks_exact_mut(nr).enumerate() {
            let start = (p0 + p) * b.rs + c0;
            step[..cols].copy_from_slice(&b.data[start..start + cols]);
            step[cols..].fill(T::ZERO);
        }
    } else {
        // Column-major (a transposed weight, say) or general: walk each column down k.
        if cols < nr {
            sliver.fill(T::ZERO);
        }
        for c in 0..cols {
            let col = (c0 + c) * b.cs + p0 * b.rs;
            if b.rs == 1 {
                for (p, &v) in b.data[col..col + kb].iter().enumerate() {
                    sliver[p * nr + c] = v;
                }
            } else {
                for p in 0..kb {
                    sliver[p * nr + c] = b.data[col + p * b.rs];
                }
            }
        }
    }
}
