//! L1 and L2 weight penalties, Keras's `kernel_regularizer`.
//!
//! A penalty is a scalar tensor built from the weight with differentiable ops and added to the
//! data loss, so its gradient (`l1·sign(w) + 2·l2·w`) flows through autograd like any other term.

use crate::error::Result;
use ember_core::Tensor;

/// `l1 · Σ|w| + l2 · Σw²`, exactly Keras's `L1L2` (note: no factor ½ on the L2 term, so it is
/// not the same number as PyTorch's `weight_decay`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Regularizer {
    /// Coefficient of the sum of absolute values.
    pub l1: f64,
    /// Coefficient of the sum of squares.
    pub l2: f64,
}

impl Regularizer {
    /// An L1 penalty only.
    pub fn l1(l1: f64) -> Regularizer {
        Regularizer { l1, l2: 0.0 }
    }

    /// An L2 penalty only.
    pub fn l2(l2: f64) -> Regularizer {
        Regularizer { l1: 0.0, l2 }
    }

    /// Both penalties; `None` when both coefficients are zero.
    pub fn l1_l2(l1: f64, l2: f64) -> Option<Regularizer> {
        if l1 == 0.0 && l2 == 0.0 {
            None
        } else {
            Some(Regularizer { l1, l2 })
        }
    }

    /// The penalty on `w` as a scalar tensor, or `None` if both coefficients are zero.
    pub fn penalty(&self, w: &Tensor) -> Result<Option<Tensor>> {
        let mut total: Option<Tensor> = None;
        if self.l1 != 0.0 {
            total = Some(w.abs()?.sum_all()?.mul_scalar(self.l1)?);
        }
        if self.l2 != 0.0 {
            let l2 = w.sqr()?.sum_all()?.mul_scalar(self.l2)?;
            total = Some(match total {
                Some(t) => t.add(&l2)?,
                None => l2,
            });
        }
        Ok(total)
    }
}
