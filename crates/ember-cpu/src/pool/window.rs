//! Max and average pooling over windows, forward and backward (PyTorch's CPU semantics).
//!
//! The window geometry is [`Pool2dSpec`]: kernel, stride, dilation (max only) and padding per
//! axis, and `ceil_mode`. For each output row the valid taps of the window are found once (the
//! range of window rows, and per output column the range of window columns, that fall inside
//! the input), so the inner loops never test bounds.
//!
//! - Max: padding counts as −∞ and never wins. The scan keeps the first maximum in row-major
//!   window order (`v > best`), and a NaN always wins (`v > best || v is NaN`), as PyTorch's CPU
//!   kernel, so a NaN anywhere in the window is the result. The argmax is the element's offset
//!   in its input plane (`h·W + w`, as PyTorch's indices), as `u32`.
//! - Average: the sum of the real elements over a divisor that is the window clipped to the
//!   padded input (`count_include_pad`, PyTorch's default) or the number of real elements.
//!
//! The backward kernels scatter each output's gradient (to the argmax, or spread over the
//! window) in row-major output order within the plane, one plane per task.
//!
//! The common 2×2, stride-2 max pool without padding (every CNN's) has its own path: the two
//! input rows of an output row are compared branch-free, with explicit AVX-512 rows on f32
//! (see the `simd` module for what was measured); its result and argmax equal the general
//! path's bit for bit (tests compare them on every ISA, with ties and NaNs).

use super::{check_planes, for_planes, geometry};
use crate::element::Float;
use crate::error::OperandError;
use ember_ops::{Axis, Pool2dSpec, PoolKind};

/// The valid taps of every window along one axis: for output `o`, window taps `lo..hi` fall
/// inside the input, the first at input index `first`.
#[derive(Debug, Clone, Copy)]
struct Taps {
    lo: usize,
    hi: usize,
    first: usize,
}

/// The taps of each output along `a` (`out` outputs).
fn taps(a: &Axis, out: usize) -> Vec<Taps> {
    (0..out)
        .map(|o| {
            // Window start in padded coordinates minus the begin padding: may be negative.
            let start = (o * a.stride) as isize - a.pad_begin as isize;
            let d = a.dilation as isize;
            let mut lo = 0usize;
            while lo < a.kernel && start + lo as isize * d < 0 {
                lo += 1;
            }
            let mut hi = lo;
            while hi < a.kernel && start + (hi as isize) * d < a.input as isize {
                hi += 1;
            }
            let first = (start + lo as isize * d).max(0) as usize;
            Taps { lo, hi, first }
        })
        .collect()
}

/// The checks every pooling kernel makes: a valid spec of the right kind and buffers of the
/// right sizes. Returns (planes, input plane, output plane).
fn check(
    op: &'static str,
    spec: &Pool2dSpec,
    want_max: bool,
    input_len: usize,
    output_len: usize,
) -> Result<(usize, usize, usize), OperandError> {
    let is_max = matches!(spec.kind, PoolKind::Max);
    if is_max != want_max {
        return Err(geometry(
            op,
            format!("called with a {:?} pooling spec", spec.kind),
        ));
    }
    spec.validate().map_err(|p| geometry(op, p))?;
    if !is_max && (spec.h.dilation != 1 || spec.w.dilation != 1) {
        return Err(geometry(
            op,
            format!(
                "average pooling has no dilation (got {}×{})",
                spec.h.dilation, spec.w.dilation
            ),
        ));
    }
    let planes = spec.batch.checked_mul(spec.channels).ok_or_else(|| {
        geometry(
            op,
            format!("{} × {} planes overflow", spec.batch, spec.channels),
        )
    })?;
    let ip = spec.h.input.checked_mul(spec.w.input).ok_or_else(|| {
        geometry(
            op,
            format!("a {}×{} plane overflows", spec.h.input, spec.w.input),
        )
    })?;
    let op_ = spec.out_h() * spec.out_w();
    check_planes(op, "input", planes, ip, input_len)?;
    check_planes(op, "output", planes, op_, output_len)?;
    Ok((planes, ip, op_))
}

