//! Quantization utilities: choosing scales and zero points, quantizing and dequantizing.
//!
//! Two schemes, the two of PyTorch's dynamic quantization (`torch.ao.quantization
//! .quantize_dynamic` with the x86 `fbgemm` engine):
//! - **Weights**: symmetric, per output channel, i8 in [-127, 127]: `scale_j = max_k |w[j,k]| /
//!   127` (at least `f32::EPSILON`, PyTorch's `eps`, so an all-zero channel gets a finite
//!   scale), zero point 0. PyTorch's per-channel symmetric observer divides by 127.5 and may
//!   produce -128; ember keeps the range symmetric, [-127, 127], so that `-q` is always a code.
//! - **Activations**: asymmetric (u8 with a zero point), per tensor, computed per batch
//!   ("dynamic"), in the 7-bit range [0, 127] (PyTorch's dynamic Linear calls the fbgemm
//!   kernel with `reduce_range=True` for the same reason ember does: the AVX2 `vpmaddubsw`
//!   pair sums must not saturate; see [`super`]). Asymmetric rather than symmetric because
//!   the inputs of hidden layers are ReLU outputs (all ≥ 0): a symmetric code would waste half
//!   its range on negatives that never occur, and 7 bits leave little to waste. The range
//!   always contains 0 so that 0 (padding, ReLU zeros) is exact. Scale and zero point follow
//!   fbgemm's `ChooseQuantizationParams`: `scale = (max − min) / 127` computed in f64 and
//!   rounded to f32, then the zero point from whichever end (min or max) gives the smaller
//!   rounding error, clamped into [0, 127] and rounded half to even.
//!
//! Rounding is half to even (`f32::round_ties_even`, C's `nearbyint` in the default mode, as
//! PyTorch rounds), applied to `x · (1/scale)`: PyTorch multiplies by the inverse scale too.
//! Codes saturate at the ends of their range.

use super::QError;

/// The largest activation code (7-bit activations; see the module docs).
pub const ACT_QMAX: i32 = 127;

/// The largest weight magnitude code (weights lie in [-127, 127]).
pub const W_QMAX: i32 = 127;

/// A scale and zero point: `x ≈ (q − zero_point) · scale`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    /// The step between codes (positive, finite).
    pub scale: f32,
    /// The code of 0.0.
    pub zero_point: i32,
}

/// `clamp(round_half_even(x · (1/scale)) + zero_point, qmin, qmax)`.
///
/// NaN maps to `qmin`, ±∞ to the ends of the range.
#[inline]
pub fn quantize_one(x: f32, scale: f32, zero_point: i32, qmin: i32, qmax: i32) -> i32 {
    code(x * (1.0 / scale), zero_point, qmin, qmax)
}

/// `clamp(round_half_even(y) + zero_point, qmin, qmax)` for a product `y = x · (1/scale)`.
///
/// Rounding by the magic number: for |y| ≤ 2²², `y + 1.5·2²³` lies where the f32 step is
/// exactly 1, so the addition itself rounds to an integer, half to even (IEEE's default), and
/// subtracting the constant back is exact. Values beyond ±2²² are clamped first (every code
/// range here is far smaller). This equals `f32::round_ties_even` on the clamped value but,
/// unlike it, vectorises without SSE4.1 (a libm call per element was 10 ns).
#[inline(always)]
fn code(y: f32, zero_point: i32, qmin: i32, qmax: i32) -> i32 {
    const LIMIT: f32 = 4_194_304.0; // 2^22
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    if y.is_nan() {
        return qmin;
    }
    let y = y.clamp(-LIMIT, LIMIT);
    let r = (y + MAGIC) - MAGIC;
    // |r| ≤ 2^22, so the cast is exact and the add cannot overflow for any code range here.
    ((r as i32).saturating_add(zero_point)).clamp(qmin, qmax)
}

