//! Strided views over flat buffers: the one description both devices' kernels read.
//!
//! A tensor's elements live in a flat buffer; a [`Strided`] says how to find element
//! `(i0, i1, ..)`: at `offset + i0*strides[0] + i1*strides[1] + ..`. Transposes, slices and
//! broadcasts (stride 0) are all expressed this way, so kernels accept them without copies.

/// A read-only description of a strided view: shape, element strides and start offset.
#[derive(Debug, Clone, Copy)]
pub struct Strided<'a> {
    /// Extent of each dimension.
    pub shape: &'a [usize],
    /// Step in elements between neighbours along each dimension (0 for a broadcast dimension).
    pub strides: &'a [usize],
    /// Index of element `(0, 0, ..)` in the buffer.
    pub offset: usize,
}

impl<'a> Strided<'a> {
    /// A view of `shape` with the given strides and offset.
    pub fn new(shape: &'a [usize], strides: &'a [usize], offset: usize) -> Self {
        Strided {
            shape,
            strides,
            offset,
        }
    }

    /// Number of elements the view addresses.
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the view is a dense row-major block, so `buf[offset..offset+n]` is the data.
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&d, &s) in self.shape.iter().zip(self.strides).rev() {
            if d != 1 && s != expected {
                return false;
            }
            expected *= d;
        }
        true
    }

    /// The contiguous range of the buffer when [`Strided::is_contiguous`] holds.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        // One pass: the running product of extents is both the expected stride and, at the
        // end, the element count.
        let mut expected = 1;
        for (&d, &s) in self.shape.iter().zip(self.strides).rev() {
            if d != 1 && s != expected {
                return None;
            }
            expected *= d;
        }
        Some(self.offset..self.offset + expected)
    }
}
