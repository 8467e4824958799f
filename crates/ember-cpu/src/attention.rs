//! Scaled dot-product attention, forward and backward, tiled so the `[tq, tk]` score matrix of
//! a head never exists in memory: the FlashAttention-2 algorithm (Dao 2023) on the CPU.
//!
//! Operands are dense: per group g (one example's head) queries `q[g]` `[tq, dh]`, keys
//! `k[g]` `[tk, dh]`, values `v[g]` `[tk, dv]`; an optional keep-mask `[batch, tk]` (nonzero =
//! attend) is shared by the heads of an example; `causal` lets query i see key j only when
//! j ≤ i (top-left aligned, as PyTorch's `is_causal`).
//!
//! **Forward.** One task per (group, block of [`BLOCK_Q`] query rows). It walks the key tiles of
//! [`BLOCK_K`] keys in order (with `causal`, only those a row of the block can see), and per tile
//! computes `S = scale·Q·Kᵀ` with the GEMM, sets masked logits to −∞, and updates an *online
//! softmax*: the running row max `m`, the running denominator `l` and the unnormalised output
//! `acc` are rescaled by `e^(m_old − m_new)` whenever the max grows, then `acc += e^(S − m)·V`
//! (the GEMM again). At the end `out = acc / l` and the log-sum-exp `lse = m + ln l` is saved
//! per row: that is all the backward needs to rebuild any tile of probabilities,
//! `P = e^(S − lse)`. Memory is O(tile), not O(tq·tk).
//!
//! **Backward**, with `D_i = Σ_d dO[i,d]·O[i,d]` per query row: `dV = Pᵀ·dO`,
//! `dP = dO·Vᵀ`, `dS = P∘(dP − D)`, `dK = scale·dSᵀ·Q`, `dQ = scale·dS·K`. One task per group
//! (one example's head) walks its key blocks in order and, for each, the query tiles in order,
//! rebuilding the tile of P from the saved lse: five GEMMs per tile (S, dP, dV, dK, dQ). The
//! task owns the group's rows of dQ, dK and dV, so no atomics or thread-dependent sums appear
//! (FlashAttention-2 splits a group's key blocks across threads and adds dQ atomically; ember
//! keeps the fixed order and parallelises over the N·H groups instead).

//! **Fully masked rows.** A query row that may see no key at all (every key padded) has output
//! 0, lse = +∞ (so every recomputed probability is 0) and zero gradients. PyTorch gives NaN
//! there; ember differs on purpose, since such rows arise from padded batches and a NaN would
//! poison the whole loss.
//!
//! Determinism: tiles are fixed by the constants, each task runs its tiles in a fixed order, and
//! the GEMMs on tiles are themselves deterministic; the result is bit-identical for any thread
//! count.

use crate::element::Float;
use crate::error::{OperandError, check_len};
use crate::gemm::{Epilogue, MatMut, MatRef, gemm};
use crate::isa::{self, Isa};
use ember_ops::AttentionSpec;
use rayon::prelude::*;

/// Query rows per task and per tile.
pub const BLOCK_Q: usize = 128;
/// Keys per tile.
pub const BLOCK_K: usize = 128;

const OP: &str = "scaled_dot_product_attention";

fn geometry(problem: String) -> OperandError {
    OperandError::Geometry { op: OP, problem }
}

/// Checks the spec against the operand lengths; returns the number of groups.
fn check<T>(
    s: &AttentionSpec,
    q: &[T],
    k: &[T],
    v: &[T],
    keep: Option<&[T]>,
) -> Result<usize, OperandError> {
    let g = s
        .batch
        .checked_mul(s.heads)
        .ok_or_else(|| geometry(format!("{} × {} groups overflow", s.batch, s.heads)))?;
    let prod = |a: usize, b: usize, c: usize| {
        a.checked_mul(b)
            .and_then(|x| x.checked_mul(c))
            .ok_or_else(|| geometry(format!("{a} × {b} × {c} elements overflow")))
    };
    if s.dh == 0 || s.dv == 0 {
        return Err(geometry(format!(
            "query/key width {} and value width {} must be at least 1",
            s.dh, s.dv
        )));
    }
    if !s.scale.is_finite() {
        return Err(geometry(format!("scale {} must be finite", s.scale)));
    }
    check_len(OP, "query", prod(g, s.tq, s.dh)?, q.len())?;
    check_len(OP, "key", prod(g, s.tk, s.dh)?, k.len())?;
    check_len(OP, "value", prod(g, s.tk, s.dv)?, v.len())?;
    if let Some(m) = keep {
        check_len(OP, "key mask", prod(s.batch, s.tk, 1)?, m.len())?;
    }
    Ok(g)
}

