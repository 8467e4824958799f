//! Recurrent sequences (simple RNN, LSTM, GRU) as one fused op with exact backpropagation
//! through time.
//!
//! A recurrent layer is split in two. The input projection of every step,
//! `x_proj = x·W_ihᵀ + b_ih` over `[N·T, F]`, is one ordinary Linear/matmul (autograd handles
//! it). [`recurrent`] then runs the recurrence over `x_proj` `[N, T, G·H]`: per step one GEMM
//! `h_{t-1}·W_hhᵀ + b_hh` and one fused kernel for the gates and the state update (ember-cpu's
//! `recurrent` module; the equations, PyTorch's, are on [`CellKind`]). Its backward
//! ([`RecurrentOp`]) is exact BPTT with a fused cell backward per step, giving the gradients of
//! `x_proj`, `h0`, `c0`, `W_hh` and `b_hh`.
//!
//! The op's one recorded output is the sequence of hidden states `[N, T, H]`; the final hidden
//! state is a view of it (the last step processed), so gradients reach it through autograd.
//! The final LSTM cell state is returned without a gradient (ember's layers never train
//! through it; PyTorch's `c_n` would carry one).
//!
//! Masks follow Keras: `[N, T]`, 1 (any non-zero) = a real step, 0 = padding (PyTorch's
//! `key_padding_mask` uses the opposite sense). A padded step carries the state over unchanged
//! and outputs it, so the last output is each row's state after its last real step, and
//! padded steps change nothing else (not the state, not any gradient of a weight).
//!
//! Dtypes: f32 and f64 compute in their own type; f16/bf16 operands are widened to f32 for
//! the kernels and the results (and the values saved for the backward) stored in their dtype.
//! Devices: CPU; on CUDA the op returns an error saying it is not yet there.

use super::{Fused, FusedOp};
use crate::backend::{RecurrentArgs, RecurrentBackwardArgs};
use crate::error::{Error, Result};
use crate::grad_mode::no_grad;
use crate::op::Op;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::{CellKind, RecurrentSpec};

/// The tensors [`recurrent`] reads. Shapes: N batch, T steps, H units, G = `kind.gates()`.
#[derive(Debug, Clone, Copy)]
pub struct RecurrentInputs<'a> {
    /// Input projections `x·W_ihᵀ + b_ih`, `[N, T, G·H]`, gate blocks in PyTorch's order.
    pub x_proj: &'a Tensor,
    /// Initial hidden state `[N, H]`; `None`: zeros.
    pub h0: Option<&'a Tensor>,
    /// Initial cell state `[N, H]` (LSTM only); `None`: zeros.
    pub c0: Option<&'a Tensor>,
    /// Recurrent weight `[G·H, H]` (PyTorch's `weight_hh_l0`).
    pub w_hh: &'a Tensor,
    /// Recurrent bias `[G·H]` (PyTorch's `bias_hh_l0`).
    pub b_hh: &'a Tensor,
    /// `[N, T]`, 1 = real step, 0 = padding; `None`: every step is real.
    pub mask: Option<&'a Tensor>,
}

/// What [`recurrent`] returns.
#[derive(Debug, Clone)]
pub struct RecurrentOutput {
    /// The hidden state at every step, `[N, T, H]` (at a padded step: the carried state).
    pub output: Tensor,
    /// The final hidden state `[N, H]` (the last step processed: step T−1, or step 0 when
    /// reversed), differentiable.
    pub h_n: Tensor,
    /// The final cell state `[N, H]` of an LSTM, without a gradient.
    pub c_n: Option<Tensor>,
}