/// Max pooling: `out` (`[N, C, OH, OW]`) gets each window's maximum of `x` (`[N, C, H, W]`),
/// and `argmax`, when given, the maximum's offset in its input plane. The spec's kind must be
/// [`PoolKind::Max`]; planes larger than `u32::MAX` elements are refused when `argmax` is asked.
pub fn max_pool2d<T: Float>(
    x: &[T],
    spec: &Pool2dSpec,
    out: &mut [T],
    argmax: Option<&mut [u32]>,
) -> Result<(), OperandError> {
    const OP: &str = "max_pool2d";
    let (_, ip, opl) = check(OP, spec, true, x.len(), out.len())?;
    if let Some(a) = argmax.as_deref() {
        crate::error::check_len(OP, "argmax", out.len(), a.len())?;
        if ip > u32::MAX as usize {
            return Err(geometry(
                OP,
                format!("an input plane of {ip} elements is too large for u32 argmax offsets"),
            ));
        }
    }
    let (th, tw) = (taps(&spec.h, spec.out_h()), taps(&spec.w, spec.out_w()));
    let fast = fast_2x2(spec);
    let work = ip.max(opl * spec.h.kernel * spec.w.kernel);
    let plane = |xp: &[T], o: &mut [T], a: Option<&mut [u32]>| {
        if fast {
            max_plane_2x2(xp, spec, o, a);
        } else {
            max_plane(xp, spec, &th, &tw, o, a);
        }
    };
    match argmax {
        Some(arg) => super::for_plane_pairs(out, arg, opl, work, |p, o, a| {
            plane(&x[p * ip..(p + 1) * ip], o, Some(a))
        }),
        None => for_planes(out, opl, work, |p, o| {
            plane(&x[p * ip..(p + 1) * ip], o, None)
        }),
    }
    Ok(())
}

/// True when the spec is the 2×2, stride-2, unpadded, undilated window whose outputs all lie
/// inside the input (floor mode, or even extents).
fn fast_2x2(s: &Pool2dSpec) -> bool {
    let ax = |a: &Axis, out: usize| {
        a.kernel == 2
            && a.stride == 2
            && a.dilation == 1
            && a.pad_begin == 0
            && a.pad_end == 0
            && out * 2 <= a.input
    };
    ax(&s.h, s.out_h()) && ax(&s.w, s.out_w())
}

/// One plane of the general max pool.
fn max_plane<T: Float>(
    x: &[T],
    s: &Pool2dSpec,
    th: &[Taps],
    tw: &[Taps],
    out: &mut [T],
    mut arg: Option<&mut [u32]>,
) {
    let (w_in, dh, dw) = (s.w.input, s.h.dilation, s.w.dilation);
    let ow_n = tw.len();
    for (oh, t_h) in th.iter().enumerate() {
        for (ow, t_w) in tw.iter().enumerate() {
            let mut best = T::neg_infinity();
            let mut at = t_h.first * w_in + t_w.first;
            for i in 0..t_h.hi - t_h.lo {
                let row = (t_h.first + i * dh) * w_in;
                for j in 0..t_w.hi - t_w.lo {
                    let off = row + t_w.first + j * dw;
                    let v = x[off];
                    if v > best || v.is_nan() {
                        best = v;
                        at = off;
                    }
                }
            }
            out[oh * ow_n + ow] = best;
            if let Some(a) = arg.as_deref_mut() {
                a[oh * ow_n + ow] = at as u32;
            }
        }
    }
}

/// One plane of the 2×2 stride-2 max pool (see [`fast_2x2`]); the same results as
/// [`max_plane`]: taps in the order (0,0), (0,1), (1,0), (1,1), first maximum kept, NaN wins.
/// f32 on AVX-512 runs the explicit SIMD rows ([`simd`]); everything else the branch-free
/// scalar body, compiled for the baseline (compiled for AVX2 it measured slower: see [`simd`]).
fn max_plane_2x2<T: Float>(x: &[T], s: &Pool2dSpec, out: &mut [T], arg: Option<&mut [u32]>) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::active() == crate::isa::Isa::Avx512
        && let (Some(xf), Some(of)) = (T::as_f32_slice(x), T::as_f32_slice_mut(out))
    {
        simd::max_plane_2x2_f32(xf, s, of, arg);
        return;
    }
    max_plane_2x2_body(x, s, out, arg);
}

/// `(best, at)` after offering `v` at offset `off`: branch-free, so a row of outputs vectorises.
#[inline(always)]
fn offer<T: Float>(best: T, at: u32, v: T, off: u32) -> (T, u32) {
    let take = v > best || v.is_nan();
    (if take { v } else { best }, if take { off } else { at })
}

