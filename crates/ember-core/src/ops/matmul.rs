//! Matrix products: `matmul` (2-D and batched with batch broadcasting) and `linear` (a Dense
//! layer's `act(x · wᵀ + b)` as one GEMM with a fused epilogue).
//!
//! Operands are passed to the GEMM kernel through their strides, so transposed or sliced inputs
//! never need `.contiguous()`; the backward rules use transposed *views* the same way.

use super::check_same;
use crate::backend::MatmulSpec;
use crate::error::{Error, Result};
use crate::fused::{FusedOp, LinearOp};
use crate::op::Op;
use crate::shape::broadcast_shapes;
use crate::storage::StorageData;
use crate::tensor::Tensor;
use ember_ops::Activation;

impl Tensor {
    /// Matrix product. Rank-2 operands give `[m, n]`; higher ranks treat leading dimensions as
    /// batch dimensions, broadcast NumPy-style. A rank-1 operand is a row (lhs) or column (rhs)
    /// vector whose unit dimension is dropped from the result.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        check_same("matmul", self, rhs)?;
        if self.rank() == 0 || rhs.rank() == 0 {
            return Err(Error::shape(
                "matmul",
                format!(
                    "lhs {:?} and rhs {:?}: operands need rank >= 1",
                    self.shape(),
                    rhs.shape()
                ),
            ));
        }
        if self.rank() == 1 {
            let r = self.unsqueeze(0)?.matmul(rhs)?;
            return r.squeeze(r.rank() - 2);
        }
        if rhs.rank() == 1 {
            let r = self.matmul(&rhs.unsqueeze(1)?)?;
            return r.squeeze(r.rank() - 1);
        }
        let (ra, rb) = (self.rank(), rhs.rank());
        let (m, k) = (self.shape()[ra - 2], self.shape()[ra - 1]);
        let (k2, n) = (rhs.shape()[rb - 2], rhs.shape()[rb - 1]);
        if k != k2 {
            return Err(Error::shape(
                "matmul",
                format!(
                    "lhs {:?} and rhs {:?}: inner dimensions {k} and {k2} differ",
                    self.shape(),
                    rhs.shape()
                ),
            ));
        }
        let batch = broadcast_shapes("matmul", &self.shape()[..ra - 2], &rhs.shape()[..rb - 2])
            .map_err(|_| {
                Error::shape(
                    "matmul",
                    format!(
                        "lhs {:?} and rhs {:?}: batch dimensions cannot be broadcast",
                        self.shape(),
                        rhs.shape()
                    ),
                )
            })?;
        // Plain 2-D products (the common case) need no batch broadcasting at all.
        let (a, b) = if batch.is_empty() && ra == 2 && rb == 2 {
            (self.clone(), rhs.clone())
        } else {
            (
                self.broadcast_to([batch.as_slice(), &[m, k]].concat())?,
                rhs.broadcast_to([batch.as_slice(), &[k, n]].concat())?,
            )
        };
        let spec = MatmulSpec {
            batch: &batch,
            m,
            n,
            k,
            act: Activation::None,
        };
        let set = Tensor::read_set([&a, &b]);
        let (sa, sb) = (set.data(0), set.data(1));
        let data = StorageData::matmul(
            "matmul",
            &spec,
            (sa, a.layout()),
            (sb, b.layout()),
            (sa, None),
        )?;
        drop(set);
        let shape = if batch.is_empty() {
            vec![m, n]
        } else {
            [batch.as_slice(), &[m, n]].concat()
        };
        Ok(Tensor::from_storage(
            data,
            &shape,
            Tensor::record(|| Op::Matmul(a, b)),
        ))
    }

    /// A Dense layer in one pass: `act(x · wᵀ + b)` for `x: [batch, in]`, `w: [out, in]`
    /// (PyTorch's `nn.Linear` layout) and `b: [out]`. The bias add and activation run in the
    /// GEMM's epilogue while the output is written.
    pub fn linear(&self, w: &Tensor, b: Option<&Tensor>, act: Activation) -> Result<Tensor> {
        check_same("linear", self, w)?;
        if self.rank() != 2 || w.rank() != 2 || self.shape()[1] != w.shape()[1] {
            return Err(Error::shape(
                "linear",
                format!(
                    "input {:?} and weight {:?}: need input [batch, in] and weight [out, in] with equal `in`",
                    self.shape(),
                    w.shape()
                ),
            ));
        }
        let (m, k, n) = (self.shape()[0], self.shape()[1], w.shape()[0]);
        if let Some(b) = b {
            check_same("linear", self, b)?;
            if b.shape() != [n] {
                return Err(Error::shape(
                    "linear",
                    format!(
                        "bias {:?} must have shape [{n}] to match weight {:?}",
                        b.shape(),
                        w.shape()
                    ),
                ));
            }
        }
        // GELU's slope needs the pre-activation, which the fused op does not keep: compose.
        if !act.slope_from_output() {
            let z = self.linear(w, b, Activation::None)?;
            return match act.as_unary() {
                Some(op) => z.unary_op(op),
                None => Ok(z),
            };
        }
        let wt = w.layout().transpose(0, 1)?;
        // x, w and the bias are read under one lock per distinct storage (`ReadSet`): a flat
        // parameter buffer may hold both w and b. Without a bias, x stands in for it.
        let set = Tensor::read_set([self, w, b.unwrap_or(self)]);
        let spec = MatmulSpec {
            batch: &[],
            m,
            n,
            k,
            act,
        };
        let data = StorageData::matmul(
            "linear",
            &spec,
            (set.data(0), self.layout()),
            (set.data(1), &wt),
            (set.data(2), b.map(|b| b.layout())),
        )?;
        drop(set);
        let op = || {
            Op::Fused(FusedOp::Linear(LinearOp {
                x: self.clone(),
                w: w.clone(),
                b: b.cloned(),
                act,
            }))
        };
        Ok(Tensor::from_storage(data, &[m, n], Tensor::record(op)))
    }
}
