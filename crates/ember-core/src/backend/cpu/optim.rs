//! Fused optimizer updates on host buffers, in place: one ember-cpu kernel per parameter.

use super::CpuFloat;
use crate::error::{Error, Result};
use crate::storage::CpuStorage;
use ember_ops::OptimStep;

/// A state slot: the buffer and the offset of the parameter's range in it.
type Slot<'a> = Option<(&'a mut CpuStorage, usize)>;

/// Runs `step` over `n` elements of the parameter (at `p.1`), gradient (at `g.1`) and the used
/// state slots. All buffers share one float dtype (the caller checked).
#[inline]
pub(crate) fn step(
    step: &OptimStep,
    (p, po): (&mut CpuStorage, usize),
    (g, go): (&CpuStorage, usize),
    states: [Slot<'_>; 3],
    n: usize,
) -> Result<()> {
    match (p, g) {
        (CpuStorage::F32(p), CpuStorage::F32(g)) => run(
            step,
            &mut p[po..po + n],
            &g[go..go + n],
            typed(step, states, n)?,
        ),
        (CpuStorage::F64(p), CpuStorage::F64(g)) => run(
            step,
            &mut p[po..po + n],
            &g[go..go + n],
            typed(step, states, n)?,
        ),
        (p, _) => Err(Error::invalid(
            step.name(),
            format!("parameters must be f32 or f64, got {}", p.dtype()),
        )),
    }
}

/// The state slots as typed slices of `n` elements.
#[inline(always)]
fn typed<'a, T: CpuFloat>(
    step: &OptimStep,
    states: [Slot<'a>; 3],
    n: usize,
) -> Result<[Option<&'a mut [T]>; 3]> {
    let mut out: [Option<&'a mut [T]>; 3] = [None, None, None];
    for (o, s) in out.iter_mut().zip(states) {
        if let Some((s, off)) = s {
            let dtype = s.dtype();
            let v = T::slice_mut(s).ok_or_else(|| {
                Error::invalid(
                    step.name(),
                    format!("a state tensor is {dtype}, not the parameter's dtype"),
                )
            })?;
            *o = Some(&mut v[off..off + n]);
        }
    }
    Ok(out)
}

/// The kernel call of each rule, generic over the float type.
#[inline(always)]
fn run<T: CpuFloat>(
    step: &OptimStep,
    p: &mut [T],
    g: &[T],
    [s0, s1, s2]: [Option<&mut [T]>; 3],
) -> Result<()> {
    let missing = || Error::invalid(step.name(), "a required state tensor is missing");
    let mut empty = ([] as [T; 0], [] as [T; 0], [] as [T; 0]);
    match step {
        OptimStep::Sgd(c) => ember_cpu::optim::sgd_step(c, p, g, s0.unwrap_or(&mut empty.0)),
        OptimStep::Adam(c) => {
            ember_cpu::optim::adam_step(c, p, g, s0.ok_or_else(missing)?, s1.ok_or_else(missing)?)
        }
        OptimStep::Adagrad(c) => ember_cpu::optim::adagrad_step(c, p, g, s0.ok_or_else(missing)?),
        OptimStep::Rmsprop(c) => ember_cpu::optim::rmsprop_step(
            c,
            p,
            g,
            s0.ok_or_else(missing)?,
            s1.unwrap_or(&mut empty.1),
            s2.unwrap_or(&mut empty.2),
        ),
    }
    .map_err(|e| Error::invalid(step.name(), e.to_string()))
}
