//! Nearest upsampling by integer factors and padding of the last two dimensions, forward and
//! backward.
//!
//! - Upsampling: output `(oh, ow)` copies input `(oh / sh, ow / sw)` (PyTorch's `nearest` for
//!   integer scale factors, computed in integers). Its backward sums each input's `sh`×`sw`
//!   block of the output gradient, row by row, the order in which PyTorch's CPU kernel adds.
//! - Padding ([`PadMode`]): constant padding surrounds the plane with a value; reflect padding
//!   mirrors it about its edge elements. The backward of constant padding is the interior of
//!   the gradient; reflect's adds every output's gradient to its source, in row-major output
//!   order (as PyTorch's CPU kernel), so border elements collect from two or four outputs.

use super::{check_planes, for_planes, geometry};
use crate::element::Float;
use crate::error::OperandError;
use ember_ops::{Pad2d, PadMode};

fn extents(
    op: &'static str,
    (h, w): (usize, usize),
    out: Option<(usize, usize)>,
) -> Result<(usize, usize, usize, usize), OperandError> {
    let (oh, ow) =
        out.ok_or_else(|| geometry(op, format!("the output of a {h}×{w} plane overflows")))?;
    let ip = h
        .checked_mul(w)
        .ok_or_else(|| geometry(op, format!("a {h}×{w} plane overflows")))?;
    let opl = oh
        .checked_mul(ow)
        .ok_or_else(|| geometry(op, format!("an output plane of {oh}×{ow} overflows")))?;
    Ok((ip, opl, oh, ow))
}

fn upsample_check(
    op: &'static str,
    planes: usize,
    (h, w): (usize, usize),
    (sh, sw): (usize, usize),
    input_len: usize,
    output_len: usize,
) -> Result<(usize, usize, usize, usize), OperandError> {
    if sh == 0 || sw == 0 {
        return Err(geometry(op, format!("scale factors {sh}×{sw} must be ≥ 1")));
    }
    let out = h.checked_mul(sh).zip(w.checked_mul(sw));
    let r = extents(op, (h, w), out)?;
    check_planes(op, "input", planes, r.0, input_len)?;
    check_planes(op, "output", planes, r.1, output_len)?;
    Ok(r)
}

/// `out` (`planes` planes of `h·sh`×`w·sw`) gets each element of `x` (`planes` planes of
/// `h`×`w`) repeated over an `sh`×`sw` block.
pub fn upsample_nearest2d<T: Float>(
    x: &[T],
    planes: usize,
    input: (usize, usize),
    scale: (usize, usize),
    out: &mut [T],
) -> Result<(), OperandError> {
    let (ip, opl, _, ow) = upsample_check(
        "upsample_nearest2d",
        planes,
        input,
        scale,
        x.len(),
        out.len(),
    )?;
    let (w, (sh, sw)) = (input.1, scale);
    for_planes(out, opl, opl, |p, o| {
        let xp = &x[p * ip..(p + 1) * ip];
        for (r, orow) in o.chunks_mut(ow.max(1)).enumerate() {
            let xrow = &xp[r / sh * w..][..w];
            for (c, v) in orow.iter_mut().enumerate() {
                *v = xrow[c / sw];
            }
        }
    });
    Ok(())
}

/// The backward of [`upsample_nearest2d`]: `dx` (`planes` planes of `h`×`w`, overwritten) gets
/// the sum of each `sh`×`sw` block of `g`, added row by row.
pub fn upsample_nearest2d_backward<T: Float>(
    g: &[T],
    planes: usize,
    input: (usize, usize),
    scale: (usize, usize),
    dx: &mut [T],
) -> Result<(), OperandError> {
    let op = "upsample_nearest2d_backward";
    let (ip, opl, _, ow) = upsample_check(op, planes, input, scale, dx.len(), g.len())?;
    let (w, (sh, sw)) = (input.1, scale);
    for_planes(dx, ip, opl, |p, d| {
        let gp = &g[p * opl..(p + 1) * opl];
        for (r, drow) in d.chunks_mut(w.max(1)).enumerate() {
            for (c, v) in drow.iter_mut().enumerate() {
                let mut s = T::ZERO;
                for i in 0..sh {
                    let grow = &gp[(r * sh + i) * ow + c * sw..][..sw];
                    for &gv in grow {
                        s += gv;
                    }
                }
                *v = s;
            }
        }
    });
    Ok(())
}