#[inline]
fn max_plane_2x2_body<T: Float>(x: &[T], s: &Pool2dSpec, out: &mut [T], arg: Option<&mut [u32]>) {
    let (w_in, oh_n, ow_n) = (s.w.input, s.out_h(), s.out_w());
    // Window (oh, ow) covers rows 2oh, 2oh+1 and columns 2ow, 2ow+1. Zipped pair iterators
    // (no indexing) let the compiler see the stride-2 access and vectorise it.
    let rows = |oh: usize| {
        let r0 = &x[2 * oh * w_in..][..2 * ow_n];
        let r1 = &x[(2 * oh + 1) * w_in..][..2 * ow_n];
        r0.chunks_exact(2).zip(r1.chunks_exact(2))
    };
    match arg {
        Some(arg) => {
            let w = w_in as u32;
            for (oh, (o, a)) in out
                .chunks_exact_mut(ow_n)
                .zip(arg.chunks_exact_mut(ow_n))
                .take(oh_n)
                .enumerate()
            {
                let base = (2 * oh * w_in) as u32;
                for (ow, ((ov, av), (p, q))) in
                    o.iter_mut().zip(a.iter_mut()).zip(rows(oh)).enumerate()
                {
                    let i = base + 2 * ow as u32;
                    let (m, at) = (p[0], i);
                    let (m, at) = offer(m, at, p[1], i + 1);
                    let (m, at) = offer(m, at, q[0], i + w);
                    let (m, at) = offer(m, at, q[1], i + w + 1);
                    *ov = m;
                    *av = at;
                }
            }
        }
        None => {
            for (oh, o) in out.chunks_exact_mut(ow_n).take(oh_n).enumerate() {
                for (ov, (p, q)) in o.iter_mut().zip(rows(oh)) {
                    let (m, _) = offer(p[0], 0, p[1], 0);
                    let (m, _) = offer(m, 0, q[0], 0);
                    let (m, _) = offer(m, 0, q[1], 0);
                    *ov = m;
                }
            }
        }
    }
}

