//! Elementwise binary maps with broadcasting, and the three-way `where_cond` select.
//!
//! Broadcasting is resolved by the caller: both operand views already have the output's shape,
//! with stride 0 along broadcast dimensions. The kernel then only walks three views in lockstep.
//! Comparisons produce masks of 1.0 and 0.0 in the operands' type.

use crate::element::Float;
use crate::strided::{Strided, for_each_offset};

/// An elementwise function of two arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a * b
    Mul,
    /// a / b
    Div,
    /// a^b
    Pow,
    /// max(a, b), NaN if either is NaN
    Maximum,
    /// min(a, b), NaN if either is NaN
    Minimum,
    /// 1 where a == b
    Eq,
    /// 1 where a != b
    Ne,
    /// 1 where a < b
    Lt,
    /// 1 where a <= b
    Le,
    /// 1 where a > b
    Gt,
    /// 1 where a >= b
    Ge,
}

#[inline(always)]
fn mask<T: Float>(c: bool) -> T {
    if c { T::ONE } else { T::ZERO }
}

/// Applies `op` to one pair of values.
#[inline(always)]
pub fn apply<T: Float>(op: BinaryOp, a: T, b: T) -> T {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Maximum => {
            if a.is_nan() || b.is_nan() {
                a + b
            } else if a >= b {
                a
            } else {
                b
            }
        }
        BinaryOp::Minimum => {
            if a.is_nan() || b.is_nan() {
                a + b
            } else if a <= b {
                a
            } else {
                b
            }
        }
        BinaryOp::Eq => mask(a == b),
        BinaryOp::Ne => mask(a != b),
        BinaryOp::Lt => mask(a < b),
        BinaryOp::Le => mask(a <= b),
        BinaryOp::Gt => mask(a > b),
        BinaryOp::Ge => mask(a >= b),
    }
}

/// out[i] = op(a[i], b[i]) over views that already share the output's shape.
pub fn binary<T: Float>(
    op: BinaryOp,
    a: &[T],
    av: Strided<'_>,
    b: &[T],
    bv: Strided<'_>,
    out: &mut [T],
) {
    debug_assert_eq!(av.shape, bv.shape);
    debug_assert_eq!(out.len(), av.elem_count());
    if let (Some(ra), Some(rb)) = (av.contiguous_range(), bv.contiguous_range()) {
        for ((o, &x), &y) in out.iter_mut().zip(&a[ra]).zip(&b[rb]) {
            *o = apply(op, x, y);
        }
        return;
    }
    let mut boffs = Vec::with_capacity(out.len());
    for_each_offset(bv, |_, off| boffs.push(off));
    for_each_offset(av, |i, off| out[i] = apply(op, a[off], b[boffs[i]]));
}

/// out[i] = if cond[i] != 0 { a[i] } else { b[i] }, over views sharing the output's shape.
pub fn where_cond<T: Float>(
    cond: &[T],
    cv: Strided<'_>,
    a: &[T],
    av: Strided<'_>,
    b: &[T],
    bv: Strided<'_>,
    out: &mut [T],
) {
    let mut aoffs = Vec::with_capacity(out.len());
    for_each_offset(av, |_, off| aoffs.push(off));
    let mut boffs = Vec::with_capacity(out.len());
    for_each_offset(bv, |_, off| boffs.push(off));
    for_each_offset(cv, |i, off| {
        out[i] = if cond[off] != T::ZERO {
            a[aoffs[i]]
        } else {
            b[boffs[i]]
        };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_row_plus_column() {
        // a: [2,1] broadcast to [2,3]; b: [3] broadcast to [2,3].
        let a = [10.0f32, 20.0];
        let b = [1.0f32, 2.0, 3.0];
        let mut out = [0.0f32; 6];
        binary(
            BinaryOp::Add,
            &a,
            Strided::new(&[2, 3], &[1, 0], 0),
            &b,
            Strided::new(&[2, 3], &[0, 1], 0),
            &mut out,
        );
        assert_eq!(out, [11.0, 12.0, 13.0, 21.0, 22.0, 23.0]);
    }

    #[test]
    fn max_propagates_nan() {
        assert!(apply(BinaryOp::Maximum, f32::NAN, 1.0).is_nan());
        assert!(apply(BinaryOp::Minimum, 1.0, f64::NAN).is_nan());
    }
}
