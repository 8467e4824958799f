//! Scaled dot-product attention as one fused op, PyTorch's
//! `F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p=0, is_causal, scale)`:
//! `softmax(scale·q·kᵀ + mask)·v` per head.
//!
//! The forward never materialises the `[Tq, Tk]` probabilities of a head: ember-cpu's
//! `attention` kernel tiles the keys and keeps an online softmax (FlashAttention-2), saving
//! only the per-row log-sum-exp `[N, H, Tq]` for the backward, which rebuilds each tile of
//! probabilities from it. Memory stays linear in the sequence length.
//!
//! Masks: `causal` (query i sees keys j ≤ i, top-left aligned as PyTorch's `is_causal`), and a
//! key *keep*-mask `[N, Tk]` (1 = attend, 0 = padding, as Keras and ember's sequence masks;
//! note PyTorch's `key_padding_mask` is the opposite, True = ignore). The mask is a constant:
//! no gradient flows to it. A query row that may see no key at all has a zero output and zero
//! gradients; PyTorch gives NaN there — ember differs on purpose, since padded batches produce
//! such rows and one NaN would poison the loss. Dropout on the probabilities is not part of
//! the op (apply dropout to the output instead, or to the attention layer's result).

use super::{Fused, FusedOp};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::AttentionSpec;

/// Options of [`scaled_dot_product_attention`]; `Default` is PyTorch's (no mask, not causal,
/// scale 1/√Dh).
#[derive(Debug, Clone, Copy, Default)]
pub struct AttentionOptions<'a> {
    /// Query i attends only to keys j ≤ i (PyTorch's `is_causal`, top-left aligned).
    pub causal: bool,
    /// A key keep-mask `[N, Tk]` (`[B, Tk]` for 3-D operands): nonzero = attend, 0 = ignore.
    pub key_mask: Option<&'a Tensor>,
    /// The factor on q·kᵀ; `None` is 1/√Dh.
    pub scale: Option<f64>,
}

/// Scaled dot-product attention of queries `q` `[N, H, Tq, Dh]`, keys `k` `[N, H, Tk, Dh]` and
/// values `v` `[N, H, Tk, Dv]` (or all 3-D, `[B, T, D]`, one head): `[N, H, Tq, Dv]`.
///
/// See the module docs for the masks and for where ember differs from PyTorch (fully masked
/// rows give zeros, not NaN; no dropout inside the op).
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: AttentionOptions<'_>,
) -> Result<Tensor> {
    const OP: &str = "scaled_dot_product_attention";
    crate::ops_check_same(OP, q, k)?;
    crate::ops_check_same(OP, q, v)?;
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    let bad =
        |why: &str| Error::shape(OP, format!("query {qs:?}, key {ks:?}, value {vs:?}: {why}"));
    let r = qs.len();
    if !(r == 3 || r == 4) || ks.len() != r || vs.len() != r {
        return Err(bad(
            "expected all [N, H, T, D] or all [B, T, D] (same rank, 3 or 4)",
        ));
    }
    let lead = &qs[..r - 2];
    if &ks[..r - 2] != lead || &vs[..r - 2] != lead {
        return Err(bad("batch and head dimensions differ"));
    }
    let (tq, dh) = (qs[r - 2], qs[r - 1]);
    let (tk, dv) = (ks[r - 2], vs[r - 1]);
    if ks[r - 1] != dh {
        return Err(bad("query and key widths differ"));
    }
    if vs[r - 2] != tk {
        return Err(bad("key and value lengths differ"));
    }
    if dh == 0 || dv == 0 {
        return Err(bad("query/key and value widths must be at least 1"));
    }
    let (batch, heads) = if r == 4 { (qs[0], qs[1]) } else { (qs[0], 1) };
    let scale = o.scale.unwrap_or(1.0 / (dh as f64).sqrt());
    if !scale.is_finite() {
        return Err(Error::invalid(OP, format!("scale {scale} must be finite")));
    }
    if let Some(m) = o.key_mask {
        crate::ops_check_same(OP, q, m)?;
        if m.shape() != [batch, tk] {
            return Err(Error::shape(
                OP,
                format!(
                    "key mask {:?} must be [{batch}, {tk}] (examples × keys) for query {qs:?} and key {ks:?}",
                    m.shape()
                ),
            ));
        }
    }
    let spec = AttentionSpec {
        batch,
        heads,
        tq,
        tk,
        dh,
        dv,
        causal: o.causal,
        scale,
    };
    let [out, lse] = match o.key_mask {
        Some(m) => {
            let set = Tensor::read_set([q, k, v, m]);
            StorageData::attention(
                &spec,
                (set.data(0), q.layout()),
                (set.data(1), k.layout()),
                (set.data(2), v.layout()),
                Some((set.data(3), m.layout())),
            )?
        }
        None => {
            let set = Tensor::read_set([q, k, v]);
            StorageData::attention(
                &spec,
                (set.data(0), q.layout()),
                (set.data(1), k.layout()),
                (set.data(2), v.layout()),
                None,
            )?
        }
    };
    let mut oshape = qs.to_vec();
    oshape[r - 1] = dv;
    let record = Tensor::record(|| {
        Op::Fused(FusedOp::Attention(Box::new(AttentionOp {
            q: q.clone(),
            k: k.clone(),
            v: v.clone(),
            key_mask: o.key_mask.map(|m| m.detach()),
            lse: Tensor::from_storage(lse, &qs[..r - 1], None),
            spec,
        })))
    });
    Ok(Tensor::from_storage(out, &oshape, record))
}