/// The activation parameters for values in [min, max] (fbgemm's algorithm; module docs).
pub fn choose_act_params(min: f32, max: f32) -> Result<QParams, QError> {
    if !(min.is_finite() && max.is_finite()) || min > max {
        return Err(QError::Invalid {
            op: "quantize",
            message: format!("the range [{min}, {max}] must be finite and ordered"),
        });
    }
    let (qmin, qmax) = (0.0f64, f64::from(ACT_QMAX));
    let (min, max) = (f64::from(min.min(0.0)), f64::from(max.max(0.0)));
    let mut scale = ((max - min) / (qmax - qmin)) as f32;
    if scale == 0.0 || !(1.0 / scale).is_finite() {
        scale = 0.1;
    }
    let s = f64::from(scale);
    let zp_from_min = qmin - min / s;
    let zp_from_max = qmax - max / s;
    let err_min = qmin.abs() + (min / s).abs();
    let err_max = qmax.abs() + (max / s).abs();
    let zp = if err_min < err_max {
        zp_from_min
    } else {
        zp_from_max
    };
    let zero_point = zp.clamp(qmin, qmax).round_ties_even() as i32;
    Ok(QParams { scale, zero_point })
}

/// Dynamic per-tensor quantization of activations: chooses the parameters from the values'
/// own range and writes the u8 codes (in [0, 127]) to `out`. Non-finite values are an error
/// naming the first one's index.
pub fn quantize_acts(x: &[f32], out: &mut [u8]) -> Result<QParams, QError> {
    if out.len() < x.len() {
        return Err(QError::TooShort {
            op: "quantize",
            operand: "the output",
            need: x.len(),
            len: out.len(),
        });
    }
    let (min, max, finite) = scan(x);
    if !finite {
        let at = x.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(QError::Invalid {
            op: "quantize",
            message: format!(
                "input element {at} of {} is {}, which has no code",
                x.len(),
                x.get(at).copied().unwrap_or(f32::NAN)
            ),
        });
    }
    let p = choose_act_params(min, max)?;
    quantize_u8(x, p, out)?;
    Ok(p)
}

/// Quantizes `x` to u8 codes in [0, 127] with given parameters (static quantization).
pub fn quantize_u8(x: &[f32], p: QParams, out: &mut [u8]) -> Result<(), QError> {
    check_params("quantize", p, ACT_QMAX)?;
    if out.len() < x.len() {
        return Err(QError::TooShort {
            op: "quantize",
            operand: "the output",
            need: x.len(),
            len: out.len(),
        });
    }
    let inv = 1.0 / p.scale;
    let out = &mut out[..x.len()];
    #[cfg(target_arch = "x86_64")]
    if crate::isa::active().has_avx2() {
        // SAFETY: the CPU has AVX2 (has_avx2 checks detection); the slices have equal lengths.
        unsafe { quantize_avx2(x, inv, p.zero_point, out) };
        return Ok(());
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = code(v * inv, p.zero_point, 0, ACT_QMAX) as u8;
    }
    Ok(())
}

