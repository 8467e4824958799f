//! Shape and layout ops: reshape, transpose, permute, narrow, broadcast, squeeze, unsqueeze,
//! flatten (metadata only), and contiguous, cat, stack, to_dtype, to_device (copies).
//!
//! A view shares its input's storage and records its own op, so gradients pass through to the
//! base tensor. `contiguous()` returns the same tensor when no copy is needed.

use super::check_same;
use crate::dtype::{DType, Device};
use crate::error::{Error, Result};
use crate::op::Op;
use crate::shape::Shape;
use crate::storage::StorageData;
use crate::tensor::Tensor;

impl Tensor {
    /// The same elements with a new shape of equal element count. A view when the data is
    /// contiguous, otherwise a copy first.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.checked_elem_count("reshape")? != self.elem_count() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot reshape {:?} ({} elements) to {:?} ({} elements)",
                    self.shape(),
                    self.elem_count(),
                    shape.dims(),
                    shape.elem_count()
                ),
            ));
        }
        if shape.dims() == self.shape() {
            return Ok(self.clone());
        }
        match self.layout().reshape(shape.dims()) {
            Some(l) => Ok(self.view(l, Tensor::record(|| Op::Reshape(self.clone())))),
            None => self.contiguous()?.reshape(shape),
        }
    }

    /// Swaps two dimensions (a view).
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Tensor> {
        let l = self.layout().transpose(d0, d1)?;
        let perm = || {
            let mut perm: Vec<usize> = (0..self.rank()).collect();
            perm.swap(d0, d1);
            perm
        };
        Ok(self.view(l, Tensor::record(|| Op::Permute(self.clone(), perm()))))
    }

    /// Swaps the last two dimensions (the matrix transpose; needs rank ≥ 2).
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::shape(
                "t",
                format!("needs rank >= 2, got shape {:?}", self.shape()),
            ));
        }
        self.transpose(self.rank() - 2, self.rank() - 1)
    }

    /// Reorders dimensions: result dimension i is input dimension `perm[i]` (a view).
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let l = self.layout().permute(perm)?;
        Ok(self.view(
            l,
            Tensor::record(|| Op::Permute(self.clone(), perm.to_vec())),
        ))
    }

    /// Elements `start..start+len` of dimension `dim` (a view).
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        let l = self.layout().narrow(dim, start, len)?;
        Ok(self.view(l, Tensor::record(|| Op::Narrow(self.clone(), dim, start))))
    }

    /// Views the tensor at a larger shape by NumPy broadcasting (stride 0; a view).
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.dims() == self.shape() {
            return Ok(self.clone());
        }
        shape.checked_elem_count("broadcast_to")?;
        let l = self.layout().broadcast_to(shape.dims())?;
        Ok(self.view(l, Tensor::record(|| Op::Broadcast(self.clone()))))
    }

    /// Same as [`Tensor::broadcast_to`].
    pub fn expand(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        self.broadcast_to(shape)
    }

    /// Removes dimension `dim`, which must have extent 1.
    pub fn squeeze(&self, dim: usize) -> Result<Tensor> {
        let l = self.layout().squeeze(dim)?;
        self.reshape(l.shape().to_vec())
    }

    /// Inserts a dimension of extent 1 at `dim`.
    pub fn unsqueeze(&self, dim: usize) -> Result<Tensor> {
        let l = self.layout().unsqueeze(dim)?;
        self.reshape(l.shape().to_vec())
    }

    /// Merges dimensions `start..=end` into one.
    pub fn flatten(&self, start: usize, end: usize) -> Result<Tensor> {
        if start > end || end >= self.rank() {
            return Err(Error::shape(
                "flatten",
                format!(
                    "dims {start}..={end} are not a valid range for shape {:?}",
                    self.shape()
                ),
            ));
        }
        let s = self.shape();
        let mut shape = s[..start].to_vec();
        shape.push(s[start..=end].iter().product());
        shape.extend_from_slice(&s[end + 1..]);
        self.reshape(shape)
    }

    /// A rank-1 view (or copy) of all elements.
    pub fn flatten_all(&self) -> Result<Tensor> {
        self.reshape(vec![self.elem_count()])
    }

    /// A dense row-major tensor with the same values: `self` when already contiguous.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let data = self.with_storage(StorageData::contiguous)?;
        Ok(Tensor::from_storage(
            data,
            self.shape(),
            Tensor::record(|| Op::Copy(self.clone())),
        ))
    }

    /// The values converted to `dtype` (round to nearest even). Gradients flow back converted.
    /// On a GPU only f32 and f64 exist: converting a CUDA tensor to f16 or bf16 is an error.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let data = self.with_storage(|s, l| StorageData::cast(s, l, dtype))?;
        Ok(Tensor::from_storage(
            data,
            self.shape(),
            Tensor::record(|| Op::Copy(self.clone())),
        ))
    }

    /// The tensor on `device` (the same tensor when it is already there). Gradients flow back
    /// across the move. CUDA tensors hold f32 or f64; 16-bit data is widened to f32 on upload.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let data = self.with_storage(|s, l| StorageData::to_device(s, l, device))?;
        Ok(Tensor::from_storage(
            data,
            self.shape(),
            Tensor::record(|| Op::Copy(self.clone())),
        ))
    }

    /// Joins tensors along dimension `dim`; all other extents must match.
    pub fn cat(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::invalid("cat", "needs at least one tensor"))?;
        if dim >= first.rank() {
            return Err(Error::Axis {
                op: "cat",
                axis: dim,
                shape: first.shape().to_vec(),
            });
        }
        for t in tensors {
            check_same("cat", first, t)?;
            let ok = t.rank() == first.rank()
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(d, (a, b))| d == dim || a == b);
            if !ok {
                return Err(Error::shape(
                    "cat",
                    format!(
                        "shapes {:?} and {:?} differ outside dimension {dim}",
                        first.shape(),
                        t.shape()
                    ),
                ));
            }
        }
        let mut shape = first.shape().to_vec();
        shape[dim] = tensors.iter().map(|t| t.shape()[dim]).sum();
        // One read lock per distinct storage: `cat(&[&x, &x])` is common.
        let set = Tensor::read_many(tensors);
        let parts: Vec<_> = (0..tensors.len())
            .map(|i| (set.data(i), tensors[i].layout()))
            .collect();
        let data = StorageData::concat(&parts, dim)?;
        drop(parts);
        drop(set);
        let inputs = tensors.iter().map(|t| (*t).clone()).collect();
        Ok(Tensor::from_storage(
            data,
            &shape,
            Tensor::record(|| Op::Cat(inputs, dim)),
        ))
    }

    /// Stacks equally shaped tensors along a new dimension `dim`.
    pub fn stack(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        // Checked here so that errors name `stack`, not the `cat` it is built on.
        let first = tensors
            .first()
            .ok_or_else(|| Error::invalid("stack", "needs at least one tensor"))?;
        if dim > first.rank() {
            return Err(Error::Axis {
                op: "stack",
                axis: dim,
                shape: first.shape().to_vec(),
            });
        }
        for t in tensors {
            check_same("stack", first, t)?;
            if t.shape() != first.shape() {
                return Err(Error::shape(
                    "stack",
                    format!(
                        "tensors must have one shape, got {:?} and {:?}",
                        first.shape(),
                        t.shape()
                    ),
                ));
            }
        }
        let expanded: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.unsqueeze(dim))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = expanded.iter().collect();
        Tensor::cat(&refs, dim)
    }
}
