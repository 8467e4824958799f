//! Strided copies and dtype casts.
//!
//! [`copy_strided`] gathers a strided view into a contiguous buffer; it is what makes
//! `contiguous()`, `cat` and device transfers work. [`Cast`] converts between the four storage
//! dtypes (f32, f64, f16, bf16) with round-to-nearest-even.

use crate::error::{OperandError, check_len, check_view, checked_count, checked_len3};
use crate::strided::{Strided, for_each_offset};
use half::{bf16, f16};

/// `dst[i] = src[view element i]`, row-major. `Err` (nothing written) unless the view fits in
/// `src` and `dst` holds exactly its elements.
pub fn copy_strided<T: Copy>(
    src: &[T],
    sv: Strided<'_>,
    dst: &mut [T],
) -> Result<(), OperandError> {
    check_view("copy_strided", "source", sv, src.len())?;
    let n = checked_count("copy_strided", "source", sv.shape)?;
    check_len("copy_strided", "destination", n, dst.len())?;
    if let Some(r) = sv.contiguous_range() {
        dst.copy_from_slice(&src[r]);
        return Ok(());
    }
    // Rows: the longest run of trailing dimensions that is dense (unit stride, each outer one
    // stepping by the size of those inside it) is copied as one slice per outer index; the
    // head split and merge of attention ([N, T, H, Dh] ↔ [N, H, T, Dh]) move rows of Dh this
    // way, a `memcpy` each, where the element loop below checks bounds per element and does
    // not vectorise (9 % of an encoder block's profile).
    let rank = sv.shape.len();
    let mut row = 1usize;
    let mut k = rank;
    while k > 0 && (sv.shape[k - 1] == 1 || sv.strides[k - 1] == row) {
        row *= sv.shape[k - 1];
        k -= 1;
    }
    if row >= 8 && k < rank {
        let outer = Strided::new(&sv.shape[..k], &sv.strides[..k], sv.offset);
        for_each_offset(outer, |i, off| {
            dst[i * row..(i + 1) * row].copy_from_slice(&src[off..off + row]);
        });
        return Ok(());
    }
    for_each_offset(sv, |i, off| dst[i] = src[off]);
    Ok(())
}

/// Conversion between storage element types.
pub trait Cast<U> {
    /// Converts one value.
    fn cast(self) -> U;
}

macro_rules! cast_via {
    ($from:ty => $($to:ty),*; $conv:expr) => {
        $(impl Cast<$to> for $from {
            #[inline(always)]
            fn cast(self) -> $to {
                let f: fn($from) -> $to = $conv;
                f(self)
            }
        })*
    };
}
cast_via!(f32 => f32; |v| v);
cast_via!(f32 => f64; |v| v as f64);
cast_via!(f32 => f16; f16::from_f32);
cast_via!(f32 => bf16; bf16::from_f32);
cast_via!(f64 => f32; |v| v as f32);
cast_via!(f64 => f64; |v| v);
cast_via!(f64 => f16; f16::from_f64);
cast_via!(f64 => bf16; bf16::from_f64);
cast_via!(f16 => f32; f16::to_f32);
cast_via!(f16 => f64; f16::to_f64);
cast_via!(f16 => f16; |v| v);
cast_via!(f16 => bf16; |v| bf16::from_f32(v.to_f32()));
cast_via!(bf16 => f32; bf16::to_f32);
cast_via!(bf16 => f64; bf16::to_f64);
cast_via!(bf16 => bf16; |v| v);
cast_via!(bf16 => f16; |v| f16::from_f32(v.to_f32()));