/// Explicit AVX-512 rows of the 2×2 stride-2 max pool on f32.
///
/// A block of 16 outputs reads 32 inputs from each of its two rows; `vpermt2ps` separates the
/// even and odd columns of two registers, giving the four taps a, b (top row), c, d (bottom
/// row) of 16 windows in four registers. Then the scalar rule runs lane-wise in the same
/// order: `take = v > best || v is NaN` as a mask (an ordered greater-than OR an unordered
/// self-compare), a masked move for the value and one for the argmax offset, so results are
/// bit-identical to the scalar body. Output rows are short (13 outputs for a 26-wide input),
/// so the last block of a row is masked rather than left to scalar code.
///
/// Measured per call, forward with argmax, as thread CPU time (the machine was loaded, so wall
/// time was not usable), medians of 3 rounds on Zen 4: N 64 C 32 26×26 (out of L2) AVX-512
/// rows 294 µs, the scalar body 392 µs compiled for the baseline and 472 µs compiled for AVX2;
/// N 4 (in L2) 17.9, 22.8 and 27.1 µs. An AVX2 version of these rows (8 lanes, `shufps` +
/// `vpermpd`, scalar tails) also measured slower than the baseline scalar body and was dropped.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::Pool2dSpec;
    use std::arch::x86_64::*;

    /// The plane, row by row. The caller checked that the active ISA is AVX-512.
    pub(super) fn max_plane_2x2_f32(
        x: &[f32],
        s: &Pool2dSpec,
        out: &mut [f32],
        mut arg: Option<&mut [u32]>,
    ) {
        let (w_in, oh_n, ow_n) = (s.w.input, s.out_h(), s.out_w());
        for oh in 0..oh_n {
            let r0 = &x[2 * oh * w_in..][..2 * ow_n];
            let r1 = &x[(2 * oh + 1) * w_in..][..2 * ow_n];
            let o = &mut out[oh * ow_n..][..ow_n];
            let a = arg.as_deref_mut().map(|a| &mut a[oh * ow_n..][..ow_n]);
            let base = (2 * oh * w_in) as u32;
            // SAFETY: the caller saw `Isa::Avx512` active, which `isa` only allows on CPUs with
            // AVX-512F; the slices hold 2·ow_n inputs per row and ow_n outputs (and offsets).
            unsafe { row_avx512(r0, r1, w_in as u32, base, o, a) };
        }
    }

    /// Every output of the row, in blocks of 16, the last block masked (masked-off lanes are
    /// neither loaded nor stored, so nothing past the slices is touched); returns `o.len()`.
    ///
    /// # Safety
    /// AVX-512F must be present; `r0` and `r1` must hold at least `2·o.len()` values and `a`
    /// (when given) `o.len()`.
    #[target_feature(enable = "avx512f")]
    unsafe fn row_avx512(
        r0: &[f32],
        r1: &[f32],
        w: u32,
        base: u32,
        o: &mut [f32],
        mut a: Option<&mut [u32]>,
    ) {
        let n = o.len();
        let ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
        let take = |v: __m512, m: __m512| {
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, m) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v)
        };
        // The lowest `k` lanes of 16.
        let lanes = |k: usize| -> __mmask16 { ((1u32 << k.min(16)) - 1) as __mmask16 };
        for k in 0..n.div_ceil(16) {
            let left = n - 16 * k; // outputs from this block on (≥ 1)
            let (mo, mlo, mhi) = (
                lanes(left),
                lanes(2 * left),
                lanes((2 * left).saturating_sub(16)),
            );
            // SAFETY: the masks select inputs 32k..32k+2·min(left, 16) ≤ 2·o.len() of each
            // row; masked-off lanes are not read.
            let (lo0, hi0, lo1, hi1) = unsafe {
                let (p0, p1) = (r0.as_ptr().add(32 * k), r1.as_ptr().add(32 * k));
                (
                    _mm512_maskz_loadu_ps(mlo, p0),
                    _mm512_maskz_loadu_ps(mhi, p0.add(16)),
                    _mm512_maskz_loadu_ps(mlo, p1),
                    _mm512_maskz_loadu_ps(mhi, p1.add(16)),
                )
            };
            let ta = _mm512_permutex2var_ps(lo0, ev, hi0);
            let tb = _mm512_permutex2var_ps(lo0, od, hi0);
            let tc = _mm512_permutex2var_ps(lo1, ev, hi1);
            let td = _mm512_permutex2var_ps(lo1, od, hi1);
            let k1 = take(tb, ta);
            let m = _mm512_mask_mov_ps(ta, k1, tb);
            let k2 = take(tc, m);
            let m = _mm512_mask_mov_ps(m, k2, tc);
            let k3 = take(td, m);
            let m = _mm512_mask_mov_ps(m, k3, td);
            // SAFETY: the mask selects outputs 16k..16k+min(left, 16), inside `o`.
            unsafe { _mm512_mask_storeu_ps(o.as_mut_ptr().add(16 * k), mo, m) };
            if let Some(a) = a.as_deref_mut() {
                let ia = _mm512_add_epi32(_mm512_set1_epi32((base + 32 * k as u32) as i32), ev);
                let step = |d: u32| _mm512_add_epi32(ia, _mm512_set1_epi32(d as i32));
                let i = _mm512_mask_mov_epi32(ia, k1, step(1));
                let i = _mm512_mask_mov_epi32(i, k2, step(w));
                let i = _mm512_mask_mov_epi32(i, k3, step(w + 1));
                // SAFETY: as for `o` (`a` is as long).
                unsafe { _mm512_mask_storeu_epi32(a.as_mut_ptr().add(16 * k).cast(), mo, i) };
            }
        }
    }
}

/// The max pool's backward: `dx` (`[N, C, H, W]`, overwritten) gets each output's gradient
/// `g` added at its window's argmax (as written by [`max_pool2d`]).
pub fn max_pool2d_backward<T: Float>(
    g: &[T],
    argmax: &[u32],
    spec: &Pool2dSpec,
    dx: &mut [T],
) -> Result<(), OperandError> {
    const OP: &str = "max_pool2d_backward";
    let (_, ip, opl) = check(OP, spec, true, dx.len(), g.len())?;
    crate::error::check_len(OP, "argmax", g.len(), argmax.len())?;
    if let Some((pos, &a)) = argmax.iter().enumerate().find(|(_, a)| **a as usize >= ip) {
        return Err(OperandError::Index {
            op: OP,
            position: pos,
            index: a as usize,
            extent: ip,
        });
    }
    for_planes(dx, ip, ip.max(opl), |p, d| {
        d.fill(T::ZERO);
        let (gp, ap) = (&g[p * opl..(p + 1) * opl], &argmax[p * opl..(p + 1) * opl]);
        for (&gv, &a) in gp.iter().zip(ap) {
            d[a as usize] += gv;
        }
    });
    Ok(())
}