/// Runs a recurrent cell over a sequence (see the module docs): `kind` picks the cell,
/// `reverse` runs from the last step to the first (outputs stay at their step's position).
pub fn recurrent(kind: CellKind, reverse: bool, a: RecurrentInputs<'_>) -> Result<RecurrentOutput> {
    const OP: &str = "recurrent";
    let xs = a.x_proj.shape().to_vec();
    let ws = a.w_hh.shape().to_vec();
    let g = kind.gates();
    if xs.len() != 3 {
        return Err(Error::shape(
            OP,
            format!("x_proj {xs:?} must be [N, T, {g}·H] for {}", kind.name()),
        ));
    }
    let (n, t) = (xs[0], xs[1]);
    if ws.len() != 2 || ws[0] != g * ws[1] {
        return Err(Error::shape(
            OP,
            format!("w_hh {ws:?} must be [{g}·H, H] for {}", kind.name()),
        ));
    }
    let h = ws[1];
    if xs[2] != g * h {
        return Err(Error::shape(
            OP,
            format!(
                "x_proj {xs:?} must have {} columns ({g} gates × H {h}) to match w_hh {ws:?}",
                g * h
            ),
        ));
    }
    let check = |what: &str, x: &Tensor, want: &[usize]| -> Result<()> {
        crate::ops_check_same(OP, a.x_proj, x)?;
        if x.shape() != want {
            return Err(Error::shape(
                OP,
                format!("{what} {:?} must be {want:?} for x_proj {xs:?}", x.shape()),
            ));
        }
        Ok(())
    };
    check("w_hh", a.w_hh, &ws)?;
    check("b_hh", a.b_hh, &[g * h])?;
    if let Some(h0) = a.h0 {
        check("h0", h0, &[n, h])?;
    }
    if let Some(c0) = a.c0 {
        if !kind.has_cell_state() {
            return Err(Error::invalid(
                OP,
                format!("c0 is given but a {} cell has no cell state", kind.name()),
            ));
        }
        check("c0", c0, &[n, h])?;
    }
    if let Some(m) = a.mask {
        check("mask", m, &[n, t])?;
    }
    let spec = RecurrentSpec {
        kind,
        n,
        t,
        hidden: h,
        reverse,
    };
    let (dt, dev) = (a.x_proj.dtype(), a.x_proj.device());
    let h0 = match a.h0 {
        Some(h0) => h0.clone(),
        None => Tensor::zeros(vec![n, h], dt, dev)?,
    };
    let c0 = match (kind.has_cell_state(), a.c0) {
        (false, _) => None,
        (true, Some(c0)) => Some(c0.clone()),
        (true, None) => Some(Tensor::zeros(vec![n, h], dt, dev)?),
    };
    let [out, saved] = {
        let c0r = c0.as_ref().unwrap_or(&h0);
        let mr = a.mask.unwrap_or(&h0);
        let set = Tensor::read_set([a.x_proj, &h0, c0r, a.w_hh, a.b_hh, mr]);
        StorageData::recurrent(
            &spec,
            RecurrentArgs {
                xp: (set.data(0), a.x_proj.layout()),
                h0: (set.data(1), h0.layout()),
                c0: c0.as_ref().map(|c| (set.data(2), c.layout())),
                w_hh: (set.data(3), a.w_hh.layout()),
                b_hh: (set.data(4), a.b_hh.layout()),
                mask: a.mask.map(|m| (set.data(5), m.layout())),
            },
        )?
    };
    let saved_len = t * n * kind.saved_per_row(h);
    let saved = Tensor::from_storage(saved, &[saved_len], None);
    let record = Tensor::record(|| {
        Op::Fused(FusedOp::Recurrent(Box::new(RecurrentOp {
            x_proj: a.x_proj.clone(),
            h0: h0.clone(),
            c0: c0.clone(),
            w_hh: a.w_hh.clone(),
            b_hh: a.b_hh.clone(),
            mask: a.mask.cloned(),
            saved: saved.clone(),
            spec,
        })))
    });
    let output = Tensor::from_storage(out, &[n, t, h], record);
    if t == 0 {
        return Ok(RecurrentOutput {
            output,
            h_n: h0,
            c_n: c0,
        });
    }
    let last = if reverse { 0 } else { t - 1 };
    let h_n = output.narrow(1, last, 1)?.reshape(vec![n, h])?;
    let c_n = if kind.has_cell_state() {
        // The last step processed is slot T−1 of the saved values, c at columns 4H..5H.
        let sp = kind.saved_per_row(h);
        Some(no_grad(|| -> Result<Tensor> {
            saved
                .reshape(vec![t, n, sp])?
                .narrow(0, t - 1, 1)?
                .narrow(2, 4 * h, h)?
                .reshape(vec![n, h])?
                .contiguous()
        })?)
    } else {
        None
    };
    Ok(RecurrentOutput { output, h_n, c_n })
}

/// One recorded recurrent sequence.
#[derive(Debug, Clone)]
pub(crate) struct RecurrentOp {
    /// `[N, T, G·H]`.
    pub x_proj: Tensor,
    /// The initial hidden state used (zeros when none was given).
    pub h0: Tensor,
    /// The initial cell state used (LSTM).
    pub c0: Option<Tensor>,
    /// `[G·H, H]`.
    pub w_hh: Tensor,
    /// `[G·H]`.
    pub b_hh: Tensor,
    /// The mask, a constant.
    pub mask: Option<Tensor>,
    /// What the forward saved for the backward (a constant).
    pub saved: Tensor,
    /// The geometry.
    pub spec: RecurrentSpec,
}

impl Fused for RecurrentOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.x_proj);
        f(&self.h0);
        if let Some(c0) = &self.c0 {
            f(c0);
        }
        f(&self.w_hh);
        f(&self.b_hh);
    }

    /// Exact BPTT (ember-cpu's `recurrent::backward`): gradients of x_proj, h0, c0, W_hh and
    /// b_hh from the gradient of the output sequence.
    fn backward(&self, y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let c0r = self.c0.as_ref().unwrap_or(&self.h0);
        let mr = self.mask.as_ref().unwrap_or(&self.h0);
        let set = Tensor::read_set([&self.h0, c0r, &self.w_hh, mr, y, &self.saved, g]);
        let [dxp, dh0, dc0, dw, db] = StorageData::recurrent_backward(
            &self.spec,
            RecurrentBackwardArgs {
                h0: (set.data(0), self.h0.layout()),
                c0: self.c0.as_ref().map(|c| (set.data(1), c.layout())),
                w_hh: (set.data(2), self.w_hh.layout()),
                mask: self.mask.as_ref().map(|m| (set.data(3), m.layout())),
                out: (set.data(4), y.layout()),
                saved: (set.data(5), self.saved.layout()),
                g: (set.data(6), g.layout()),
            },
        )?;
        drop(set);
        let mut v = Vec::with_capacity(5);
        let mut push = |x: &Tensor, d: StorageData| {
            if x.requires_grad() {
                v.push((x.clone(), Tensor::from_storage(d, x.shape(), None)));
            }
        };
        push(&self.x_proj, dxp);
        push(&self.h0, dh0);
        if let Some(c0) = &self.c0 {
            push(c0, dc0);
        }
        push(&self.w_hh, dw);
        push(&self.b_hh, db);
        Ok(v)
    }
}
