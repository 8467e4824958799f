//! Recurrent sequences (simple RNN, LSTM, GRU): the step loop forward, and exact
//! backpropagation through time.
//!
//! The input projection of every step (`x_t·W_ihᵀ + b_ih`, `xp` here) is computed before, by
//! one GEMM over all steps, outside this module. What remains is inherently sequential: at each
//! step one GEMM `h_{t-1}·W_hhᵀ + b_hh` (bias in its epilogue; W_hhᵀ packed once per sequence
//! into a [`PackedB`], so a step packs only its 64-odd rows of h), then ONE
//! pass over the rows that applies the gate nonlinearities and updates the state ([`CellKind`]
//! documents the equations, PyTorch's). The pass is written once per cell, generic over the
//! float and over the math it calls: f32 uses the branch-free [`crate::vmath`] functions inside
//! an AVX-512 or AVX2+FMA copy (the same bits; or the portable copy), so the loop over the H
//! units vectorises; f64 uses
//! `std`'s math (the reference and gradient-check path).
//!
//! The forward saves what the backward needs per (step, row): the activated gates, plus `c`
//! for an LSTM and `W_hn h + b_hn` for a GRU ([`CellKind::saved_per_row`]), time-major in the
//! order the steps ran. The previous hidden state of each step is the previous step's output.
//!
//! The backward walks the steps in reverse: the gradient of the hidden state (the output's
//! gradient at that step plus what flows back from the later step) goes through one fused
//! cell-backward pass per step, which writes the gradient of the pre-activations (`dxp` at that
//! step, and the part that reaches `W_hh`, which differs from `dxp` only in a GRU's `n` block)
//! and the gradient reaching `h_{t-1}` directly; then one GEMM adds `dgates·W_hh` (W_hh packed
//! once per sequence), reading the step's rows of `dxp` in place. `dW_hh` is ONE GEMM at the end over all steps
//! (`dGᵀ·H_prev`, K = N·T), `db_hh` a column sum in a fixed order.
//!
//! Masks (`[N, T]`, 1 = real step, 0 = padding; a value is "real" when non-zero): a padded
//! step of a row leaves its state (h, and c) as it was, and its output at that step is the
//! carried state (Keras's behaviour with `return_sequences`); in the backward a padded step
//! passes the state gradients through unchanged and contributes nothing to any weight.
//!
//! Determinism: the GEMMs never split K across threads, the cell pass computes each element by
//! one fixed sequence of operations whichever thread runs its row, and the sums over steps run
//! in one fixed order, so results are bit-identical for any rayon thread count.

use crate::element::Float;
use crate::error::{LengthMismatch, OperandError, check_len};
use crate::gemm::{Epilogue, MatMut, MatRef, PackedB, gemm};
use crate::isa::{self, Isa};
use crate::unary::sigmoid;
use crate::vmath::{self, Fused, MulAdd, Unfused};
use rayon::prelude::*;

pub use ember_ops::{CellKind, RecurrentSpec, RnnActivation};

/// The operands of [`forward`]. Shapes with N = `spec.n`, T = `spec.t`, H = `spec.hidden`,
/// G = `spec.kind.gates()`; all dense, row-major.
#[derive(Debug, Clone, Copy)]
pub struct ForwardArgs<'a, T> {
    /// The input projections `x·W_ihᵀ + b_ih`, `[N, T, G·H]`.
    pub xp: &'a [T],
    /// The initial hidden state, `[N, H]`.
    pub h0: &'a [T],
    /// The initial cell state `[N, H]` (LSTM); empty for the other cells.
    pub c0: &'a [T],
    /// The recurrent weight, `[G·H, H]` (PyTorch's `weight_hh`).
    pub w_hh: &'a [T],
    /// The recurrent bias, `[G·H]`.
    pub b_hh: &'a [T],
    /// `[N, T]`, non-zero at real steps; `None`: every step is real.
    pub mask: Option<&'a [T]>,
}

/// The operands of [`backward`]: the forward's inputs it needs, its results, and the gradient
/// of the outputs.
#[derive(Debug, Clone, Copy)]
pub struct BackwardArgs<'a, T> {
    /// As in [`ForwardArgs::h0`].
    pub h0: &'a [T],
    /// As in [`ForwardArgs::c0`].
    pub c0: &'a [T],
    /// As in [`ForwardArgs::w_hh`].
    pub w_hh: &'a [T],
    /// As in [`ForwardArgs::mask`].
    pub mask: Option<&'a [T]>,
    /// The forward's output, `[N, T, H]`.
    pub out: &'a [T],
    /// The forward's saved values, [`saved_len`] of them.
    pub saved: &'a [T],
    /// The gradient of the output, `[N, T, H]`.
    pub g: &'a [T],
}

