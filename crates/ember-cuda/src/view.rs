//! Strided views over device buffers, and their checked conversion to kernel parameters.
//!
//! [`Strided`] is the same description ember-cpu uses (shape, element strides, offset), so
//! ember-core converts one `Layout` for either backend. Before a launch the host checks that
//! every element the view addresses lies inside the buffer (the kernels do not bounds-check
//! strided reads) and packs the view into [`DevView`], a fixed-size `#[repr(C)]` struct that
//! the kernels receive by value as `View` (kernels/common.cuh).

use cudarc::driver::DeviceRepr;

use crate::error::{CudaError, invalid};

/// Most dimensions a strided operand may have on the device.
pub const MAX_RANK: usize = 8;

pub use ember_ops::Strided;

/// Row-major strides of a dense tensor of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d;
    }
    strides
}

/// The kernel-side form of a strided view (`struct View` in kernels/common.cuh).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct DevView {
    rank: i32,
    pad: i32,
    offset: i64,
    shape: [i64; MAX_RANK],
    strides: [i64; MAX_RANK],
}

// SAFETY: DevView is a plain #[repr(C)] struct of integers laid out exactly like `struct View`
// (int, int, long long, long long[8], long long[8]); the kernel receives it by value.
unsafe impl DeviceRepr for DevView {}

impl DevView {
    /// Packs `v` after checking it against a buffer of `buf_len` elements: ranks agree, rank is at
    /// most [`MAX_RANK`], and the largest addressed offset is inside the buffer.
    pub fn checked(
        op: &'static str,
        what: &str,
        v: Strided<'_>,
        buf_len: usize,
    ) -> Result<Self, CudaError> {
        if v.shape.len() != v.strides.len() {
            return Err(invalid(
                op,
                format!(
                    "{what}: shape {:?} has rank {} but strides {:?} rank {}",
                    v.shape,
                    v.shape.len(),
                    v.strides,
                    v.strides.len()
                ),
            ));
        }
        if v.shape.len() > MAX_RANK {
            return Err(invalid(
                op,
                format!(
                    "{what}: rank {} exceeds the device limit {MAX_RANK}",
                    v.shape.len()
                ),
            ));
        }
        let n = v
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= i64::MAX as usize)
            .ok_or_else(|| invalid(op, format!("{what}: shape {:?} overflows", v.shape)))?;
        if n > 0 {
            let mut last = v.offset;
            for (&d, &s) in v.shape.iter().zip(v.strides) {
                last = (d - 1)
                    .checked_mul(s)
                    .and_then(|x| last.checked_add(x))
                    .ok_or_else(|| invalid(op, format!("{what}: offsets overflow")))?;
            }
            if last >= buf_len {
                return Err(invalid(
                    op,
                    format!(
                        "{what}: view shape {:?} strides {:?} offset {} reaches element {last} of a \
                         buffer of {buf_len}",
                        v.shape, v.strides, v.offset
                    ),
                ));
            }
        }
        let mut out = DevView {
            rank: v.shape.len() as i32,
            offset: v.offset as i64,
            ..Default::default()
        };
        for (d, (&e, &s)) in v.shape.iter().zip(v.strides).enumerate() {
            out.shape[d] = e as i64;
            out.strides[d] = s as i64;
        }
        Ok(out)
    }
}

impl DevView {
    /// Packs dimensions without checks; callers derive them from a view already checked.
    pub(crate) fn from_parts(dims: &[(usize, usize)], offset: usize) -> Self {
        let mut out = DevView {
            rank: dims.len() as i32,
            offset: offset as i64,
            ..Default::default()
        };
        for (d, &(e, s)) in dims.iter().enumerate().take(MAX_RANK) {
            out.shape[d] = e as i64;
            out.strides[d] = s as i64;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_views_that_leave_the_buffer() {
        let ok = DevView::checked("t", "x", Strided::new(&[2, 3], &[1, 2], 0), 6);
        assert!(ok.is_ok());
        let bad = DevView::checked("t", "x", Strided::new(&[2, 3], &[3, 1], 1), 6);
        assert!(matches!(bad, Err(CudaError::InvalidArgument { .. })));
        let bad_rank = DevView::checked("t", "x", Strided::new(&[2, 3], &[1], 0), 6);
        assert!(bad_rank.is_err());
        let deep = [1usize; 9];
        assert!(DevView::checked("t", "x", Strided::new(&deep, &deep, 0), 1).is_err());
        // Empty views address nothing and fit any buffer.
        assert!(DevView::checked("t", "x", Strided::new(&[0, 5], &[5, 1], 100), 0).is_ok());
    }

    #[test]
    fn contiguity() {
        assert!(Strided::new(&[2, 3], &[3, 1], 0).is_contiguous());
        assert!(!Strided::new(&[2, 3], &[1, 2], 0).is_contiguous());
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
