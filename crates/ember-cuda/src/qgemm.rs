//! The int8 GEMM on the GPU (kernels/qgemm.cu, `dp4a`): the twin of ember-cpu's `qgemm` with a
//! dequantized f32 output, for quantized Dense and Conv2d layers.
//!
//! [`qgemm_f32`] takes host data in ember-cpu's shapes (A: u8 codes `[m, k]` row-major with
//! its zero point; B: the i8 weight codes as `[n, k]`, a Linear weight's `[out, in]`; one scale
//! per output column), lays them out for the kernel (K padded to a multiple of 4 with zero
//! weights, 32-bit words, the column sums for the zero point), runs it and returns `[m, n]` f32.
//! Results equal the CPU kernel's bit for bit (same i32 sums, same f32 epilogue order). It
//! moves its operands each call: it is the kernel and its check, not yet a device-resident
//! quantized layer (ember-nn's quantized layers run on the CPU).

use crate::device::CudaDevice;
use crate::error::{CudaError, driver_err, invalid};
use crate::launch::launch_err;
use cudarc::driver::{LaunchConfig, PushKernelArg};
use std::sync::Arc;

/// The largest K: no i32 sum can wrap (|a − za|·|b| ≤ 255·128 per product), as on the CPU.
pub const MAX_K: usize = (i32::MAX as usize) / (255 * 128);

/// The operands of [`qgemm_f32`].
#[derive(Debug, Clone, Copy)]
pub struct QGemmArgs<'a> {
    /// Rows of A and C.
    pub m: usize,
    /// Columns of C (rows of the transposed B).
    pub n: usize,
    /// The shared dimension.
    pub k: usize,
    /// A: u8 codes, `[m, k]` row-major.
    pub a: &'a [u8],
    /// A's zero point (subtracted from every code).
    pub za: i32,
    /// B transposed: i8 codes, `[n, k]` row-major.
    pub b_t: &'a [i8],
    /// A's scale.
    pub a_scale: f32,
    /// One scale per output column (`n`).
    pub b_scales: &'a [f32],
    /// An optional bias per output column (`n`).
    pub bias: Option<&'a [f32]>,
    /// Apply ReLU after the bias (the only activation the kernel fuses).
    pub relu: bool,
}

/// Packs rows of `k` bytes into rows of `kw` little-endian words, zero-padded.
fn words(bytes: &[u8], rows: usize, k: usize, kw: usize) -> Vec<u32> {
    let mut out = vec![0u32; rows * kw];
    for (src, dst) in bytes
        .chunks_exact(k.max(1))
        .zip(out.chunks_exact_mut(kw.max(1)))
    {
        for (w, quad) in dst.iter_mut().zip(src.chunks(4)) {
            let mut b = [0u8; 4];
            b[..quad.len()].copy_from_slice(quad);
            *w = u32::from_le_bytes(b);
        }
    }
    out
}

/// `C = act(f32(Σ_k (A − za)·B) · (a_scale · b_scales[j]) + bias[j])` on `dev` (module docs).
pub fn qgemm_f32(dev: &Arc<CudaDevice>, q: &QGemmArgs<'_>) -> Result<Vec<f32>, CudaError> {
    let op = "qgemm_f32";
    let (m, n, k) = (q.m, q.n, q.k);
    if k > MAX_K {
        return Err(invalid(
            op,
            format!("K = {k} exceeds {MAX_K}: an i32 sum could wrap"),
        ));
    }
    let sizes_ok = m.checked_mul(k) == Some(q.a.len())
        && n.checked_mul(k) == Some(q.b_t.len())
        && q.b_scales.len() == n
        && q.bias.is_none_or(|b| b.len() == n);
    if !sizes_ok {
        return Err(invalid(
            op,
            format!(
                "m {m}, n {n}, k {k} need A {m}x{k}, B {n}x{k}, {n} scales (and {n} biases); got \
                 {} codes, {} codes, {} scales, {:?} biases",
                q.a.len(),
                q.b_t.len(),
                q.b_scales.len(),
                q.bias.map(<[f32]>::len)
            ),
        ));
    }
    let too_big = |v: usize| i32::try_from(v).is_err();
    if too_big(m) || too_big(n) || too_big(k) || q.za.unsigned_abs() > 255 {
        return Err(invalid(
            op,
            format!("m {m}, n {n}, k {k} or zero point {} out of range", q.za),
        ));
    }
    if m == 0 || n == 0 {
        return Ok(vec![0.0; m * n]);
    }
    let kw = k.div_ceil(4);
    let a_words = words(q.a, m, k, kw);
    let b_bytes: Vec<u8> = q.b_t.iter().map(|&v| v as u8).collect();
    let b_words = words(&b_bytes, n, k, kw);
    let colsum: Vec<i32> = q
        .b_t
        .chunks_exact(k.max(1))
        .map(|col| col.iter().map(|&v| i32::from(v)).sum())
        .chain(std::iter::repeat(0))
        .take(n)
        .collect();
    let bias: Vec<f32> = q.bias.map_or_else(|| vec![0.0], <[f32]>::to_vec);
    let s = dev.stream();
    let up = |what: &str, e| driver_err(format!("{op}: uploading {what}"), e);
    let a_d = s.clone_htod(&a_words).map_err(|e| up("A", e))?;
    let b_d = s.clone_htod(&b_words).map_err(|e| up("B", e))?;
    let cs_d = s.clone_htod(&colsum).map_err(|e| up("column sums", e))?;
    let sb_d = s.clone_htod(q.b_scales).map_err(|e| up("scales", e))?;
    let bias_d = s.clone_htod(&bias).map_err(|e| up("bias", e))?;
    let mut c_d = s
        .alloc_zeros::<f32>(m * n)
        .map_err(|e| driver_err(format!("{op}: allocating C"), e))?;
    let f = dev.function("qgemm", "qgemm_dp4a_f32")?;
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (mi, ni, kwi, ldc) = (m as i32, n as i32, kw as i32, n as i32);
    let (has_bias, act) = (i32::from(q.bias.is_some()), i32::from(q.relu));
    let mut l = s.launch_builder(&f);
    l.arg(&a_d)
        .arg(&b_d)
        .arg(&cs_d)
        .arg(&mi)
        .arg(&ni)
        .arg(&kwi)
        .arg(&q.za)
        .arg(&q.a_scale)
        .arg(&sb_d)
        .arg(&bias_d)
        .arg(&has_bias)
        .arg(&act)
        .arg(&mut c_d)
        .arg(&ldc);
    // SAFETY: A holds m·kw words, B n·kw, colsum/scales n values, bias n (or 1 when unused and
    // never read), C m·n floats; the grid covers ⌈n/64⌉ × ⌈m/64⌉ tiles and every access is
    // bounds-checked against m, n and kw in the kernel.
    unsafe { l.launch(cfg) }.map_err(|e| launch_err("qgemm_dp4a_f32", e))?;
    s.clone_dtoh(&c_d)
        .map_err(|e| driver_err(format!("{op}: downloading C"), e))
}
