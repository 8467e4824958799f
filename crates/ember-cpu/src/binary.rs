//! Elementwise binary maps with broadcasting, and the three-way `where_cond` select.
//!
//! Broadcasting is resolved by the caller: both operand views already have the output's shape,
//! with stride 0 along broadcast dimensions. The kernel then only walks three views in lockstep.
//! Comparisons produce masks of 1.0 and 0.0 in the operands' type.
//!
//! Speed: the walk goes row by row (the last dimension), and each row runs one of four tight
//! loops depending on the operands' inner strides (both unit, one broadcast scalar, or general),
//! so `x + bias` over a batch is as fast as two contiguous buffers. The loops are compiled for
//! AVX2 and for the portable baseline, chosen at run time, with the op fixed per loop so they
//! vectorise; large outputs are split into fixed chunks of rows across rayon threads.

use crate::element::Float;
use crate::error::{OperandError, check_len, check_shape, check_view, checked_count};
use crate::isa::{self, Isa};
use crate::par::{CHUNK, parallel};
use crate::strided::{Strided, for_each_offset};
use rayon::prelude::*;

pub use ember_ops::BinaryOp;

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

/// `out[i] = op(a[i], b[i])` over views that already share the output's shape.
///
/// `Err` (nothing written) unless both views fit their buffers, have the same shape, and
/// `out.len()` equals their element count.
pub fn binary<T: Float>(
    op: BinaryOp,
    a: &[T],
    av: Strided<'_>,
    b: &[T],
    bv: Strided<'_>,
    out: &mut [T],
) -> Result<(), OperandError> {
    check_view("binary", "lhs", av, a.len())?;
    check_view("binary", "rhs", bv, b.len())?;
    check_shape("binary", "rhs", bv, av.shape)?;
    let n = checked_count("binary", "lhs", av.shape)?;
    check_len("binary", "output", n, out.len())?;
    let isa = isa::active();
    if out.is_empty() {
        return Ok(());
    }
    if let (Some(ra), Some(rb)) = (av.contiguous_range(), bv.contiguous_range()) {
        let (a, b) = (&a[ra], &b[rb]);
        let run = |i0: usize, o: &mut [T]| {
            let n = o.len();
            row(isa, op, &a[i0..i0 + n], 1, &b[i0..i0 + n], 1, o);
        };
        if parallel(out.len()) {
            out.par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, o)| run(c * CHUNK, o));
        } else {
            run(0, out);
        }
        return Ok(());
    }
    let rank = av.shape.len();
    if rank == 0 {
        out[0] = apply(op, a[av.offset], b[bv.offset]);
        return Ok(());
    }
    // Row starts of both operands (one entry per row of the output).
    let inner = av.shape[rank - 1];
    let starts = |v: Strided<'_>| {
        let mut s = Vec::with_capacity(out.len() / inner.max(1));
        for_each_offset(
            Strided::new(&v.shape[..rank - 1], &v.strides[..rank - 1], v.offset),
            |_, off| s.push(off),
        );
        s
    };
    let (sa, sb) = (starts(av), starts(bv));
    let (ia, ib) = (av.strides[rank - 1], bv.strides[rank - 1]);
    let run_rows = |r0: usize, o: &mut [T]| {
        for (k, orow) in o.chunks_exact_mut(inner).enumerate() {
            let (oa, ob) = (sa[r0 + k], sb[r0 + k]);
            let span = |off: usize, step: usize| off..off + (inner - 1) * step + 1;
            row(isa, op, &a[span(oa, ia)], ia, &b[span(ob, ib)], ib, orow);
        }
    };
    let rows_per_task = (CHUNK / inner.max(1)).max(1);
    if parallel(out.len()) && sa.len() > 1 {
        out.par_chunks_mut(rows_per_task * inner)
            .enumerate()
            .for_each(|(c, o)| run_rows(c * rows_per_task, o));
    } else {
        run_rows(0, out);
    }
    Ok(())
}

/// One output row: `out[j] = op(a[j * sa], b[j * sb])`.
fn row<T: Float>(isa: Isa, op: BinaryOp, a: &[T], sa: usize, b: &[T], sb: usize, out: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        unsafe { row_avx2(op, a, sa, b, sb, out) };
        return;
    }
    let _ = isa;
    row_body(op, a, sa, b, sb, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_avx2<T: Float>(op: BinaryOp, a: &[T], sa: usize, b: &[T], sb: usize, out: &mut [T]) {
    row_body(op, a, sa, b, sb, out);
}

#[inline(always)]
fn row_body<T: Float>(op: BinaryOp, a: &[T], sa: usize, b: &[T], sb: usize, out: &mut [T]) {
    macro_rules! strides {
        ($g:expr) => {
            match (sa, sb) {
                (1, 1) => {
                    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                        *o = $g(x, y);
                    }
                }
                (1, 0) => {
                    let y = b[0];
                    for (o, &x) in out.iter_mut().zip(a) {
                        *o = $g(x, y);
                    }
                }
                (0, 1) => {
                    let x = a[0];
                    for (o, &y) in out.iter_mut().zip(b) {
                        *o = $g(x, y);
                    }
                }
                _ => {
                    for (j, o) in out.iter_mut().enumerate() {
                        *o = $g(a[j * sa], b[j * sb]);
                    }
                }
            }
        };
    }
    // One instantiation per op, so the op is a constant inside each loop.
    macro_rules! ops {
        ($($v:ident),*) => {
            match op {
                $(BinaryOp::$v => strides!(|x, y| apply(BinaryOp::$v, x, y)),)*
            }
        };
    }
    ops!(
        Add, Sub, Mul, Div, Pow, Maximum, Minimum, Eq, Ne, Lt, Le, Gt, Ge
    );
}