fn pad_check(
    op: &'static str,
    planes: usize,
    (h, w): (usize, usize),
    pads: &Pad2d,
    mode: PadMode,
    input_len: usize,
    output_len: usize,
) -> Result<(usize, usize, usize, usize), OperandError> {
    pads.validate(mode, h, w).map_err(|p| geometry(op, p))?;
    let r = extents(op, (h, w), pads.output(h, w))?;
    check_planes(op, "input", planes, r.0, input_len)?;
    check_planes(op, "output", planes, r.1, output_len)?;
    Ok(r)
}

/// Index of padded position `i` (from `-before`) in an axis of `n`, mirrored (reflect).
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let i = if i < 0 { -i } else { i };
    (if i >= n { 2 * (n - 1) - i } else { i }) as usize
}

/// `out` (`planes` planes of (`h + top + bottom`)×(`w + left + right`)) gets `x` (`planes`
/// planes of `h`×`w`) padded as `mode` says.
pub fn pad2d<T: Float>(
    x: &[T],
    planes: usize,
    input: (usize, usize),
    pads: Pad2d,
    mode: PadMode,
    out: &mut [T],
) -> Result<(), OperandError> {
    let (ip, opl, _, ow) = pad_check("pad", planes, input, &pads, mode, x.len(), out.len())?;
    let (h, w) = input;
    for_planes(out, opl, opl, |p, o| {
        let xp = &x[p * ip..(p + 1) * ip];
        for (r, orow) in o.chunks_mut(ow.max(1)).enumerate() {
            let src_r = r as isize - pads.top as isize;
            match mode {
                PadMode::Constant(v) => {
                    let v = T::from_f64(v);
                    if src_r < 0 || src_r >= h as isize {
                        orow.fill(v);
                    } else {
                        let xrow = &xp[src_r as usize * w..][..w];
                        orow[..pads.left].fill(v);
                        orow[pads.left..pads.left + w].copy_from_slice(xrow);
                        orow[pads.left + w..].fill(v);
                    }
                }
                _ => {
                    let xrow = &xp[reflect(src_r, h) * w..][..w];
                    for (c, v) in orow.iter_mut().enumerate() {
                        *v = xrow[reflect(c as isize - pads.left as isize, w)];
                    }
                }
            }
        }
    });
    Ok(())
}

/// The backward of [`pad2d`]: `dx` (`planes` planes of `h`×`w`, overwritten) from the padded
/// gradient `g`.
pub fn pad2d_backward<T: Float>(
    g: &[T],
    planes: usize,
    input: (usize, usize),
    pads: Pad2d,
    mode: PadMode,
    dx: &mut [T],
) -> Result<(), OperandError> {
    let op = "pad_backward";
    let (ip, opl, _, ow) = pad_check(op, planes, input, &pads, mode, dx.len(), g.len())?;
    let (h, w) = input;
    for_planes(dx, ip, opl, |p, d| {
        let gp = &g[p * opl..(p + 1) * opl];
        match mode {
            PadMode::Constant(_) => {
                for (r, drow) in d.chunks_mut(w.max(1)).enumerate() {
                    drow.copy_from_slice(&gp[(r + pads.top) * ow + pads.left..][..w]);
                }
            }
            _ => {
                d.fill(T::ZERO);
                for (r, grow) in gp.chunks(ow.max(1)).enumerate() {
                    let drow = &mut d[reflect(r as isize - pads.top as isize, h) * w..][..w];
                    for (c, &gv) in grow.iter().enumerate() {
                        drow[reflect(c as isize - pads.left as isize, w)] += gv;
                    }
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::reflect;

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        // [1 2 3] padded by 2: 3 2 | 1 2 3 | 2 1.
        let idx: Vec<usize> = (-2..5).map(|i| reflect(i, 3)).collect();
        assert_eq!(idx, vec![2, 1, 0, 1, 2, 1, 0]);
    }
}
