//! Packing one tile of the patch matrix from an image (`gather`), and adding a tile of patch
//! gradients back into the image gradient (`scatter_add`, col2im).
//!
//! Row k = (c, i, j) of a tile holds, for the tile's output pixels p0 .. p0+n, the input value
//! tap (i, j) of channel c reads: `x[c, oh·sh − ph + i·dh, ow·sw − pw + j·dw]`, or 0 where that
//! falls in the padding. A tile spans whole or partial output rows; along one output row the
//! valid taps form one contiguous range of `ow` (computed once per row, [`valid`]), so each
//! row of the tile is a zero run, a copy (contiguous when the stride is 1), and a zero run —
//! no per-element bounds test.

use super::Geom;
use crate::element::Float;

/// The output columns `ow` in `lo..hi` whose input column `ow·stride + off` lies in
/// `0..input`, as a sub-range of `lo..hi` (possibly empty).
#[inline]
fn valid(lo: usize, hi: usize, off: isize, stride: usize, input: usize) -> (usize, usize) {
    let s = stride as isize;
    // First ow with ow·s + off ≥ 0.
    let first = if off >= 0 { 0 } else { ((-off) + s - 1) / s } as usize;
    // First ow with ow·s + off ≥ input.
    let end_num = input as isize - off;
    let end = if end_num <= 0 {
        0
    } else {
        ((end_num + s - 1) / s) as usize
    };
    let a = lo.max(first);
    let b = hi.min(end);
    if a >= b { (lo, lo) } else { (a, b) }
}

/// The output-row segments of a tile of output pixels p0 .. p0+n: `(q, oh, ow_lo, ow_hi)`, the
/// segment starting at tile column q, on output row oh, covering columns ow_lo .. ow_hi.
#[inline]
fn segments(g: &Geom, p0: usize, n: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let ow_n = g.ow;
    let mut q = 0;
    let (mut oh, mut ow) = (p0 / ow_n, p0 % ow_n);
    std::iter::from_fn(move || {
        if q >= n {
            return None;
        }
        let run = (ow_n - ow).min(n - q);
        let seg = (q, oh, ow, ow + run);
        q += run;
        ow = 0;
        oh += 1;
        Some(seg)
    })
}

/// Packs `col[k·n + q]` (K rows, n columns) for output pixels p0 .. p0+n of the image `x`
/// (`[C, H, W]`), over input channels c0 .. c0 + cg.
pub(super) fn gather<T: Float>(g: &Geom, x: &[T], c0: usize, p0: usize, n: usize, col: &mut [T]) {
    let s = &g.spec;
    let (h, w) = (s.h.input, s.w.input);
    let (kh, kw) = (s.h.kernel, s.w.kernel);
    let mut rows = col.chunks_exact_mut(n);
    for c in 0..g.cg {
        let plane = &x[(c0 + c) * h * w..(c0 + c + 1) * h * w];
        for i in 0..kh {
            for j in 0..kw {
                let Some(row) = rows.next() else { return };
                let off_w = (j * s.w.dilation) as isize - s.w.pad_begin as isize;
                for (q, oh, lo, hi) in segments(g, p0, n) {
                    let dst = &mut row[q..q + (hi - lo)];
                    let ih = (oh * s.h.stride + i * s.h.dilation) as isize - s.h.pad_begin as isize;
                    if ih < 0 || ih >= h as isize {
                        dst.fill(T::ZERO);
                        continue;
                    }
                    let src = &plane[ih as usize * w..(ih as usize + 1) * w];
                    let (a, b) = valid(lo, hi, off_w, s.w.stride, w);
                    dst[..a - lo].fill(T::ZERO);
                    dst[b - lo..].fill(T::ZERO);
                    if a < b {
                        let start = (a * s.w.stride) as isize + off_w;
                        let start = start as usize;
                        let out = &mut dst[a - lo..b - lo];
                        if s.w.stride == 1 {
                            out.copy_from_slice(&src[start..start + (b - a)]);
                        } else {
                            for (t, v) in out.iter_mut().enumerate() {
                                *v = src[start + t * s.w.stride];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`gather`]: adds `dcol[k·n + q]` into the image gradient `dx` (`[C, H, W]`)
/// at the element each patch value was read from (padding positions are dropped). Rows are
/// added in patch order k, then q: a fixed order, so the sums do not depend on threads.
pub(super) fn scatter_add<T: Float>(
    g: &Geom,
    dcol: &[T],
    c0: usize,
    p0: usize,
    n: usize,
    dx: &mut [T],
) {
    let s = &g.spec;
    let (h, w) = (s.h.input, s.w.input);
    let (kh, kw) = (s.h.kernel, s.w.kernel);
    let mut rows = dcol.chunks_exact(n);
    for c in 0..g.cg {
        let plane = &mut dx[(c0 + c) * h * w..(c0 + c + 1) * h * w];
        for i in 0..kh {
            for j in 0..kw {
                let Some(row) = rows.next() else { return };
                let off_w = (j * s.w.dilation) as isize - s.w.pad_begin as isize;
                for (q, oh, lo, hi) in segments(g, p0, n) {
                    let ih = (oh * s.h.stride + i * s.h.dilation) as isize - s.h.pad_begin as isize;
                    if ih < 0 || ih >= h as isize {
                        continue;
                    }
                    let (a, b) = valid(lo, hi, off_w, s.w.stride, w);
                    if a >= b {
                        continue;
                    }
                    let dst = &mut plane[ih as usize * w..(ih as usize + 1) * w];
                    let src = &row[q + (a - lo)..q + (b - lo)];
                    let start = ((a * s.w.stride) as isize + off_w) as usize;
                    if s.w.stride == 1 {
                        for (d, &v) in dst[start..start + (b - a)].iter_mut().zip(src) {
                            *d += v;
                        }
                    } else {
                        for (t, &v) in src.iter().enumerate() {
                            dst[start + t * s.w.stride] += v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn valid_ranges_match_a_direct_scan() {
        for stride in 1..4 {
            for off in -5isize..5 {
                for input in 0..7 {
                    for lo in 0..4 {
                        for hi in lo..9 {
                            let direct: Vec<usize> = (lo..hi)
                                .filter(|&ow| {
                                    let iw = (ow * stride) as isize + off;
                                    iw >= 0 && iw < input as isize
                                })
                                .collect();
                            let (a, b) = valid(lo, hi, off, stride, input);
                            let got: Vec<usize> = (a..b).collect();
                            assert_eq!(
                                got, direct,
                                "stride {stride} off {off} input {input} {lo}..{hi}"
                            );
                        }
                    }
                }
            }
        }
    }
}