/// Where [`backward`] writes the gradients (every buffer is overwritten).
#[derive(Debug)]
pub struct Grads<'a, T> {
    /// `[N, T, G·H]`.
    pub dxp: &'a mut [T],
    /// `[N, H]`.
    pub dh0: &'a mut [T],
    /// `[N, H]` for an LSTM, empty otherwise.
    pub dc0: &'a mut [T],
    /// `[G·H, H]`.
    pub dw_hh: &'a mut [T],
    /// `[G·H]`.
    pub db_hh: &'a mut [T],
}

/// How many values the forward saves for the backward.
pub fn saved_len(spec: &RecurrentSpec) -> usize {
    spec.t * spec.n * spec.kind.saved_per_row(spec.hidden)
}

const OP: &str = "recurrent";

fn geometry(problem: String) -> OperandError {
    OperandError::Geometry { op: OP, problem }
}

fn len(operand: &'static str, expected: usize, got: usize) -> Result<(), OperandError> {
    check_len(OP, operand, expected, got).map_err(|e: LengthMismatch| OperandError::Length(e))
}

/// Checks the sizes every entry point shares: `(N·H, N·T·G·H, N·T·H)`.
fn sizes(spec: &RecurrentSpec) -> Result<(usize, usize, usize), OperandError> {
    let gh = spec.gate_width();
    let nh = spec.n.checked_mul(spec.hidden);
    let nt = spec.n.checked_mul(spec.t);
    match (nh, nt.and_then(|v| v.checked_mul(gh))) {
        (Some(nh), Some(ntg)) => Ok((nh, ntg, spec.n * spec.t * spec.hidden)),
        _ => Err(geometry(format!(
            "N {} × T {} × {} gate columns overflows",
            spec.n, spec.t, gh
        ))),
    }
}

fn check_common<T>(
    spec: &RecurrentSpec,
    h0: &[T],
    c0: &[T],
    w_hh: &[T],
    mask: Option<&[T]>,
) -> Result<(usize, usize, usize), OperandError> {
    let (nh, ntg, nth) = sizes(spec)?;
    let gh = spec.gate_width();
    len("h0", nh, h0.len())?;
    len(
        "c0",
        if spec.kind.has_cell_state() { nh } else { 0 },
        c0.len(),
    )?;
    len("w_hh", gh * spec.hidden, w_hh.len())?;
    if let Some(m) = mask {
        len("mask", spec.n * spec.t, m.len())?;
    }
    Ok((ntg, nth, gh))
}

fn gemm_err(e: crate::gemm::GemmError) -> OperandError {
    geometry(format!("step GEMM: {e}"))
}

/// Rows per parallel task of the cell pass, and the size below which it stays on one thread.
const ROWS_PER_TASK: usize = 8;
const CELL_PAR_MIN: usize = 1 << 14;