fn gemm_err(e: crate::gemm::GemmError) -> OperandError {
    geometry(format!("tile product: {e}"))
}

/// Which keys a row may see: causal limit and key mask.
#[derive(Clone, Copy)]
struct Mask<'a, T> {
    causal: bool,
    keep: Option<&'a [T]>,
}

impl<T: Float> Mask<'_, T> {
    /// Sets the logits of the keys query `i` may not see (tile starting at key `j0`) to −∞;
    /// `keep_row` is the example's row of the key mask.
    #[inline]
    fn apply(&self, row: &mut [T], i: usize, j0: usize, keep_row: Option<&[T]>) {
        // Nothing to mask: no key mask, and the whole tile is at or before row i.
        if keep_row.is_none() && (!self.causal || j0 + row.len() <= i + 1) {
            return;
        }
        for (jj, s) in row.iter_mut().enumerate() {
            let j = j0 + jj;
            if (self.causal && j > i) || keep_row.is_some_and(|kr| kr[j] == T::ZERO) {
                *s = T::neg_infinity();
            }
        }
    }
    fn keep_row(&self, n: usize, tk: usize) -> Option<&[T]> {
        self.keep.map(|m| &m[n * tk..(n + 1) * tk])
    }
}

/// Keys a block of query rows `i0..i1` can see at most: all, or up to the last row under
/// `causal`.
#[inline]
fn key_end(causal: bool, i1: usize, tk: usize) -> usize {
    if causal { i1.min(tk) } else { tk }
}

/// `row[j] = e^(row[j] − m)` (0 where `row[j]` = −∞); returns Σ row in a fixed order.
#[inline]
fn exp_shift<T: Float>(isa: Isa, row: &mut [T], m: T) -> T {
    if let Some(rf) = T::as_f32_slice_mut(row) {
        let mf = m.to_f64() as f32;
        return T::from_f64(exp_shift_f32(isa, rf, mf) as f64);
    }
    let mut s = T::ZERO;
    for v in row.iter_mut() {
        *v = if *v == T::neg_infinity() {
            T::ZERO
        } else {
            (*v - m).exp()
        };
        s += *v;
    }
    s
}