/// [`quantize_u8`]'s loop with AVX2, 32 values per step: the same operations as [`code`]
/// (multiply by the inverse scale, clamp to ±2²², the magic-number rounding, add the zero
/// point, clamp to [0, 127]), so the same codes; NaN goes to 0 (= qmin) as there.
///
/// # Safety
/// The CPU must have AVX2; `out.len() == x.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(x: &[f32], inv: f32, zero_point: i32, out: &mut [u8]) {
    use std::arch::x86_64::*;
    let (vinv, lim, nlim, magic) = (
        _mm256_set1_ps(inv),
        _mm256_set1_ps(4_194_304.0),
        _mm256_set1_ps(-4_194_304.0),
        _mm256_set1_ps(12_582_912.0),
    );
    let (zp, lo, hi) = (
        _mm256_set1_epi32(zero_point),
        _mm256_setzero_si256(),
        _mm256_set1_epi32(ACT_QMAX),
    );
    let one = |v: __m256| -> __m256i {
        let y = _mm256_mul_ps(v, vinv);
        // max(-L, y) and min(L, y) return y when it is NaN (the second operand), which the
        // conversion then turns into i32::MIN and the clamp into 0.
        let y = _mm256_min_ps(lim, _mm256_max_ps(nlim, y));
        let r = _mm256_sub_ps(_mm256_add_ps(y, magic), magic);
        let q = _mm256_add_epi32(_mm256_cvtps_epi32(r), zp);
        _mm256_min_epi32(_mm256_max_epi32(q, lo), hi)
    };
    let n = x.len() / 32 * 32;
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for i in (0..n).step_by(32) {
        // SAFETY: i + 32 ≤ n ≤ x.len() = out.len().
        unsafe {
            let p = x.as_ptr().add(i);
            let q0 = one(_mm256_loadu_ps(p));
            let q1 = one(_mm256_loadu_ps(p.add(8)));
            let q2 = one(_mm256_loadu_ps(p.add(16)));
            let q3 = one(_mm256_loadu_ps(p.add(24)));
            // Packs work within 128-bit lanes; the permute restores the element order.
            let w01 = _mm256_packus_epi32(q0, q1);
            let w23 = _mm256_packus_epi32(q2, q3);
            let b = _mm256_packus_epi16(w01, w23);
            let b = _mm256_permutevar8x32_epi32(b, order);
            _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut __m256i, b);
        }
    }
    for (o, &v) in out[n..].iter_mut().zip(&x[n..]) {
        *o = code(v * inv, zero_point, 0, ACT_QMAX) as u8;
    }
}

/// [`scan`] with AVX2: the same minimum, maximum and finiteness (min and max are exact, so
/// the lane order does not matter).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2(x: &[f32]) -> (f32, f32, bool) {
    use std::arch::x86_64::*;
    let (mut lo, mut hi, mut bad) = (
        _mm256_setzero_ps(),
        _mm256_setzero_ps(),
        _mm256_setzero_ps(),
    );
    let zero = _mm256_setzero_ps();
    let n = x.len() / 8 * 8;
    for i in (0..n).step_by(8) {
        // SAFETY: i + 8 ≤ n ≤ x.len().
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) };
        // A NaN v leaves lo/hi unchanged (the second operand is returned); `bad` catches it.
        lo = _mm256_min_ps(v, lo);
        hi = _mm256_max_ps(v, hi);
        bad = _mm256_add_ps(bad, _mm256_mul_ps(v, zero));
    }
    let (mut l, mut h, mut b) = ([0f32; 8], [0f32; 8], [0f32; 8]);
    // SAFETY: each array holds 8 f32.
    unsafe {
        _mm256_storeu_ps(l.as_mut_ptr(), lo);
        _mm256_storeu_ps(h.as_mut_ptr(), hi);
        _mm256_storeu_ps(b.as_mut_ptr(), bad);
    }
    let (mut min, mut max, mut finite) = (0f32, 0f32, b.iter().all(|v| *v == 0.0));
    for &v in l.iter().chain(&x[n..]) {
        min = if v < min { v } else { min };
    }
    for &v in h.iter().chain(&x[n..]) {
        max = if v > max { v } else { max };
    }
    finite &= x[n..].iter().all(|v| v.is_finite());
    (min, max, finite)
}

/// The range of `x` widened to contain 0, and whether every value is finite, in one
/// vectorisable pass (8 lanes of comparisons; `v·0` is NaN exactly for NaN and ±∞).
fn scan(x: &[f32]) -> (f32, f32, bool) {
    #[cfg(target_arch = "x86_64")]
    if crate::isa::active().has_avx2() {
        // SAFETY: the CPU has AVX2.
        return unsafe { scan_avx2(x) };
    }
    let (mut lo, mut hi, mut bad) = ([0f32; 8], [0f32; 8], [0f32; 8]);
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for l in 0..8 {
            lo[l] = if ch[l] < lo[l] { ch[l] } else { lo[l] };
            hi[l] = if ch[l] > hi[l] { ch[l] } else { hi[l] };
            bad[l] += ch[l] * 0.0;
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        lo[l] = if v < lo[l] { v } else { lo[l] };
        hi[l] = if v > hi[l] { v } else { hi[l] };
        bad[l] += v * 0.0;
    }
    let min = lo.iter().fold(0f32, |m, &v| if v < m { v } else { m });
    let max = hi.iter().fold(0f32, |m, &v| if v > m { v } else { m });
    (min, max, bad.iter().all(|b| *b == 0.0))
}

