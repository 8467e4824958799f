//! Convolution and transposed convolution as one fused op each: forward in `ops/conv.rs`
//! (one device call: a GEMM-based kernel with the bias added), backward here.
//!
//! Both directions are described by the spec of a *convolution* (`Conv2dSpec`): a transposed
//! convolution is recorded with the spec of the convolution it is the adjoint of. With that,
//! three device kernels serve all six products:
//!
//! | op                 | forward          | dx               | dw                         |
//! |--------------------|------------------|------------------|----------------------------|
//! | `conv2d`           | conv(x, w)       | backward_data(g, w) | backward_weight(x, g)   |
//! | `conv_transpose2d` | backward_data(x, w) | conv(g, w)    | backward_weight(g, x)      |
//!
//! and the bias gradient is `Σ g` over (N, H, W) in both.

use super::Fused;
use crate::error::Result;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::Conv2dSpec;

/// One recorded convolution.
#[derive(Debug, Clone)]
pub(crate) struct ConvOp {
    /// Input: `[N, C, H, W]` (conv) or `[N, O, OH, OW]` (transposed: the conv's output side).
    pub x: Tensor,
    /// Weight `[O, C/groups, kh, kw]` of the convolution `spec` describes.
    pub w: Tensor,
    /// Bias, one per output channel of the op.
    pub b: Option<Tensor>,
    /// The convolution (for a transposed one, the convolution it is the adjoint of).
    pub spec: Conv2dSpec,
    /// Whether this is `conv_transpose2d`.
    pub transposed: bool,
}

impl Fused for ConvOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.x);
        f(&self.w);
        if let Some(b) = &self.b {
            f(b);
        }
    }

    /// conv: dx = Wᵀ-conv of g (backward-data), dw = Σ g ⊗ patches of x, db = Σ g.
    /// transposed: dx = conv(g, w), dw = backward-weight with g as the conv's input and x as
    /// its output gradient, db = Σ g. Gradients are computed only for inputs that need them.
    fn backward(&self, _y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let ConvOp {
            x,
            w,
            b,
            spec,
            transposed,
        } = self;
        let mut v = Vec::with_capacity(3);
        let set = Tensor::read_set([x, w, g]);
        let (xs, ws, gs) = (
            (set.data(0), x.layout()),
            (set.data(1), w.layout()),
            (set.data(2), g.layout()),
        );
        let no_bias = (set.data(2), None);
        if x.requires_grad() {
            let dx = if *transposed {
                StorageData::conv2d(spec, gs, ws, no_bias)?
            } else {
                StorageData::conv2d_backward_data("backward", spec, gs, ws, no_bias)?
            };
            v.push((x.clone(), Tensor::from_storage(dx, x.shape(), None)));
        }
        if w.requires_grad() {
            let dw = if *transposed {
                StorageData::conv2d_backward_weight(spec, gs, xs)?
            } else {
                StorageData::conv2d_backward_weight(spec, xs, gs)?
            };
            v.push((w.clone(), Tensor::from_storage(dw, w.shape(), None)));
        }
        drop(set);
        if let Some(b) = b
            && b.requires_grad()
        {
            v.push((b.clone(), g.sum(&[0, 2, 3], false)?));
        }
        Ok(v)
    }
}
