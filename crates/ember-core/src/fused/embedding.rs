//! Embedding lookup as a fused op, PyTorch's `F.embedding(ids, weight, padding_idx)`.
//!
//! ember has only float dtypes, so the ids are a float tensor of whole numbers (any shape `S`);
//! the output is `S ++ [D]`, row `ids[p]` of the `[V, D]` table at each position `p`. The
//! forward is the existing row copy (`index_select` along axis 0, on either device). It is a
//! fused op rather than `index_select` plus a reshape for its backward: the adjoint adds each
//! position's gradient row into the table row it came from, and repeated ids must sum in a
//! fixed order for results to be bit-identical whatever the thread count. The CPU kernel
//! (`ember_cpu::embedding`) sorts the `(id, position)` pairs once and sums each distinct row in
//! one task, in position order, touching only the rows that occur: O(n·log n + n·D) for n
//! positions, independent of V.
//!
//! What stays proportional to the table is the dense `[V, D]` gradient itself: it is allocated
//! and zero-filled (a `calloc` for large tables, whose fresh pages come zeroed) because ember's
//! gradients and optimizers are dense; a sparse gradient (PyTorch's `sparse=True`) would need
//! a sparse tensor type and optimizer updates that ember does not have.
//!
//! `padding_idx` follows PyTorch: that row is looked up normally but receives no gradient.
//! The ids get no gradient (they are indices). On CUDA the forward runs; the backward returns
//! an error until a kernel is written.

use super::{Fused, FusedOp};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::storage::StorageData;
use crate::tensor::Tensor;

impl Tensor {
    /// Rows of `table` (`[V, D]`) picked by `ids` (whole-number floats of any shape `S`, each
    /// in `0..V`): a tensor of shape `S ++ [D]`, PyTorch's `F.embedding(ids, table,
    /// padding_idx)`. Row `padding_idx`, when given, gets no gradient.
    ///
    /// An id that is not a whole number in `0..V` is an error naming it, its position and V.
    pub fn embedding(table: &Tensor, ids: &Tensor, padding_idx: Option<usize>) -> Result<Tensor> {
        const OP: &str = "embedding";
        let ts = table.shape();
        if ts.len() != 2 {
            return Err(Error::shape(
                OP,
                format!("the table {ts:?} must be [vocabulary, dim] (2 dimensions)"),
            ));
        }
        let (vocab, dim) = (ts[0], ts[1]);
        if let Some(p) = padding_idx
            && p >= vocab
        {
            return Err(Error::invalid(
                OP,
                format!("padding_idx {p} is outside the vocabulary of {vocab} rows"),
            ));
        }
        if ids.device() != table.device() {
            return Err(Error::invalid(
                OP,
                format!(
                    "ids on {:?} and table on {:?}: both must be on one device",
                    ids.device(),
                    table.device()
                ),
            ));
        }
        let values = ids.to_vec::<f64>()?;
        let mut idx = Vec::with_capacity(values.len());
        for (p, &v) in values.iter().enumerate() {
            if v >= 0.0 && v.fract() == 0.0 && v < vocab as f64 {
                idx.push(v as usize);
            } else {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "id {v} at position {p} of ids {:?} is not a whole number in 0..{vocab} \
                         (the vocabulary size)",
                        ids.shape()
                    ),
                ));
            }
        }
        let data = table.with_storage(|s, l| StorageData::index_select(s, l, 0, &idx))?;
        let mut shape = ids.shape().to_vec();
        shape.push(dim);
        let record = Tensor::record(|| {
            Op::Fused(FusedOp::Embedding(Box::new(EmbeddingOp {
                table: table.clone(),
                idx,
                padding_idx,
            })))
        });
        Ok(Tensor::from_storage(data, &shape, record))
    }
}

/// One recorded embedding lookup.
#[derive(Debug, Clone)]
pub(crate) struct EmbeddingOp {
    /// The `[V, D]` table.
    pub table: Tensor,
    /// The checked ids, flattened in row-major order.
    pub idx: Vec<usize>,
    /// The row that gets no gradient.
    pub padding_idx: Option<usize>,
}

impl Fused for EmbeddingOp {
    fn visit_inputs(&self, mut f: impl FnMut(&Tensor)) {
        f(&self.table);
    }

    /// `d table[v] = Σ g[p]` over the positions `p` with `ids[p] = v` (v ≠ padding_idx).
    fn backward(&self, _y: &Tensor, g: &Tensor) -> Result<Vec<(Tensor, Tensor)>> {
        let ts = self.table.shape();
        let (vocab, dim) = (ts[0], ts[1]);
        let g2 = g.reshape([self.idx.len(), dim])?;
        let data = g2.with_storage(|s, l| {
            StorageData::embedding_backward((s, l), vocab, dim, &self.idx, self.padding_idx)
        })?;
        Ok(vec![(
            self.table.clone(),
            Tensor::from_storage(data, ts, None),
        )])
    }
}
