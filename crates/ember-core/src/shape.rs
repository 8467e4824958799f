//! Shapes and NumPy broadcasting.
//!
//! A [`Shape`] is the list of dimension extents. Constructors accept anything that converts into
//! one (`(2, 3)`, `[2, 3]`, `vec![2, 3]`, `&[2, 3][..]`, `()` for a scalar), which keeps call
//! sites short. [`broadcast_shapes`] implements NumPy's rule: align from the right; extents must
//! match or one of them must be 1.

use crate::error::{Error, Result};

/// The extents of a tensor's dimensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// The extents.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Product of the extents (1 for a scalar). Wraps when the product overflows `usize`: for
    /// caller-given shapes use [`Shape::checked_elem_count`].
    pub fn elem_count(&self) -> usize {
        self.0.iter().fold(1usize, |a, &d| a.wrapping_mul(d))
    }

    /// Product of the extents, or an error naming `op` and the shape when it does not fit in
    /// `usize` (no buffer could hold it).
    pub fn checked_elem_count(&self, op: &'static str) -> crate::Result<usize> {
        self.0
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                crate::Error::shape(
                    op,
                    format!("shape {:?} has more elements than usize can count", self.0),
                )
            })
    }

    /// Consumes the shape into its extents.
    pub fn into_dims(self) -> Vec<usize> {
        self.0
    }
}

impl From<Vec<usize>> for Shape {
    fn from(v: Vec<usize>) -> Self {
        Shape(v)
    }
}
impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Self {
        Shape(v.to_vec())
    }
}
impl From<&Vec<usize>> for Shape {
    fn from(v: &Vec<usize>) -> Self {
        Shape(v.clone())
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(v: [usize; N]) -> Self {
        Shape(v.to_vec())
    }
}
impl<const N: usize> From<&[usize; N]> for Shape {
    fn from(v: &[usize; N]) -> Self {
        Shape(v.to_vec())
    }
}
impl From<()> for Shape {
    fn from(_: ()) -> Self {
        Shape(vec![])
    }
}
impl From<usize> for Shape {
    fn from(v: usize) -> Self {
        Shape(vec![v])
    }
}
impl From<(usize,)> for Shape {
    fn from(v: (usize,)) -> Self {
        Shape(vec![v.0])
    }
}
impl From<(usize, usize)> for Shape {
    fn from(v: (usize, usize)) -> Self {
        Shape(vec![v.0, v.1])
    }
}
impl From<(usize, usize, usize)> for Shape {
    fn from(v: (usize, usize, usize)) -> Self {
        Shape(vec![v.0, v.1, v.2])
    }
}
impl From<(usize, usize, usize, usize)> for Shape {
    fn from(v: (usize, usize, usize, usize)) -> Self {
        Shape(vec![v.0, v.1, v.2, v.3])
    }
}

/// The shape two operands broadcast to, or an error naming both shapes.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return Err(Error::Broadcast {
                op,
                lhs: a.to_vec(),
                rhs: b.to_vec(),
            });
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_broadcasting() {
        assert_eq!(
            broadcast_shapes("t", &[2, 1, 3], &[4, 1]).unwrap(),
            vec![2, 4, 3]
        );
        assert_eq!(broadcast_shapes("t", &[], &[5]).unwrap(), vec![5]);
        assert_eq!(broadcast_shapes("t", &[0, 3], &[1, 3]).unwrap(), vec![0, 3]);
        let e = broadcast_shapes("add", &[2, 3], &[4, 3]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "add: shapes [2, 3] and [4, 3] cannot be broadcast together"
        );
    }
}
