//! The embedding lookup's backward on host buffers: ember-cpu's sorted, per-row accumulation
//! (deterministic for any thread count) into a zeroed `[vocab, dim]` gradient.

use super::{KERNEL_CHECKED, fill, operand, per_float};
use crate::layout::Layout;
use crate::storage::CpuStorage;

/// `grad` (`[idx.len(), dim]`, any layout) summed into zeros of `[vocab, dim]` at rows `idx`.
pub(crate) fn embedding_backward(
    (grad, gl): (&CpuStorage, &Layout),
    vocab: usize,
    dim: usize,
    idx: &[usize],
    padding: Option<usize>,
) -> CpuStorage {
    per_float!((operand(grad, gl)) => |g| {
        let g = g.dense();
        fill(vocab * dim, |o| {
            ember_cpu::embedding::embedding_backward(&g, idx, vocab, dim, padding, o)
                .expect(KERNEL_CHECKED)
        })
    })
    .into_storage(grad.dtype())
}