/// The divisor and the valid tap ranges of one average-pool window along one axis:
/// (clipped-to-padded-input length, first real index, one past the last real index).
fn avg_extent(a: &Axis, o: usize) -> (usize, usize, usize) {
    let start = (o * a.stride) as isize - a.pad_begin as isize;
    let end = (start + a.kernel as isize).min((a.input + a.pad_end) as isize);
    let padded_len = (end - start).max(0) as usize;
    let lo = start.max(0) as usize;
    let hi = end.min(a.input as isize).max(lo as isize) as usize;
    (padded_len, lo, hi)
}

/// The divisor of window (`oh`, `ow`) and its real row and column ranges.
#[inline]
fn avg_window(s: &Pool2dSpec, hx: (usize, usize, usize), wx: (usize, usize, usize)) -> usize {
    let include = matches!(
        s.kind,
        PoolKind::Avg {
            count_include_pad: true
        }
    );
    if include {
        hx.0 * wx.0
    } else {
        (hx.2 - hx.1) * (wx.2 - wx.1)
    }
}

/// Average pooling: `out` (`[N, C, OH, OW]`) gets each window's sum of `x` over the divisor
/// the spec's [`PoolKind::Avg`] flag selects. A window with a zero divisor (only possible with
/// `count_include_pad = false`) gives NaN, as in PyTorch.
pub fn avg_pool2d<T: Float>(x: &[T], spec: &Pool2dSpec, out: &mut [T]) -> Result<(), OperandError> {
    const OP: &str = "avg_pool2d";
    let (_, ip, opl) = check(OP, spec, false, x.len(), out.len())?;
    let hs: Vec<_> = (0..spec.out_h()).map(|o| avg_extent(&spec.h, o)).collect();
    let ws: Vec<_> = (0..spec.out_w()).map(|o| avg_extent(&spec.w, o)).collect();
    let w_in = spec.w.input;
    let work = ip.max(opl * spec.h.kernel * spec.w.kernel);
    for_planes(out, opl, work, |p, o| {
        let xp = &x[p * ip..(p + 1) * ip];
        for (oh, &hx) in hs.iter().enumerate() {
            for (ow, &wx) in ws.iter().enumerate() {
                let mut sum = T::ZERO;
                for h in hx.1..hx.2 {
                    for &v in &xp[h * w_in + wx.1..h * w_in + wx.2] {
                        sum += v;
                    }
                }
                o[oh * ws.len() + ow] = sum / T::from_f64(avg_window(spec, hx, wx) as f64);
            }
        }
    });
    Ok(())
}

/// The average pool's backward: `dx` (`[N, C, H, W]`, overwritten) gets each output's
/// gradient over its divisor added to every real element of its window.
pub fn avg_pool2d_backward<T: Float>(
    g: &[T],
    spec: &Pool2dSpec,
    dx: &mut [T],
) -> Result<(), OperandError> {
    const OP: &str = "avg_pool2d_backward";
    let (_, ip, opl) = check(OP, spec, false, dx.len(), g.len())?;
    let hs: Vec<_> = (0..spec.out_h()).map(|o| avg_extent(&spec.h, o)).collect();
    let ws: Vec<_> = (0..spec.out_w()).map(|o| avg_extent(&spec.w, o)).collect();
    let w_in = spec.w.input;
    let work = ip.max(opl * spec.h.kernel * spec.w.kernel);
    for_planes(dx, ip, work, |p, d| {
        d.fill(T::ZERO);
        let gp = &g[p * opl..(p + 1) * opl];
        for (oh, &hx) in hs.iter().enumerate() {
            for (ow, &wx) in ws.iter().enumerate() {
                let share = gp[oh * ws.len() + ow] / T::from_f64(avg_window(spec, hx, wx) as f64);
                for h in hx.1..hx.2 {
                    for v in &mut d[h * w_in + wx.1..h * w_in + wx.2] {
                        *v += share;
                    }
                }
            }
        }
    });
    Ok(())
}
