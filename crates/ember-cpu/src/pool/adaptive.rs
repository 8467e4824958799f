//! Adaptive average pooling: the input's extent divided into a requested number of bins,
//! PyTorch's way (`nn.AdaptiveAvgPool2d`).
//!
//! Output `i` of an axis of `input` elements pooled to `out` bins averages input elements
//! `floor(i·input/out) .. ceil((i+1)·input/out)`: bins cover the input, neighbours may overlap
//! by one element when `out` does not divide `input`. Global average pooling is the 1×1 case.
//! As PyTorch's CPU kernel, the mean is `sum / bin_height / bin_width` (two divisions), and the
//! backward spreads `g / bin_height / bin_width` over the bin.

use super::{check_planes, for_planes, geometry};
use crate::element::Float;
use crate::error::OperandError;

/// Bin `i` of `out` bins over `input` elements: `(start, end)`.
fn bin(i: usize, input: usize, out: usize) -> (usize, usize) {
    let (i, n, o) = (i as u128, input as u128, out as u128);
    ((i * n / o) as usize, ((i + 1) * n).div_ceil(o) as usize)
}

fn check(
    op: &'static str,
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    input_len: usize,
    output_len: usize,
) -> Result<(usize, usize), OperandError> {
    if oh == 0 || ow == 0 || h == 0 || w == 0 {
        return Err(geometry(
            op,
            format!("input {h}×{w} and output {oh}×{ow} must both be non-empty"),
        ));
    }
    let ip = h
        .checked_mul(w)
        .ok_or_else(|| geometry(op, format!("a {h}×{w} plane overflows")))?;
    let opl = oh
        .checked_mul(ow)
        .ok_or_else(|| geometry(op, format!("a {oh}×{ow} plane overflows")))?;
    check_planes(op, "input", planes, ip, input_len)?;
    check_planes(op, "output", planes, opl, output_len)?;
    Ok((ip, opl))
}

/// `out` (`planes` planes of `oh`×`ow`) gets the mean of each bin of `x` (`planes` planes of
/// `h`×`w`). All four extents must be ≥ 1.
pub fn adaptive_avg_pool2d<T: Float>(
    x: &[T],
    planes: usize,
    input: (usize, usize),
    output: (usize, usize),
    out: &mut [T],
) -> Result<(), OperandError> {
    let (ip, opl) = check(
        "adaptive_avg_pool2d",
        planes,
        input,
        output,
        x.len(),
        out.len(),
    )?;
    let (w_in, ow_n) = (input.1, output.1);
    let hs: Vec<_> = (0..output.0).map(|i| bin(i, input.0, output.0)).collect();
    let ws: Vec<_> = (0..output.1).map(|i| bin(i, input.1, output.1)).collect();
    for_planes(out, opl, ip.max(opl), |p, o| {
        let xp = &x[p * ip..(p + 1) * ip];
        for (oh, &(h0, h1)) in hs.iter().enumerate() {
            for (ow, &(w0, w1)) in ws.iter().enumerate() {
                let mut sum = T::ZERO;
                for h in h0..h1 {
                    for &v in &xp[h * w_in + w0..h * w_in + w1] {
                        sum += v;
                    }
                }
                o[oh * ow_n + ow] =
                    sum / T::from_f64((h1 - h0) as f64) / T::from_f64((w1 - w0) as f64);
            }
        }
    });
    Ok(())
}

/// The backward of [`adaptive_avg_pool2d`]: `dx` (`planes` planes of `h`×`w`, overwritten) gets
/// each output gradient of `g` over its bin's size added across the bin, in row-major output
/// order.
pub fn adaptive_avg_pool2d_backward<T: Float>(
    g: &[T],
    planes: usize,
    input: (usize, usize),
    output: (usize, usize),
    dx: &mut [T],
) -> Result<(), OperandError> {
    let op = "adaptive_avg_pool2d_backward";
    let (ip, opl) = check(op, planes, input, output, dx.len(), g.len())?;
    let (w_in, ow_n) = (input.1, output.1);
    let hs: Vec<_> = (0..output.0).map(|i| bin(i, input.0, output.0)).collect();
    let ws: Vec<_> = (0..output.1).map(|i| bin(i, input.1, output.1)).collect();
    for_planes(dx, ip, ip.max(opl), |p, d| {
        d.fill(T::ZERO);
        let gp = &g[p * opl..(p + 1) * opl];
        for (oh, &(h0, h1)) in hs.iter().enumerate() {
            for (ow, &(w0, w1)) in ws.iter().enumerate() {
                let share = gp[oh * ow_n + ow]
                    / T::from_f64((h1 - h0) as f64)
                    / T::from_f64((w1 - w0) as f64);
                for h in h0..h1 {
                    for v in &mut d[h * w_in + w0..h * w_in + w1] {
                        *v += share;
                    }
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bin;

    #[test]
    fn bins_follow_pytorch() {
        // 5 → 3: [0,2), [1,4), [3,5) (torch.nn.AdaptiveAvgPool1d docs' start/end formula).
        let b: Vec<_> = (0..3).map(|i| bin(i, 5, 3)).collect();
        assert_eq!(b, vec![(0, 2), (1, 4), (3, 5)]);
        // 2 → 4: each input element feeds two outputs.
        let b: Vec<_> = (0..4).map(|i| bin(i, 2, 4)).collect();
        assert_eq!(b, vec![(0, 1), (0, 1), (1, 2), (1, 2)]);
        assert_eq!(bin(0, 7, 1), (0, 7));
    }
}
