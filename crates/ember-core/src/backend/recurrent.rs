//! The dispatch seam for the recurrent sequence op (`fused/recurrent.rs`): its operand bundles
//! and the device match for them.
//!
//! The op reads up to six tensors (projections, initial states, recurrent weight and bias, a
//! mask), two of them optional, so its [`BackendStorage`] methods take a bundle of operands
//! rather than six parameters, and the device match is written here once for the bundle: all
//! on the CPU, all on one GPU, or an error naming the devices.

use super::{Arg, BackendStorage, mismatch};
use crate::error::Result;
use crate::storage::{CpuStorage, CudaStorage, StorageData};
use ember_ops::RecurrentSpec;

/// The operands of the recurrent forward on one device (see [`BackendStorage::recurrent`]).
pub(crate) struct RecurrentArgs<'a, S> {
    /// Input projections `[N, T, G·H]`.
    pub xp: Arg<'a, S>,
    /// Initial hidden state `[N, H]`.
    pub h0: Arg<'a, S>,
    /// Initial cell state `[N, H]` (LSTM only).
    pub c0: Option<Arg<'a, S>>,
    /// Recurrent weight `[G·H, H]`.
    pub w_hh: Arg<'a, S>,
    /// Recurrent bias `[G·H]`.
    pub b_hh: Arg<'a, S>,
    /// Mask `[N, T]` (non-zero = real step).
    pub mask: Option<Arg<'a, S>>,
}

/// The operands of the recurrent backward on one device (see
/// [`BackendStorage::recurrent_backward`]).
pub(crate) struct RecurrentBackwardArgs<'a, S> {
    /// Initial hidden state `[N, H]`.
    pub h0: Arg<'a, S>,
    /// Initial cell state (LSTM only).
    pub c0: Option<Arg<'a, S>>,
    /// Recurrent weight `[G·H, H]`.
    pub w_hh: Arg<'a, S>,
    /// Mask `[N, T]`.
    pub mask: Option<Arg<'a, S>>,
    /// The forward's output `[N, T, H]`.
    pub out: Arg<'a, S>,
    /// The forward's saved values.
    pub saved: Arg<'a, S>,
    /// The output's gradient `[N, T, H]`.
    pub g: Arg<'a, S>,
}

fn cpu<'a>((s, l): Arg<'a, StorageData>) -> Option<Arg<'a, CpuStorage>> {
    match s {
        StorageData::Cpu(c) => Some((c, l)),
        StorageData::Cuda(_) => None,
    }
}

fn cuda<'a>((s, l): Arg<'a, StorageData>) -> Option<Arg<'a, CudaStorage>> {
    match s {
        StorageData::Cuda(c) => Some((c, l)),
        StorageData::Cpu(_) => None,
    }
}

/// `Some(Some(x))` when an optional operand converts, `Some(None)` when it is absent, `None`
/// when it lies elsewhere.
fn opt<'a, S>(
    a: Option<Arg<'a, StorageData>>,
    f: fn(Arg<'a, StorageData>) -> Option<Arg<'a, S>>,
) -> Option<Option<Arg<'a, S>>> {
    match a {
        None => Some(None),
        Some(a) => f(a).map(Some),
    }
}

impl<'a> RecurrentArgs<'a, StorageData> {
    fn on<S>(
        &self,
        f: fn(Arg<'a, StorageData>) -> Option<Arg<'a, S>>,
    ) -> Option<RecurrentArgs<'a, S>> {
        Some(RecurrentArgs {
            xp: f(self.xp)?,
            h0: f(self.h0)?,
            c0: opt(self.c0, f)?,
            w_hh: f(self.w_hh)?,
            b_hh: f(self.b_hh)?,
            mask: opt(self.mask, f)?,
        })
    }

    fn devices(&self) -> Vec<crate::dtype::Device> {
        [
            Some(self.xp),
            Some(self.h0),
            self.c0,
            Some(self.w_hh),
            Some(self.b_hh),
            self.mask,
        ]
        .into_iter()
        .flatten()
        .map(|(s, _)| s.device())
        .collect()
    }
}

impl<'a> RecurrentBackwardArgs<'a, StorageData> {
    fn on<S>(
        &self,
        f: fn(Arg<'a, StorageData>) -> Option<Arg<'a, S>>,
    ) -> Option<RecurrentBackwardArgs<'a, S>> {
        Some(RecurrentBackwardArgs {
            h0: f(self.h0)?,
            c0: opt(self.c0, f)?,
            w_hh: f(self.w_hh)?,
            mask: opt(self.mask, f)?,
            out: f(self.out)?,
            saved: f(self.saved)?,
            g: f(self.g)?,
        })
    }

    fn devices(&self) -> Vec<crate::dtype::Device> {
        [
            Some(self.h0),
            self.c0,
            Some(self.w_hh),
            self.mask,
            Some(self.out),
            Some(self.saved),
            Some(self.g),
        ]
        .into_iter()
        .flatten()
        .map(|(s, _)| s.device())
        .collect()
    }
}

impl StorageData {
    /// See [`BackendStorage::recurrent`].
    pub(crate) fn recurrent(
        spec: &RecurrentSpec,
        a: RecurrentArgs<'_, StorageData>,
    ) -> Result<[StorageData; 2]> {
        if let Some(c) = a.on(cpu) {
            return Ok(CpuStorage::recurrent(spec, c)?.map(StorageData::Cpu));
        }
        if let Some(g) = a.on(cuda) {
            return Ok(CudaStorage::recurrent(spec, g)?.map(StorageData::Cuda));
        }
        Err(mismatch("recurrent", &a.devices()))
    }

    /// See [`BackendStorage::recurrent_backward`].
    pub(crate) fn recurrent_backward(
        spec: &RecurrentSpec,
        a: RecurrentBackwardArgs<'_, StorageData>,
    ) -> Result<[StorageData; 5]> {
        if let Some(c) = a.on(cpu) {
            return Ok(CpuStorage::recurrent_backward(spec, c)?.map(StorageData::Cpu));
        }
        if let Some(g) = a.on(cuda) {
            return Ok(CudaStorage::recurrent_backward(spec, g)?.map(StorageData::Cuda));
        }
        Err(mismatch("recurrent", &a.devices()))
    }
}
