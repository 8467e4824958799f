//! The patch matrix of an int8 convolution: quantized image codes laid out so that one
//! [`super::qgemm`] call computes a whole quantized `Conv2d` (im2col, on u8 codes).
//!
//! Row `r` of the matrix is one output pixel `(n, oh, ow)` of the batch (in that order, so the
//! GEMM's `[rows, O]` output is NHWC); column `k = (i·kw + j)·C + c` holds the code of input
//! `x[n, c, oh·sh − pt + i·dh, ow·sw − pl + j·dw]`. That is the **tap-major** order of a weight
//! `[O, kh, kw, C]` (TensorFlow's and oneDNN's NHWC order, not PyTorch's `[O, C, kh, kw]`): the
//! caller permutes its weight once to match. It is chosen because each image is first turned
//! into NHWC, where the C codes of one tap are contiguous, and for a dense window (dilation 1)
//! so are the `kw·C` codes of a whole window row: a patch row is `kh` copies of `kw·C` bytes
//! instead of `C·kh·kw` single-byte gathers. A tap that falls in the padding gets the
//! activations' **zero point**, the code of the real value 0 (the quantization keeps 0 exact),
//! so padding means what it means in the f32 convolution.
//!
//! Rows are independent, so they are filled in parallel by whole images; each byte is a copy,
//! and the result does not depend on the thread count. Grouped convolutions are not handled
//! here (the caller refuses them).

use super::QError;
use ember_ops::Conv2dSpec;
use rayon::prelude::*;

/// Bytes of patch matrix above which images are filled in parallel.
const PARALLEL_MIN_BYTES: usize = 1 << 16;

/// Columns of the patch matrix: `C · kh · kw`.
pub fn patch_cols(spec: &Conv2dSpec) -> usize {
    spec.in_channels * spec.h.kernel * spec.w.kernel
}

/// Rows of the patch matrix for `images` images: `images · OH · OW`.
pub fn patch_rows(spec: &Conv2dSpec, images: usize) -> usize {
    images * spec.out_h() * spec.out_w()
}

/// Fills `out` (row-major, [`patch_rows`]`(spec, n1 − n0)` × [`patch_cols`]) with the patches of
/// images `n0..n1` of `x`, the NCHW codes of the whole batch (`spec.input_shape()`), padding
/// with `zero_point`. Errors (never panics) on a spec that fails validation, groups ≠ 1, an
/// image range outside the batch, or a slice of the wrong length.
pub fn conv_patches_u8(
    spec: &Conv2dSpec,
    x: &[u8],
    zero_point: u8,
    images: std::ops::Range<usize>,
    out: &mut [u8],
) -> Result<(), QError> {
    let op = "conv_patches_u8";
    let invalid = |message: String| QError::Invalid { op, message };
    spec.h.validate("height").map_err(invalid)?;
    spec.w.validate("width").map_err(invalid)?;
    if spec.groups != 1 {
        return Err(invalid(format!(
            "groups must be 1 for an int8 convolution, got {}",
            spec.groups
        )));
    }
    if images.start > images.end || images.end > spec.batch {
        return Err(invalid(format!(
            "images {images:?} are not within the batch of {}",
            spec.batch
        )));
    }
    let (c, h, w) = (spec.in_channels, spec.h.input, spec.w.input);
    let image = c * h * w;
    let need_x = spec.batch * image;
    if x.len() < need_x {
        return Err(QError::TooShort {
            op,
            operand: "x",
            need: need_x,
            len: x.len(),
        });
    }
    let cols = patch_cols(spec);
    let per_image = patch_rows(spec, 1) * cols;
    let need = (images.end - images.start) * per_image;
    if out.len() != need {
        return Err(invalid(format!(
            "the output holds {} codes, the patches of images {images:?} need {need}",
            out.len()
        )));
    }
    if per_image == 0 {
        return Ok(());
    }
    let fill = |(k, dst): (usize, &mut [u8])| {
        let n = images.start + k;
        fill_image(spec, &x[n * image..(n + 1) * image], zero_point, dst);
    };
    if need >= PARALLEL_MIN_BYTES {
        out.par_chunks_mut(per_image).enumerate().for_each(fill);
    } else {
        out.chunks_mut(per_image).enumerate().for_each(fill);
    }
    Ok(())
}

