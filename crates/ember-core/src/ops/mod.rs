//! Forward ops on tensors, grouped by family. Each op validates its arguments (returning an
//! [`Error`] that names shapes and dtypes), calls one method of the dispatch seam
//! ([`StorageData`](crate::storage::StorageData), in `backend/`), which runs it on the
//! operands' device, and records an [`Op`](crate::op::Op) when a gradient may flow.

pub(crate) mod conv;
mod elementwise;
mod index;
mod matmul;
mod reduce;
mod view;

pub(crate) use elementwise::binary_name;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Checks that two operands share dtype and device.
pub(crate) fn check_same(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch {
            op,
            lhs: a.dtype(),
            rhs: b.dtype(),
        });
    }
    if a.device() != b.device() {
        return Err(Error::DeviceMismatch {
            op,
            lhs: a.device(),
            rhs: b.device(),
        });
    }
    Ok(())
}
