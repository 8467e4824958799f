//! Layouts: how a tensor's logical elements map onto its storage.
//!
//! A [`Layout`] is a shape, one stride per dimension (in elements) and a start offset. Every view
//! op is a pure function from one layout to another and never touches data: transpose swaps two
//! strides, narrow moves the offset, broadcast sets strides to 0, reshape of row-major data
//! recomputes strides. Only when a layout cannot express the result (reshaping a transposed
//! tensor, say) does the tensor layer copy.

use crate::error::{Error, Result};
use ember_ops::Strided;

/// Up to this many dimensions are stored inline; more spill to the heap.
const INLINE_DIMS: usize = 6;

/// A short list of extents or strides, kept inline for tensors of rank ≤ 6 so that creating a
/// tensor (which happens dozens of times per training step) allocates nothing for its layout.
#[derive(Clone)]
enum Dims {
    Inline { len: u8, v: [usize; INLINE_DIMS] },
    Heap(Vec<usize>),
}

impl Dims {
    fn from_slice(s: &[usize]) -> Self {
        if s.len() <= INLINE_DIMS {
            let mut v = [0; INLINE_DIMS];
            v[..s.len()].copy_from_slice(s);
            Dims::Inline {
                len: s.len() as u8,
                v,
            }
        } else {
            Dims::Heap(s.to_vec())
        }
    }

    fn as_slice(&self) -> &[usize] {
        match self {
            Dims::Inline { len, v } => &v[..*len as usize],
            Dims::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [usize] {
        match self {
            Dims::Inline { len, v } => &mut v[..*len as usize],
            Dims::Heap(v) => v,
        }
    }

    /// Row-major strides of a dense tensor of `shape`.
    fn contiguous_strides(shape: &[usize]) -> Self {
        let mut d = Dims::from_slice(shape);
        let mut acc = 1;
        for (s, &e) in d.as_mut_slice().iter_mut().zip(shape).rev() {
            *s = acc;
            acc *= e;
        }
        d
    }
}

impl std::ops::Deref for Dims {
    type Target = [usize];
    fn deref(&self) -> &[usize] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for Dims {
    fn deref_mut(&mut self) -> &mut [usize] {
        self.as_mut_slice()
    }
}

impl FromIterator<usize> for Dims {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        let mut v = [0; INLINE_DIMS];
        let mut len = 0;
        let mut iter = iter.into_iter();
        for x in iter.by_ref() {
            if len == INLINE_DIMS {
                // Longer than the inline capacity: spill everything to the heap.
                let mut heap = v.to_vec();
                heap.push(x);
                heap.extend(iter);
                return Dims::Heap(heap);
            }
            v[len] = x;
            len += 1;
        }
        Dims::Inline { len: len as u8, v }
    }
}

impl Dims {
    fn insert(&mut self, at: usize, value: usize) {
        let mut v = self.to_vec();
        v.insert(at, value);
        *self = Dims::from_slice(&v);
    }

    fn remove(&mut self, at: usize) {
        let mut v = self.to_vec();
        v.remove(at);
        *self = Dims::from_slice(&v);
    }
}

impl PartialEq for Dims {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for Dims {}

impl std::fmt::Debug for Dims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// Shape, element strides and offset of a tensor view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    shape: Dims,
    strides: Dims,
    offset: usize,
}

impl Layout {
    /// The row-major layout of a fresh tensor of `shape`.
    pub fn contiguous(shape: &[usize]) -> Self {
        // Every fresh tensor comes through here: fill both inline arrays in one pass.
        if shape.len() <= INLINE_DIMS {
            let (mut sv, mut st) = ([0; INLINE_DIMS], [0; INLINE_DIMS]);
            let mut acc = 1usize;
            for i in (0..shape.len()).rev() {
                sv[i] = shape[i];
                st[i] = acc;
                acc = acc.wrapping_mul(shape[i]);
            }
            let len = shape.len() as u8;
            return Layout {
                shape: Dims::Inline { len, v: sv },
                strides: Dims::Inline { len, v: st },
                offset: 0,
            };
        }
        Layout {
            shape: Dims::from_slice(shape),
            strides: Dims::contiguous_strides(shape),
            offset: 0,
        }
    }

    /// The extents.
    pub fn shape(&self) -> &[usize] {
        self.shape.as_slice()
    }

    /// The element strides.
    pub fn strides(&self) -> &[usize] {
        self.strides.as_slice()
    }

    /// Storage index of the first element.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape().iter().product()
    }

    /// True when elements are dense and row-major from `offset`.
    pub fn is_contiguous(&self) -> bool {
        self.strided().is_contiguous()
    }

    /// The kernel-side view of this layout.
    pub fn strided(&self) -> Strided<'_> {
        Strided::new(self.shape(), self.strides(), self.offset)
    }

    fn check_axis(&self, op: &'static str, axis: usize) -> Result<()> {
        if axis >= self.shape.len() {
            return Err(Error::Axis {
                op,
                axis,
                shape: self.shape.to_vec(),
            });
        }
        Ok(())
    }