/// The patches of one image (`[C, H, W]` codes) into `dst` (`OH·OW` rows of `kh·kw·C`).
fn fill_image(spec: &Conv2dSpec, img: &[u8], zp: u8, dst: &mut [u8]) {
    let (c, h, w) = (spec.in_channels, spec.h.input, spec.w.input);
    // The image in NHWC: the C codes of one pixel side by side.
    let mut hwc = vec![0u8; c * h * w];
    for (ch, plane) in img.chunks_exact(h * w).enumerate() {
        for (px, &v) in plane.iter().enumerate() {
            hwc[px * c + ch] = v;
        }
    }
    let kw = spec.w.kernel;
    let (ow_n, cols) = (spec.out_w(), patch_cols(spec));
    let (hi, wi) = (h as isize, w as isize);
    let dense = spec.w.dilation == 1;
    for (p, row) in dst.chunks_exact_mut(cols).enumerate() {
        let (oh, ow) = (p / ow_n, p % ow_n);
        let top = (oh * spec.h.stride) as isize - spec.h.pad_begin as isize;
        let left = (ow * spec.w.stride) as isize - spec.w.pad_begin as isize;
        for (i, window_row) in row.chunks_exact_mut(kw * c).enumerate() {
            let ih = top + (i * spec.h.dilation) as isize;
            if !(0..hi).contains(&ih) {
                window_row.fill(zp);
                continue;
            }
            let line = &hwc[ih as usize * w * c..(ih as usize + 1) * w * c];
            let last = left + ((kw - 1) * spec.w.dilation) as isize;
            if dense && left >= 0 && last < wi {
                let start = left as usize * c;
                window_row.copy_from_slice(&line[start..start + kw * c]);
                continue;
            }
            for (j, tap) in window_row.chunks_exact_mut(c).enumerate() {
                let iw = left + (j * spec.w.dilation) as isize;
                if (0..wi).contains(&iw) {
                    let start = iw as usize * c;
                    tap.copy_from_slice(&line[start..start + c]);
                } else {
                    tap.fill(zp);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_ops::Axis;

    fn spec(n: usize, c: usize, hw: (usize, usize), k: (usize, usize), pad: usize) -> Conv2dSpec {
        let axis = |input, kernel, s| Axis {
            input,
            kernel,
            stride: s,
            dilation: 1 + (kernel % 2 == 0) as usize,
            pad_begin: pad,
            pad_end: pad + 1,
        };
        Conv2dSpec {
            batch: n,
            in_channels: c,
            out_channels: 4,
            groups: 1,
            h: axis(hw.0, k.0, 2),
            w: axis(hw.1, k.1, 1),
        }
    }

    /// Every code against a direct reading of the definition in the module docs.
    #[test]
    fn patches_match_the_definition() {
        let s = spec(3, 2, (7, 6), (3, 2), 1);
        let x: Vec<u8> = (0..3 * 2 * 7 * 6).map(|v| (v * 7 % 251) as u8).collect();
        let zp = 250u8;
        let (rows, cols) = (patch_rows(&s, 2), patch_cols(&s));
        let mut out = vec![0u8; rows * cols];
        conv_patches_u8(&s, &x, zp, 1..3, &mut out).unwrap();
        let (oh_n, ow_n) = (s.out_h(), s.out_w());
        for n in 1..3 {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    for c in 0..2 {
                        for i in 0..3 {
                            for j in 0..2 {
                                let ih = (oh * 2 + i * s.h.dilation) as isize - 1;
                                let iw = (ow + j * s.w.dilation) as isize - 1;
                                let want = if (0..7).contains(&ih) && (0..6).contains(&iw) {
                                    x[((n * 2 + c) * 7 + ih as usize) * 6 + iw as usize]
                                } else {
                                    zp
                                };
                                let r = ((n - 1) * oh_n + oh) * ow_n + ow;
                                let k = (i * 2 + j) * 2 + c;
                                assert_eq!(
                                    out[r * cols + k],
                                    want,
                                    "n{n} oh{oh} ow{ow} c{c} i{i} j{j}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let s = spec(2, 1, (5, 5), (3, 3), 0);
        let x = vec![0u8; 2 * 25];
        let mut out = vec![0u8; patch_rows(&s, 2) * patch_cols(&s)];
        assert!(conv_patches_u8(&s, &x[..10], 0, 0..2, &mut out).is_err());
        assert!(conv_patches_u8(&s, &x, 0, 0..3, &mut out).is_err());
        assert!(conv_patches_u8(&s, &x, 0, 0..1, &mut out).is_err());
        let grouped = Conv2dSpec { groups: 2, ..s };
        assert!(conv_patches_u8(&grouped, &x, 0, 0..2, &mut out).is_err());
        let tiny = Conv2dSpec {
            h: Axis::new(2, 3),
            ..s
        };
        assert!(conv_patches_u8(&tiny, &x, 0, 0..2, &mut out).is_err());
    }
}
