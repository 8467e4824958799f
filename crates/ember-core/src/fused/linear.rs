//! The Dense layer as one fused op: forward `y = act(x·wᵀ + b)` in one GEMM with the bias and
//! activation in its epilogue (`Tensor::linear`, `ops/matmul.rs`), backward here.

use super::Fused;
use crate::error::Result;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::Activation;

/// The inputs and activation of one recorded Dense forward (an activation whose slope follows
/// from its output: none, relu, sigmoid or tanh; GELU layers are composed).
#[derive(Debug, Clone)]
pub(crate) struct LinearOp {
    /// Input `[m, k]`.
    pub x: Tensor,
    /// Weight `[n, k]`.
    pub w: Tensor,
    /// Bias `[n]`.
    pub b: Option<Tensor>,
    /// The fused activation.
    pub act: Activation,
}

impl Fused for LinearOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.x);
        f(&self.w);
        if let Some(b) = &self.b {
            f(b);
        }
    }

    /// y = act(z), z = x·wᵀ + b: dz = g·act'(z) (from y), dx = dz·w, dw = dzᵀ·x,
    /// db = Σ_rows dz. A device with a fused backward computes all of it in one call (dz in a
    /// scratch buffer, dx only when x needs it); otherwise the same rule runs as tensor ops.
    fn backward(&self, y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let LinearOp { x, w, b, act } = self;
        debug_assert!(
            act.slope_from_output(),
            "gelu linear is composed, never recorded"
        );
        let set = Tensor::read_set([x, w, y, g]);
        let fused = StorageData::linear_backward(
            act.as_unary(),
            (set.data(0), x.layout()),
            (set.data(1), w.layout()),
            (set.data(2), y.layout()),
            (set.data(3), g.layout()),
            x.requires_grad(),
            b.is_some(),
        )?;
        drop(set);
        if let Some(r) = fused {
            let mut v = Vec::with_capacity(3);
            if let Some(dx) = r.dx {
                v.push((x.clone(), Tensor::from_storage(dx, x.shape(), None)));
            }
            v.push((w.clone(), Tensor::from_storage(r.dw, w.shape(), None)));
            if let (Some(b), Some(db)) = (b, r.db) {
                v.push((b.clone(), Tensor::from_storage(db, b.shape(), None)));
            }
            return Ok(v);
        }
        let dz = match act.as_unary() {
            None => g.clone(),
            // relu's [z > 0] equals [y > 0], so y stands in for z.
            Some(u) => Tensor::unary_backward(u, y, y, g)?,
        };
        let mut v = vec![(x.clone(), dz.matmul(w)?), (w.clone(), dz.t()?.matmul(x)?)];
        if let Some(b) = b {
            v.push((b.clone(), dz.sum(&[0], false)?));
        }
        Ok(v)
    }
}