/// `(q − zero_point) · scale` for every code.
pub fn dequantize_u8(q: &[u8], p: QParams, out: &mut [f32]) -> Result<(), QError> {
    if out.len() < q.len() {
        return Err(QError::TooShort {
            op: "dequantize",
            operand: "the output",
            need: q.len(),
            len: out.len(),
        });
    }
    for (o, &c) in out.iter_mut().zip(q) {
        *o = (i32::from(c) - p.zero_point) as f32 * p.scale;
    }
    Ok(())
}

/// Checks a scale and zero point against a code range [0, qmax].
fn check_params(op: &'static str, p: QParams, qmax: i32) -> Result<(), QError> {
    if !(p.scale.is_finite() && p.scale > 0.0 && (0..=qmax).contains(&p.zero_point)) {
        return Err(QError::Invalid {
            op,
            message: format!(
                "scale {} must be positive and finite and zero point {} in [0, {qmax}]",
                p.scale, p.zero_point
            ),
        });
    }
    Ok(())
}

/// Weights quantized per output channel: `rows` channels of `cols` codes, row-major, and one
/// scale per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantWeights {
    /// Output channels (rows).
    pub rows: usize,
    /// Inputs per channel (columns).
    pub cols: usize,
    /// The codes, in [-127, 127], row-major `[rows, cols]`.
    pub codes: Vec<i8>,
    /// One scale per row.
    pub scales: Vec<f32>,
}

/// Symmetric per-channel quantization of a `[rows, cols]` row-major weight (a Dense layer's
/// `[out, in]`). Non-finite weights are an error naming the element.
pub fn quantize_weights(w: &[f32], rows: usize, cols: usize) -> Result<QuantWeights, QError> {
    let need = rows.checked_mul(cols).ok_or_else(|| QError::Invalid {
        op: "quantize_weights",
        message: format!("[{rows}, {cols}] overflows"),
    })?;
    if w.len() < need {
        return Err(QError::TooShort {
            op: "quantize_weights",
            operand: "the weight",
            need,
            len: w.len(),
        });
    }
    if let Some(at) = w[..need].iter().position(|v| !v.is_finite()) {
        return Err(QError::Invalid {
            op: "quantize_weights",
            message: format!(
                "weight [{}, {}] of [{rows}, {cols}] is {}",
                at / cols.max(1),
                at % cols.max(1),
                w[at]
            ),
        });
    }
    let mut codes = vec![0i8; need];
    let mut scales = vec![0f32; rows];
    if cols > 0 {
        for ((row, out), scale) in w[..need]
            .chunks_exact(cols)
            .zip(codes.chunks_exact_mut(cols))
            .zip(scales.iter_mut())
        {
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            *scale = (amax / W_QMAX as f32).max(f32::EPSILON);
            for (o, &v) in out.iter_mut().zip(row) {
                *o = quantize_one(v, *scale, 0, -W_QMAX, W_QMAX) as i8;
            }
        }
    } else {
        scales.fill(f32::EPSILON);
    }
    Ok(QuantWeights {
        rows,
        cols,
        codes,
        scales,
    })
}

impl QuantWeights {
    /// The weights back in f32: `codes[j, k] · scales[j]`.
    pub fn dequantize(&self) -> Vec<f32> {
        if self.cols == 0 {
            return Vec::new();
        }
        self.codes
            .chunks_exact(self.cols)
            .zip(&self.scales)
            .flat_map(|(row, &s)| row.iter().map(move |&q| f32::from(q) * s))
            .collect()
    }
}
