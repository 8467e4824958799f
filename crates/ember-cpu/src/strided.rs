//! Strided views over flat buffers.
//!
//! A tensor's elements live in a flat buffer; a [`Strided`] says how to find element
//! `(i0, i1, ..)`: at `offset + i0*strides[0] + i1*strides[1] + ..`. Transposes, slices and
//! broadcasts (stride 0) are all expressed this way, so kernels accept them without copies.
//! [`for_each_offset`] walks a view in row-major order, the order of a contiguous result.

pub use ember_ops::Strided;

/// Calls `f(i, off)` for every element of the view in row-major order, where `i` counts elements
/// from 0 and `off` is the element's buffer offset.
///
/// The innermost dimension is a tight loop; the outer dimensions advance an index counter, so
/// the cost per element is one add in the common case.
#[inline]
pub fn for_each_offset(view: Strided<'_>, mut f: impl FnMut(usize, usize)) {
    let n = view.elem_count();
    if n == 0 {
        return;
    }
    let rank = view.shape.len();
    if rank == 0 {
        f(0, view.offset);
        return;
    }
    let inner = view.shape[rank - 1];
    let inner_stride = view.strides[rank - 1];
    let mut idx = vec![0usize; rank];
    let mut base = view.offset;
    let mut i = 0;
    loop {
        let mut off = base;
        for _ in 0..inner {
            f(i, off);
            i += 1;
            off += inner_stride;
        }
        // Advance the outer dimensions like an odometer.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            base += view.strides[d];
            if idx[d] < view.shape[d] {
                break;
            }
            base -= view.strides[d] * view.shape[d];
            idx[d] = 0;
        }
    }
}

/// Row-major (C-order) strides of a dense tensor of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d;
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_a_transpose_in_row_major_order() {
        // 2x3 buffer viewed as its 3x2 transpose.
        let shape = [3, 2];
        let strides = [1, 3];
        let mut seen = vec![];
        for_each_offset(Strided::new(&shape, &strides, 0), |_, off| seen.push(off));
        assert_eq!(seen, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn empty_and_scalar_views() {
        let mut count = 0;
        for_each_offset(Strided::new(&[0, 4], &[4, 1], 0), |_, _| count += 1);
        assert_eq!(count, 0);
        for_each_offset(Strided::new(&[], &[], 7), |i, off| {
            assert_eq!((i, off), (0, 7));
            count += 1
        });
        assert_eq!(count, 1);
    }

    #[test]
    fn contiguity() {
        assert!(Strided::new(&[2, 3], &[3, 1], 0).is_contiguous());
        assert!(!Strided::new(&[2, 3], &[1, 2], 0).is_contiguous());
        assert!(Strided::new(&[1, 3], &[99, 1], 5).is_contiguous());
        assert!(!Strided::new(&[2, 3], &[0, 1], 0).is_contiguous());
    }
}
