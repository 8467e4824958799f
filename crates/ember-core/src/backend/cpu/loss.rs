//! Fused binary cross-entropy on host buffers: the loss sum, its gradient, or both in one pass.

use super::{CpuFloat, KERNEL_CHECKED, fill, operand, per_float, per_float_value, zeroed};
use crate::layout::Layout;
use crate::storage::CpuStorage;
use ember_cpu::Float;
use ember_ops::BceForm;

/// Σ loss(p, y) over two dense slices of one length.
fn sum<T: Float>(form: BceForm, p: &[T], y: &[T]) -> f64 {
    match form {
        BceForm::Probs(eps) => ember_cpu::loss::bce_probs_sum(p, y, eps),
        BceForm::Logits => ember_cpu::loss::bce_logits_sum(p, y),
    }
    .expect(KERNEL_CHECKED)
}

/// Sum of per-element BCE losses over two views of equal shape.
pub(crate) fn bce_sum(
    form: BceForm,
    (p, pl): (&CpuStorage, &Layout),
    (y, yl): (&CpuStorage, &Layout),
) -> f64 {
    per_float_value!((operand(p, pl), operand(y, yl)) => |p, y| sum(form, &p.dense(), &y.dense()))
}

/// The loss sum and `scale ·` its gradient with respect to `p`, in one pass over the data
/// (ember-cpu's fused kernels): what [`bce_sum`] and [`bce_grad`] give, bit for bit.
pub(crate) fn bce_sum_grad(
    form: BceForm,
    (p, pl): (&CpuStorage, &Layout),
    (y, yl): (&CpuStorage, &Layout),
    scale: f64,
) -> (f64, CpuStorage) {
    use ember_cpu::loss::{bce_logits_sum_grad, bce_probs_sum_grad};
    let n = pl.elem_count();
    let (total, out) = per_float_value!((operand(p, pl), operand(y, yl)) => |p, y| {
        let (p, y) = (p.dense(), y.dense());
        let mut o = zeroed(n, Float::ZERO);
        let total = match form {
            BceForm::Probs(eps) => bce_probs_sum_grad(&p, &y, eps, scale, &mut o),
            BceForm::Logits => bce_logits_sum_grad(&p, &y, scale, &mut o),
        }
        .expect(KERNEL_CHECKED);
        (total, CpuFloat::output(o))
    });
    (total, out.into_storage(p.dtype()))
}

/// scale * dBCE/dinput per element, contiguous.
pub(crate) fn bce_grad(
    form: BceForm,
    (p, pl): (&CpuStorage, &Layout),
    (y, yl): (&CpuStorage, &Layout),
    scale: f64,
) -> CpuStorage {
    let n = pl.elem_count();
    per_float!((operand(p, pl), operand(y, yl)) => |p, y| {
        let (p, y) = (p.dense(), y.dense());
        fill(n, |o| match form {
            BceForm::Probs(eps) => ember_cpu::loss::bce_probs_grad(&p, &y, eps, scale, o),
            BceForm::Logits => ember_cpu::loss::bce_logits_grad(&p, &y, scale, o),
        }
        .expect(KERNEL_CHECKED))
    })
    .into_storage(p.dtype())
}