/// Runs the recurrence: writes the hidden state of every step into `out` (`[N, T, H]`) and
/// the values the backward needs into `saved` ([`saved_len`]).
pub fn forward<T: Float>(
    spec: &RecurrentSpec,
    a: &ForwardArgs<'_, T>,
    out: &mut [T],
    saved: &mut [T],
) -> Result<(), OperandError> {
    let (ntg, nth, gh) = check_common(spec, a.h0, a.c0, a.w_hh, a.mask)?;
    len("xp", ntg, a.xp.len())?;
    len("b_hh", gh, a.b_hh.len())?;
    len("out", nth, out.len())?;
    len("saved", saved_len(spec), saved.len())?;
    let (n, t, hs) = (spec.n, spec.t, spec.hidden);
    if n == 0 || t == 0 || hs == 0 {
        return Ok(());
    }
    let isa = isa::active();
    let sp = spec.kind.saved_per_row(hs);
    // W_hhᵀ ([H, G·H], B[k][j] = W_hh[j][k]) packed once per sequence for the step GEMM's
    // microkernel: every step then packs only its h (gemm::PackedB).
    let wt = PackedB::new(
        hs,
        gh,
        MatRef {
            data: a.w_hh,
            rs: 1,
            cs: hs,
        },
    )
    .map_err(gemm_err)?;
    let mut h = a.h0.to_vec();
    let mut c = a.c0.to_vec();
    let mut hh = vec![T::ZERO; n * gh];
    for s in 0..t {
        let tt = spec.step(s);
        // hh = h·W_hhᵀ + b_hh.
        wt.gemm(
            n,
            T::ONE,
            MatRef {
                data: &h,
                rs: hs,
                cs: 1,
            },
            T::ZERO,
            MatMut {
                data: &mut hh,
                rs: gh,
                cs: 1,
            },
            Epilogue {
                bias: Some(a.b_hh),
                act: Default::default(),
            },
        )
        .map_err(gemm_err)?;
        let step_saved = &mut saved[s * n * sp..(s + 1) * n * sp];
        // (row, ((h row, c row), saved row)), as `for_rows` hands them out.
        #[allow(clippy::type_complexity)]
        let row = |(r, ((hr, cr), sr)): (usize, ((&mut [T], &mut [T]), &mut [T]))| {
            let base = (r * t + tt) * gh;
            let real = a.mask.is_none_or(|m| m[r * t + tt] != T::ZERO);
            cell_forward(
                isa,
                spec.kind,
                &a.xp[base..base + gh],
                &hh[r * gh..(r + 1) * gh],
                real,
                hr,
                cr,
                sr,
            );
        };
        let cw = if spec.kind.has_cell_state() { hs } else { 0 };
        for_rows(n, gh, &mut h, hs, &mut c, cw, step_saved, sp, row);
        for r in 0..n {
            out[(r * t + tt) * hs..(r * t + tt + 1) * hs].copy_from_slice(&h[r * hs..(r + 1) * hs]);
        }
    }
    Ok(())
}

/// `v` cut into `n` rows of `w` (`chunks_mut(0)` panics, so width-0 buffers are split into
/// empty rows by hand).
fn rows<T>(v: &mut [T], w: usize, n: usize) -> Vec<&mut [T]> {
    if w == 0 {
        (0..n).map(|_| <&mut [T]>::default()).collect()
    } else {
        v.chunks_mut(w).collect()
    }
}

/// The slice as f32 (the caller has checked that `T` is f32).
fn f32s<T: Float>(s: &[T]) -> &[f32] {
    T::as_f32_slice(s).unwrap_or(&[])
}

/// Calls `f` on every row `(index, ((h row, c row), saved row))`, on several threads when the
/// step is large enough (each row's values are computed the same way on any thread).
#[allow(clippy::too_many_arguments)]
fn for_rows<T: Float, F>(
    n: usize,
    gh: usize,
    h: &mut [T],
    hw: usize,
    c: &mut [T],
    cw: usize,
    saved: &mut [T],
    sw: usize,
    f: F,
) where
    F: Fn((usize, ((&mut [T], &mut [T]), &mut [T]))) + Sync + Send,
{
    let hr = rows(h, hw, n);
    let cr = rows(c, cw, n);
    let sr = rows(saved, sw, n);
    let items = hr.into_iter().zip(cr).zip(sr).enumerate();
    if n * gh >= CELL_PAR_MIN && rayon::current_num_threads() > 1 {
        let v: Vec<_> = items.collect();
        v.into_par_iter().with_min_len(ROWS_PER_TASK).for_each(f);
    } else {
        items.for_each(f);
    }
}

/// The elementwise math a cell pass calls, chosen per float and instruction set.
trait Math<T> {
    fn sigmoid(x: T) -> T;
    fn tanh(x: T) -> T;
}

/// `std`'s math (f64, and f32 on no path): the reference.
struct StdMath;
impl<T: Float> Math<T> for StdMath {
    #[inline(always)]
    fn sigmoid(x: T) -> T {
        sigmoid(x)
    }
    #[inline(always)]
    fn tanh(x: T) -> T {
        x.tanh()
    }
}

/// ember's vectorisable f32 math.
struct VMath<F>(std::marker::PhantomData<F>);
impl<F: MulAdd> Math<f32> for VMath<F> {
    #[inline(always)]
    fn sigmoid(x: f32) -> f32 {
        vmath::sigmoid::<F>(x)
    }
    #[inline(always)]
    fn tanh(x: f32) -> f32 {
        vmath::tanh::<F>(x)
    }
}

