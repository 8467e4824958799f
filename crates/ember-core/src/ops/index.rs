//! Index ops: `index_select`, `gather` and `one_hot`.
//!
//! ember's dtypes are all floating point, so indices are passed as float tensors holding whole
//! numbers (as class labels usually arrive from a CSV). Every index is checked to be a
//! non-negative integer inside the indexed dimension before any kernel runs: the index tensor is
//! read to the host for that (a download when it lives on a GPU), and the checked indices are
//! what both the CPU and the CUDA kernels receive, and what the backward rules reuse.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::op::Op;
use crate::storage::StorageData;
use crate::tensor::Tensor;

impl Tensor {
    /// Reads a float tensor of indices, checking each is an integer in `0..size`.
    pub(crate) fn indices(&self, op: &'static str, size: usize) -> Result<Vec<usize>> {
        let values = self.to_vec::<f64>()?;
        values
            .iter()
            .map(|&v| {
                if v >= 0.0 && v.fract() == 0.0 && (v as usize) < size {
                    Ok(v as usize)
                } else {
                    Err(Error::Index { op, value: v, size })
                }
            })
            .collect()
    }

    /// Picks entries `indices` (a rank-1 tensor of whole numbers) along dimension `dim`.
    pub fn index_select(&self, indices: &Tensor, dim: usize) -> Result<Tensor> {
        if dim >= self.rank() {
            return Err(Error::Axis {
                op: "index_select",
                axis: dim,
                shape: self.shape().to_vec(),
            });
        }
        if indices.rank() != 1 {
            return Err(Error::shape(
                "index_select",
                format!("indices must be rank 1, got shape {:?}", indices.shape()),
            ));
        }
        let idx = indices.indices("index_select", self.shape()[dim])?;
        let data = self.with_storage(|s, l| StorageData::index_select(s, l, dim, &idx))?;
        let mut shape = self.shape().to_vec();
        shape[dim] = idx.len();
        Ok(Tensor::from_storage(
            data,
            &shape,
            Tensor::record(|| Op::IndexSelect(self.clone(), idx, dim)),
        ))
    }

    /// out[.., j, ..] = self[.., indices[.., j, ..], ..] along `dim`; `indices` has this
    /// tensor's rank and matches its shape on every other dimension.
    pub fn gather(&self, dim: usize, indices: &Tensor) -> Result<Tensor> {
        if dim >= self.rank() {
            return Err(Error::Axis {
                op: "gather",
                axis: dim,
                shape: self.shape().to_vec(),
            });
        }
        let ok = indices.rank() == self.rank()
            && indices
                .shape()
                .iter()
                .zip(self.shape())
                .enumerate()
                .all(|(d, (a, b))| d == dim || a == b);
        if !ok {
            return Err(Error::shape(
                "gather",
                format!(
                    "indices {:?} must match input {:?} on every dimension but {dim}",
                    indices.shape(),
                    self.shape()
                ),
            ));
        }
        let idx = indices.indices("gather", self.shape()[dim])?;
        let out_shape = indices.shape().to_vec();
        let data = self.with_storage(|s, l| StorageData::gather(s, l, dim, &idx, &out_shape))?;
        Ok(Tensor::from_storage(
            data,
            &out_shape,
            Tensor::record(|| Op::Gather(self.clone(), idx, dim)),
        ))
    }

    /// One-hot rows: for indices of shape `S`, a tensor of shape `S ++ [num_classes]`.
    pub fn one_hot(indices: &Tensor, num_classes: usize, dtype: DType) -> Result<Tensor> {
        let idx = indices.indices("one_hot", num_classes)?;
        let eye = Tensor::eye(num_classes, dtype, indices.device())?;
        let positions = Tensor::from_vec(
            idx.iter().map(|&i| i as f64).collect::<Vec<_>>(),
            idx.len(),
            indices.device(),
        )?;
        let rows = eye.index_select(&positions, 0)?;
        let mut shape = indices.shape().to_vec();
        shape.push(num_classes);
        rows.reshape(shape)
    }

    /// The adjoint of `index_select`: this gradient (of the selected shape) added into zeros of
    /// `shape` at the rows `idx` along `dim` (repeats summed). For the derivative rules.
    pub(crate) fn index_add_to(
        &self,
        shape: &[usize],
        dim: usize,
        idx: &[usize],
    ) -> Result<Tensor> {
        let data = self.with_storage(|s, l| StorageData::index_add(s, l, shape, dim, idx))?;
        Ok(Tensor::from_storage(data, shape, None))
    }

    /// The adjoint of `gather`: this gradient scatter-added into zeros of `shape`.
    pub(crate) fn scatter_add_to(
        &self,
        shape: &[usize],
        dim: usize,
        idx: &[usize],
    ) -> Result<Tensor> {
        let data = self.with_storage(|s, l| StorageData::scatter_add(s, l, shape, dim, idx))?;
        Ok(Tensor::from_storage(data, shape, None))
    }
}