/// One recorded attention call.
#[derive(Debug, Clone)]
pub(crate) struct AttentionOp {
    /// Queries.
    pub q: Tensor,
    /// Keys.
    pub k: Tensor,
    /// Values.
    pub v: Tensor,
    /// The key keep-mask (a constant).
    pub key_mask: Option<Tensor>,
    /// Each query row's log-sum-exp of its scaled logits (+∞ on fully masked rows).
    pub lse: Tensor,
    /// Geometry and options.
    pub spec: AttentionSpec,
}

impl Fused for AttentionOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.q);
        f(&self.k);
        f(&self.v);
    }

    /// With P = softmax(scale·q·kᵀ) rebuilt from lse and D = rowsum(g∘y):
    /// dv = Pᵀ·g, dS = P∘(g·vᵀ − D), dq = scale·dS·k, dk = scale·dSᵀ·q.
    fn backward(&self, y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let (q, k, v) = (&self.q, &self.k, &self.v);
        let [dq, dk, dv] = match &self.key_mask {
            Some(m) => {
                let set = Tensor::read_set([q, k, v, m, y, &self.lse, g]);
                StorageData::attention_backward(
                    &self.spec,
                    (set.data(0), q.layout()),
                    (set.data(1), k.layout()),
                    (set.data(2), v.layout()),
                    Some((set.data(3), m.layout())),
                    (set.data(4), y.layout()),
                    (set.data(5), self.lse.layout()),
                    (set.data(6), g.layout()),
                )?
            }
            None => {
                let set = Tensor::read_set([q, k, v, y, &self.lse, g]);
                StorageData::attention_backward(
                    &self.spec,
                    (set.data(0), q.layout()),
                    (set.data(1), k.layout()),
                    (set.data(2), v.layout()),
                    None,
                    (set.data(3), y.layout()),
                    (set.data(4), self.lse.layout()),
                    (set.data(5), g.layout()),
                )?
            }
        };
        Ok(vec![
            (q.clone(), Tensor::from_storage(dq, q.shape(), None)),
            (k.clone(), Tensor::from_storage(dk, k.shape(), None)),
            (v.clone(), Tensor::from_storage(dv, v.shape(), None)),
        ])
    }
}