/// One row of one step: the new state into `h` (and `c`), the saved values into `sv`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn cell_forward<T: Float>(
    isa: Isa,
    kind: CellKind,
    xp: &[T],
    hh: &[T],
    real: bool,
    h: &mut [T],
    c: &mut [T],
    sv: &mut [T],
) {
    if !real {
        // A padded step: the state stays; an LSTM saves its carried c (the next step's c').
        sv.fill(T::ZERO);
        if kind == CellKind::Lstm {
            let hs = h.len();
            sv[4 * hs..].copy_from_slice(c);
        }
        return;
    }
    if let (Some(x), Some(q)) = (T::as_f32_slice(xp), T::as_f32_slice(hh)) {
        let h = T::as_f32_slice_mut(h).expect("same float type");
        let c = T::as_f32_slice_mut(c).expect("same float type");
        let sv = T::as_f32_slice_mut(sv).expect("same float type");
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 && isa.is_supported() {
            // SAFETY: AVX-512F, AVX2 and FMA are present (`Avx512` is supported only there).
            unsafe { cell_forward_avx512(kind, x, q, h, c, sv) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if isa.has_avx2() {
            // SAFETY: AVX2 and FMA are present (checked just above).
            unsafe { cell_forward_avx2(kind, x, q, h, c, sv) };
            return;
        }
        let _ = isa;
        return cell_forward_body::<f32, VMath<Unfused>>(kind, x, q, h, c, sv);
    }
    cell_forward_body::<T, StdMath>(kind, xp, hh, h, c, sv)
}

/// The cell pass in 16 lanes: the same fused operations per element as the AVX2 copy (so
/// the same bits), half the instructions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn cell_forward_avx512(
    kind: CellKind,
    x: &[f32],
    q: &[f32],
    h: &mut [f32],
    c: &mut [f32],
    sv: &mut [f32],
) {
    cell_forward_body::<f32, VMath<Fused>>(kind, x, q, h, c, sv)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn cell_forward_avx2(
    kind: CellKind,
    x: &[f32],
    q: &[f32],
    h: &mut [f32],
    c: &mut [f32],
    sv: &mut [f32],
) {
    cell_forward_body::<f32, VMath<Fused>>(kind, x, q, h, c, sv)
}

#[inline(always)]
fn cell_forward_body<T: Float, M: Math<T>>(
    kind: CellKind,
    x: &[T],
    q: &[T],
    h: &mut [T],
    c: &mut [T],
    sv: &mut [T],
) {
    let hs = h.len();
    match kind {
        CellKind::Rnn(act) => {
            let (x, q) = (&x[..hs], &q[..hs]);
            for j in 0..hs {
                let a = x[j] + q[j];
                h[j] = match act {
                    RnnActivation::Tanh => M::tanh(a),
                    RnnActivation::Relu => {
                        if a > T::ZERO {
                            a
                        } else {
                            T::ZERO
                        }
                    }
                };
            }
        }
        CellKind::Lstm => {
            let c = &mut c[..hs];
            let (si, rest) = sv.split_at_mut(hs);
            let (sf, rest) = rest.split_at_mut(hs);
            let (sg, rest) = rest.split_at_mut(hs);
            let (so, sc) = rest.split_at_mut(hs);
            let sc = &mut sc[..hs];
            let (xi, xf, xg, xo) = (
                &x[..hs],
                &x[hs..2 * hs],
                &x[2 * hs..3 * hs],
                &x[3 * hs..4 * hs],
            );
            let (qi, qf, qg, qo) = (
                &q[..hs],
                &q[hs..2 * hs],
                &q[2 * hs..3 * hs],
                &q[3 * hs..4 * hs],
            );
            for j in 0..hs {
                let i = M::sigmoid(xi[j] + qi[j]);
                let f = M::sigmoid(xf[j] + qf[j]);
                let g = M::tanh(xg[j] + qg[j]);
                let o = M::sigmoid(xo[j] + qo[j]);
                let cn = f * c[j] + i * g;
                c[j] = cn;
                h[j] = o * M::tanh(cn);
                si[j] = i;
                sf[j] = f;
                sg[j] = g;
                so[j] = o;
                sc[j] = cn;
            }
        }
        CellKind::Gru => {
            let (sr, rest) = sv.split_at_mut(hs);
            let (sz, rest) = rest.split_at_mut(hs);
            let (sn, shn) = rest.split_at_mut(hs);
            let shn = &mut shn[..hs];
            let (xr, xz, xn) = (&x[..hs], &x[hs..2 * hs], &x[2 * hs..3 * hs]);
            let (qr, qz, qn) = (&q[..hs], &q[hs..2 * hs], &q[2 * hs..3 * hs]);
            for j in 0..hs {
                let r = M::sigmoid(xr[j] + qr[j]);
                let z = M::sigmoid(xz[j] + qz[j]);
                let nn = M::tanh(xn[j] + r * qn[j]);
                h[j] = (T::ONE - z) * nn + z * h[j];
                sr[j] = r;
                sz[j] = z;
                sn[j] = nn;
                shn[j] = qn[j];
            }
        }
    }
}

/// Backpropagation through time: every gradient of the forward's inputs from the output's
/// gradient `a.g`.
pub fn backward<T: Float>(
    spec: &RecurrentSpec,
    a: &BackwardArgs<'_, T>,
    d: Grads<'_, T>,
) -> Result<(), OperandError> {
    let (ntg, nth, gh) = check_common(spec, a.h0, a.c0, a.w_hh, a.mask)?;
    let (n, t, hs) = (spec.n, spec.t, spec.hidden);
    len("out", nth, a.out.len())?;
    len("g", nth, a.g.len())?;
    len("saved", saved_len(spec), a.saved.len())?;
    len("dxp", ntg, d.dxp.len())?;
    len("dh0", n * hs, d.dh0.len())?;
    len("dc0", a.c0.len(), d.dc0.len())?;
    len("dw_hh", gh * hs, d.dw_hh.len())?;
    len("db_hh", gh, d.db_hh.len())?;
    d.dh0.fill(T::ZERO);
    d.dc0.fill(T::ZERO);
    d.dw_hh.fill(T::ZERO);
    d.db_hh.fill(T::ZERO);
    if n == 0 || t == 0 || hs == 0 {
        d.dxp.fill(T::ZERO);
        return Ok(());
    }
    let isa = isa::active();
    let sp = spec.kind.saved_per_row(hs);
    let lstm = spec.kind.has_cell_state();
    // The previous hidden state of every (row, step), batch-major like the outputs: the B
    // operand of the one dW_hh GEMM.
    let mut hprev = vec![T::ZERO; n * t * hs];
    for s in 0..t {
        let tt = spec.step(s);
        for r in 0..n {
            let src = if s == 0 {
                &a.h0[r * hs..(r + 1) * hs]
            } else {
                let tp = spec.step(s - 1);
                &a.out[(r * t + tp) * hs..(r * t + tp + 1) * hs]
            };
            hprev[(r * t + tt) * hs..(r * t + tt + 1) * hs].copy_from_slice(src);
        }
    }
    // The pre-activation gradients that reach W_hh h + b_hh: for a simple cell and an LSTM
    // they are dxp itself; a GRU's differ in the n block (r·dn), so it keeps its own copy,
    // laid out as dxp ([N, T, G·H]).
    let gru = spec.kind == CellKind::Gru;
    let mut dgh_own = vec![T::ZERO; if gru { n * t * gh } else { 0 }];
    let mut dh = vec![T::ZERO; n * hs];
    let mut dc = vec![T::ZERO; if lstm { n * hs } else { 0 }];
    // W_hh packed once for the per-step dgates·W_hh.
    let w_packed = PackedB::new(
        gh,
        hs,
        MatRef {
            data: a.w_hh,
            rs: hs,
            cs: 1,
        },
    )
    .map_err(gemm_err)?;
    for s in (0..t).rev() {
        let tt = spec.step(s);
        for r in 0..n {
            let o = (r * t + tt) * hs;
            for (x, &g) in dh[r * hs..(r + 1) * hs].iter_mut().zip(&a.g[o..o + hs]) {
                *x += g;
            }
        }
        {
            let sv_step = &a.saved[s * n * sp..(s + 1) * n * sp];
            let cw = if lstm { hs } else { 0 };
            // (row, ((dh row, dc row), (dxp row, W_hh-side row))).
            #[allow(clippy::type_complexity)]
            let row = |(r, ((dhr, dcr), (gx, gq))): (
                usize,
                ((&mut [T], &mut [T]), (&mut [T], &mut [T])),
            )| {
                let real = a.mask.is_none_or(|m| m[r * t + tt] != T::ZERO);
                let cprev: &[T] = if !lstm {
                    &[]
                } else if s == 0 {
                    &a.c0[r * hs..(r + 1) * hs]
                } else {
                    let b = ((s - 1) * n + r) * sp + 4 * hs;
                    &a.saved[b..b + hs]
                };
                let ho = (r * t + tt) * hs;
                cell_backward(
                    isa,
                    spec.kind,
                    real,
                    &sv_step[r * sp..(r + 1) * sp],
                    &hprev[ho..ho + hs],
                    cprev,
                    &a.out[ho..ho + hs],
                    dhr,
                    dcr,
                    gx,
                    gq,
                );
            };
            // Each row's gradients at this step, written in place.
            let gq_rows: Vec<&mut [T]> = if gru {
                dgh_own
                    .chunks_mut(t * gh)
                    .map(|c| &mut c[tt * gh..(tt + 1) * gh])
                    .collect()
            } else {
                rows(&mut [], 0, n)
            };
            let items = rows(&mut dh, hs, n)
                .into_iter()
                .zip(rows(&mut dc, cw, n))
                .zip(
                    d.dxp
                        .chunks_mut(t * gh)
                        .map(|c| &mut c[tt * gh..(tt + 1) * gh])
                        .zip(gq_rows),
                )
                .enumerate();
            if n * gh >= CELL_PAR_MIN && rayon::current_num_threads() > 1 {
                let v: Vec<_> = items.collect();
                v.into_par_iter().with_min_len(ROWS_PER_TASK).for_each(row);
            } else {
                items.for_each(row);
            }
        }
        // dh_{t-1} += dgates·W_hh, the step's rows read in place (row stride T·G·H).
        let dg: &[T] = if gru { &dgh_own } else { d.dxp };
        w_packed
            .gemm(
                n,
                T::ONE,
                MatRef {
                    data: &dg[tt * gh..],
                    rs: t * gh,
                    cs: 1,
                },
                T::ONE,
                MatMut {
                    data: &mut dh,
                    rs: hs,
                    cs: 1,
                },
                Epilogue::default(),
            )
            .map_err(gemm_err)?;
    }
    d.dh0.copy_from_slice(&dh);
    d.dc0.copy_from_slice(&dc);
    // dW_hh = Σ over (row, step) of dgᵀ·h_prev: one GEMM with K = N·T.
    let dg: &[T] = if gru { &dgh_own } else { d.dxp };
    gemm(
        gh,
        hs,
        n * t,
        T::ONE,
        MatRef {
            data: dg,
            rs: 1,
            cs: gh,
        },
        MatRef {
            data: &hprev,
            rs: hs,
            cs: 1,
        },
        T::ZERO,
        MatMut {
            data: d.dw_hh,
            rs: hs,
            cs: 1,
        },
        Epilogue::default(),
    )
    .map_err(gemm_err)?;
    for row in dg.chunks_exact(gh) {
        for (b, &v) in d.db_hh.iter_mut().zip(row) {
            *b += v;
        }
    }
    Ok(())
}

/// One row of one step backward. In: `dh` (the gradient of this step's h), `dc` (of its c,
/// LSTM). Out: `dh`, `dc` the gradients reaching the previous state directly, `gx` the
/// pre-activation gradient (= `dxp`), `gq` (GRU only; empty otherwise, where it equals `gx`)
/// the part reaching `W_hh h + b_hh`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn cell_backward<T: Float>(
    isa: Isa,
    kind: CellKind,
    real: bool,
    sv: &[T],
    hprev: &[T],
    cprev: &[T],
    h: &[T],
    dh: &mut [T],
    dc: &mut [T],
    gx: &mut [T],
    gq: &mut [T],
) {
    if !real {
        gx.fill(T::ZERO);
        gq.fill(T::ZERO);
        return;
    }
    if let Some(svf) = T::as_f32_slice(sv) {
        let (hp, cp, hf) = (f32s(hprev), f32s(cprev), f32s(h));
        let dh = T::as_f32_slice_mut(dh).expect("same float type");
        let dc = T::as_f32_slice_mut(dc).expect("same float type");
        let gx = T::as_f32_slice_mut(gx).expect("same float type");
        let gq = T::as_f32_slice_mut(gq).expect("same float type");
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 && isa.is_supported() {
            // SAFETY: AVX-512F, AVX2 and FMA are present (`Avx512` is supported only there).
            unsafe { cell_backward_avx512(kind, svf, hp, cp, hf, dh, dc, gx, gq) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if isa.has_avx2() {
            // SAFETY: AVX2 and FMA are present (checked just above).
            unsafe { cell_backward_avx2(kind, svf, hp, cp, hf, dh, dc, gx, gq) };
            return;
        }
        let _ = isa;
        return cell_backward_body::<f32, VMath<Unfused>>(kind, svf, hp, cp, hf, dh, dc, gx, gq);
    }
    cell_backward_body::<T, StdMath>(kind, sv, hprev, cprev, h, dh, dc, gx, gq)
}

/// The backward cell pass in 16 lanes (as [`cell_forward_avx512`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn cell_backward_avx512(
    kind: CellKind,
    sv: &[f32],
    hprev: &[f32],
    cprev: &[f32],
    h: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    gx: &mut [f32],
    gq: &mut [f32],
) {
    cell_backward_body::<f32, VMath<Fused>>(kind, sv, hprev, cprev, h, dh, dc, gx, gq)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn cell_backward_avx2(
    kind: CellKind,
    sv: &[f32],
    hprev: &[f32],
    cprev: &[f32],
    h: &[f32],
    dh: &mut [f32],
    dc: &mut [f32],
    gx: &mut [f32],
    gq: &mut [f32],
) {
    cell_backward_body::<f32, VMath<Fused>>(kind, sv, hprev, cprev, h, dh, dc, gx, gq)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn cell_backward_body<T: Float, M: Math<T>>(
    kind: CellKind,
    sv: &[T],
    hprev: &[T],
    cprev: &[T],
    h: &[T],
    dh: &mut [T],
    dc: &mut [T],
    gx: &mut [T],
    gq: &mut [T],
) {
    let hs = dh.len();
    match kind {
        CellKind::Rnn(act) => {
            let h = &h[..hs];
            let gx = &mut gx[..hs];
            for j in 0..hs {
                // tanh' = 1 − h², relu' = [h > 0], both from the output.
                let da = match act {
                    RnnActivation::Tanh => dh[j] * (T::ONE - h[j] * h[j]),
                    RnnActivation::Relu => {
                        if h[j] > T::ZERO {
                            dh[j]
                        } else {
                            T::ZERO
                        }
                    }
                };
                gx[j] = da;
                dh[j] = T::ZERO;
            }
        }
        CellKind::Lstm => {
            let (si, sf, sg, so, sc) = (
                &sv[..hs],
                &sv[hs..2 * hs],
                &sv[2 * hs..3 * hs],
                &sv[3 * hs..4 * hs],
                &sv[4 * hs..5 * hs],
            );
            let (cprev, dc) = (&cprev[..hs], &mut dc[..hs]);
            let (gi, rest) = gx.split_at_mut(hs);
            let (gf, rest) = rest.split_at_mut(hs);
            let (gg, go) = rest.split_at_mut(hs);
            let go = &mut go[..hs];
            for j in 0..hs {
                let (i, f, g, o) = (si[j], sf[j], sg[j], so[j]);
                let tc = M::tanh(sc[j]);
                // h = o·tanh(c): do = dh·tanh c; dc += dh·o·(1 − tanh² c).
                let d_o = dh[j] * tc;
                let dcc = dc[j] + dh[j] * o * (T::ONE - tc * tc);
                // c = f·c' + i·g.
                gi[j] = dcc * g * i * (T::ONE - i);
                gf[j] = dcc * cprev[j] * f * (T::ONE - f);
                gg[j] = dcc * i * (T::ONE - g * g);
                go[j] = d_o * o * (T::ONE - o);
                dc[j] = dcc * f;
                dh[j] = T::ZERO;
            }
        }
        CellKind::Gru => {
            let (sr, sz, sn, shn) = (
                &sv[..hs],
                &sv[hs..2 * hs],
                &sv[2 * hs..3 * hs],
                &sv[3 * hs..4 * hs],
            );
            let hprev = &hprev[..hs];
            let (xr, rest) = gx.split_at_mut(hs);
            let (xz, xn) = rest.split_at_mut(hs);
            let xn = &mut xn[..hs];
            let (qr, rest) = gq.split_at_mut(hs);
            let (qz, qn) = rest.split_at_mut(hs);
            let qn = &mut qn[..hs];
            for j in 0..hs {
                let (r, z, nn, hn) = (sr[j], sz[j], sn[j], shn[j]);
                let g = dh[j];
                // h = (1 − z)·n + z·h'.
                let dan = g * (T::ONE - z) * (T::ONE - nn * nn);
                let daz = g * (hprev[j] - nn) * z * (T::ONE - z);
                // n = tanh(x_n + r·hn): d(hn) = dan·r, dr = dan·hn.
                let dar = dan * hn * r * (T::ONE - r);
                xr[j] = dar;
                xz[j] = daz;
                xn[j] = dan;
                qr[j] = dar;
                qz[j] = daz;
                qn[j] = dan * r;
                dh[j] = g * z;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, seed: u64, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|i| ((i as f64 * 0.618_033_988 + seed as f64 * 0.377).fract() * 2.0 - 1.0) * scale)
            .collect()
    }

    /// Forward and backward of `spec` in `T` on values built in f64: every result widened.
    fn run<T: Float>(spec: &RecurrentSpec, masked: bool) -> Vec<Vec<f64>> {
        let (n, t, h, g) = (spec.n, spec.t, spec.hidden, spec.gate_width());
        let cv = |v: Vec<f64>| v.into_iter().map(T::from_f64).collect::<Vec<T>>();
        let xp = cv(vals(n * t * g, 1, 1.5));
        let h0 = cv(vals(n * h, 2, 0.5));
        let c0 = cv(if spec.kind.has_cell_state() {
            vals(n * h, 3, 0.5)
        } else {
            vec![]
        });
        let w = cv(vals(g * h, 4, 0.4));
        let b = cv(vals(g, 5, 0.2));
        let mask: Vec<T> = (0..n * t)
            .map(|i| {
                if masked && i % t >= t - 1 - (i / t) % 2 {
                    T::ZERO
                } else {
                    T::ONE
                }
            })
            .collect();
        let gy = cv(vals(n * t * h, 6, 1.0));
        let mut out = vec![T::ZERO; n * t * h];
        let mut saved = vec![T::ZERO; saved_len(spec)];
        let m = masked.then_some(&mask[..]);
        let a = ForwardArgs {
            xp: &xp,
            h0: &h0,
            c0: &c0,
            w_hh: &w,
            b_hh: &b,
            mask: m,
        };
        forward(spec, &a, &mut out, &mut saved).unwrap();
        let mut dxp = vec![T::ZERO; xp.len()];
        let mut dh0 = vec![T::ZERO; h0.len()];
        let mut dc0 = vec![T::ZERO; c0.len()];
        let mut dw = vec![T::ZERO; w.len()];
        let mut db = vec![T::ZERO; b.len()];
        let ba = BackwardArgs {
            h0: &h0,
            c0: &c0,
            w_hh: &w,
            mask: m,
            out: &out,
            saved: &saved,
            g: &gy,
        };
        let d = Grads {
            dxp: &mut dxp,
            dh0: &mut dh0,
            dc0: &mut dc0,
            dw_hh: &mut dw,
            db_hh: &mut db,
        };
        backward(spec, &ba, d).unwrap();
        [out, dxp, dh0, dc0, dw, db]
            .into_iter()
            .map(|v| v.into_iter().map(T::to_f64).collect())
            .collect()
    }

    /// Every instruction-set path of the f32 cell kernels against the f64 kernels.
    #[test]
    fn every_isa_path_agrees_with_f64() {
        for kind in CellKind::ALL {
            for (masked, reverse) in [(false, false), (true, true)] {
                // H = 19: vector bodies and remainders.
                let spec = RecurrentSpec {
                    kind,
                    n: 3,
                    t: 4,
                    hidden: 19,
                    reverse,
                };
                let want = run::<f64>(&spec, masked);
                for isa in isa::supported() {
                    let got = isa::with(isa, || run::<f32>(&spec, masked)).unwrap();
                    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                        let err = a
                            .iter()
                            .zip(b)
                            .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
                            .fold(0.0, f64::max);
                        assert!(
                            err < 1e-5,
                            "{} {isa} masked {masked}: result {k} off by {err}",
                            kind.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn wrong_lengths_are_errors_before_any_write() {
        let spec = RecurrentSpec {
            kind: CellKind::Lstm,
            n: 2,
            t: 3,
            hidden: 4,
            reverse: false,
        };
        let z = vec![0f32; 1000];
        let mut out = vec![7f32; 24];
        let mut saved = vec![0f32; saved_len(&spec)];
        let a = ForwardArgs {
            xp: &z[..95],
            h0: &z[..8],
            c0: &z[..8],
            w_hh: &z[..64],
            b_hh: &z[..16],
            mask: None,
        };
        let e = forward(&spec, &a, &mut out, &mut saved)
            .unwrap_err()
            .to_string();
        assert!(e.contains("xp"), "{e}");
        assert!(out.iter().all(|&v| v == 7.0));
        let a = ForwardArgs {
            c0: &[],
            xp: &z[..96],
            ..a
        };
        let e = forward(&spec, &a, &mut out, &mut saved)
            .unwrap_err()
            .to_string();
        assert!(e.contains("c0"), "{e}");
    }
}