fn exp_shift_f32(isa: Isa, row: &mut [f32], m: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if isa.has_avx2() {
        // SAFETY: AVX2 and FMA are present (checked just above).
        return unsafe { exp_shift_avx2(row, m) };
    }
    let _ = isa;
    exp_shift_body::<crate::vmath::Unfused>(row, m)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_shift_avx2(row: &mut [f32], m: f32) -> f32 {
    exp_shift_body::<crate::vmath::Fused>(row, m)
}

#[inline(always)]
fn exp_shift_body<F: crate::vmath::MulAdd>(row: &mut [f32], m: f32) -> f32 {
    for v in row.iter_mut() {
        let e = crate::vmath::exp::<F>(*v - m);
        *v = if *v == f32::NEG_INFINITY { 0.0 } else { e };
    }
    let mut acc = [0f32; 8];
    let mut it = row.chunks_exact(8);
    for c in &mut it {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    let mut s = it.remainder().iter().sum::<f32>();
    for a in acc {
        s += a;
    }
    s
}

/// The forward: `out` `[groups, tq, dv]` and `lse` `[groups, tq]` (+∞ on fully masked rows).
pub fn attention_forward<T: Float>(
    spec: &AttentionSpec,
    q: &[T],
    k: &[T],
    v: &[T],
    keep: Option<&[T]>,
    out: &mut [T],
    lse: &mut [T],
) -> Result<(), OperandError> {
    let s = *spec;
    let g = check(&s, q, k, v, keep)?;
    check_len(OP, "output", g * s.tq * s.dv, out.len())?;
    check_len(OP, "logsumexp", g * s.tq, lse.len())?;
    if g == 0 || s.tq == 0 {
        return Ok(());
    }
    let isa = isa::active();
    let mask = Mask {
        causal: s.causal,
        keep,
    };
    let scale = T::from_f64(s.scale);
    let (tq, tk, dh, dv) = (s.tq, s.tk, s.dh, s.dv);
    let qblocks = tq.div_ceil(BLOCK_Q);
    // Task t = (group, query block): rows i0..i1 of group gi.
    let task = |t: usize, o: &mut [T], lo: &mut [T]| -> Result<(), OperandError> {
        let (gi, qb) = (t / qblocks, t % qblocks);
        let i0 = qb * BLOCK_Q;
        let bq = o.len() / dv;
        let keep_row = mask.keep_row(gi / s.heads, tk);
        let qa = MatRef {
            data: &q[(gi * tq + i0) * dh..(gi * tq + i0 + bq) * dh],
            rs: dh,
            cs: 1,
        };
        let mut sc = vec![T::ZERO; bq * BLOCK_K];
        let mut m = vec![T::neg_infinity(); bq];
        let mut l = vec![T::ZERO; bq];
        o.fill(T::ZERO);
        let kend = key_end(s.causal, i0 + bq, tk);
        let mut j0 = 0;
        while j0 < kend {
            let bk = BLOCK_K.min(kend - j0);
            let st = &mut sc[..bq * bk];
            let kt = MatRef {
                data: &k[(gi * tk + j0) * dh..(gi * tk + j0 + bk) * dh],
                rs: 1,
                cs: dh,
            };
            let c = MatMut {
                data: &mut *st,
                rs: bk,
                cs: 1,
            };
            gemm(bq, bk, dh, scale, qa, kt, T::ZERO, c, Epilogue::default()).map_err(gemm_err)?;
            for r in 0..bq {
                let row = &mut st[r * bk..(r + 1) * bk];
                mask.apply(row, i0 + r, j0, keep_row);
                let mx = row
                    .iter()
                    .fold(T::neg_infinity(), |a, &b| if b > a { b } else { a });
                if mx == T::neg_infinity() {
                    row.fill(T::ZERO);
                    continue;
                }
                let m_new = if m[r] > mx { m[r] } else { mx };
                let sum = exp_shift(isa, row, m_new);
                if m[r] != m_new {
                    let corr = if m[r] == T::neg_infinity() {
                        T::ZERO
                    } else {
                        (m[r] - m_new).exp()
                    };
                    l[r] *= corr;
                    for a in &mut o[r * dv..(r + 1) * dv] {
                        *a *= corr;
                    }
                    m[r] = m_new;
                }
                l[r] += sum;
            }
            let vt = MatRef {
                data: &v[(gi * tk + j0) * dv..(gi * tk + j0 + bk) * dv],
                rs: dv,
                cs: 1,
            };
            let pa = MatRef {
                data: &*st,
                rs: bk,
                cs: 1,
            };
            let c = MatMut {
                data: &mut *o,
                rs: dv,
                cs: 1,
            };
            gemm(bq, dv, bk, T::ONE, pa, vt, T::ONE, c, Epilogue::default()).map_err(gemm_err)?;
            j0 += bk;
        }
        for r in 0..bq {
            if l[r] > T::ZERO {
                let inv = T::ONE / l[r];
                for a in &mut o[r * dv..(r + 1) * dv] {
                    *a *= inv;
                }
                lo[r] = m[r] + l[r].ln();
            } else {
                o[r * dv..(r + 1) * dv].fill(T::ZERO);
                lo[r] = T::infinity();
            }
        }
        Ok(())
    };
    // Split out and lse into the tasks' rows: per group, blocks of BLOCK_Q rows.
    let chunks: Vec<(&mut [T], &mut [T])> = out
        .chunks_mut(tq * dv)
        .zip(lse.chunks_mut(tq))
        .flat_map(|(og, lg)| og.chunks_mut(BLOCK_Q * dv).zip(lg.chunks_mut(BLOCK_Q)))
        .collect();
    if chunks.len() > 1 && rayon::current_num_threads() > 1 {
        chunks
            .into_par_iter()
            .enumerate()
            .try_for_each(|(t, (o, lo))| task(t, o, lo))
    } else {
        chunks
            .into_iter()
            .enumerate()
            .try_for_each(|(t, (o, lo))| task(t, o, lo))
    }
}

/// Gradients of [`attention_forward`]: `dq`, `dk`, `dv` from the forward's `out` and `lse` and
/// the output gradient `dout`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Float>(
    spec: &AttentionSpec,
    q: &[T],
    k: &[T],
    v: &[T],
    keep: Option<&[T]>,
    out: &[T],
    lse: &[T],
    dout: &[T],
    dq: &mut [T],
    dk: &mut [T],
    dvv: &mut [T],
) -> Result<(), OperandError> {
    let s = *spec;
    let g = check(&s, q, k, v, keep)?;
    let (tq, tk, dh, dv) = (s.tq, s.tk, s.dh, s.dv);
    check_len(OP, "output", g * tq * dv, out.len())?;
    check_len(OP, "output gradient", g * tq * dv, dout.len())?;
    check_len(OP, "logsumexp", g * tq, lse.len())?;
    check_len(OP, "dq", q.len(), dq.len())?;
    check_len(OP, "dk", k.len(), dk.len())?;
    check_len(OP, "dv", v.len(), dvv.len())?;
    dq.fill(T::ZERO);
    dk.fill(T::ZERO);
    dvv.fill(T::ZERO);
    if g == 0 || tq == 0 || tk == 0 {
        return Ok(());
    }
    let isa = isa::active();
    let mask = Mask {
        causal: s.causal,
        keep,
    };
    let scale = T::from_f64(s.scale);
    // D_i = dO_i · O_i.
    let drow: Vec<T> = dout
        .chunks_exact(dv)
        .zip(out.chunks_exact(dv))
        .map(|(a, b)| a.iter().zip(b).fold(T::ZERO, |acc, (&x, &y)| acc + x * y))
        .collect();
    // The probabilities and dS of one tile (rows i0.., keys j0..) of group gi into `p` and `ds`
    // (each bq×bk, row-major); `scratch` is bq×bk.
    let tile = |gi: usize,
                (i0, bq): (usize, usize),
                (j0, bk): (usize, usize),
                p: &mut [T],
                ds: &mut [T]|
     -> Result<(), OperandError> {
        let keep_row = mask.keep_row(gi / s.heads, tk);
        let qa = MatRef {
            data: &q[(gi * tq + i0) * dh..(gi * tq + i0 + bq) * dh],
            rs: dh,
            cs: 1,
        };
        let kt = MatRef {
            data: &k[(gi * tk + j0) * dh..(gi * tk + j0 + bk) * dh],
            rs: 1,
            cs: dh,
        };
        let c = MatMut {
            data: &mut *p,
            rs: bk,
            cs: 1,
        };
        gemm(bq, bk, dh, scale, qa, kt, T::ZERO, c, Epilogue::default()).map_err(gemm_err)?;
        for r in 0..bq {
            let row = &mut p[r * bk..(r + 1) * bk];
            mask.apply(row, i0 + r, j0, keep_row);
            let l = lse[gi * tq + i0 + r];
            if l == T::infinity() {
                row.fill(T::ZERO);
            } else {
                exp_shift(isa, row, l);
            }
        }
        // dP = dO_i · V_jᵀ
        let doa = MatRef {
            data: &dout[(gi * tq + i0) * dv..(gi * tq + i0 + bq) * dv],
            rs: dv,
            cs: 1,
        };
        let vt = MatRef {
            data: &v[(gi * tk + j0) * dv..(gi * tk + j0 + bk) * dv],
            rs: 1,
            cs: dv,
        };
        let c = MatMut {
            data: &mut *ds,
            rs: bk,
            cs: 1,
        };
        gemm(bq, bk, dv, T::ONE, doa, vt, T::ZERO, c, Epilogue::default()).map_err(gemm_err)?;
        for r in 0..bq {
            let d = drow[gi * tq + i0 + r];
            for (x, &pv) in ds[r * bk..(r + 1) * bk]
                .iter_mut()
                .zip(&p[r * bk..(r + 1) * bk])
            {
                *x = pv * (*x - d);
            }
        }
        Ok(())
    };
    // One task per group: its key blocks in order, and for each the query tiles in order. The
    // task owns the group's rows of dq, dk and dv, so every sum runs in one fixed order.
    let group_task = |gi: usize, dqg: &mut [T], dkg: &mut [T], dvg: &mut [T]| {
        let mut p = vec![T::ZERO; BLOCK_Q.min(tq) * BLOCK_K.min(tk)];
        let mut ds = vec![T::ZERO; BLOCK_Q.min(tq) * BLOCK_K.min(tk)];
        let mut j0 = 0;
        while j0 < tk {
            let bk = BLOCK_K.min(tk - j0);
            // Under `causal`, rows before j0 see none of these keys.
            let mut i0 = if s.causal {
                (j0 / BLOCK_Q) * BLOCK_Q
            } else {
                0
            };
            while i0 < tq {
                let bq = BLOCK_Q.min(tq - i0);
                let (pt, dst) = (&mut p[..bq * bk], &mut ds[..bq * bk]);
                tile(gi, (i0, bq), (j0, bk), pt, dst)?;
                // dV_j += Pᵀ · dO_i
                let doa = MatRef {
                    data: &dout[(gi * tq + i0) * dv..(gi * tq + i0 + bq) * dv],
                    rs: dv,
                    cs: 1,
                };
                let c = MatMut {
                    data: &mut dvg[j0 * dv..(j0 + bk) * dv],
                    rs: dv,
                    cs: 1,
                };
                let ptr = MatRef {
                    data: &*pt,
                    rs: 1,
                    cs: bk,
                };
                gemm(bk, dv, bq, T::ONE, ptr, doa, T::ONE, c, Epilogue::default())
                    .map_err(gemm_err)?;
                // dK_j += scale · dSᵀ · Q_i
                let qa = MatRef {
                    data: &q[(gi * tq + i0) * dh..(gi * tq + i0 + bq) * dh],
                    rs: dh,
                    cs: 1,
                };
                let dstr = MatRef {
                    data: &*dst,
                    rs: 1,
                    cs: bk,
                };
                let c = MatMut {
                    data: &mut dkg[j0 * dh..(j0 + bk) * dh],
                    rs: dh,
                    cs: 1,
                };
                gemm(bk, dh, bq, scale, dstr, qa, T::ONE, c, Epilogue::default())
                    .map_err(gemm_err)?;
                // dQ_i += scale · dS · K_j
                let dsa = MatRef {
                    data: &*dst,
                    rs: bk,
                    cs: 1,
                };
                let kb = MatRef {
                    data: &k[(gi * tk + j0) * dh..(gi * tk + j0 + bk) * dh],
                    rs: dh,
                    cs: 1,
                };
                let c = MatMut {
                    data: &mut dqg[i0 * dh..(i0 + bq) * dh],
                    rs: dh,
                    cs: 1,
                };
                gemm(bq, dh, bk, scale, dsa, kb, T::ONE, c, Epilogue::default())
                    .map_err(gemm_err)?;
                i0 += bq;
            }
            j0 += bk;
        }
        Ok(())
    };
    if rayon::current_num_threads() > 1 && g > 1 {
        dq.par_chunks_mut(tq * dh)
            .zip(dk.par_chunks_mut(tk * dh))
            .zip(dvv.par_chunks_mut(tk * dv))
            .enumerate()
            .try_for_each(|(gi, ((a, b), c))| group_task(gi, a, b, c))
    } else {
        dq.chunks_mut(tq * dh)
            .zip(dk.chunks_mut(tk * dh))
            .zip(dvv.chunks_mut(tk * dv))
            .enumerate()
            .try_for_each(|(gi, ((a, b), c))| group_task(gi, a, b, c))
    }
}

#[cfg(test)]
mod tests;