    /// Reorders dimensions: result dimension i is input dimension `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Layout> {
        let rank = self.shape.len();
        let mut seen = Dims::from_slice(&vec![0; rank.min(INLINE_DIMS)]);
        if rank > INLINE_DIMS {
            seen = Dims::Heap(vec![0; rank]);
        }
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], 1) == 1)
        {
            return Err(Error::shape(
                "permute",
                format!(
                    "{perm:?} is not a permutation of the {rank} axes of shape {:?}",
                    self.shape
                ),
            ));
        }
        Ok(Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }

    /// Swaps dimensions `a` and `b`.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Layout> {
        self.check_axis("transpose", a)?;
        self.check_axis("transpose", b)?;
        // Inline dims (every rank ≤ 6) are swapped in place of a copy; this runs for every
        // Dense layer's forward (w is read as wᵀ).
        if let (Dims::Inline { len, v: sv }, Dims::Inline { v: st, .. }) =
            (&self.shape, &self.strides)
        {
            let (mut sv, mut st) = (*sv, *st);
            sv.swap(a, b);
            st.swap(a, b);
            return Ok(Layout {
                shape: Dims::Inline { len: *len, v: sv },
                strides: Dims::Inline { len: *len, v: st },
                offset: self.offset,
            });
        }
        let mut l = self.clone();
        l.shape.swap(a, b);
        l.strides.swap(a, b);
        Ok(l)
    }

    /// Keeps elements `start..start+len` of dimension `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Layout> {
        self.check_axis("narrow", dim)?;
        if start
            .checked_add(len)
            .is_none_or(|end| end > self.shape[dim])
        {
            return Err(Error::shape(
                "narrow",
                format!(
                    "range {start}..{} is outside dimension {dim} of extent {} (shape {:?})",
                    start.saturating_add(len),
                    self.shape[dim],
                    self.shape
                ),
            ));
        }
        let mut l = self.clone();
        if len > 0 {
            l.offset += start * self.strides[dim];
        }
        l.shape[dim] = len;
        Ok(l)
    }

    /// Views the tensor with `shape`, repeating along new leading dimensions and along
    /// dimensions of extent 1 (stride 0).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Layout> {
        let err = || {
            Error::shape(
                "broadcast_to",
                format!("cannot broadcast shape {:?} to {shape:?}", self.shape),
            )
        };
        if shape.len() < self.shape.len() {
            return Err(err());
        }
        let lead = shape.len() - self.shape.len();
        let mut strides = vec![0; shape.len()];
        for i in 0..self.shape.len() {
            let (have, want) = (self.shape[i], shape[lead + i]);
            strides[lead + i] = if have == want {
                self.strides[i]
            } else if have == 1 {
                0
            } else {
                return Err(err());
            };
        }
        Ok(Layout {
            shape: Dims::from_slice(shape),
            strides: Dims::from_slice(&strides),
            offset: self.offset,
        })
    }

    /// The layout of the same elements with a new shape, if it can be expressed without a copy
    /// (always for contiguous data). `None` means the caller must copy first.
    pub fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        if self.is_contiguous() {
            return Some(Layout {
                shape: Dims::from_slice(shape),
                strides: Dims::contiguous_strides(shape),
                offset: self.offset,
            });
        }
        None
    }

    /// Storage offset of matrix number `index` (row-major over the leading `batch` dimensions)
    /// of a batched layout whose first `batch.len()` dimensions are those batch dimensions.
    /// Batch extents beyond the layout's rank are ignored, and a batch with an extent of 0 holds
    /// no matrix: the layout's own offset is returned (never a division by zero).
    pub fn batch_offset(&self, batch: &[usize], index: usize) -> usize {
        let mut rem = index;
        let mut off = self.offset;
        let dims = batch.len().min(self.strides().len());
        if batch[..dims].contains(&0) {
            return off;
        }
        for d in (0..dims).rev() {
            off += (rem % batch[d]) * self.strides()[d];
            rem /= batch[d];
        }
        off
    }

    /// Inserts a dimension of extent 1 before `dim` (`dim == rank` appends).
    pub fn unsqueeze(&self, dim: usize) -> Result<Layout> {
        if dim > self.shape.len() {
            return Err(Error::Axis {
                op: "unsqueeze",
                axis: dim,
                shape: self.shape.to_vec(),
            });
        }
        let mut l = self.clone();
        let stride = if dim < self.shape.len() {
            self.strides[dim] * self.shape[dim]
        } else {
            1
        };
        l.shape.insert(dim, 1);
        l.strides.insert(dim, stride);
        Ok(l)
    }

    /// Removes dimension `dim`, which must have extent 1.
    pub fn squeeze(&self, dim: usize) -> Result<Layout> {
        self.check_axis("squeeze", dim)?;
        if self.shape[dim] != 1 {
            return Err(Error::shape(
                "squeeze",
                format!(
                    "dimension {dim} of shape {:?} has extent {}, not 1",
                    self.shape, self.shape[dim]
                ),
            ));
        }
        let mut l = self.clone();
        l.shape.remove(dim);
        l.strides.remove(dim);
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_metadata() {
        let l = Layout::contiguous(&[2, 3, 4]);
        let t = l.transpose(0, 2).unwrap();
        assert_eq!(t.shape(), &[4, 3, 2]);
        assert_eq!(t.strides(), &[1, 4, 12]);
        let n = l.narrow(1, 1, 2).unwrap();
        assert_eq!(n.offset(), 4);
        assert!(!n.is_contiguous());
        let b = Layout::contiguous(&[3, 1])
            .broadcast_to(&[2, 3, 4])
            .unwrap();
        assert_eq!(b.strides(), &[0, 1, 0]);
        assert!(l.narrow(1, 2, 2).is_err());
        assert!(t.reshape(&[24]).is_none());
    }
}