/// `out[i] = if cond[i] != 0 { a[i] } else { b[i] }`, over views sharing the output's shape.
///
/// `Err` (nothing written) unless the three views fit their buffers, share one shape, and
/// `out.len()` equals their element count.
pub fn where_cond<T: Float>(
    cond: &[T],
    cv: Strided<'_>,
    a: &[T],
    av: Strided<'_>,
    b: &[T],
    bv: Strided<'_>,
    out: &mut [T],
) -> Result<(), OperandError> {
    check_view("where_cond", "condition", cv, cond.len())?;
    check_view("where_cond", "then", av, a.len())?;
    check_view("where_cond", "else", bv, b.len())?;
    check_shape("where_cond", "then", av, cv.shape)?;
    check_shape("where_cond", "else", bv, cv.shape)?;
    let n = checked_count("where_cond", "condition", cv.shape)?;
    check_len("where_cond", "output", n, out.len())?;
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
    Ok(())
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
        )
        .unwrap();
        assert_eq!(out, [11.0, 12.0, 13.0, 21.0, 22.0, 23.0]);
    }

    #[test]
    fn max_propagates_nan() {
        assert!(apply(BinaryOp::Maximum, f32::NAN, 1.0).is_nan());
        assert!(apply(BinaryOp::Minimum, 1.0, f64::NAN).is_nan());
    }

    #[test]
    fn every_op_layout_and_isa_matches_scalar() {
        use crate::gemm::tests_rng::Rng;
        let ops = BinaryOp::ALL;
        let mut rng = Rng::new(4);
        let a: Vec<f32> = (0..200)
            .map(|i| {
                if i % 7 == 0 {
                    0.5
                } else {
                    rng.uniform() as f32 + 1.1
                }
            })
            .collect();
        let b: Vec<f32> = (0..200)
            .map(|i| {
                if i % 5 == 0 {
                    0.5
                } else {
                    rng.uniform() as f32 + 1.1
                }
            })
            .collect();
        // (shape, a strides, b strides): contiguous, row broadcast, column broadcast, transpose
        let cases: [(&[usize], &[usize], &[usize]); 5] = [
            (&[6, 7], &[7, 1], &[7, 1]),
            (&[6, 7], &[7, 1], &[0, 1]),
            (&[6, 7], &[1, 0], &[7, 1]),
            (&[6, 7], &[1, 6], &[7, 1]),
            (&[2, 3, 5], &[15, 5, 1], &[0, 1, 3]),
        ];
        for isa in crate::isa::supported() {
            for (shape, sa, sb) in cases {
                let (av, bv) = (Strided::new(shape, sa, 1), Strided::new(shape, sb, 2));
                let n = av.elem_count();
                for op in ops {
                    let mut out = vec![0.0f32; n];
                    crate::isa::with(isa, || binary(op, &a, av, &b, bv, &mut out))
                        .expect("isa")
                        .unwrap();
                    let mut want = vec![0.0f32; n];
                    let mut bo = vec![];
                    for_each_offset(bv, |_, off| bo.push(off));
                    for_each_offset(av, |i, off| want[i] = apply(op, a[off], b[bo[i]]));
                    assert_eq!(out, want, "{isa} {op:?} {shape:?} {sa:?} {sb:?}");
                }
            }
        }
    }

    #[test]
    fn large_contiguous_and_broadcast_use_threads_identically() {
        let n = crate::par::PAR_MIN * 2 + 5;
        let a: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
        let b: Vec<f64> = (0..n).map(|i| 1.0 + (i % 3) as f64).collect();
        let go = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| {
                    let mut o1 = vec![0.0; n];
                    binary(
                        BinaryOp::Div,
                        &a,
                        Strided::new(&[n], &[1], 0),
                        &b,
                        Strided::new(&[n], &[1], 0),
                        &mut o1,
                    )
                    .unwrap();
                    let shape = [(n - 5) / 5, 5];
                    let mut o2 = vec![0.0; shape[0] * 5];
                    binary(
                        BinaryOp::Add,
                        &a,
                        Strided::new(&shape, &[5, 1], 0),
                        &b,
                        Strided::new(&shape, &[0, 1], 0),
                        &mut o2,
                    )
                    .unwrap();
                    (o1, o2)
                })
        };
        let (one, two) = (go(1), go(2));
        assert_eq!(one, two);
        assert_eq!(one.0[10], 5.0 / 2.0);
        assert_eq!(one.1[7], 3.5 + b[2]);
    }
}