/// Concatenation along one axis: each part is a contiguous `[outer, extent_k, inner]` block
/// given as `(data, extent_k * inner)`; `dst` (`[outer, Σ extent_k, inner]`) receives, for each
/// outer index, the parts' rows one after another. `Err` (nothing written) unless every part
/// holds exactly `outer` of its rows and `dst` exactly all of them.
pub fn concat<T: Copy>(
    parts: &[(&[T], usize)],
    outer: usize,
    dst: &mut [T],
) -> Result<(), OperandError> {
    let mut total = 0usize;
    for &(data, row) in parts {
        let need = checked_len3("concat", "part", outer, row, 1)?;
        check_len("concat", "part", need, data.len())?;
        total = total.checked_add(need).ok_or_else(|| OperandError::View {
            op: "concat",
            operand: "destination",
            problem: "size overflows the address range".into(),
        })?;
    }
    check_len("concat", "destination", total, dst.len())?;
    let mut pos = 0;
    for o in 0..outer {
        for &(data, row) in parts {
            dst[pos..pos + row].copy_from_slice(&data[o * row..(o + 1) * row]);
            pos += row;
        }
    }
    Ok(())
}

/// `dst[i] = cast(src[view element i])`. `Err` (nothing written) as for [`copy_strided`].
pub fn cast_strided<S: Copy + Cast<D>, D: Copy>(
    src: &[S],
    sv: Strided<'_>,
    dst: &mut [D],
) -> Result<(), OperandError> {
    check_view("cast_strided", "source", sv, src.len())?;
    let n = checked_count("cast_strided", "source", sv.shape)?;
    check_len("cast_strided", "destination", n, dst.len())?;
    // A contiguous view (the common case: reading a tensor back) is one straight pass that
    // the compiler vectorises; any other view walks its offsets.
    let contiguous = sv.strides == crate::strided::contiguous_strides(sv.shape).as_slice();
    if contiguous && let Some(run) = src.get(sv.offset..sv.offset + n) {
        for (d, s) in dst.iter_mut().zip(run) {
            *d = s.cast();
        }
        return Ok(());
    }
    for_each_offset(sv, |i, off| dst[i] = src[off].cast());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_transposed() {
        let src = [1, 2, 3, 4, 5, 6];
        let mut dst = [0; 6];
        copy_strided(&src, Strided::new(&[3, 2], &[1, 3], 0), &mut dst).unwrap();
        assert_eq!(dst, [1, 4, 2, 5, 3, 6]);
    }

    /// Views whose trailing dimensions are dense rows (copied a row at a time) give the same
    /// elements as the per-element walk: attention's head split, a merged pair of dense
    /// dimensions, size-1 dimensions, an offset, and a broadcast outer dimension.
    #[test]
    fn copy_by_rows_matches_elementwise() {
        let src: Vec<u32> = (0..4000).collect();
        let cases: [(&[usize], &[usize], usize); 5] = [
            // [N 2, T 5, H 3, Dh 8] permuted to [N, H, T, Dh].
            (&[2, 3, 5, 8], &[120, 8, 24, 1], 0),
            // [2, 4, 3, 8] with the last two dense: rows of 24.
            (&[4, 2, 3, 8], &[24, 96, 8, 1], 5),
            (&[3, 1, 2, 1, 16], &[40, 7, 20, 3, 1], 11),
            (&[3, 2, 9], &[0, 9, 1], 2),
            (&[2, 3, 4], &[1, 2, 6], 0),
        ];
        for (shape, strides, offset) in cases {
            let sv = Strided::new(shape, strides, offset);
            let n = sv.elem_count();
            let mut got = vec![0u32; n];
            copy_strided(&src, sv, &mut got).unwrap();
            let mut want = vec![0u32; n];
            for_each_offset(sv, |i, off| want[i] = src[off]);
            assert_eq!(got, want, "{shape:?} {strides:?}");
        }
    }

    #[test]
    fn concat_interleaves_rows() {
        // [2, 1] and [2, 2] joined along axis 1.
        let (a, b) = ([1, 2], [3, 4, 5, 6]);
        let mut dst = [0; 6];
        concat(&[(&a[..], 1), (&b[..], 2)], 2, &mut dst).unwrap();
        assert_eq!(dst, [1, 3, 4, 2, 5, 6]);
    }

    #[test]
    fn cast_rounds() {
        let src = [1.0f32, 65504.0, 1e-3];
        let mut dst = [f16::ZERO; 3];
        cast_strided(&src, Strided::new(&[3], &[1], 0), &mut dst).unwrap();
        assert_eq!(dst[1].to_f32(), 65504.0);
    }
}
